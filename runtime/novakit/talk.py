"""``novakit talk``: a command-line client of a voice agent, for scripts and smoke tests.

It speaks client protocol v1 (``docs/protocol.md``) over a WebSocket, like the browser client::

    novakit talk ws://127.0.0.1:8080/ --wav question.wav --out answer.wav

The WAV file (PCM16, any rate, any number of channels) is resampled to 16 kHz mono and streamed
in real time (``--speed`` streams faster), then silence, as a microphone would, until the
assistant has answered and the line has been quiet for a moment. What the assistant said goes to
``--out`` (a WAV at the rate the server sends, 24 kHz by default) and the transcript to stdout::

    user: what time is it in Tokyo
    tool: get_time succeeded (3 ms)
    assistant: Here is what the clock says.

Progress goes to stderr. Exit codes (:class:`Exit`): 0 done, 2 usage or bad input file, 3 could
not connect or refused, 4 the session failed, 5 timed out.

:class:`Conversation` is the protocol handling without I/O: received frames in, transcript lines,
assistant audio and conversation state out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import audio

INPUT_RATE = 16000
OUTPUT_RATE = 24000
CHUNK_SECONDS = 0.1  # audio per client frame: the protocol's recommended 100 ms
CONNECT_SECONDS = 10.0
CLOSE_SECONDS = 5.0  # for the session's last frames after ``end``

__all__ = [
    "Conversation",
    "Exit",
    "Received",
    "TalkError",
    "TalkOptions",
    "load_wav",
    "main",
    "talk",
    "with_token",
]


class Exit(IntEnum):
    OK = 0
    USAGE = 2  # bad arguments, unreadable or unsupported input file, no microphone
    CONNECT = 3  # nothing listening, handshake refused (401/403) or failed
    SESSION = 4  # a fatal error frame, or the connection closed before the conversation ended
    TIMEOUT = 5  # no (complete) answer in time


class TalkError(Exception):
    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- input ----------------------------------------------------------------------------------


def load_wav(path: Path) -> bytes:
    """A PCM16 WAV file of any rate and channel count as 16 kHz mono PCM16."""
    try:
        pcm, rate = audio.read_wav(path)
    except FileNotFoundError:
        raise TalkError(Exit.USAGE, f"{path}: no such file") from None
    except (wave.Error, EOFError) as exc:
        raise TalkError(Exit.USAGE, f"{path}: not a PCM WAV file ({exc})") from None
    except ValueError as exc:  # a sample width other than 16 bits
        raise TalkError(Exit.USAGE, str(exc)) from None
    except OSError as exc:
        raise TalkError(Exit.USAGE, f"{path}: cannot read it ({exc.strerror})") from None
    if not pcm:
        raise TalkError(Exit.USAGE, f"{path}: the file holds no audio")
    return _to_input_rate(pcm, rate)


def _to_input_rate(pcm: bytes, rate: int) -> bytes:
    if rate == INPUT_RATE:
        return pcm
    from .voice import SUPPORTED_SAMPLE_RATES, resample

    if rate in SUPPORTED_SAMPLE_RATES:
        return resample(pcm, rate, INPUT_RATE)
    # Rates novakit.voice does not list (96 kHz studio files, say): libsoxr directly.
    import numpy as np
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    converted = soxr.resample(samples, rate, INPUT_RATE, quality="HQ")
    return bytes(np.clip(np.rint(converted * 32768.0), -32768, 32767).astype("<i2").tobytes())


# -- the protocol, without I/O ---------------------------------------------------------------


@dataclass
class Received:
    """What one server frame means for the user: transcript lines (stdout), notes (stderr),
    audio to play, or an order to stop playing."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audio: bytes = b""
    clear: bool = False


