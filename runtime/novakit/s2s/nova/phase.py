"""Where a ``NovaSession`` stands between its streams, as one explicit phase.

A session carries one conversation over a succession of Bedrock streams (legs): it rolls over to
a fresh one before Bedrock's limit, replaces one that failed, and opens none while a silent
caller has gone away. Each of those is a phase, and the only ways from one to another are the
rows of ``TRANSITIONS``. Sans I/O: the session reports what happened (``Step``) and reads the
phase back; what each phase means for sending, receiving and the keep-alive is a property here,
so no decision reads a dozen optional fields.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    NEW = "new"  # not opened yet
    LIVE = "live"  # a started leg carries the conversation
    PREPARING = "preparing"  # the live leg is due for a rollover: the next one is being opened
    READY = "ready"  # the next leg is open (setup sent) and waits for a quiet point
    SWITCHING = "switching"  # the next leg is the live one, its history and audio being sent
    RECOVERING = "recovering"  # the live leg failed: fresh legs are tried (events held)
    SETTLING = "settling"  # a replacement leg carries the conversation; RECONNECTED is not told
    DORMANT = "dormant"  # the last leg ended while the caller was silent: none until it is back
    CLOSING = "closing"  # no send starts; legs are being closed
    CLOSED = "closed"

    @property
    def open(self) -> bool:
        """The caller may send (what cannot go out now is kept for the next leg)."""
        return self not in (Phase.NEW, Phase.CLOSING, Phase.CLOSED)

    @property
    def carrying(self) -> bool:
        """A leg carries the conversation: sends go to it and its events to the caller."""
        return self in _CARRYING

    @property
    def may_roll(self) -> bool:
        """A rollover may be started or carried on."""
        return self in (Phase.LIVE, Phase.PREPARING, Phase.READY)


_CARRYING = frozenset({Phase.LIVE, Phase.PREPARING, Phase.READY, Phase.SWITCHING, Phase.SETTLING})


class Step(StrEnum):
    """What happened."""

    OPEN = "open"  # open() began: the first leg is being opened
    ROLLOVER_DUE = "rollover_due"  # the live leg is past rollover_after
    NEXT_READY = "next_ready"  # the rollover's next leg is open
    NEXT_LOST = "next_lost"  # it failed or ended before use
    SWITCHED = "switched"  # at a quiet point, the next leg was made the live one
    STARTED = "started"  # the switched-to leg has its history and audio
    LEG_FAILED = "leg_failed"  # the live leg failed, recoverably
    WENT_QUIET = "went_quiet"  # it ended while the caller has been silent past keepalive_limit
    WOKE = "woke"  # input from the caller of a dormant session
    REPLACED = "replaced"  # a recovery attempt's leg is in place
    SETTLED = "settled"  # it has been heard from, or stayed up: RECONNECTED told
    FAILED = "failed"  # a final error (or recovery gave up): the session ends
    CLOSE = "close"  # the caller closes
    SHUT = "shut"  # every leg and task is gone


_ALIVE = (
    Phase.LIVE,
    Phase.PREPARING,
    Phase.READY,
    Phase.SWITCHING,
    Phase.RECOVERING,
    Phase.SETTLING,
    Phase.DORMANT,
)

TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    (Phase.NEW, Step.OPEN): Phase.LIVE,
    (Phase.NEW, Step.CLOSE): Phase.CLOSED,  # closed before it was opened
    (Phase.LIVE, Step.ROLLOVER_DUE): Phase.PREPARING,
    (Phase.PREPARING, Step.NEXT_READY): Phase.READY,
    (Phase.READY, Step.NEXT_LOST): Phase.PREPARING,
    (Phase.READY, Step.SWITCHED): Phase.SWITCHING,
    (Phase.SWITCHING, Step.STARTED): Phase.LIVE,
    (Phase.RECOVERING, Step.REPLACED): Phase.SETTLING,
    (Phase.SETTLING, Step.SETTLED): Phase.LIVE,
    (Phase.DORMANT, Step.WOKE): Phase.RECOVERING,
    (Phase.CLOSING, Step.SHUT): Phase.CLOSED,
    # A failure of the leg that carries the conversation, whatever was under way on it.
    **{(phase, Step.LEG_FAILED): Phase.RECOVERING for phase in _CARRYING},
    **{(phase, Step.WENT_QUIET): Phase.DORMANT for phase in _CARRYING},
    **{(phase, Step.FAILED): Phase.CLOSING for phase in _ALIVE},
    **{(phase, Step.CLOSE): Phase.CLOSING for phase in _ALIVE},
}


class PhaseError(RuntimeError):
    """A step the phase has no row for: a bug in the session, named precisely."""


def advance(phase: Phase, step: Step) -> Phase:
    """The phase after ``step`` (``PhaseError`` if the table has no such row)."""
    try:
        return TRANSITIONS[phase, step]
    except KeyError:
        raise PhaseError(f"no transition from {phase.value} on {step.value}") from None
