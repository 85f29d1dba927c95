"""``novakit dev``: the local stack, the same code that runs on AWS.

    WebSocket client ──► local API Gateway (:8080, serves web/) ──► bridge ──► Bedrock emulator
                          ◄── @connections ◄──────────────────────┘      (or real Bedrock)

The bridge is the container's code (``novakit.bridge``); tools from ``tools/`` run in-process
through the same event contract as Lambda. ``--once`` runs a scripted conversation through the
whole stack as a WebSocket client would, prints it, and exits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TextIO

from . import audio
from .signals import stop_event

DEMO_QUESTION_SECONDS = 1.5
DEMO_QUESTION = "what time is it in Tokyo"


@dataclass(frozen=True)
class DevOptions:
    port: int = 8080
    bedrock: bool = False
    tools_dir: Path | None = Path("tools")
    web_dir: Path | None = Path("web")
    token: str | None = None
    # The phone stage checks Twilio's handshake signature with this auth token (None: open).
    twilio_auth_token: str | None = None
    # The address Twilio connects to when a tunnel terminates TLS (wss://abc.ngrok.app).
    twilio_public_url: str | None = None
    # The model may end phone calls with the bridge's end_call tool (docs/phone.md).
    phone_hangup: bool = False
    # Clients (a Realtime session.update, a phone number's instructions parameter) may replace
    # the system prompt, as NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS=1 lets them on the deployed bridge.
    allow_client_instructions: bool = False
    batch_ms: int = 100
    # The emulator's script (an emulator Script); its turns come first.
    script: Any = None
    # The emulator's offline speech (it hears words, calls tools from their examples and speaks
    # with eSpeak NG); False: generic transcripts and replies in tone bursts.
    speech: bool = False


@dataclass
class RunningStack:
    gateway_url: str
    bridge_url: str
    emulator_endpoint: str | None
    emulator: Any = None  # the running Emulator (tests change its script), None with Bedrock


def free_port() -> int:
    """A loopback port free right now (for servers that must know their port before binding)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """The first of ``count`` loopback ports in a row that are free right now (the processes of
    a bridge task listen on consecutive ports)."""
    for _ in range(100):
        first = free_port()
        probes: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                probes.append(socket.create_server(("127.0.0.1", port)))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return first
    raise RuntimeError(f"no {count} free loopback ports in a row")


def demo_script() -> Any:
    """The scripted conversation of `novakit dev --once`: a spoken question with a tool call,
    then a typed thank-you."""
    from .emulator import Script, ScriptTurn, ToolCall

    return Script(
        (
            ScriptTurn(
                transcript="what time is it in Tokyo",
                tool=ToolCall("get_time", {"timezone": "Asia/Tokyo"}),
                reply="Here is what the clock says. {result}",
            ),
            ScriptTurn(reply="You are welcome. Goodbye!"),
        )
    )


