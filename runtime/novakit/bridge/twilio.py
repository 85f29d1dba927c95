"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``) as a pure codec: no I/O.

A phone call reaches the bridge as Twilio's JSON text messages over the API's ``twilio`` stage:

``connected``  the stream's protocol and version (first; nothing to do)
``start``      the stream and call ids, the media format (mu-law, 8 kHz, mono) and the
               ``<Parameter>`` values of the TwiML
``media``      20 ms of the caller's audio: base64 mu-law, numbered by ``chunk``
``dtmf``       a key the caller pressed
``mark``       Twilio played the audio sent before the ``mark`` of that name (or dropped it on
               a ``clear``)
``stop``       the call or the stream ended

:func:`parse_twilio_message` reads one message; :class:`TwilioInbound` turns a call's messages
into the session commands of the v1 protocol (:mod:`novakit.bridge.protocol`), so one session
core serves both: ``start`` opens the conversation at 8 kHz both ways (Nova takes and speaks
8 kHz, so the audio is never resampled), ``media`` is audio numbered by its ``chunk``, a DTMF
key is typed input ("the caller pressed 1"), ``stop`` ends the conversation at once.

:class:`TwilioOutbound` is the other way: model audio (PCM16, 8 kHz) to ``media`` messages of
mu-law for the call's ``streamSid``, batched by audio duration (fewer ``@connections`` posts),
each followed by a ``mark`` naming how much of the answer it completes, so the echoed marks say
what the caller has actually heard; barge-in answers ``clear``. Twilio has no message for
transcripts, tool progress, errors or session states: those go to the log, never to the call
(an unknown message makes Twilio fail the stream).

Every message sent starts with ``{"event":"<name>"`` (fixed key order), so a queued message is
classified by a prefix test (:func:`is_media_message`, :func:`is_mark_message`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm

from .protocol import (
    MAX_FRAME_BYTES,
    ClientAudio,
    ClientEnd,
    ClientFrame,
    ClientStart,
    ClientText,
    ErrorCode,
    FrameRef,
    ProtocolError,
)

__all__ = [
    "DEFAULT_BATCH_MS",
    "DEFAULT_HOLD_MS",
    "MULAW",
    "SAMPLE_RATE",
    "Connected",
    "Dtmf",
    "Mark",
    "MarkPlayed",
    "Media",
    "OutboundCounters",
    "Start",
    "Stop",
    "TwilioInbound",
    "TwilioMessage",
    "TwilioOutbound",
    "dtmf_text",
    "encode_clear",
    "encode_mark",
    "encode_media",
    "is_mark_message",
    "is_media_message",
    "parse_twilio_message",
]

#: Twilio streams mu-law at 8 kHz, mono, both ways.
MULAW: Final = "audio/x-mulaw"
SAMPLE_RATE: Final = 8000
#: Audio per outbound ``media`` message: 500 ms is 4000 mu-law bytes, a 5.4 KB message.
DEFAULT_BATCH_MS: Final = 500
#: The longest a partial batch waits for more audio before it goes (the tail of an answer,
#: or a model that speaks slower than real time).
DEFAULT_HOLD_MS: Final = 100
MIN_BATCH_MS: Final = 20
#: Largest batch: its base64 and envelope stay far under API Gateway's 32 KB frame limit.
MAX_BATCH_MS: Final = 2000
#: What a ``mark`` name may be: our own names are short; anything Twilio echoes is bounded.
MAX_NAME_CHARS: Final = 256
#: Custom parameters kept from ``start`` (Twilio allows 500 characters per name and value).
MAX_PARAMETERS: Final = 32
_DTMF_DIGIT: Final = re.compile(r"[0-9*#A-D]")
_SID: Final = re.compile(r"[A-Za-z0-9]{1,64}")
_DECODER: Final = json.JSONDecoder()


# -- messages from Twilio ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    EVENT = "connected"
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    EVENT = "start"
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    custom_parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Media:
    EVENT = "media"
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes  # mu-law, one byte per sample


@dataclass(frozen=True, slots=True)
class Dtmf:
    EVENT = "dtmf"
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    EVENT = "mark"
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    EVENT = "stop"
    stream_sid: str
    call_sid: str


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop


def parse_twilio_message(
    text: str | bytes, *, max_message_bytes: int = MAX_FRAME_BYTES
) -> TwilioMessage:
    """One message from Twilio, or :class:`ProtocolError` (``too_large``, ``bad_json``,
    ``bad_frame``, ``unknown_type``, ``bad_audio``). Fields Twilio may add are ignored; numbers
    that Twilio sends as strings (``chunk``, ``timestamp``) are read from strings or numbers."""
    if len(text) > max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"message is {len(text)} bytes; the limit is {max_message_bytes}"
        )
    try:
        obj = _DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError(ErrorCode.BAD_FRAME, "a message must be a JSON object")
    event = obj.get("event")
    if type(event) is not str:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'event' must be a string")
    parse = _PARSERS.get(event)
    if parse is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown Twilio event {event[:32]!r}; expected one of {', '.join(_PARSERS)}",
            ref=FrameRef(event[:32]),
        )
    return parse(obj)


