"""``novakit bridge``: run the session bridge with settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import logs
from .app import Bridge, serve
from .settings import BridgeSettings, SettingsError


def main(argv: list[str] | None = None) -> int:
    variables = "\n".join(f"  {name:34} {meaning}" for name, meaning in BridgeSettings.describe())
    parser = argparse.ArgumentParser(
        prog="novakit bridge",
        description="Run the session bridge (API Gateway WebSocket integration endpoints).",
        epilog=f"settings, from the environment:\n{variables}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        settings = BridgeSettings.from_env()
    except SettingsError as exc:
        print(f"novakit bridge: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        bridge = Bridge(settings)
    except (ValueError, OSError) as exc:
        print(f"novakit bridge: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve_logged(bridge))
    return 0


async def _serve_logged(bridge: Bridge) -> None:
    logs.log_loop_exceptions()
    await serve(bridge)
