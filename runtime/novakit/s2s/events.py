"""Events a session delivers through ``Session.recv()``.

One ``Event`` type with a ``type`` discriminator and the payload fields that type uses, so that
callers can dispatch with ``match event.type`` and log any event uniformly.

Meaning of each type:

``AUDIO_OUTPUT``
    ``audio`` holds PCM16 little-endian mono at ``sample_rate`` Hz, to be played in order. The
    provider generates faster than real time: a listener may hold seconds of it queued.
``TEXT_OUTPUT``
    What the model says, as text. ``final=False``: speculative text, sent before the matching audio
    (good for fast captions, may differ from what is spoken). ``final=True``: the text of what was
    actually spoken, sent after the audio; this is what a transcript or history should keep.
``TRANSCRIPT``
    The user's words as the model heard them (``final`` is always true for Nova Sonic).
``TOOL_CALL``
    The model asks for a tool: ``tool_call`` has the call id, tool name and parsed arguments.
    Answer with ``Session.send_tool_result`` using the same id (exactly once).
``TURN_END``
    The assistant finished its turn normally. An assistant turn ends with exactly one of
    ``TURN_END`` or ``INTERRUPTED``.
``INTERRUPTED``
    The assistant's turn was cut short: the user spoke over it (barge-in detected by the model),
    the caller called ``Session.interrupt()``, or a failed stream cut it (``meta["reason"]``:
    ``barge_in``, ``client`` or ``recovery``; after ``recovery`` a new stream gives the answer
    again). Output audio still queued in the session has been dropped; a listener must drop
    what it has queued too.
``USAGE``
    Token accounting from the model: ``usage`` has input/output speech and text tokens and
    running totals for the session.
``RECONNECTED``
    The session replaced a failed Bedrock stream and goes on: ``meta`` has ``reason`` (the error
    code of the failure), ``attempts`` (streams tried) and ``downtime`` (seconds). Audio sent
    meanwhile was kept and replayed; an answer cut by the failure was first ended with
    ``INTERRUPTED`` (reason ``recovery``). Informational: nothing needs doing.
``ERROR``
    Something failed: ``error`` has a stable code, a message and whether the session survived it
    (``fatal``). After a fatal error the session is closed and ``recv()`` ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
    """One event from a session; which fields are set depends on ``type`` (module docstring)."""

    type: EventType
    audio: bytes = b""
    sample_rate: int = 0
    text: str = ""
    final: bool = False
    role: str = ""
    tool_call: ToolCall | None = None
    usage: Usage | None = None
    error: ErrorInfo | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def audio_output(cls, pcm: bytes, sample_rate: int) -> Event:
        return cls(EventType.AUDIO_OUTPUT, audio=pcm, sample_rate=sample_rate, role="assistant")

    @classmethod
    def text_output(cls, text: str, *, final: bool) -> Event:
        return cls(EventType.TEXT_OUTPUT, text=text, final=final, role="assistant")

    @classmethod
    def transcript(cls, text: str) -> Event:
        return cls(EventType.TRANSCRIPT, text=text, final=True, role="user")

    @classmethod
    def tool(cls, call: ToolCall) -> Event:
        return cls(EventType.TOOL_CALL, tool_call=call)

    @classmethod
    def turn_end(cls) -> Event:
        return cls(EventType.TURN_END)

    @classmethod
    def interrupted(cls, reason: str) -> Event:
        return cls(EventType.INTERRUPTED, meta={"reason": reason})

    @classmethod
    def usage_event(cls, usage: Usage) -> Event:
        return cls(EventType.USAGE, usage=usage)

    @classmethod
    def reconnected(cls, reason: str, attempts: int, downtime: float) -> Event:
        return cls(
            EventType.RECONNECTED,
            meta={"reason": reason, "attempts": attempts, "downtime": downtime},
        )

    @classmethod
    def failure(cls, code: str, message: str, *, fatal: bool, retryable: bool = False) -> Event:
        return cls(EventType.ERROR, error=ErrorInfo(code, message, fatal, retryable))