def _bad(event: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, message, ref=FrameRef(event))


def _object(obj: Mapping[str, Any], name: str, event: str) -> Mapping[str, Any]:
    value = obj.get(name)
    if type(value) is not dict:
        raise _bad(event, f"field {name!r} must be an object")
    return value


def _string(obj: Mapping[str, Any], name: str, event: str, *, sid: bool = False) -> str:
    value = obj.get(name)
    if type(value) is not str or not value:
        raise _bad(event, f"field {name!r} must be a non-empty string")
    if sid and not _SID.fullmatch(value):
        raise _bad(event, f"field {name!r} is not a Twilio id")
    return value


def _number(obj: Mapping[str, Any], name: str, event: str) -> int:
    """Twilio writes counters as decimal strings ("chunk": "12"); numbers are accepted too."""
    value = obj.get(name)
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    raise _bad(event, f"field {name!r} must be a whole number")


def _parse_connected(obj: dict[str, Any]) -> Connected:
    protocol, version = obj.get("protocol", ""), obj.get("version", "")
    return Connected(str(protocol)[:32], str(version)[:32])


def _parse_start(obj: dict[str, Any]) -> Start:
    start = _object(obj, "start", "start")
    media_format = _object(start, "mediaFormat", "start")
    tracks = start.get("tracks", ["inbound"])
    if type(tracks) is not list or not all(type(t) is str for t in tracks):
        raise _bad("start", "field 'tracks' must be a list of strings")
    params = start.get("customParameters") or {}
    if type(params) is not dict or len(params) > MAX_PARAMETERS:
        raise _bad(
            "start", f"field 'customParameters' must be an object of {MAX_PARAMETERS} at most"
        )
    kept = {str(k)[:500]: str(v)[:500] for k, v in params.items()}
    encoding = media_format.get("encoding")
    if type(encoding) is not str:
        raise _bad("start", "field 'mediaFormat.encoding' must be a string")
    return Start(
        stream_sid=_string(start, "streamSid", "start", sid=True),
        call_sid=_string(start, "callSid", "start", sid=True),
        account_sid=_string(start, "accountSid", "start", sid=True),
        tracks=tuple(tracks),
        encoding=encoding,
        sample_rate=_number(media_format, "sampleRate", "start"),
        channels=_number(media_format, "channels", "start") if "channels" in media_format else 1,
        custom_parameters=MappingProxyType(kept),
    )