@dataclass
class Conversation:
    """Server frames in; transcript lines, the assistant's audio and the conversation's state
    out. Follows the protocol's rules: ``continues`` pieces are joined, audio is kept in ``seq``
    order, and audio of an interrupted answer that arrives after its ``clear_audio`` is dropped.
    """

    session_state: str | None = None
    connection_id: str | None = None
    turns_completed: int = 0  # answers that ended, normally (turn_end) or by an interruption
    in_turn: bool = False  # the user spoke or the assistant is answering
    clears: int = 0
    fatal: str | None = None
    ended_reason: str | None = None
    sample_rate: int = OUTPUT_RATE
    _audio: dict[int, bytes] = field(default_factory=dict)
    _cleared_below: int = -1  # audio frames with a lower seq belong to an interrupted answer
    _pieces: dict[str, list[str]] = field(default_factory=dict)

    def receive(self, frame: Mapping[str, Any]) -> Received:
        out = Received()
        kind = frame.get("type")
        match kind:
            case "session":
                self._on_session(frame, out)
            case "audio":
                self._on_audio(frame, out)
            case "transcript":
                self.in_turn = True
                text = self._joined("user", frame)
                if text is not None:
                    out.lines.append(f"user: {text}")
            case "text":
                self.in_turn = True
                if frame.get("final"):
                    text = self._joined("assistant", frame)
                    if text is not None:
                        out.lines.append(f"assistant: {text}")
            case "tool":
                self.in_turn = True
                self._on_tool(frame, out)
            case "clear_audio":
                self.clears += 1
                out.clear = True
                self._cleared_below = max(self._cleared_below, int(frame.get("seq", 0)))
                self._end_turn()
                out.notes.append(f"the assistant was interrupted ({frame.get('reason')})")
            case "turn_end":
                self._end_turn()
            case "error":
                code, message = frame.get("code"), frame.get("message")
                if frame.get("fatal"):
                    self.fatal = f"{code}: {message}"
                out.notes.append(f"{'fatal ' if frame.get('fatal') else ''}error {code}: {message}")
            case "usage" | "pong":
                pass
            case _:
                out.notes.append(f"ignored a frame of type {kind!r}")
        return out

    def audio(self) -> bytes:
        """The assistant's audio received so far, in ``seq`` order."""
        return b"".join(self._audio[seq] for seq in sorted(self._audio))

    @property
    def ended(self) -> bool:
        return self.session_state == "ended"

    def _on_session(self, frame: Mapping[str, Any], out: Received) -> None:
        state = str(frame.get("state"))
        self.session_state = state
        self.connection_id = frame.get("connection_id", self.connection_id)
        reason = f": {frame['reason']}" if frame.get("reason") else ""
        if state == "ready":
            rate = frame.get("output_sample_rate")
            self.sample_rate = int(rate) if isinstance(rate, int) else self.sample_rate
            out.notes.append(f"session ready (model {frame.get('model')}, {frame.get('voice')})")
        else:
            if state == "ended":
                self.ended_reason = str(frame.get("reason") or "")
            out.notes.append(f"session {state}{reason}")

    def _on_audio(self, frame: Mapping[str, Any], out: Received) -> None:
        seq = int(frame.get("seq", 0))
        if seq < self._cleared_below:
            return  # late audio of an interrupted answer: never played
        try:
            pcm = base64.b64decode(str(frame.get("data", "")), validate=True)
        except binascii.Error:
            out.notes.append(f"dropped an audio frame that is not base64 (seq {seq})")
            return
        self.in_turn = True
        self.sample_rate = int(frame.get("sample_rate", self.sample_rate))
        self._audio[seq] = pcm
        out.audio = pcm

    def _on_tool(self, frame: Mapping[str, Any], out: Received) -> None:
        name, status = frame.get("name"), frame.get("status")
        if status == "started":
            out.notes.append(f"tool {name} started")
            return
        line = f"tool: {name} {status}"
        if "ms" in frame:
            line += f" ({frame['ms']} ms)"
        if frame.get("error"):
            line += f": {frame['error']}"
        out.lines.append(line)

    def _joined(self, role: str, frame: Mapping[str, Any]) -> str | None:
        """The whole text once its last ``continues`` piece has arrived, else None."""
        pieces = self._pieces.setdefault(role, [])
        pieces.append(str(frame.get("text", "")))
        if frame.get("continues"):
            return None
        del self._pieces[role]
        return "".join(pieces)

    def _end_turn(self) -> None:
        if self.in_turn:
            self.turns_completed += 1
        self.in_turn = False


