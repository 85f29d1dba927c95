"""Client protocol v1 of the session bridge, as pure code: frames in, frames out, no I/O.

Every frame is a JSON text frame (API Gateway WebSocket APIs reject binary frames) of at most
32 KB. ``docs/protocol.md`` is the reference for client authors and ``docs/protocol.schema.json``
the machine-readable form; this module is what the bridge runs.

Client to server
    :func:`parse_client_frame` turns one frame's text into a frozen dataclass (:data:`ClientFrame`,
    one class per ``type``) or raises :class:`ProtocolError` with a stable :class:`ErrorCode`.
    Audio arrives decoded (``ClientAudio.pcm``), so the bridge never decodes base64 twice.
    Unknown fields are ignored (forward compatibility); an unknown ``type`` is an error.

Server to client
    ``encode_*`` functions return the frame text. Each frame carries a per-connection ``seq``
    (assigned by :class:`novakit.bridge.batching.OutboundBatcher`) because separate
    ``@connections`` posts have no documented ordering. Frames are pure ASCII (non-ASCII text is
    escaped), so ``len(frame)`` is exactly the number of bytes posted, and the first keys are
    always ``type`` then ``seq``: :func:`is_audio_frame` and :func:`frame_seq` rely on that to
    classify a queued frame without parsing it. Size limits on variable-length text (splitting
    long transcripts, truncating messages) are applied by the batcher, not here.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Buffer, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal, NoReturn, get_args

from novakit.s2s.config import ToolDefinition
from novakit.s2s.events import Usage

__all__ = [
    "CLEAR_REASONS",
    "INPUT_SAMPLE_RATE",
    "INPUT_SAMPLE_RATES",
    "MAX_AUDIO_BYTES",
    "MAX_BATCH_MS",
    "MAX_FRAME_BYTES",
    "MAX_ID_CHARS",
    "MAX_SEQ",
    "MAX_TEXT_CHARS",
    "MAX_VOICE_CHARS",
    "MIN_BATCH_MS",
    "OUTPUT_SAMPLE_RATES",
    "PROTOCOL_VERSION",
    "SESSION_STATES",
    "TOOL_STATUSES",
    "ClearReason",
    "ClientAudio",
    "ClientEnd",
    "ClientFrame",
    "ClientInterrupt",
    "ClientPing",
    "ClientRefusal",
    "ClientReply",
    "ClientStart",
    "ClientText",
    "ClientToolResult",
    "ErrorCode",
    "FrameRef",
    "ProtocolError",
    "SessionState",
    "ToolStatus",
    "audio_frame_overhead",
    "encode_assistant_text",
    "encode_audio",
    "encode_clear_audio",
    "encode_error",
    "encode_event",
    "encode_pong",
    "encode_session",
    "encode_tool",
    "encode_transcript",
    "encode_turn_end",
    "encode_usage",
    "frame_seq",
    "is_audio_frame",
    "is_nonfatal_error_frame",
    "is_pong_frame",
    "parse_client_frame",
]

PROTOCOL_VERSION: Final = 1
#: API Gateway's WebSocket frame limit, for client frames and ``@connections`` posts alike.
MAX_FRAME_BYTES: Final = 32768
#: Largest decoded audio chunk a client may send: 1 s at 16 kHz. The frame limit binds first
#: (about 24 KB of PCM fits in 32 KB of base64 JSON); this bound protects a bridge run with a
#: larger frame limit.
MAX_AUDIO_BYTES: Final = 32000
MAX_TEXT_CHARS: Final = 4000
MAX_VOICE_CHARS: Final = 64
#: Ping ids are echoed in pongs: bounded so a pong always fits a frame.
MAX_ID_CHARS: Final = 64
#: Sequence numbers stay exact in JavaScript numbers (``Number.MAX_SAFE_INTEGER``).
MAX_SEQ: Final = 2**53 - 1
#: The microphone rate when a client names none (what the browser client sends).
INPUT_SAMPLE_RATE: Final = 16000
#: Nova Sonic takes 8, 16 or 24 kHz input: telephony audio goes in without resampling.
INPUT_SAMPLE_RATES: Final = frozenset({8000, 16000, 24000})
OUTPUT_SAMPLE_RATES: Final = frozenset({8000, 16000, 24000})
MIN_BATCH_MS: Final = 20
MAX_BATCH_MS: Final = 1000

SessionState = Literal["ready", "reconnected", "resumed", "draining", "ended"]
ToolStatus = Literal["started", "succeeded", "failed", "timed_out"]
ClearReason = Literal["barge_in", "client", "recovery"]
SESSION_STATES: Final[frozenset[str]] = frozenset(get_args(SessionState))
TOOL_STATUSES: Final[frozenset[str]] = frozenset(get_args(ToolStatus))
CLEAR_REASONS: Final[frozenset[str]] = frozenset(get_args(ClearReason))


class ErrorCode(StrEnum):
    """Stable error codes of ``error`` frames (the table in docs/protocol.md)."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    BAD_AUDIO = "bad_audio"
    BAD_SAMPLE_RATE = "bad_sample_rate"
    OUT_OF_ORDER = "out_of_order"
    NOT_STARTED = "not_started"
    ALREADY_STARTED = "already_started"
    RATE_LIMITED = "rate_limited"
    SESSION_FAILED = "session_failed"
    SESSION_ENDED = "session_ended"
    TOOL_FAILED = "tool_failed"
    INTERNAL = "internal"


