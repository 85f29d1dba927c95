"""Events a session delivers through ``Session.recv()``.

One dataclass per kind of event, each with the fields of its kind (as h2 does), all subclasses
of ``Event``. Dispatch on the class (``match event: case s2s.AudioOutput(audio=pcm): ...``);
every event also has ``type`` (an ``EventType``), so ``if event.type is EventType.TURN_END``
keeps working, and ``Interrupted`` and ``Reconnected`` still offer their fields as ``meta``.

Meaning of each kind (its class in brackets):

``AUDIO_OUTPUT`` (``AudioOutput``)
    ``audio`` holds PCM16 little-endian mono at ``sample_rate`` Hz, to be played in order. The
    provider generates faster than real time: a listener may hold seconds of it queued.
``TEXT_OUTPUT`` (``TextOutput``)
    What the model says, as text. ``final=False``: speculative text, sent before the matching audio
    (good for fast captions, may differ from what is spoken). ``final=True``: the text of what was
    actually spoken, sent after the audio; this is what a transcript or history should keep.
``TRANSCRIPT`` (``Transcript``)
    The user's words as the model heard them (``final`` is always true for Nova Sonic).
``TOOL_CALL`` (``ToolCallRequest``)
    The model asks for a tool: ``tool_call`` has the call id, tool name and parsed arguments.
    Answer with ``Session.send_tool_result`` using the same id (exactly once).
``TURN_END`` (``TurnEnd``)
    The assistant finished its turn normally. An assistant turn ends with exactly one of
    ``TURN_END`` or ``INTERRUPTED``.
``INTERRUPTED`` (``Interrupted``)
    The assistant's turn was cut short: the user spoke over it (barge-in detected by the model),
    the caller called ``Session.interrupt()``, or a failed stream cut it (``reason``:
    ``barge_in``, ``client`` or ``recovery``; after ``recovery`` a new stream gives the answer
    again). Output audio still queued in the session has been dropped; a listener must drop
    what it has queued too.
``USAGE`` (``UsageUpdate``)
    Token accounting from the model: ``usage`` has input/output speech and text tokens and
    running totals for the session.
``RECONNECTED`` (``Reconnected``)
    The session replaced a failed Bedrock stream and goes on: ``reason`` (the error code of the
    failure), ``attempts`` (streams tried) and ``downtime`` (seconds). Audio sent
    meanwhile was kept and replayed; an answer cut by the failure was first ended with
    ``INTERRUPTED`` (reason ``recovery``). Informational: nothing needs doing.
``ERROR`` (``SessionError``)
    Something failed: ``error`` has a stable code, a message and whether the session survived it
    (``fatal``). After a fatal error the session is closed and ``recv()`` ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class EventType(StrEnum):
    AUDIO_OUTPUT = "audio_output"
    TEXT_OUTPUT = "text_output"
    TRANSCRIPT = "transcript"
    TOOL_CALL = "tool_call"
    TURN_END = "turn_end"
    INTERRUPTED = "interrupted"
    USAGE = "usage"
    RECONNECTED = "reconnected"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool invocation requested by the model."""

    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; ``input_*``/``output_*`` are running totals for the session (a Nova
    session that moved to new streams adds up what each stream counted)."""

    input_speech_tokens: int = 0
    input_text_tokens: int = 0
    output_speech_tokens: int = 0
    output_text_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong: ``code`` is stable (see docs/s2s.md), ``message`` is for people."""

    code: str
    message: str
    fatal: bool = False
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One event from a session: an instance of one of the subclasses below."""

    type: ClassVar[EventType]

    @property
    def meta(self) -> dict[str, Any]:
        """The fields of an ``Interrupted`` or ``Reconnected`` as a dict (what events carried
        before they were typed); empty for the other kinds."""
        return {}

    # Constructors by kind, as before the kinds were classes.

    @staticmethod
    def audio_output(pcm: bytes, sample_rate: int) -> AudioOutput:
        return AudioOutput(pcm, sample_rate)

    @staticmethod
    def text_output(text: str, *, final: bool) -> TextOutput:
        return TextOutput(text, final)

    @staticmethod
    def transcript(text: str) -> Transcript:
        return Transcript(text)

    @staticmethod
    def tool(call: ToolCall) -> ToolCallRequest:
        return ToolCallRequest(call)

    @staticmethod
    def turn_end() -> TurnEnd:
        return TurnEnd()

    @staticmethod
    def interrupted(reason: str) -> Interrupted:
        return Interrupted(reason)

    @staticmethod
    def usage_event(usage: Usage) -> UsageUpdate:
        return UsageUpdate(usage)

    @staticmethod
    def reconnected(reason: str, attempts: int, downtime: float) -> Reconnected:
        return Reconnected(reason, attempts, downtime)

    @staticmethod
    def failure(code: str, message: str, *, fatal: bool, retryable: bool = False) -> SessionError:
        return SessionError(ErrorInfo(code, message, fatal, retryable))


@dataclass(frozen=True, slots=True)
class AudioOutput(Event):
    """Assistant speech: PCM16 little-endian mono at ``sample_rate`` Hz."""

    type: ClassVar[EventType] = EventType.AUDIO_OUTPUT
    role: ClassVar[str] = "assistant"
    audio: bytes
    sample_rate: int


@dataclass(frozen=True, slots=True)
class TextOutput(Event):
    """What the assistant says: speculative (``final=False``) or what was spoken (``True``)."""

    type: ClassVar[EventType] = EventType.TEXT_OUTPUT
    role: ClassVar[str] = "assistant"
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class Transcript(Event):
    """The user's words as the model heard them."""

    type: ClassVar[EventType] = EventType.TRANSCRIPT
    role: ClassVar[str] = "user"
    final: ClassVar[bool] = True
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallRequest(Event):
    """The model asks for a tool: answer with ``Session.send_tool_result`` (same call id)."""

    type: ClassVar[EventType] = EventType.TOOL_CALL
    tool_call: ToolCall


@dataclass(frozen=True, slots=True)
class TurnEnd(Event):
    """The assistant finished its turn."""

    type: ClassVar[EventType] = EventType.TURN_END


@dataclass(frozen=True, slots=True)
class Interrupted(Event):
    """The assistant's turn was cut: ``reason`` is ``barge_in``, ``client`` or ``recovery``."""

    type: ClassVar[EventType] = EventType.INTERRUPTED
    reason: str

    @property
    def meta(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True, slots=True)
class UsageUpdate(Event):
    """Running token totals for the session."""

    type: ClassVar[EventType] = EventType.USAGE
    usage: Usage


@dataclass(frozen=True, slots=True)
class Reconnected(Event):
    """A failed stream was replaced and the conversation goes on (informational)."""

    type: ClassVar[EventType] = EventType.RECONNECTED
    reason: str
    attempts: int
    downtime: float

    @property
    def meta(self) -> dict[str, Any]:
        return {"reason": self.reason, "attempts": self.attempts, "downtime": self.downtime}


@dataclass(frozen=True, slots=True)
class SessionError(Event):
    """Something failed; after a ``fatal`` one the session is closed and ``recv()`` ends."""

    type: ClassVar[EventType] = EventType.ERROR
    error: ErrorInfo