# -- audio sources ------------------------------------------------------------------------


class WavSource:
    """A WAV file's audio at ``speed`` times real time, then silence for as long as needed."""

    def __init__(self, pcm: bytes, speed: float, progress: Callable[[float, float], None]) -> None:
        self.pcm = pcm
        self.speed = speed
        self.progress = progress
        self.finished = asyncio.Event()

    @property
    def seconds(self) -> float:
        return audio.duration(self.pcm, INPUT_RATE)

    async def chunks(self) -> AsyncIterator[bytes]:
        step = 2 * round(INPUT_RATE * CHUNK_SECONDS)
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while True:
            if sent < len(self.pcm):
                chunk = self.pcm[sent : sent + step]
            else:
                self.finished.set()
                chunk = bytes(step)
            sent += len(chunk)
            yield chunk
            if sent <= len(self.pcm):
                self.progress(min(sent, len(self.pcm)) / 2 / INPUT_RATE, self.seconds)
            # Pace by the clock, not by sleeps added up, so the stream does not drift.
            due = start + sent / 2 / INPUT_RATE / self.speed
            await asyncio.sleep(max(0.0, due - loop.time()))


class MicrophoneSource:
    """The default input device through ``sounddevice`` (optional: PortAudio must be present)."""

    def __init__(self) -> None:
        try:
            sounddevice = importlib.import_module("sounddevice")  # optional, untyped
        except (ImportError, OSError) as exc:
            raise TalkError(
                Exit.USAGE,
                "--mic needs the sounddevice package and PortAudio "
                f"(pip install sounddevice; apt-get install libportaudio2): {exc}",
            ) from None
        try:
            sounddevice.query_devices(kind="input")
        except Exception as exc:  # PortAudioError or ValueError, by version
            raise TalkError(Exit.USAGE, f"--mic: no input device ({exc})") from None
        self._sd: Any = sounddevice
        self.finished = asyncio.Event()  # a microphone never finishes: Ctrl-C or --timeout

    def speaker(self, rate: int) -> Speaker:
        return Speaker(self._sd, rate)

    async def chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def captured(data: Any, frames: int, when: Any, status: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

        blocksize = round(INPUT_RATE * CHUNK_SECONDS)
        stream = self._sd.RawInputStream(
            samplerate=INPUT_RATE,
            channels=1,
            dtype="int16",
            blocksize=blocksize,
            callback=captured,
        )
        with stream:
            while True:
                yield await queue.get()


class Speaker:
    """Plays the assistant on the default output device; ``clear`` stops it at once (barge-in).
    Use headphones: without echo cancellation the microphone hears the speaker."""

    def __init__(self, sounddevice: Any, rate: int) -> None:
        self._pending = bytearray()
        self._lock = threading.Lock()  # the device's callback runs on its own thread
        self._stream = sounddevice.RawOutputStream(
            samplerate=rate, channels=1, dtype="int16", callback=self._fill
        )
        self._stream.start()

    def _fill(self, out: Any, frames: int, when: Any, status: Any) -> None:
        wanted = len(out)
        with self._lock:
            chunk = bytes(self._pending[:wanted])
            del self._pending[:wanted]
        out[: len(chunk)] = chunk
        out[len(chunk) :] = bytes(wanted - len(chunk))

    def play(self, pcm: bytes) -> None:
        with self._lock:
            self._pending += pcm

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


# -- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TalkOptions:
    url: str
    token: str | None = None
    wav: Path | None = None
    mic: bool = False
    out: Path | None = None
    text: str | None = None
    voice: str | None = None
    timeout: float = 30.0  # waiting for the answers once the input has been sent
    speed: float = 1.0
    quiet: float = 3.0  # the conversation is over after this long without news


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``?token=``; http(s) URLs become ws(s), since people paste either."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise TalkError(Exit.USAGE, f"{url!r} is not a ws:// or wss:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if token is not None:
        query = [(k, v) for k, v in query if k != "token"] + [("token", token)]
    path = parts.path or "/"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


class _Progress:
    """Progress lines on stderr; while sending, one line rewritten in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._line_open = False

    def note(self, message: str) -> None:
        self._end_live_line()
        print(f"novakit talk: {message}", file=self.stream, flush=True)

    def sending(self, done: float, total: float) -> None:
        if self.live:
            print(f"\rnovakit talk: sending {done:.1f}/{total:.1f} s", end="", file=self.stream)
            self.stream.flush()
            self._line_open = True
            if done >= total:
                self._end_live_line()
        elif done >= total:
            self.note(f"sent {total:.1f} s of audio")

    def _end_live_line(self) -> None:
        if self._line_open:
            print(file=self.stream, flush=True)
            self._line_open = False


async def talk(options: TalkOptions, stdout: TextIO, stderr: TextIO) -> Exit:
    """Run one conversation; returns the exit code. Raises :class:`TalkError` for input errors
    found before connecting."""
    progress = _Progress(stderr)
    url = with_token(options.url, options.token)
    source: WavSource | MicrophoneSource
    if options.wav is not None:
        source = WavSource(load_wav(options.wav), options.speed, progress.sending)
    elif options.mic:
        source = MicrophoneSource()
    else:  # typed input only: silence keeps the model's audio stream going meanwhile
        source = WavSource(b"", options.speed, lambda done, total: None)
    client = _Client(options, source, progress, stdout)
    code = await client.run(url)
    if options.out is not None and code is not Exit.CONNECT:
        conversation = client.conversation
        pcm = conversation.audio()
        audio.write_wav(options.out, pcm, conversation.sample_rate)
        seconds = audio.duration(pcm, conversation.sample_rate)
        progress.note(f"wrote {options.out} ({seconds:.1f} s of the assistant's audio)")
    return code


class _Client:
    """One connection: streams the source, shows what arrives, decides when it is over."""

    def __init__(
        self,
        options: TalkOptions,
        source: WavSource | MicrophoneSource,
        progress: _Progress,
        stdout: TextIO,
    ) -> None:
        self.options = options
        self.source = source
        self.progress = progress
        self.stdout = stdout
        self.conversation = Conversation()
        self.stop = asyncio.Event()  # Ctrl-C ends the conversation and still writes --out
        self.speaker: Speaker | None = None  # with --mic, the assistant is heard live

    async def run(self, url: str) -> Exit:
        import websockets

        self.progress.note(f"connecting to {_redacted(url)}")
        try:
            ws = await websockets.connect(
                url, open_timeout=CONNECT_SECONDS, close_timeout=CLOSE_SECONDS, max_size=2**20
            )
        except websockets.InvalidStatus as refused:
            status = refused.response.status_code
            why = {401: "the token was refused", 403: "access denied"}.get(status, "refused")
            self.progress.note(f"could not connect: HTTP {status}, {why}")
            return Exit.CONNECT
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            reason = str(exc) or type(exc).__name__
            self.progress.note(f"could not connect: {reason} (is the server running?)")
            return Exit.CONNECT
        except websockets.InvalidURI as exc:
            raise TalkError(Exit.USAGE, str(exc)) from None

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self.stop.set)
        if isinstance(self.source, MicrophoneSource):
            self.speaker = self.source.speaker(OUTPUT_RATE)
        try:
            async with ws:
                start: dict[str, Any] = {"type": "start", "v": 1, "output_sample_rate": OUTPUT_RATE}
                if self.options.voice:
                    start["voice"] = self.options.voice
                await ws.send(json.dumps(start))
                self.progress.note("connected")
                sender = asyncio.create_task(self._send_audio(ws))
                try:
                    code = await self._converse(ws)
                finally:
                    # Audio stops before ``end`` goes: ``end`` is the conversation's last frame,
                    # and the bridge would take audio after it for a new conversation.
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                        await sender
                if code in (Exit.OK, Exit.TIMEOUT):
                    await self._end_politely(ws)
                return code
        finally:
            if self.speaker is not None:
                self.speaker.close()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    async def _send_audio(self, ws: Any) -> None:
        seq = 0
        async for chunk in self.source.chunks():
            data = base64.b64encode(chunk).decode("ascii")
            await ws.send(json.dumps({"type": "audio", "seq": seq, "data": data}))
            seq += 1

    async def _converse(self, ws: Any) -> Exit:
        """Read frames until the conversation is over; decides when that is and how it went."""
        import websockets

        options, conversation, progress = self.options, self.conversation, self.progress
        loop = asyncio.get_running_loop()
        pending_text = options.text
        last_news = loop.time()
        input_done_at: float | None = None
        talk_until = loop.time() + options.timeout if options.mic else None
        while True:
            now = loop.time()
            if input_done_at is None and self.source.finished.is_set():
                input_done_at = now
                progress.note("waiting for the answer")
            quiet = (
                input_done_at is not None and now - max(last_news, input_done_at) >= options.quiet
            )
            idle = quiet and not conversation.in_turn
            if pending_text is not None and (options.wav is None or idle):
                # Typed text goes at once, or after the WAV's answers when there is a WAV.
                progress.note(f"typed: {pending_text}")
                print(f"user: {pending_text}", file=self.stdout, flush=True)
                await ws.send(json.dumps({"type": "text", "text": pending_text}))
                pending_text = None
                conversation.in_turn = True  # an answer is owed to the typed question
                last_news = now
                continue
            if self.stop.is_set():
                progress.note("stopped")
                return Exit.OK
            if pending_text is None and idle and conversation.turns_completed > 0:
                return Exit.OK
            if talk_until is not None and now >= talk_until:
                return Exit.OK  # --mic: --timeout is how long to talk
            if input_done_at is not None and now - input_done_at >= options.timeout:
                progress.note(
                    f"timed out: no complete answer {options.timeout:g} s after the input"
                )
                return Exit.TIMEOUT
            try:
                async with asyncio.timeout(0.2):
                    message = await ws.recv()
            except TimeoutError:
                continue
            except websockets.ConnectionClosed as closed:
                progress.note(f"the connection closed unexpectedly ({_close_words(closed)})")
                return Exit.SESSION
            last_news = loop.time()
            self._show(message)
            if conversation.fatal is not None:
                return Exit.SESSION
            if conversation.ended:
                progress.note("the server ended the conversation")
                return Exit.SESSION

    def _show(self, message: Any) -> None:
        try:
            frame = json.loads(message)
        except (TypeError, ValueError):
            self.progress.note("ignored a frame that is not JSON")
            return
        if not isinstance(frame, dict):
            return
        received = self.conversation.receive(frame)
        for note in received.notes:
            self.progress.note(note)
        for line in received.lines:
            print(line, file=self.stdout, flush=True)
        if self.speaker is not None:
            if received.clear:
                self.speaker.clear()
            if received.audio:
                self.speaker.play(received.audio)

    async def _end_politely(self, ws: Any) -> None:
        """``end``, then the session's last frames until it says ``ended`` (bounded)."""
        import websockets

        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await ws.send(json.dumps({"type": "end"}))
            async with asyncio.timeout(CLOSE_SECONDS):
                while not self.conversation.ended:
                    self._show(await ws.recv())


def _close_words(closed: Exception) -> str:
    import websockets

    if not isinstance(closed, websockets.ConnectionClosed) or closed.rcvd is None:
        return "no close frame: the connection was lost"
    code, reason = closed.rcvd.code, closed.rcvd.reason
    words = {
        1000: "closed normally",
        1001: "going away (idle timeout, duration limit or server restart)",
        1003: "a binary frame was refused",
        1009: "a frame was too large (over 32 KB)",
        1011: "server error",
    }.get(code, "closed")
    return f"{code}, {words}{f': {reason}' if reason else ''}"


# -- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novakit talk",
        description="Talk to a voice agent: send a WAV file (or the microphone), write the "
        "assistant's audio to a WAV file and print the transcript.",
        epilog="exit codes: 0 done, 2 usage or bad input file, 3 could not connect or refused, "
        "4 the session failed, 5 timed out",
    )
    parser.add_argument("url", help="WebSocket URL, e.g. ws://127.0.0.1:8080/ (novakit dev)")
    parser.add_argument("--token", help="sent as ?token=... (the stack's authorizer checks it)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wav", type=Path, help="what to say: a PCM16 WAV file, any rate")
    source.add_argument("--mic", action="store_true", help="the microphone (needs sounddevice)")
    parser.add_argument("--out", type=Path, help="write the assistant's audio to this WAV file")
    parser.add_argument("--text", help="a typed question, sent after the WAV's answers")
    parser.add_argument("--voice", help="a voice of the model, e.g. matthew or tiffany")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the answers once the input is sent (30); "
        "with --mic, how long to talk",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="stream the WAV this many times real time (1)"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=3.0,
        help="seconds without news after the input that end the conversation (3)",
    )
    return parser