def _parse_media(obj: dict[str, Any]) -> Media:
    media = _object(obj, "media", "media")
    data = media.get("payload")
    if type(data) is not str:
        raise _bad("media", "field 'media.payload' must be a base64 string")
    try:
        payload = binascii.a2b_base64(data, strict_mode=True)
    except ValueError as exc:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO, f"'payload' is not base64: {exc}", ref=FrameRef("media")
        ) from None
    if not payload:
        raise ProtocolError(ErrorCode.BAD_AUDIO, "'payload' is empty", ref=FrameRef("media"))
    return Media(
        stream_sid=_string(obj, "streamSid", "media", sid=True),
        track=str(media.get("track", "inbound")),
        chunk=_number(media, "chunk", "media"),
        timestamp_ms=_number(media, "timestamp", "media") if "timestamp" in media else 0,
        payload=payload,
    )


def _parse_dtmf(obj: dict[str, Any]) -> Dtmf:
    digit = _object(obj, "dtmf", "dtmf").get("digit")
    if type(digit) is not str or not _DTMF_DIGIT.fullmatch(digit):
        raise _bad("dtmf", "field 'dtmf.digit' must be one of 0-9, *, #, A-D")
    return Dtmf(_string(obj, "streamSid", "dtmf", sid=True), digit)


def _parse_mark(obj: dict[str, Any]) -> Mark:
    name = _object(obj, "mark", "mark").get("name")
    if type(name) is not str or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise _bad("mark", f"field 'mark.name' must be a string of 1 to {MAX_NAME_CHARS} chars")
    return Mark(_string(obj, "streamSid", "mark", sid=True), name)


def _parse_stop(obj: dict[str, Any]) -> Stop:
    stop = obj.get("stop")
    call_sid = stop.get("callSid", "") if type(stop) is dict else ""
    return Stop(_string(obj, "streamSid", "stop", sid=True), str(call_sid)[:64])


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], TwilioMessage]]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


# -- a call's messages to session commands -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """Twilio echoed a mark: the audio sent before it has been played (or cleared)."""

    name: str


def dtmf_text(digit: str) -> str:
    """What the model is told when the caller presses a key."""
    return f"The caller pressed {digit} on the phone keypad."


class TwilioInbound:
    """One call's messages to the session commands of the shared session core.

    :meth:`receive` returns what the session should act on, in order, or raises
    :class:`ProtocolError` for a message it cannot take (the call goes on unless it is fatal:
    a stream in a format other than 8 kHz mono mu-law cannot be heard at all).
    """

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start: Start | None = None

    @property
    def stream_sid(self) -> str | None:
        return self.start.stream_sid if self.start is not None else None

    def resume(self, stream_sid: str, call_sid: str) -> None:
        """Carry on a call another bridge task started: its ``start`` went there, so this one
        takes the stream's messages without seeing it."""
        self.start = Start(
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid="",
            tracks=("inbound",),
            encoding=MULAW,
            sample_rate=SAMPLE_RATE,
            channels=1,
        )

    def receive(self, text: str | bytes) -> list[ClientFrame | MarkPlayed]:
        message = parse_twilio_message(text)
        match message:
            case Connected():
                return []
            case Start():
                return [self._started(message)]
        if self.start is None:
            raise ProtocolError(
                ErrorCode.NOT_STARTED,
                f"a {message.EVENT} message before the stream's start",
                ref=FrameRef(message.EVENT),
            )
        if message.stream_sid != self.start.stream_sid:
            raise _bad(message.EVENT, "the message is for another stream")
        match message:
            case Media(track=track) if track not in ("inbound", "inbound_track"):
                return []  # only the caller's side is heard
            case Media(chunk=chunk, payload=payload):
                return [ClientAudio(chunk, ulaw_to_pcm(payload))]
            case Dtmf(digit=digit):
                return [ClientText(dtmf_text(digit))]
            case Mark(name=name):
                return [MarkPlayed(name)]
            case Stop():
                return [ClientEnd()]
        raise AssertionError(f"unhandled Twilio message {message!r}")  # pragma: no cover

    def _started(self, start: Start) -> ClientStart:
        if self.start is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_STARTED, "a second start message", ref=FrameRef("start")
            )
        if start.encoding != MULAW or start.sample_rate != SAMPLE_RATE or start.channels != 1:
            raise ProtocolError(
                ErrorCode.BAD_SAMPLE_RATE,
                f"the stream is {start.encoding} at {start.sample_rate} Hz, {start.channels}"
                f" channel(s); the bridge takes {MULAW} at {SAMPLE_RATE} Hz, mono",
                ref=FrameRef("start"),
                fatal=True,
            )
        self.start = start
        # The webhook's <Parameter>s: the voice and instructions configured for the number
        # called (instructions are used only where the bridge lets clients set them).
        voice = start.custom_parameters.get("voice") or None
        instructions = start.custom_parameters.get("instructions", "").strip() or None
        return ClientStart(
            voice=voice[:64] if voice else None,
            instructions=instructions,
            input_sample_rate=SAMPLE_RATE,
            output_sample_rate=SAMPLE_RATE,
        )