# A client asking for a protocol version the bridge does not speak cannot go on usefully; every
# other client mistake costs one frame and the session goes on. The service decides per instance
# for the codes it raises itself (session_failed, internal).
_FATAL_BY_DEFAULT: Final = frozenset(
    {ErrorCode.UNSUPPORTED_VERSION, ErrorCode.SESSION_FAILED, ErrorCode.INTERNAL}
)


@dataclass(frozen=True, slots=True)
class FrameRef:
    """The client frame an error is about: its ``type`` and, for audio, its ``seq``.

    Protocols other than v1 may name the client's own ``event_id`` and the ``param`` at fault
    (OpenAI Realtime errors carry both); v1 frames show ``type`` and ``seq`` only."""

    type: str | None = None
    seq: int | None = None
    event_id: str | None = None
    param: str | None = None

    def as_json(self) -> dict[str, Any]:
        ref: dict[str, Any] = {}
        if self.type is not None:
            ref["type"] = self.type
        if self.seq is not None:
            ref["seq"] = self.seq
        return ref


class ProtocolError(Exception):
    """A client frame was refused: ``code`` is stable, ``message`` names the field for people.

    ``fatal`` says whether the session should end (by default only for
    ``unsupported_version``, ``session_failed`` and ``internal``).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        ref: FrameRef | None = None,
        fatal: bool | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.ref = ref
        self.fatal = self.code in _FATAL_BY_DEFAULT if fatal is None else fatal

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, ref={self.ref!r})"


# ---------------------------------------------------------------------------------------------
# Client frames


@dataclass(frozen=True, slots=True)
class ClientStart:
    """Session options; ``None`` means the bridge's default. Optional: audio or text first
    starts a session with defaults."""

    TYPE: ClassVar[str] = "start"
    voice: str | None = None
    instructions: str | None = None
    input_sample_rate: int | None = None
    output_sample_rate: int | None = None
    batch_ms: int | None = None
    # Set by other client protocols (v1 has no such fields): tools the client declares and
    # runs itself (ClientToolResult answers them), which tool the model must use ("auto",
    # "any", or a tool's name), and Nova's endpointing sensitivity (HIGH, MEDIUM or LOW).
    client_tools: tuple[ToolDefinition, ...] = ()
    tool_choice: str | None = None
    endpointing: str | None = None


@dataclass(frozen=True, slots=True)
class ClientAudio:
    """Microphone audio: ``pcm`` is decoded PCM16 LE mono at the session's input rate (the
    ``start`` frame's ``input_sample_rate``, 16 kHz by default), of even length."""

    TYPE: ClassVar[str] = "audio"
    seq: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class ClientText:
    """Typed user input (1 to 4000 characters)."""

    TYPE: ClassVar[str] = "text"
    text: str


