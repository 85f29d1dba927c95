"""``novakit emulator``: serve the emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TextIO

from ..signals import stop_event
from .conversation import EngineSettings, Script
from .faults import FaultKind, FaultPlan
from .server import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig
from .sigv4 import Credentials

__all__ = ["build_parser", "cli_main", "config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novakit emulator",
        description="A Nova Sonic (Bedrock InvokeModelWithBidirectionalStream) emulator: "
        "TLS + HTTP/2 + event stream + SigV4 on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--region", default="us-east-1", help="the Region SigV4 signatures must name (us-east-1)"
    )
    parser.add_argument(
        "--access-key",
        default=DEFAULT_CREDENTIALS.access_key_id,
        help="the access key id clients sign with (a fixed test key)",
    )
    parser.add_argument(
        "--secret-key",
        default=DEFAULT_CREDENTIALS.secret_access_key,
        help="its secret key (a fixed test secret)",
    )
    parser.add_argument(
        "--session-token",
        default=None,
        help="the session token of those credentials, if any (none)",
    )
    parser.add_argument("--script", metavar="FILE", help="JSON script of turns")
    parser.add_argument(
        "--tools",
        metavar="DIR",
        type=Path,
        help="offline speech: hear words, call the tools of DIR from their examples, speak",
    )
    parser.add_argument(
        "--script-scope",
        choices=("stream", "emulator"),
        default="stream",
        help="restart the script on every stream, or run one script across streams",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="wall seconds per second of the emulator's clock: 1 real time, 0.25 four times "
        "faster; 0: the client's input audio drives the clock (tests)",
    )
    parser.add_argument("--endpoint-ms", type=int, help="endpointing pause override")
    parser.add_argument("--stream-seconds", type=float, default=480.0, help="stream lifetime")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=175.0,
        help="end a stream after this long without input audio (timeout exception)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[@WHEN][:every]",
        help="inject a fault; KIND: "
        + ", ".join(k.value for k in FaultKind)
        + "; WHEN: start, <N>s, <N>turns, user, assistant (repeatable)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    if args.endpoint_ms is not None and args.endpoint_ms <= 0:
        raise ValueError("--endpoint-ms must be positive")
    engine = EngineSettings()
    if args.tools is not None:
        if not args.tools.is_dir():
            raise ValueError(f"--tools {args.tools}: not a folder")
        from .mind import Mind

        # Hearing takes real time: no simulated model latency on top of it.
        engine = EngineSettings(mind=Mind.from_tools_dir(args.tools), response_latency=0.0)
    return EmulatorConfig(
        engine=engine,
        host=args.host,
        port=args.port,
        region=args.region,
        credentials=(Credentials(args.access_key, args.secret_key, args.session_token),),
        script=Script.load(args.script) if args.script else Script(),
        script_scope=args.script_scope,
        pace=args.pace,
        endpoint_seconds=args.endpoint_ms / 1000 if args.endpoint_ms is not None else None,
        stream_seconds=args.stream_seconds,
        idle_seconds=args.idle_seconds,
        faults=tuple(FaultPlan.parse(spec) for spec in args.fault),
        # A server runs for hours and nothing reads its records: remember little.
        keep_records=20,
        record_audio=False,
    )


async def _serve(config: EmulatorConfig, out: TextIO) -> None:
    stop = stop_event()
    async with Emulator(config) as emu:
        creds = config.credentials[0]
        print(f"endpoint      {emu.endpoint}", file=out)
        print(f"region        {config.region}", file=out)
        print(f"CA bundle     {emu.ca_path}", file=out)
        print(f"access key    {creds.access_key_id}", file=out)
        print(f"secret key    {creds.secret_access_key}", file=out)
        if creds.session_token:
            print(f"session token {creds.session_token}", file=out)
        if config.engine.mind is not None:
            print("speech        offline (the tools' examples, small talk)", file=out)
        for plan in config.faults:
            print(f"fault         {plan}", file=out)
        print("serving until interrupted (Ctrl-C)", file=out, flush=True)
        await stop.wait()


def cli_main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, sys.stdout))
    return 0