def check_run_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, prog: str
) -> int | None:
    """Usage errors shared by the clients: ``--timeout``, ``--speed`` and ``--quiet`` must be
    positive (argparse exits), and ``--out`` writable (the exit code to return; None: fine)."""
    for name in ("timeout", "speed", "quiet"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    unwritable = _unwritable(args.out)
    if unwritable is not None:
        # Said before the conversation, not after it when the answer cannot be kept.
        print(f"{prog}: --out {args.out}: {unwritable}", file=sys.stderr)
        return int(Exit.USAGE)
    return None


def _unwritable(path: Path | None) -> str | None:
    """Why ``path`` cannot be written (None if it can, or if there is no path)."""
    if path is None:
        return None
    if path.is_dir():
        return "is a folder"
    folder = path.parent
    if not folder.is_dir():
        return f"no folder {folder}"
    if path.exists() and not os.access(path, os.W_OK):
        return "not writable"
    if not path.exists() and not os.access(folder, os.W_OK):
        return f"folder {folder} is not writable"
    return None


def main(argv: list[str] | None = None, stdout: TextIO = sys.stdout) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error, as argparse does
    if args.wav is None and not args.mic and args.text is None:
        parser.error("say something: --wav FILE, --mic or --text TEXT")
    refused = check_run_options(parser, args, "novakit talk")
    if refused is not None:
        return refused
    options = TalkOptions(
        url=args.url,
        token=args.token,
        wav=args.wav,
        mic=args.mic,
        out=args.out,
        text=args.text,
        voice=args.voice,
        timeout=args.timeout,
        speed=args.speed,
        quiet=args.quiet,
    )
    started = time.monotonic()
    try:
        code = asyncio.run(talk(options, stdout, sys.stderr))
    except TalkError as error:
        print(f"novakit talk: {error}", file=sys.stderr, flush=True)
        return int(error.code)
    except KeyboardInterrupt:
        return int(Exit.OK)
    elapsed = time.monotonic() - started
    print(f"novakit talk: done in {elapsed:.1f} s (exit {int(code)})", file=sys.stderr)
    return int(code)
