"""The ``novakit`` command.

``novakit dev``       the local stack: the Bedrock emulator, and a scripted demo conversation
                      through ``novakit.s2s`` (the session bridge and browser client join it as
                      they land); then serves the emulator until Ctrl-C (``--once`` exits).
``novakit emulator``  only the emulator, with its own options (``novakit emulator --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import signal
import sys
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from . import audio, s2s

DEMO_TOOL = s2s.ToolDefinition(
    "get_time",
    "The current time in a time zone.",
    {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "emulator":
        from .emulator import cli_main

        return cli_main(args[1:])
    parser = argparse.ArgumentParser(prog="novakit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("emulator", help="run the Bedrock emulator (see: novakit emulator -h)")
    dev = commands.add_parser("dev", help="run the local stack with a demo conversation")
    dev.add_argument("--once", action="store_true", help="exit after the demo conversation")
    dev.add_argument("--port", type=int, default=0, help="emulator port (0: any free port)")
    dev.add_argument(
        "--out", type=Path, default=Path("demo-reply.wav"), help="where to write what it said"
    )
    parsed = parser.parse_args(args)
    if parsed.command == "dev":
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(dev_stack(port=parsed.port, once=parsed.once, out=parsed.out))
    return 0


def _local_time(arguments: Mapping[str, object]) -> str:
    """The demo tool: the current time in an IANA time zone, or an error the model can say."""
    zone = str(arguments.get("zone", ""))
    try:
        now = datetime.datetime.now(zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return json.dumps({"error": f"unknown time zone {zone!r}"})
    return json.dumps({"zone": zone, "time": now.strftime("%H:%M")})


async def dev_stack(*, port: int, once: bool, out: Path, stdout: TextIO = sys.stdout) -> int:
    from .emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig, Script, ScriptTurn
    from .emulator import ToolCall as ScriptedToolCall

    script = Script(
        (
            ScriptTurn(
                transcript="what time is it in Tokyo",
                tool=ScriptedToolCall("get_time", {"zone": "Asia/Tokyo"}),
                reply="In Tokyo it is {result}.",
            ),
            ScriptTurn(reply="You are welcome. Goodbye!"),
        )
    )
    config = EmulatorConfig(port=port, script=script, script_scope="emulator")
    async with Emulator(config) as emu:
        creds = DEFAULT_CREDENTIALS
        print("novakit dev: local stack", file=stdout)
        print(f"  Bedrock emulator  {emu.endpoint}  (TLS, HTTP/2, SigV4)", file=stdout)
        print(f"  CA bundle         {emu.ca_path}", file=stdout)
        print("  use it from your own code with:", file=stdout)
        print(f"    export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={emu.endpoint}", file=stdout)
        print(f"    export AWS_CA_BUNDLE={emu.ca_path}", file=stdout)
        print(f"    export AWS_ACCESS_KEY_ID={creds.access_key_id}", file=stdout)
        print(f"    export AWS_SECRET_ACCESS_KEY={creds.secret_access_key}", file=stdout)
        print(f"    export AWS_REGION={emu.config.region}", file=stdout, flush=True)
        extra = {
            "region": emu.config.region,
            "base_url": emu.endpoint,
            "ca_bundle": emu.ca_path,
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
        }
        await demo_conversation(extra, out, stdout)
        if once:
            return 0
        print("serving the emulator until Ctrl-C", file=stdout, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


async def demo_conversation(extra: Mapping[str, object], out: Path, stdout: TextIO) -> None:
    """One spoken turn with a tool call, then a typed turn; prints what was said."""
    engine = s2s.new(
        "nova",
        s2s.Config(instructions="You are a concise assistant.", tools=[DEMO_TOOL], extra=extra),
    )
    reply = bytearray()
    print("demo conversation:", file=stdout)
    async with engine.start() as session:
        pump = asyncio.create_task(_stream_microphone(session))
        try:
            for follow_up in ("Thanks!", None):
                async for event in session.recv():
                    match event.type:
                        case s2s.EventType.TRANSCRIPT:
                            print(f"  user       {event.text}", file=stdout)
                        case s2s.EventType.TEXT_OUTPUT if event.final:
                            print(f"  assistant  {event.text}", file=stdout)
                        case s2s.EventType.AUDIO_OUTPUT:
                            reply += event.audio
                        case s2s.EventType.TOOL_CALL if event.tool_call is not None:
                            call = event.tool_call
                            result = _local_time(call.arguments)
                            print(
                                f"  tool       {call.name}({call.arguments}) -> {result}",
                                file=stdout,
                            )
                            await session.send_tool_result(
                                s2s.ToolResult(call.call_id, [s2s.TextPart(result)])
                            )
                        case s2s.EventType.ERROR if event.error is not None:
                            print(
                                f"  error      {event.error.code}: {event.error.message}",
                                file=stdout,
                            )
                        case s2s.EventType.TURN_END:
                            break
                else:
                    break  # the session ended (an error was printed)
                if follow_up is None or session.closed:
                    break
                await session.send_text(follow_up)
                print(f"  user       (typed) {follow_up}", file=stdout)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    audio.write_wav(out, bytes(reply), 24000)
    print(f"  wrote {out} ({audio.duration(bytes(reply), 24000):.1f} s of speech)", file=stdout)


async def _stream_microphone(session: s2s.Session) -> None:
    """A stand-in microphone: an utterance, then silence, at twice real time."""
    pcm = audio.speech_like(1.5) + audio.silence(60)
    with contextlib.suppress(s2s.SessionClosedError, s2s.ProviderError):
        for i in range(0, len(pcm), 1024):
            await session.send_audio(pcm[i : i + 1024])
            await asyncio.sleep(0.016)


if __name__ == "__main__":
    sys.exit(main())