@dataclass(frozen=True, slots=True)
class ClientInterrupt:
    """The client stops the assistant (a button, or its own voice activity detection)."""

    TYPE: ClassVar[str] = "interrupt"


@dataclass(frozen=True, slots=True)
class ClientPing:
    """A keep-alive; ``id`` (if any) is echoed in the pong."""

    TYPE: ClassVar[str] = "ping"
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class ClientEnd:
    """The client ends the conversation politely."""

    TYPE: ClassVar[str] = "end"


@dataclass(frozen=True, slots=True)
class ClientToolResult:
    """The client's answer to a call of a tool it declared (``ClientStart.client_tools``):
    ``output`` is what the model is given, as text."""

    TYPE: ClassVar[str] = "tool_result"
    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class ClientReply:
    """Frames a protocol answers a client frame with by itself (an acknowledgement that needs
    nothing from the model), already encoded and numbered by the connection's codec: the
    session posts them in order with the rest."""

    TYPE: ClassVar[str] = "reply"
    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientRefusal:
    """A part of a client frame that was refused while the rest was taken (one field of a
    configuration, say): the session reports it as it reports a refused frame."""

    TYPE: ClassVar[str] = "refusal"
    error: ProtocolError


ClientFrame = (
    ClientStart
    | ClientAudio
    | ClientText
    | ClientInterrupt
    | ClientPing
    | ClientEnd
    | ClientToolResult
    | ClientReply
    | ClientRefusal
)

_INTERRUPT: Final = ClientInterrupt()
_END: Final = ClientEnd()
_MISSING: Final = object()


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON (and every other client library) does not.
    raise ValueError(f"{name} is not JSON")


# One decoder for all frames: json.loads with options would build a new decoder per call.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def parse_client_frame(
    text: str | bytes,
    *,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    max_audio_bytes: int = MAX_AUDIO_BYTES,
) -> ClientFrame:
    """Parse one client frame (the body of an integration request) or raise :class:`ProtocolError`.

    Checks, in order: size (``too_large``), JSON (``bad_json``), a JSON object with a string
    ``type`` (``bad_frame``), a known type (``unknown_type``), then the type's fields.
    """
    if isinstance(text, bytes):
        if len(text) > max_frame_bytes:
            raise _too_large(len(text), max_frame_bytes)
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not UTF-8: {exc.reason}") from None
    elif len(text) > max_frame_bytes // 4 and not text.isascii():
        # Only non-ASCII text needs encoding to measure it (audio frames are ASCII).
        size = len(text.encode(errors="surrogatepass"))
        if size > max_frame_bytes:
            raise _too_large(size, max_frame_bytes)
    elif len(text) > max_frame_bytes:
        raise _too_large(len(text), max_frame_bytes)
    try:
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
    kind = obj.get("type")
    if type(kind) is not str:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'type' must be a string naming the frame")
    parse = _PARSERS.get(kind)
    if parse is None:
        shown = kind[:MAX_ID_CHARS]
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown frame type {shown!r}; v1 types are {', '.join(_PARSERS)}",
            ref=FrameRef(shown),
        )
    return parse(obj, max_audio_bytes)


def _too_large(size: int, limit: int) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE, f"frame is {size} bytes; the limit is {limit}")


