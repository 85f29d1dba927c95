"""What the emulator remembers about each stream, for tests to assert on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .faults import FaultKind

__all__ = ["Outcome", "RecordedError", "RecordedEvent", "StreamRecord"]


class Outcome(StrEnum):
    COMPLETED = "completed"  # sessionEnd, then the final signed frame: ended cleanly
    INPUT_CLOSED = "input_closed"  # input closed (final frame or END_STREAM) without sessionEnd
    VIOLATION = "violation"  # grammar, framing or chunk-signature error: validationException
    FAULT = "fault"  # an injected fault fired
    TIMEOUT = "timeout"  # the stream lifetime or the idle limit ran out
    REJECTED = "rejected"  # refused before streaming (HTTP error status)
    CLIENT_RESET = "client_reset"  # the client reset the stream
    CONNECTION_LOST = "connection_lost"  # the connection went away under the stream
    SHUTDOWN = "shutdown"  # the emulator stopped while the stream was open


@dataclass(frozen=True)
class RecordedEvent:
    name: str
    body: dict[str, Any]
    # When it arrived (input) or was sent (output), on the emulator's clock: which of several
    # streams was talking when.
    at: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class RecordedError:
    """An error the emulator sent: an exception message on the stream, or an HTTP error."""

    error_type: str  # e.g. "validationException", or "InvalidSignatureException" for HTTP
    message: str
    status: int | None = None  # the HTTP status for errors refused before streaming


@dataclass
class StreamRecord:
    """One stream, in order: every input event parsed, every output event sent (audio events
    left out when ``EmulatorConfig.record_audio`` is off), how it ended.

    ``input_events`` include the event that caused a violation (it is the last one). Exceptions
    are not events: they are in ``error``.
    """

    index: int
    model_id: str
    status: int = 200
    access_key_id: str | None = None
    input_events: list[RecordedEvent] = field(default_factory=list)
    output_events: list[RecordedEvent] = field(default_factory=list)
    outcome: Outcome | None = None  # None while the stream is open
    error: RecordedError | None = None
    fault: FaultKind | None = None
    session_end_received: bool = False
    input_closed: bool = False  # the final signed empty frame arrived and verified

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def input_names(self) -> list[str]:
        return [e.name for e in self.input_events]

    def output_names(self) -> list[str]:
        return [e.name for e in self.output_events]
