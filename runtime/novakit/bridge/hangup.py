"""The phone's built-in ``end_call`` tool: the model ends a call politely (docs/phone.md).

A call's media stream is ``<Connect><Stream>``: when its WebSocket closes, Twilio goes on with
the TwiML after ``<Connect>`` (the webhook puts ``<Hangup/>`` there; with nothing there the call
ends too). So the bridge hangs up by closing the connection (``DELETE @connections``): no
Twilio REST credentials in the bridge, no second API to call, and no race between a REST
hang-up and the goodbye still in Twilio's playback buffer.

:class:`CallEnding` is the hang-up's course as a pure state machine (no I/O, no clock of its
own): the model calls ``end_call`` (answered at once: say goodbye), speaks its goodbye, its turn
ends, then the call ends as soon as Twilio has echoed every mark sent (the caller heard the
goodbye to its last word), or, if the echoes do not come, once the goodbye's length plus
:data:`PLAY_MARGIN_SECONDS` has passed. A caller who speaks over the goodbye (barge-in) calls the
hang-up off: the caller has something to say, and the model may call ``end_call`` again.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from ..s2s.config import TextPart, ToolDefinition, ToolResult

__all__ = [
    "END_CALL",
    "END_CALL_REASON",
    "GOODBYE_SECONDS",
    "PLAY_MARGIN_SECONDS",
    "CallEnding",
    "EndingPhase",
    "end_call_result",
]

END_CALL: Final = ToolDefinition(
    "end_call",
    "End the phone call. Use it when the caller says goodbye or asks to hang up, or the"
    " conversation is clearly over. After calling it, say a short goodbye: the call ends once"
    " the caller has heard it.",
    {"type": "object", "properties": {}},
)
#: Why the session ended, in its log and ``SessionsEnded`` metrics.
END_CALL_REASON: Final = "agent hung up"
#: How long the model has to finish its goodbye once it called ``end_call`` (plus the length
#: of the goodbye audio made so far): a model that never ends its turn cannot hold the call.
GOODBYE_SECONDS: Final = 10.0
#: How much longer than the goodbye's audio the bridge waits for Twilio's last mark echo.
PLAY_MARGIN_SECONDS: Final = 3.0
_RESULT: Final = (
    "The call will end once your goodbye has been played. Say a short goodbye now, and nothing"
    " after it."
)


def end_call_result(call_id: str) -> ToolResult:
    return ToolResult(call_id, [TextPart(_RESULT)])


class EndingPhase(Enum):
    IDLE = "idle"  # no hang-up asked for (or it was called off)
    GOODBYE = "goodbye"  # end_call answered; the model is saying goodbye
    PLAYING = "playing"  # the goodbye is generated; Twilio is playing it
    DUE = "due"  # the caller has heard it (or the bound passed): end the call


class CallEnding:
    """One call's hang-up: fed the session's events, it says when the call must end."""

    __slots__ = ("_deadline", "goodbye_ms", "phase", "requests")

    def __init__(self) -> None:
        self.phase = EndingPhase.IDLE
        self.goodbye_ms = 0.0  # audio generated since end_call
        self.requests = 0  # end_call calls, a cancelled one included
        self._deadline: float | None = None

    @property
    def pending(self) -> bool:
        return self.phase in (EndingPhase.GOODBYE, EndingPhase.PLAYING)

    def requested(self, now: float) -> None:
        """The model called ``end_call``; a second call while one is pending changes nothing."""
        self.requests += 1
        if self.phase is EndingPhase.IDLE:
            self.phase = EndingPhase.GOODBYE
            self.goodbye_ms = 0.0
            self._deadline = now + GOODBYE_SECONDS

    def audio(self, ms: float) -> None:
        if self.phase is EndingPhase.GOODBYE:
            self.goodbye_ms += ms
            if self._deadline is not None:
                self._deadline += ms / 1000

    def turn_ended(self, now: float) -> None:
        """The model's turn is over: the goodbye is all generated; now it must be heard."""
        if self.phase is EndingPhase.GOODBYE:
            self.phase = EndingPhase.PLAYING
            self._deadline = now + self.goodbye_ms / 1000 + PLAY_MARGIN_SECONDS

    def barge_in(self) -> bool:
        """The caller spoke over the agent: a pending hang-up is called off (True if one was)."""
        if not self.pending:
            return False
        self.phase = EndingPhase.IDLE
        self._deadline = None
        return True

    def check(self, now: float, *, played_out: bool) -> bool:
        """True once the call must end: the goodbye played out (every mark echoed), or the
        bound passed. ``played_out``: Twilio has echoed every mark the bridge sent."""
        if self.phase is EndingPhase.DUE:
            return True
        if not self.pending or self._deadline is None:
            return False
        if (self.phase is EndingPhase.PLAYING and played_out) or now >= self._deadline:
            self.phase = EndingPhase.DUE
            return True
        return False

    def next_wakeup(self) -> float | None:
        """When :meth:`check` must run again even if nothing happens (the bound)."""
        return self._deadline if self.pending else None