def _as_int(value: object) -> int | None:
    """A JSON integer: JSON has one number type, so 16000.0 is the integer 16000 (as in JSON
    Schema); booleans are not integers."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _bad(kind: str, message: str, seq: int | None = None) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, message, ref=FrameRef(kind, seq))


def _parse_start(obj: dict[str, Any], _max_audio_bytes: int) -> ClientStart:
    version = obj.get("v", _MISSING)
    if version is not _MISSING:
        number = _as_int(version)
        if number is None:
            raise _bad("start", "field 'v' must be the integer 1")
        if number != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {number} is not supported; this bridge speaks v1",
                ref=FrameRef("start"),
            )
    voice = obj.get("voice")
    if (voice is not None or "voice" in obj) and (
        type(voice) is not str or not 1 <= len(voice) <= MAX_VOICE_CHARS
    ):
        raise _bad("start", f"field 'voice' must be a string of 1 to {MAX_VOICE_CHARS} characters")
    if voice is not None and not _encodable(voice):
        raise _bad("start", f"field 'voice' {_NOT_UNICODE}")
    instructions = obj.get("instructions")
    if instructions is not None or "instructions" in obj:
        if type(instructions) is not str or _blank(instructions):
            raise _bad("start", "field 'instructions' must be a string with a visible character")
        if not _encodable(instructions):
            raise _bad("start", f"field 'instructions' {_NOT_UNICODE}")
    input_rate = _optional_int(obj, "input_sample_rate")
    if input_rate is not None and input_rate not in INPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.BAD_SAMPLE_RATE,
            f"input_sample_rate must be 8000, 16000 or 24000 (Nova Sonic's input rates), not"
            f" {input_rate}; resample on the client",
            ref=FrameRef("start"),
        )
    output_rate = _optional_int(obj, "output_sample_rate")
    if output_rate is not None and output_rate not in OUTPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.BAD_SAMPLE_RATE,
            f"output_sample_rate must be 8000, 16000 or 24000, not {output_rate}",
            ref=FrameRef("start"),
        )
    batch_ms = _optional_int(obj, "batch_ms")
    if batch_ms is not None and not MIN_BATCH_MS <= batch_ms <= MAX_BATCH_MS:
        raise _bad(
            "start",
            f"field 'batch_ms' must be from {MIN_BATCH_MS} to {MAX_BATCH_MS}, not {batch_ms}",
        )
    return ClientStart(
        voice=voice,
        instructions=instructions,
        input_sample_rate=input_rate,
        output_sample_rate=output_rate,
        batch_ms=batch_ms,
    )


def _optional_int(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        return None
    number = _as_int(value)
    if number is None:
        raise _bad("start", f"field {name!r} must be an integer")
    return number


def _parse_audio(obj: dict[str, Any], max_audio_bytes: int) -> ClientAudio:
    seq = _as_int(obj.get("seq"))
    if seq is None or not 0 <= seq <= MAX_SEQ:
        raise _bad("audio", "field 'seq' must be an integer from 0 to 2**53-1")
    data = obj.get("data")
    if type(data) is not str:
        raise _bad("audio", "field 'data' must be a base64 string", seq)
    try:
        pcm = binascii.a2b_base64(data, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise ProtocolError(
            ErrorCode.BAD_AUDIO, f"'data' is not base64: {exc}", ref=FrameRef("audio", seq)
        ) from None
    if len(data) != (len(pcm) + 2) // 3 * 4:
        # strict mode still accepts padding after a whole quantum ("AAAA=="): refuse it, as the
        # schema's pattern does
        raise ProtocolError(
            ErrorCode.BAD_AUDIO, "'data' is not base64: excess padding", ref=FrameRef("audio", seq)
        )
    if not pcm or len(pcm) & 1 or len(pcm) > max_audio_bytes:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO,
            f"'data' holds {len(pcm)} bytes; PCM16 needs an even number from 2 to"
            f" {max_audio_bytes}",
            ref=FrameRef("audio", seq),
        )
    return ClientAudio(seq, pcm)


def _parse_text(obj: dict[str, Any], _max_audio_bytes: int) -> ClientText:
    text = obj.get("text")
    if type(text) is not str or not 1 <= len(text) <= MAX_TEXT_CHARS:
        raise _bad("text", f"field 'text' must be a string of 1 to {MAX_TEXT_CHARS} characters")
    if _blank(text):
        raise _bad("text", "field 'text' must have a visible character, not only whitespace")
    if not _encodable(text):
        raise _bad("text", f"field 'text' {_NOT_UNICODE}")
    return ClientText(text)


# Text the model gets must survive UTF-8 encoding: JSON's \uXXXX escapes can spell a lone
# surrogate (an emoji cut in half by a client truncating UTF-16), which Python's json accepts and
# no encoder can send on.
_NOT_UNICODE: Final = "holds a lone surrogate (half a character); send whole characters"


def _blank(text: str) -> bool:
    # The model refuses empty input; the schema's pattern "\\S" says the same.
    return not text or text.isspace()


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _parse_interrupt(_obj: dict[str, Any], _max_audio_bytes: int) -> ClientInterrupt:
    return _INTERRUPT


def _parse_ping(obj: dict[str, Any], _max_audio_bytes: int) -> ClientPing:
    value = obj.get("id", _MISSING)
    if value is _MISSING:
        return ClientPing()
    if type(value) is str:
        if len(value) > MAX_ID_CHARS:
            raise _bad("ping", f"field 'id' must be at most {MAX_ID_CHARS} characters")
        return ClientPing(value)
    number = _as_int(value)
    if number is None or not -MAX_SEQ <= number <= MAX_SEQ:
        raise _bad("ping", "field 'id' must be a string or an integer within ±(2**53-1)")
    return ClientPing(number)


def _parse_end(_obj: dict[str, Any], _max_audio_bytes: int) -> ClientEnd:
    return _END


_PARSERS: Final[dict[str, Callable[[dict[str, Any], int], ClientFrame]]] = {
    "start": _parse_start,
    "audio": _parse_audio,
    "text": _parse_text,
    "interrupt": _parse_interrupt,
    "ping": _parse_ping,
    "end": _parse_end,
}


# ---------------------------------------------------------------------------------------------
# Server frames

# One encoder for all frames (json.dumps with options builds a new encoder per call). ASCII
# output keeps len(frame) equal to the bytes posted, which the 32 KB checks rely on.
_ENCODE: Final = json.JSONEncoder(separators=(",", ":")).encode
_AUDIO_PREFIX: Final = '{"type":"audio",'
_SEQ_FIELD: Final = re.compile(r'"seq":(\d+)')


def _audio_json(seq: int, data: str, sample_rate: int, ms: int) -> str:
    return f'{{"type":"audio","seq":{seq},"data":"{data}","sample_rate":{sample_rate},"ms":{ms}}}'


def audio_frame_overhead(sample_rate: int, *, max_ms: int = 999_999) -> int:
    """Characters of an audio frame besides its base64 data, for the largest ``seq`` and ``ms``."""
    return len(_audio_json(MAX_SEQ, "", sample_rate, max_ms))


def encode_audio(seq: int, pcm: Buffer, sample_rate: int) -> str:
    """An ``audio`` frame: PCM16 LE mono as base64; ``ms`` is its duration, rounded."""
    data = binascii.b2a_base64(pcm, newline=False).decode("ascii")
    ms = (memoryview(pcm).nbytes * 500 + sample_rate // 2) // sample_rate
    return _audio_json(seq, data, sample_rate, ms)


def encode_session(
    seq: int,
    state: SessionState,
    *,
    connection_id: str,
    model: str,
    voice: str,
    output_sample_rate: int,
    batch_ms: int,
    input_sample_rate: int = INPUT_SAMPLE_RATE,
    reason: str | None = None,
) -> str:
    """A ``session`` frame: the state of the conversation and the options in force."""
    if state not in SESSION_STATES:
        raise ValueError(f"session state {state!r} is not one of {sorted(SESSION_STATES)}")
    frame: dict[str, Any] = {
        "type": "session",
        "seq": seq,
        "v": PROTOCOL_VERSION,
        "state": state,
        "connection_id": connection_id,
        "model": model,
        "voice": voice,
        "input_sample_rate": input_sample_rate,
        "output_sample_rate": output_sample_rate,
        "batch_ms": batch_ms,
    }
    if reason is not None:
        frame["reason"] = reason
    return _ENCODE(frame)


def encode_transcript(seq: int, text: str, *, continues: bool = False) -> str:
    """A ``transcript`` frame: the user's words as the model heard them."""
    frame: dict[str, Any] = {"type": "transcript", "seq": seq, "role": "user", "text": text}
    if continues:
        frame["continues"] = True
    return _ENCODE(frame)


