"""``python -m novakit.localgw``: run the local API Gateway stand-in until interrupted.

Prints one line per thing it serves (WebSocket URL, ``@connections`` base, static files, each
backend), then serves until SIGINT or SIGTERM and exits cleanly. ``main(argv)`` is what the
``novakit`` command calls; ``serve`` runs inside an existing event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from .config import GatewayConfig
from .integration import ROUTE_PATHS
from .server import LocalGateway

__all__ = ["build_parser", "main", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novakit gateway",
        description="A local API Gateway WebSocket API in front of bridge processes.",
    )
    parser.add_argument(
        "--backend",
        action="append",
        required=True,
        metavar="URL",
        help="bridge base URL; repeat to spread integration requests round-robin",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument(
        "--stage", default="local", help="the stage clients connect to, /STAGE, besides / (local)"
    )
    parser.add_argument("--static", type=Path, metavar="DIR", help="serve files for plain GETs")
    parser.add_argument("--token", help="clients must connect with ?token=TOKEN")
    parser.add_argument("--principal", default="local-user", help="x-principal-id on $connect")
    parser.add_argument(
        "--integration-secret-env",
        default="NOVAKIT_GATEWAY_SECRET",
        metavar="NAME",
        help="environment variable holding the secret sent in x-gateway-secret with every "
        "integration request (the bridge's NOVAKIT_GATEWAY_SECRET; unset: none is sent)",
    )
    parser.add_argument(
        "--sigv4",
        action="store_true",
        help="require SigV4 on @connections, signed with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION", "us-east-1"),
        help="the Region --sigv4 signatures name (AWS_REGION, else us-east-1)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=600.0, help="close a silent connection after (600)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=7200.0, help="close any connection after (7200)"
    )
    parser.add_argument(
        "--integration-timeout",
        type=float,
        default=29.0,
        help="seconds the backend has to answer a route (29, as API Gateway)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        help="seconds a new connection has to send its handshake (10)",
    )
    parser.add_argument("--max-inflight", type=int, default=1, help="per connection")
    parser.add_argument(
        "--outbound-buffer", type=int, default=1024 * 1024, help="bytes queued per client"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (INFO)")
    return parser


def _config(args: argparse.Namespace) -> GatewayConfig:
    credentials: tuple[str, str] | None = None
    if args.sigv4:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise ValueError("--sigv4 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        credentials = (key, secret)
    return GatewayConfig(
        host=args.host,
        port=args.port,
        backends=args.backend,
        stage=args.stage,
        token=args.token,
        principal=args.principal,
        integration_secret=os.environ.get(args.integration_secret_env) or None,
        credentials=credentials,
        region=args.region,
        idle_seconds=args.idle_seconds,
        max_seconds=args.max_seconds,
        integration_timeout=args.integration_timeout,
        handshake_timeout=args.handshake_timeout,
        max_inflight_per_connection=args.max_inflight,
        outbound_buffer=args.outbound_buffer,
        static_dir=args.static,
    )


def describe(gw: LocalGateway) -> list[str]:
    """One line per thing the gateway serves; the token never appears."""
    config = gw.config
    websocket = gw.url + ("?token=***" if config.token is not None else "")
    signing = f"SigV4 execute-api {config.region}" if config.credentials is not None else "unsigned"
    secret = "with x-gateway-secret" if config.integration_secret is not None else "no secret"
    lines = [
        f"websocket     {websocket} (also /{config.stage})",
        f"@connections  {gw.management_url}/@connections/{{connectionId}} ({signing})",
    ]
    if gw.static_url is not None:
        lines.append(f"static        {gw.static_url} from {config.static_root}")
    paths = ", ".join(ROUTE_PATHS.values())
    lines += [f"backend       {backend} (POST {paths}, {secret})" for backend in config.backends]
    return lines


async def serve(
    config: GatewayConfig, *, out: TextIO = sys.stdout, stop: asyncio.Event | None = None
) -> None:
    """Run a gateway until ``stop`` is set, or until SIGINT/SIGTERM when no event is given."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        async with LocalGateway(config) as gw:
            for line in describe(gw):
                print(line, file=out, flush=True)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0
