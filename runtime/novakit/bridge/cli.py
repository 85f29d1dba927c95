"""``novakit bridge``: run the session bridge with settings from the environment.

With ``NOVAKIT_PROCESSES`` above 1 this process is the supervisor of that many bridge
processes (``supervisor.py``); with 1 it is the bridge itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from . import logs
from .settings import BridgeSettings, SettingsError

if TYPE_CHECKING:
    from .app import Bridge


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
    supervising = settings.processes > 1 and settings.process_index is None
    logs.configure(settings.log_level, fields=_log_fields(settings, supervising=supervising))
    if supervising:
        from .supervisor import run

        try:
            return run(settings)
        except (ValueError, OSError, RuntimeError) as exc:  # the task's address: no metadata
            print(f"novakit bridge: {exc}", file=sys.stderr)
            return 2
    # The bridge's own modules (the SDKs, the server) only where a bridge runs.
    from .app import Bridge

    try:
        bridge = Bridge(settings)
    except (ValueError, OSError) as exc:
        print(f"novakit bridge: {exc}", file=sys.stderr)
        return 2
    run_loop(_serve_logged(bridge), settings.event_loop)
    return 0


def run_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run ``main`` on uvloop, which costs less CPU per event than asyncio's own loop
    (docs/performance.md), or on asyncio's own when asked or when uvloop is not installed."""
    factory = None
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger(__name__).warning("uvloop is not installed: asyncio's loop runs")
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def _log_fields(settings: BridgeSettings, *, supervising: bool) -> dict[str, Any]:
    """Which process wrote a line, when several share the task's log."""
    if supervising:
        return {"process": "supervisor", "pid": os.getpid()}
    if settings.process_index is not None:
        return {"process": settings.process_index, "pid": os.getpid()}
    return {}


async def _serve_logged(bridge: Bridge) -> None:
    from .app import serve

    logs.log_loop_exceptions()
    await serve(bridge)