def encode_assistant_text(seq: int, text: str, final: bool, *, continues: bool = False) -> str:
    """A ``text`` frame: what the assistant says (``final=False``: speculative, before audio)."""
    frame: dict[str, Any] = {
        "type": "text",
        "seq": seq,
        "role": "assistant",
        "text": text,
        "final": final,
    }
    if continues:
        frame["continues"] = True
    return _ENCODE(frame)


def encode_tool(
    seq: int,
    call_id: str,
    name: str,
    status: ToolStatus,
    *,
    ms: int | None = None,
    error: str | None = None,
) -> str:
    """A ``tool`` frame: progress of a tool call, for the client's display."""
    if status not in TOOL_STATUSES:
        raise ValueError(f"tool status {status!r} is not one of {sorted(TOOL_STATUSES)}")
    frame: dict[str, Any] = {
        "type": "tool",
        "seq": seq,
        "call_id": call_id,
        "name": name,
        "status": status,
    }
    if ms is not None:
        frame["ms"] = ms
    if error is not None:
        frame["error"] = error
    return _ENCODE(frame)


def encode_clear_audio(seq: int, reason: ClearReason) -> str:
    """A ``clear_audio`` frame: stop playback now and drop every audio frame with a lower seq."""
    if reason not in CLEAR_REASONS:
        raise ValueError(f"clear reason {reason!r} is not one of {sorted(CLEAR_REASONS)}")
    return f'{{"type":"clear_audio","seq":{seq},"reason":"{reason}"}}'