@contextlib.asynccontextmanager
async def local_stack(
    options: DevOptions, stdout: TextIO = sys.stdout
) -> AsyncIterator[RunningStack]:
    """Start emulator (unless ``bedrock``), bridge and gateway; stop them in reverse order."""
    from .bridge.app import Bridge, serving
    from .bridge.connections import Unsigned
    from .bridge.dialects import STAGE_DIALECTS
    from .bridge.metrics import Metrics
    from .bridge.settings import BridgeSettings
    from .localgw import GatewayConfig, LocalGateway

    gateway_port = options.port or free_port()
    async with contextlib.AsyncExitStack() as stack:
        provider_extra: dict[str, Any] = {}
        emulator_endpoint = None
        emu: Any = None
        if not options.bedrock:
            from .emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig

            # A dev stack runs for hours: the emulator remembers the last streams, not audio.
            bounded: dict[str, Any] = {"keep_records": 20, "record_audio": False}
            if options.speech:
                from .emulator import EngineSettings
                from .emulator.mind import Mind

                tools_root = options.tools_dir if options.tools_dir else None
                mind = Mind.from_tools_dir(
                    tools_root if tools_root and tools_root.is_dir() else None
                )
                mind.narrate = _terminal(stdout, "emulator")
                # Hearing takes real time here (a few hundred ms of recognition): no simulated
                # model latency on top of it.
                bounded["engine"] = EngineSettings(mind=mind, response_latency=0.0)
            emu = await stack.enter_async_context(
                Emulator(
                    EmulatorConfig(script=options.script, script_scope="emulator", **bounded)
                    if options.script is not None
                    else EmulatorConfig(**bounded)
                )
            )
            emulator_endpoint = emu.endpoint
            provider_extra = {
                "base_url": emu.endpoint,
                "ca_bundle": emu.ca_path,
                "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
                "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
            }
        tools_dir = options.tools_dir if options.tools_dir and options.tools_dir.is_dir() else None
        # A fresh secret each run, known to this gateway and this bridge only: other local
        # processes cannot drive the bridge's sessions by calling its port directly.
        gateway_secret = secrets.token_urlsafe(32)
        settings = BridgeSettings(
            # Each stage's connections through its own @connections, as on AWS.
            connections_url=f"http://127.0.0.1:{gateway_port}/{{stage}}",
            host="127.0.0.1",
            port=0,
            tools_dir=tools_dir,
            batch_ms=options.batch_ms,
            phone_hangup=options.phone_hangup,
            allow_client_instructions=options.allow_client_instructions,
            drain_seconds=2.0,
            provider_extra=provider_extra,
            region=_region(options),
            gateway_secrets=(gateway_secret,),
        )
        # The terminal gets readable lines for each session, not EMF metric JSON (the deployed
        # bridge writes that for CloudWatch).
        # The null device: nothing is written anywhere.
        discard = stack.enter_context(open(os.devnull, "w"))  # noqa: ASYNC230, SIM115
        bridge = Bridge(
            settings, signer=Unsigned(), metrics=Metrics(settings.metrics_service, out=discard)
        )
        stack.enter_context(_session_lines(stdout))
        bridge_url = await stack.enter_async_context(serving(bridge))
        web_dir = options.web_dir if options.web_dir and options.web_dir.is_dir() else None
        gateway = await stack.enter_async_context(
            LocalGateway(
                GatewayConfig(
                    port=gateway_port,
                    backends=[bridge_url],
                    token=options.token,
                    twilio_auth_token=options.twilio_auth_token,
                    twilio_public_url=options.twilio_public_url,
                    static_dir=web_dir,
                    integration_secret=gateway_secret,
                    # The other client protocols' stages: /realtime (OpenAI Realtime), ...
                    stages=tuple(STAGE_DIALECTS),
                )
            )
        )
        running = RunningStack(gateway.url, bridge_url, emulator_endpoint, emu)
        _banner(running, bridge, options, web_dir, stdout)
        yield running


def _say(out: TextIO, line: str) -> None:
    """One line in one write: the in-process tools log from their threads to the same stream,
    and a line written in two parts (text, then newline) could take theirs in between."""
    out.write(line + "\n")
    out.flush()


def _terminal(out: TextIO, who: str) -> Callable[[str], None]:
    def line(text: str) -> None:
        _say(out, f"  {who:<9}  {text}")

    return line


class _SessionLines(logging.Handler):
    """The bridge's session log records, as one readable line each."""

    _WORDS: ClassVar[dict[str, str]] = {"session open": "connect", "session ending": "disconnect"}

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.INFO)
        self._line = _terminal(out, "bridge")

    def emit(self, record: logging.LogRecord) -> None:
        text = str(record.msg)
        if text.startswith("could not open the model session"):
            # Why a session ended before it began (a phone call's voice the model lacks):
            # Twilio's protocol cannot tell the caller, so the terminal does.
            connection = getattr(record, "connection_id", "?")
            self._line(f"{'failed':<11} {connection}  ({record.getMessage()})")
            return
        for start, word in self._WORDS.items():
            if text.startswith(start):
                connection = getattr(record, "connection_id", "?")
                reason = getattr(record, "reason", "")
                self._line(f"{word:<11} {connection}{f'  ({reason})' if reason else ''}")


@contextlib.contextmanager
def _session_lines(out: TextIO) -> Iterator[None]:
    logger = logging.getLogger("novakit.bridge.session")
    handler = _SessionLines(out)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _region(options: DevOptions) -> str:
    import os

    if not options.bedrock:
        return "us-east-1"  # the emulator's
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _banner(
    running: RunningStack, bridge: Any, options: DevOptions, web_dir: Path | None, out: TextIO
) -> None:
    # The token stays off the screen (and out of terminal scrollback and shared logs): its first
    # characters tell which one it is; the full one is the --token value given.
    token = f"?token={_masked(options.token)}" if options.token else ""
    from .bridge.dialects import STAGE_DIALECTS

    lines = ["novakit dev: the local stack"]
    lines.append(f"  WebSocket API     {running.gateway_url}{token}  (API Gateway stand-in)")
    for stage, dialect in STAGE_DIALECTS.items():
        lines.append(f"  {dialect.title:<17} {running.gateway_url}{stage}  (stage {stage})")
    if options.token:
        lines.append("  token             the --token value (shown masked here)")
    if web_dir is not None:
        lines.append(f"  browser client    http://127.0.0.1:{options.port}/  (from {web_dir}/)")
    lines.append(f"  bridge            {running.bridge_url}  (the container's code)")
    if running.emulator_endpoint:
        lines.append(f"  Bedrock           emulator at {running.emulator_endpoint}")
        lines.extend(_emulator_lines(running.emulator))
    else:
        lines.append(f"  Bedrock           real, Region {bridge.settings.region}")
    names = ", ".join(d.name for d in bridge.tools.definitions) or "none"
    lines.append(f"  tools             {names}  (in-process, Lambda event contract)")
    print("\n".join(lines), file=out, flush=True)


