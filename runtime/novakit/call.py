"""``novakit call``: a simulated phone call to a voice agent through Twilio Media Streams.

It plays Twilio's part of a ``<Connect><Stream>`` call: it opens the WebSocket as Twilio does
(signed with ``X-Twilio-Signature`` when an auth token is given), sends ``connected``, ``start``
and the caller's audio as 20 ms ``media`` messages of mu-law at 8 kHz, in real time, plays what
the agent sends back at the same pace (echoing each ``mark`` once the audio before it has
played, and honouring ``clear``), presses keys (``dtmf``) and hangs up (``stop``)::

    novakit call ws://127.0.0.1:8080/twilio --wav question.wav --out heard.wav --dtmf 1

Twilio's protocol carries audio only, so what is printed is the call as the caller lived it:
when the caller spoke or pressed a key, how long the agent spoke, what was heard and what a
barge-in cut off. ``--out`` is what the caller heard (8 kHz WAV). Exit codes as ``novakit
talk``: 0 done, 2 usage, 3 could not connect or refused, 4 the call failed, 5 no answer in time.

:class:`TwilioCaller` is Twilio's side without I/O (also the simulator the tests drive calls
with); :func:`place_call` runs it over a WebSocket.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import audio
from .g711 import pcm_to_ulaw, ulaw_to_pcm
from .talk import Exit, TalkError, check_run_options

__all__ = ["CallOptions", "CallResult", "TwilioCaller", "main", "place_call", "twilio_signature"]

RATE = 8000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000  # mu-law: one byte per sample
CONNECT_SECONDS = 10.0


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str) -> str:
    """``X-Twilio-Signature`` of a stream's handshake: the URL alone, signed with the twilio
    package's own code (a WebSocket handshake has no parameters)."""
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(auth_token).compute_signature(url, {}))


@dataclass
class _Queued:
    """Outbound audio waiting to be played, or a mark waiting for the audio before it."""

    audio: bytearray | None = None
    mark: str | None = None