# -- model output to messages for Twilio -------------------------------------------------------


def encode_media(stream_sid: str, ulaw: bytes | memoryview) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'


def encode_mark(stream_sid: str, name: str) -> str:
    return json.dumps(
        {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":")
    )


def encode_clear(stream_sid: str) -> str:
    return f'{{"event":"clear","streamSid":"{stream_sid}"}}'


def is_media_message(message: str) -> bool:
    return message.startswith('{"event":"media"')


def is_mark_message(message: str) -> bool:
    return message.startswith('{"event":"mark"')


@dataclass(slots=True)
class OutboundCounters:
    """Running totals for the cost benchmarks: every message is a metered API Gateway post."""

    messages: int = 0
    media_messages: int = 0
    mark_messages: int = 0
    clear_messages: int = 0
    message_bytes: int = 0
    audio_ms: float = 0.0
    dropped_ms: float = 0.0


class TwilioOutbound:
    """Model audio to ``media`` + ``mark`` messages for one call, and what the caller heard.

    ``audio`` takes PCM16 at 8 kHz; each ``media`` message carries ``batch_ms`` of it (the last
    of a stretch less, after waiting at most ``hold_ms``: see :meth:`next_deadline`) and is
    followed by a ``mark`` named ``"<answer>:<ms>"``: the answer's number and how many
    milliseconds of it the caller has heard once Twilio echoes the mark.

    :meth:`barge_in` drops what is buffered and returns ``clear``; the answer's heard audio
    stays as the marks echoed *before* the clear said (Twilio echoes the rest of the marks when
    it empties its buffer: those were not played). ``heard_ms`` and ``sent_ms`` describe the
    current answer; :attr:`interrupted` keeps ``(heard_ms, generated_ms)`` of the last one cut
    short (generated: framed, or still buffered when the clear came).
    """

    __slots__ = (
        "_buf",
        "_cleared_answer",
        "_latest",
        "_oldest",
        "answer",
        "batch_ms",
        "counters",
        "heard_ms",
        "hold_ms",
        "interrupted",
        "marks_outstanding",
        "sent_ms",
        "stream_sid",
    )

    def __init__(self, *, batch_ms: int = DEFAULT_BATCH_MS, hold_ms: int = DEFAULT_HOLD_MS) -> None:
        if not MIN_BATCH_MS <= batch_ms <= MAX_BATCH_MS:
            raise ValueError(f"batch_ms must be from {MIN_BATCH_MS} to {MAX_BATCH_MS}")
        if not 0 <= hold_ms <= batch_ms:
            raise ValueError("hold_ms must be from 0 to batch_ms")
        self.batch_ms = batch_ms
        self.hold_ms = hold_ms
        self.stream_sid: str | None = None
        self._buf = bytearray()  # PCM16 waiting for a media message
        self._oldest: float | None = None  # when the oldest buffered audio arrived
        self._latest = 0.0  # when the newest did
        self.answer = 0
        self.sent_ms = 0  # of the current answer, sent to Twilio
        self.heard_ms = 0  # of the current answer, played to the caller (echoed marks)
        self._cleared_answer = -1  # marks of this answer echoed after its clear: not played
        self.interrupted: tuple[int, int] | None = None
        self.marks_outstanding = 0  # marks sent that Twilio has not echoed yet
        self.counters = OutboundCounters()

    @property
    def _batch_bytes(self) -> int:
        return SAMPLE_RATE * 2 * self.batch_ms // 1000

    def bind(self, stream_sid: str) -> list[str]:
        """The call's stream is known (its ``start``): audio buffered meanwhile goes now."""
        self.stream_sid = stream_sid
        return self._take(whole_batches_only=True)

    def audio(self, pcm: bytes, now: float) -> list[str]:
        if not pcm:
            return []
        if not self._buf:
            self._oldest = now
        self._buf += pcm
        self._latest = now
        return self._take(whole_batches_only=True)

    def next_deadline(self) -> float | None:
        """When the buffered audio must go even though it fills no batch, or ``None``."""
        if len(self._buf) < 2 or self._oldest is None or self.stream_sid is None:
            return None
        return self._oldest + self.hold_ms / 1000

    def due(self, now: float) -> list[str]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return self._take(whole_batches_only=False)

    def flush(self, now: float) -> list[str]:
        return self._take(whole_batches_only=False)

    def turn_end(self, now: float) -> list[str]:
        """The answer is complete: its tail goes now; the next audio is a new answer."""
        messages = self.flush(now)
        self._next_answer()
        return messages

    def barge_in(self, now: float) -> list[str]:
        """The caller spoke over the answer: drop what is buffered and clear Twilio's queue."""
        dropped = len(self._buf) & ~1
        dropped_ms = dropped * 1000 // (2 * SAMPLE_RATE)
        self.counters.dropped_ms += dropped_ms
        self._buf.clear()
        self._oldest = None
        self.interrupted = (self.heard_ms, self.sent_ms + dropped_ms)
        self._cleared_answer = self.answer
        self._next_answer()
        if self.stream_sid is None:
            return []
        message = encode_clear(self.stream_sid)
        self._count(message)
        self.counters.clear_messages += 1
        return [message]

    def mark_played(self, name: str) -> None:
        """Twilio echoed ``name``: the caller heard the answer up to it (unless the answer was
        cleared before this mark came back)."""
        answer, _, ms = name.partition(":")
        if not (answer.isdigit() and ms.isdigit()):
            return  # not one of ours
        # Twilio echoes every mark once, in order: played, or dropped by a clear.
        self.marks_outstanding = max(0, self.marks_outstanding - 1)
        number, heard = int(answer), int(ms)
        if number == self.answer and number != self._cleared_answer:
            self.heard_ms = max(self.heard_ms, min(heard, self.sent_ms))

    def _next_answer(self) -> None:
        self.answer += 1
        self.sent_ms = 0
        self.heard_ms = 0

    def _take(self, *, whole_batches_only: bool) -> list[str]:
        if self.stream_sid is None:
            return []
        step = self._batch_bytes
        size = len(self._buf) & ~1
        end = size - size % step if whole_batches_only else size
        messages: list[str] = []
        with memoryview(self._buf) as view:
            for offset in range(0, end, step):
                with view[offset : min(offset + step, end)] as part:
                    ulaw = pcm_to_ulaw(part)
                messages.append(encode_media(self.stream_sid, ulaw))
                self.counters.media_messages += 1
                self.sent_ms += len(ulaw) * 1000 // SAMPLE_RATE
                self.counters.audio_ms += len(ulaw) * 1000 / SAMPLE_RATE
                messages.append(encode_mark(self.stream_sid, f"{self.answer}:{self.sent_ms}"))
                self.counters.mark_messages += 1
                self.marks_outstanding += 1
        del self._buf[:end]
        if end:
            # What is left came with the latest chunk (at the earliest): date it so.
            self._oldest = self._latest if self._buf else None
        self._count(*messages)
        return messages

    def _count(self, *messages: str) -> None:
        self.counters.messages += len(messages)
        self.counters.message_bytes += sum(len(m) for m in messages)