def _emulator_lines(emulator: Any) -> list[str]:
    """What the local model understands, and what it does not."""
    mind = emulator.config.engine.mind if emulator is not None else None
    lines = []
    if emulator is not None and emulator.script.turns:
        lines.append(f"  script            {len(emulator.script.turns)} scripted turn(s) first")
    if mind is None:
        lines.append("  local model       generic replies in tone bursts (no offline speech)")
        return lines
    lines.append("  local model       offline speech: it understands the tools' examples and")
    lines.append("                    greetings, thanks, goodbye, yes/no, stop, repeat that;")
    lines.append("                    anything else gets a reply repeating what it heard")
    if mind.hint:
        lines.append(f'  try saying        "{mind.hint}" (or type it)')
    return lines


def _masked(token: str) -> str:
    # Four characters name a token without giving much of it away; a short one shows none.
    return f"{token[:4]}…" if len(token) >= 12 else "…"


async def run_dev(
    options: DevOptions, *, once: bool, out: Path, stdout: TextIO = sys.stdout
) -> int:
    spoken = once and options.speech and not options.bedrock
    if once and not options.bedrock and options.script is None and not options.speech:
        options = replace(options, script=demo_script())
    async with local_stack(options, stdout) as running:
        if once:
            url = running.gateway_url + (f"?token={options.token}" if options.token else "")
            question = None
            if spoken:
                # The question spoken with the emulator's own voice, at the input rate.
                mind = running.emulator.config.engine.mind
                question = mind.speak(DEMO_QUESTION, 16000, "matthew")
            return await demo_client(url, out, stdout, question=question)
        print("serving until Ctrl-C", file=stdout, flush=True)
        await stop_event().wait()
    return 0


async def demo_client(
    url: str, out: Path, stdout: TextIO, *, within: float = 60.0, question: bytes | None = None
) -> int:
    """A spoken question (with a tool call), then a typed thank-you, as a WebSocket client.
    ``question`` is the 16 kHz speech to send (default: speech-like sound for a script)."""
    import websockets

    reply = bytearray()
    print("demo conversation (through the gateway and the bridge):", file=stdout)
    async with asyncio.timeout(within), websockets.connect(url, open_timeout=10) as ws:
        microphone = asyncio.create_task(_microphone(ws, question))
        turns = 0
        try:
            async for message in ws:
                frame: Mapping[str, Any] = json.loads(message)
                match frame.get("type"):
                    case "transcript":
                        _say(stdout, f"  user       {frame['text']}")
                    case "text" if frame.get("final"):
                        _say(stdout, f"  assistant  {frame['text']}")
                    case "audio":
                        reply += base64.b64decode(frame["data"])
                    case "tool" if frame.get("status") != "started":
                        _say(stdout, f"  tool       {frame['name']}: {frame['status']}")
                    case "error":
                        _say(stdout, f"  error      {frame['code']}: {frame['message']}")
                        if frame.get("fatal"):
                            return 1
                    case "turn_end":
                        turns += 1
                        if turns == 2:
                            break
                        _say(stdout, "  user       (typed) Thanks!")
                        await ws.send(json.dumps({"type": "text", "text": "Thanks!"}))
        finally:
            microphone.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await microphone
    audio.write_wav(out, bytes(reply), 24000)
    print(f"  wrote {out} ({audio.duration(bytes(reply), 24000):.1f} s of speech)", file=stdout)
    return 0


async def _microphone(ws: Any, question: bytes | None) -> None:
    """A stand-in microphone: a question, then silence, at twice real time."""
    spoken = question if question is not None else audio.speech_like(DEMO_QUESTION_SECONDS)
    pcm = spoken + audio.silence(3.0)
    for seq, i in enumerate(range(0, len(pcm), 1024)):
        chunk = base64.b64encode(pcm[i : i + 1024]).decode()
        await ws.send(json.dumps({"type": "audio", "seq": seq, "data": chunk}))
        await asyncio.sleep(0.016)