@dataclass
class TwilioCaller:
    """Twilio's side of one bidirectional stream, without I/O.

    Messages to send come from :meth:`connected`, :meth:`start`, :meth:`media`, :meth:`dtmf`
    and :meth:`stop` (the shapes of Twilio's documentation: counters as strings, ``chunk`` and
    ``timestamp`` advancing 1 and 20 ms per media message). :meth:`receive` takes a message from
    the server; :meth:`play` plays ``FRAME_MS`` of what it sent and returns the marks to echo.
    Problems a real Twilio would fail the stream for (an unknown event, another ``streamSid``,
    a payload that is not mu-law base64) are kept in ``errors``.
    """

    parameters: Mapping[str, str] = field(default_factory=dict)
    stream_sid: str = field(default_factory=lambda: _sid("MZ"))
    call_sid: str = field(default_factory=lambda: _sid("CA"))
    account_sid: str = field(default_factory=lambda: _sid("AC"))
    heard: bytearray = field(default_factory=bytearray)  # PCM16 8 kHz, as played
    errors: list[str] = field(default_factory=list)
    clears: int = 0
    marks_echoed: list[str] = field(default_factory=list)
    media_received: int = 0
    _queue: deque[_Queued] = field(default_factory=deque)
    _sequence: int = 0
    _chunk: int = 0

    # -- what Twilio sends --------------------------------------------------------------------

    def _message(self, event: str, **fields: Any) -> str:
        self._sequence += 1
        body = {"event": event, "sequenceNumber": str(self._sequence), **fields}
        body["streamSid"] = self.stream_sid
        return json.dumps(body)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        return self._message(
            "start",
            start={
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
                "customParameters": dict(self.parameters),
            },
        )

    def media(self, pcm: bytes) -> str:
        """The caller's ``FRAME_MS`` of audio (PCM16 at 8 kHz) as Twilio sends it."""
        self._chunk += 1
        return self._message(
            "media",
            media={
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str((self._chunk - 1) * FRAME_MS),
                "payload": base64.b64encode(pcm_to_ulaw(pcm)).decode("ascii"),
            },
        )

    def dtmf(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> str:
        return self._message(
            "stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid}
        )

    # -- what the server sends ----------------------------------------------------------------

    def receive(self, text: str) -> list[str]:
        """Take one server message; returns messages to send back at once (marks echoed by a
        ``clear``, or by a ``mark`` with nothing left to play before it)."""
        try:
            message = json.loads(text)
        except ValueError:
            self.errors.append("a message that is not JSON")
            return []
        if not isinstance(message, dict):
            self.errors.append("a message that is not an object")
            return []
        event = message.get("event")
        if event not in ("media", "mark", "clear"):
            self.errors.append(f"unsupported message {event!r}")  # Twilio: error 31924
            return []
        if message.get("streamSid") != self.stream_sid:
            self.errors.append(f"a {event} message for another stream")
            return []
        if event == "media":
            try:
                payload = base64.b64decode(message["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                self.errors.append("a media message without a base64 payload")
                return []
            self.media_received += 1
            if self._queue and self._queue[-1].audio is not None:
                self._queue[-1].audio.extend(payload)
            else:
                self._queue.append(_Queued(audio=bytearray(payload)))
            return []
        if event == "mark":
            name = (message.get("mark") or {}).get("name")
            if not isinstance(name, str):
                self.errors.append("a mark without a name")
                return []
            self._queue.append(_Queued(mark=name))
            return self._echo_ready()
        # clear: playback stops, the buffer empties, and every pending mark comes back.
        self.clears += 1
        pending = [item.mark for item in self._queue if item.mark is not None]
        self._queue.clear()
        return [self._echo(name) for name in pending]

    def play(self) -> tuple[bytes, list[str]]:
        """Play ``FRAME_MS`` of the queued audio (silence if none); the PCM played and the
        marks whose audio has now all been played."""
        wanted = FRAME_BYTES
        played = bytearray()
        while wanted and self._queue and self._queue[0].audio is not None:
            chunk = self._queue[0].audio
            assert chunk is not None
            take = chunk[:wanted]
            del chunk[:wanted]
            played += take
            wanted -= len(take)
            if not chunk:
                self._queue.popleft()
        pcm = ulaw_to_pcm(bytes(played))
        self.heard += pcm
        return pcm, self._echo_ready()

    @property
    def playing(self) -> bool:
        return any(item.audio for item in self._queue)

    def _echo_ready(self) -> list[str]:
        echoes = []
        while self._queue and self._queue[0].mark is not None:
            name = self._queue.popleft().mark
            assert name is not None
            echoes.append(self._echo(name))
        return echoes

    def _echo(self, name: str) -> str:
        self.marks_echoed.append(name)
        return self._message("mark", mark={"name": name})


# -- the call over a WebSocket ---------------------------------------------------------------


@dataclass(frozen=True)
class CallOptions:
    url: str
    auth_token: str | None = None
    wav: Path | None = None
    out: Path | None = None
    #: Keys pressed once the answers to the WAV are over (the model hears each as typed input).
    dtmf: str = ""
    #: Seconds into the agent's first answer at which the caller speaks the WAV again over it.
    barge_in: float | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    quiet: float = 3.0
    speed: float = 1.0


@dataclass
class CallResult:
    exit: Exit
    caller: TwilioCaller
    #: The call as the caller lived it, one line per event (what ``novakit call`` prints).
    lines: list[str] = field(default_factory=list)
    #: The agent ended the call (the bridge closed the stream), not the caller.
    agent_hung_up: bool = False


class _Timeline:
    """Turns the 20 ms ticks of a call into lines: who spoke when, barge-ins, keys. An answer
    is audio played with gaps of at most ``GAP_MS`` (between sentences, a late batch)."""

    GAP_MS = 300

    def __init__(self, out: TextIO | None) -> None:
        self.lines: list[str] = []
        self.out = out
        self.agent_ms = 0  # of the current answer, played so far
        self.gap_ms = 0  # since its audio last played
        self.answers = 0
        self.agent_hung_up = False  # the bridge closed the stream (else the caller hung up)

    def say(self, line: str) -> None:
        self.lines.append(line)
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def tick(self, at: float, played: bytes) -> None:
        if played:
            self.agent_ms += FRAME_MS
            self.gap_ms = 0
        elif self.agent_ms:
            self.gap_ms += FRAME_MS
            if self.gap_ms > self.GAP_MS:
                self.end_answer(at, "")

    def end_answer(self, at: float, how: str) -> None:
        if self.agent_ms:
            self.answers += 1
            self.say(f"{at:6.2f} s  agent: spoke {self.agent_ms / 1000:.2f} s{how}")
        self.agent_ms = 0
        self.gap_ms = 0


async def place_call(options: CallOptions, stdout: TextIO | None = None) -> CallResult:
    """Run one simulated call; the result has the exit code, the caller (what it heard and
    echoed) and the timeline. Input errors raise :class:`~novakit.talk.TalkError`."""
    import websockets

    speech = b""
    if options.wav is not None:
        from .talk import load_wav
        from .voice import resample

        speech = resample(load_wav(options.wav), 16000, RATE)
    caller = TwilioCaller(parameters=options.parameters)
    timeline = _Timeline(stdout)
    headers = {}
    if options.auth_token is not None:
        headers["X-Twilio-Signature"] = twilio_signature(options.auth_token, options.url)
    try:
        ws = await websockets.connect(
            options.url,
            additional_headers=headers,
            open_timeout=CONNECT_SECONDS,
            close_timeout=5,
            max_size=2**20,
        )
    except websockets.InvalidStatus as refused:
        timeline.say(f"could not connect: HTTP {refused.response.status_code}")
        return CallResult(Exit.CONNECT, caller, timeline.lines)
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        timeline.say(f"could not connect: {exc or type(exc).__name__}")
        return CallResult(Exit.CONNECT, caller, timeline.lines)
    except websockets.InvalidURI as exc:
        raise TalkError(Exit.USAGE, str(exc)) from None
    async with ws:
        code = await _converse(ws, caller, speech, options, timeline)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(caller.stop())
    if options.out is not None:
        audio.write_wav(options.out, bytes(caller.heard), RATE)
    for error in caller.errors:
        timeline.say(f"protocol error (Twilio would fail the stream): {error}")
    if caller.errors and code is Exit.OK:
        code = Exit.SESSION
    return CallResult(code, caller, timeline.lines, agent_hung_up=timeline.agent_hung_up)


async def _converse(
    ws: Any, caller: TwilioCaller, speech: bytes, options: CallOptions, timeline: _Timeline
) -> Exit:
    import websockets

    inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for message in ws:
                await inbox.put(message if isinstance(message, str) else message.decode())
        except websockets.ConnectionClosed:
            pass
        finally:
            await inbox.put(None)

    reader = asyncio.create_task(read())
    call = _Call(ws, caller, speech=speech, options=options, timeline=timeline, inbox=inbox)
    try:
        try:
            await ws.send(caller.connected())
            await ws.send(caller.start())
        except websockets.ConnectionClosed:
            return call.agent_hung_up(0.0)
        if speech:
            timeline.say(f"{0.0:6.2f} s  caller: speaks {audio.duration(speech, RATE):.2f} s")
        while True:
            outcome = await call.tick()
            if outcome is not None:
                return outcome
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class _Call:
    """One 20 ms tick at a time: the caller's audio out, the agent's audio played, marks
    echoed, server messages taken, and whether the call is over."""

    def __init__(
        self,
        ws: Any,
        caller: TwilioCaller,
        *,
        speech: bytes,
        options: CallOptions,
        timeline: _Timeline,
        inbox: asyncio.Queue[str | None],
    ) -> None:
        self.ws, self.caller, self.speech = ws, caller, speech
        self.options, self.timeline, self.inbox = options, timeline, inbox
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.to_say = bytearray(speech)
        self.keys = list(options.dtmf)
        self.said_at: float | None = None  # when the caller finished what it had to say
        self.last_agent = self.started
        self.barged = False
        self.ticks = 0

    async def tick(self) -> Exit | None:
        self.ticks += 1
        at = self.ticks * FRAME_MS / 1000
        due = self.started + at / self.options.speed
        import websockets

        # Every send may meet a stream the bridge has closed meanwhile (the caller still
        # speaking, a key pressed): that is the agent hanging up, never a crash.
        try:
            await self._say()
            await self._listen(at)
            if not await self._take_messages(at):
                return self.agent_hung_up(at)
            outcome = await self._next_step(at)
        except websockets.ConnectionClosed:
            return self.agent_hung_up(at)
        if outcome is None:
            await asyncio.sleep(max(0.0, due - self.loop.time()))
        return outcome

    def agent_hung_up(self, at: float) -> Exit:
        """The bridge closed the stream: on Twilio, the call ends (the agent hung up). Before
        any answer, the call failed; Twilio's protocol carries no reason, the bridge logs it."""
        self.timeline.end_answer(at, "")
        self.timeline.agent_hung_up = True
        if self.timeline.answers:
            self.timeline.say(f"{at:6.2f} s  agent: hangs up")
            return Exit.OK
        self.timeline.say(
            f"{at:6.2f} s  agent: hangs up before answering (Twilio's protocol carries no reason:"
            " the bridge's log says why, e.g. a voice the model lacks)"
        )
        return Exit.SESSION

    async def _say(self) -> None:
        step = 2 * FRAME_BYTES  # PCM16 bytes per 20 ms
        chunk = bytes(self.to_say[:step])
        del self.to_say[:step]
        await self.ws.send(self.caller.media(chunk + bytes(step - len(chunk))))
        if not self.to_say and self.said_at is None:
            self.said_at = self.loop.time()

    async def _listen(self, at: float) -> None:
        played, echoes = self.caller.play()
        for echo in echoes:
            await self.ws.send(echo)
        self.timeline.tick(at, played)
        if not played:
            return
        self.last_agent = self.loop.time()
        barge_in = self.options.barge_in
        if barge_in is not None and not self.barged and self.timeline.agent_ms >= barge_in * 1000:
            self.barged = True
            self.to_say = bytearray(self.speech)
            self.said_at = None
            self.timeline.say(f"{at:6.2f} s  caller: speaks over the agent")

    async def _take_messages(self, at: float) -> bool:
        """Every server message waiting; False once the server closed the stream."""
        while not self.inbox.empty():
            message = self.inbox.get_nowait()
            if message is None:
                return False
            clears = self.caller.clears
            for echo in self.caller.receive(message):
                await self.ws.send(echo)
            if self.caller.clears > clears:
                self.timeline.end_answer(at, " (cut off: clear)")
        return True

    async def _next_step(self, at: float) -> Exit | None:
        now = self.loop.time()
        if self.said_at is None:
            return None
        quiet = not self.caller.playing and now - max(self.last_agent, self.said_at) >= (
            self.options.quiet
        )
        if quiet and self.keys:
            digit = self.keys.pop(0)
            await self.ws.send(self.caller.dtmf(digit))
            self.timeline.say(f"{at:6.2f} s  caller: pressed {digit}")
            self.said_at = now
        elif quiet and self.timeline.answers:
            self.timeline.say(f"{at:6.2f} s  caller: hangs up")
            return Exit.OK
        elif now - self.said_at >= self.options.timeout:
            self.timeline.say(f"{at:6.2f} s  no answer within {self.options.timeout:g} s")
            return Exit.TIMEOUT
        return None


# -- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novakit call",
        description="Place a simulated phone call to a voice agent through Twilio Media "
        "Streams: the caller says a WAV file, presses keys, and hears the agent.",
        epilog="exit codes: 0 done, 2 usage or bad input file, 3 could not connect or refused, "
        "4 the call failed, 5 no answer in time",
    )
    parser.add_argument("url", help="the stream URL, e.g. ws://127.0.0.1:8080/twilio (novakit dev)")
    parser.add_argument(
        "--auth-token",
        help="sign the handshake as Twilio does, with this auth token (default: "
        "$TWILIO_AUTH_TOKEN, else unsigned)",
    )
    parser.add_argument("--wav", type=Path, help="what the caller says: a PCM16 WAV, any rate")
    parser.add_argument("--out", type=Path, help="write what the caller heard (8 kHz WAV)")
    parser.add_argument("--dtmf", default="", help="keys pressed after the answers, e.g. 1#")
    parser.add_argument(
        "--barge-in",
        type=float,
        metavar="SECONDS",
        help="say the WAV again this far into the agent's first answer (a barge-in)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a <Parameter> of the stream (e.g. voice=tiffany); repeatable",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    parser.add_argument("--quiet", type=float, default=3.0, help="silence that ends a turn (3)")
    parser.add_argument("--speed", type=float, default=1.0, help="times real time (1)")
    return parser


def _parameters(values: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    parameters = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            parser.error(f"--param {value!r}: expected NAME=VALUE")
        parameters[name] = text
    return parameters


def main(argv: list[str] | None = None, stdout: TextIO = sys.stdout) -> int:
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.wav is None and not args.dtmf:
        parser.error("say something: --wav FILE or --dtmf KEYS")
    if any(key not in "0123456789*#ABCD" for key in args.dtmf):
        parser.error("--dtmf: keys are 0-9, *, # and A-D")
    refused = check_run_options(parser, args, "novakit call")
    if refused is not None:
        return refused
    options = CallOptions(
        url=args.url,
        auth_token=args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or None,
        wav=args.wav,
        out=args.out,
        dtmf=args.dtmf,
        barge_in=args.barge_in,
        parameters=_parameters(args.param, parser),
        timeout=args.timeout,
        quiet=args.quiet,
        speed=args.speed,
    )
    started = time.monotonic()
    try:
        result = asyncio.run(place_call(options, stdout))
    except TalkError as error:
        print(f"novakit call: {error}", file=sys.stderr, flush=True)
        return int(error.code)
    except KeyboardInterrupt:
        return int(Exit.OK)
    if options.out is not None:
        seconds = audio.duration(bytes(result.caller.heard), RATE)
        print(f"novakit call: wrote {options.out} ({seconds:.1f} s heard)", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"novakit call: done in {elapsed:.1f} s (exit {int(result.exit)})", file=sys.stderr)
    return int(result.exit)