def encode_turn_end(seq: int) -> str:
    """A ``turn_end`` frame: the assistant finished its turn."""
    return f'{{"type":"turn_end","seq":{seq}}}'


def encode_usage(seq: int, usage: Usage) -> str:
    """A ``usage`` frame: running token totals of the conversation."""
    return _ENCODE(
        {
            "type": "usage",
            "seq": seq,
            "input_speech_tokens": usage.input_speech_tokens,
            "input_text_tokens": usage.input_text_tokens,
            "output_speech_tokens": usage.output_speech_tokens,
            "output_text_tokens": usage.output_text_tokens,
            "total_tokens": usage.total_tokens,
        }
    )


def encode_error(
    seq: int, code: ErrorCode, message: str, fatal: bool, ref: FrameRef | None = None
) -> str:
    """An ``error`` frame; ``ref`` names the client frame it is about, when there is one."""
    frame: dict[str, Any] = {
        "type": "error",
        "seq": seq,
        "code": ErrorCode(code).value,
        "message": message,
        "fatal": fatal,
    }
    if ref is not None:
        frame["ref"] = ref.as_json()
    return _ENCODE(frame)


def encode_pong(seq: int, id: str | int | None = None) -> str:
    """A ``pong`` frame answering a ping (with its ``id``, if it had one)."""
    if id is None:
        return f'{{"type":"pong","seq":{seq}}}'
    return _ENCODE({"type": "pong", "seq": seq, "id": id})


def encode_event(seq: int, fields: Mapping[str, Any]) -> str:
    """Any non-audio frame from its fields (``type`` first, ``seq`` inserted after it)."""
    kind = fields.get("type")
    if type(kind) is not str:
        raise ValueError("fields must have a string 'type'")
    if "seq" in fields:
        raise ValueError("'seq' is assigned by the batcher, not given in fields")
    frame: dict[str, Any] = {"type": kind, "seq": seq}
    frame.update(fields)
    return _ENCODE(frame)


def is_audio_frame(frame: str) -> bool:
    """Whether an encoded server frame is an ``audio`` frame (a prefix test, no parsing): what a
    sender needs to drop queued audio on barge-in."""
    return frame.startswith(_AUDIO_PREFIX)


def is_pong_frame(frame: str) -> bool:
    """Whether an encoded server frame is a ``pong`` frame (a prefix test, no parsing)."""
    return frame.startswith('{"type":"pong"')


def is_nonfatal_error_frame(frame: str) -> bool:
    """Whether an encoded server frame is an ``error`` frame the session goes on after."""
    return frame.startswith('{"type":"error"') and '"fatal":false' in frame


def frame_seq(frame: str) -> int:
    """The ``seq`` of an encoded server frame (read from its first characters, no parsing)."""
    match = _SEQ_FIELD.search(frame, 0, 64)
    if match is None:
        raise ValueError("not a server frame of this module: no seq in its first characters")
    return int(match.group(1))
