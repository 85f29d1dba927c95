"""Fault plans: what goes wrong, when, and on which streams. Pure data and decisions.

A ``FaultPlan`` names a kind, a trigger and whether it applies to the next stream only or to every
stream. Specs (CLI and tests) read ``KIND[@WHEN][:every]`` where WHEN is ``start`` (default),
``<N>s`` (N wall-clock seconds into the stream), ``<N>turns`` (after the N-th finished assistant
turn), ``user`` (while the user is speaking) or ``assistant`` (while the assistant is speaking).
Examples: ``throttle``, ``reset@2.5s``, ``model_stream_error@assistant:every``.

Exception faults are sent as an event-stream exception message and the response then ends; the
SDK raises the modeled exception from ``receive()``. Content faults (``bad_json``,
``unknown_event``, ``wrong_type``) send well-framed chunks whose events are wrong, each carrying
``CORRUPT_MARKER`` (so a test can check that no such content reaches a client), and the stream
goes on. ``stall`` makes the stream fall silent without ending: input is still read, nothing is
sent, no limit fires, until the client resets or closes it. ``access_denied`` is refused before the
stream opens (HTTP 403). The stream-lifetime and idle limits are not plans: they always apply,
with lengths from the emulator's configuration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .grammar import INVALID_INPUT

__all__ = [
    "CONTENT_FAULTS",
    "CORRUPT_MARKER",
    "EXCEPTION_FAULTS",
    "FaultKind",
    "FaultPlan",
    "FaultTracker",
    "Trigger",
    "arm_faults",
    "idle_cut_message",
]


class FaultKind(StrEnum):
    THROTTLE = "throttle"
    MODEL_STREAM_ERROR = "model_stream_error"
    MODEL_TIMEOUT = "model_timeout"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    IDLE_CUT = "idle_cut"
    VALIDATION = "validation"  # Bedrock rejects an input event: final, the client's fault
    RESET = "reset"  # RST_STREAM on this stream
    DROP = "drop"  # the TCP connection is cut (every stream on it)
    INVALID_EVENT = "invalid_event"  # an output message that fails its CRC
    ACCESS_DENIED = "access_denied"  # HTTP 403 at open
    # Well-framed chunks whose content is wrong; the stream goes on after them.
    BAD_JSON = "bad_json"  # a chunk whose event is truncated JSON, and one that is not JSON
    UNKNOWN_EVENT = "unknown_event"  # events of names Nova does not send
    WRONG_TYPE = "wrong_type"  # known events whose fields have the wrong JSON types
    STALL = "stall"  # nothing more is sent, and the stream is not ended (input still read)


class Trigger(StrEnum):
    START = "start"
    SECONDS = "seconds"
    TURNS = "turns"
    USER_SPEECH = "user"
    ASSISTANT_SPEECH = "assistant"


IDLE_CUT_MESSAGE = "Timed out waiting for input events (InternalErrorCode=531)"

# kind -> (exception type on the stream, message)
EXCEPTION_FAULTS: dict[FaultKind, tuple[str, str]] = {
    FaultKind.THROTTLE: (
        "throttlingException",
        "Too many requests, please wait before trying again.",
    ),
    FaultKind.MODEL_STREAM_ERROR: (
        "modelStreamErrorException",
        "The model encountered an error while streaming the response.",
    ),
    FaultKind.MODEL_TIMEOUT: (
        "modelTimeoutException",
        "Model has timed out in processing the request",
    ),
    FaultKind.INTERNAL: (
        "internalServerException",
        "The server encountered an internal error while processing the request.",
    ),
    FaultKind.UNAVAILABLE: (
        "serviceUnavailableException",
        "The service is temporarily unavailable. Try again later.",
    ),
    FaultKind.IDLE_CUT: ("validationException", IDLE_CUT_MESSAGE),
    FaultKind.VALIDATION: ("validationException", INVALID_INPUT),
}

# In every event a content fault sends: content a client must never be shown.
CORRUPT_MARKER = "upstream-payload-7f3a"

# kind -> the event JSON documents of the chunks it sends (bytes: not necessarily JSON)
CONTENT_FAULTS: dict[FaultKind, tuple[bytes, ...]] = {
    FaultKind.BAD_JSON: (
        b'{"event":{"textOutput":{"role":"ASSISTANT","content":"' + CORRUPT_MARKER.encode(),
        b"\xff\xfe<" + CORRUPT_MARKER.encode() + b">",
    ),
    FaultKind.UNKNOWN_EVENT: (
        json.dumps({"event": {"speculativeThought": {"content": CORRUPT_MARKER}}}).encode(),
        json.dumps(
            {"event": {"audioOutput": {}, "textOutput": {"content": CORRUPT_MARKER}}}
        ).encode(),
    ),
    FaultKind.WRONG_TYPE: tuple(
        json.dumps({"event": event}).encode()
        for event in (
            {"textOutput": {"role": "ASSISTANT", "content": [CORRUPT_MARKER]}},
            {"textOutput": CORRUPT_MARKER},
            {"contentStart": {"type": "TEXT", "role": {"name": CORRUPT_MARKER}}},
            {"contentStart": {"type": "TEXT", "role": "ASSISTANT", "additionalModelFields": 7}},
            {"audioOutput": {"content": 4111}},
            {"audioOutput": {"content": f"***{CORRUPT_MARKER}"}},
            {"toolUse": {"toolName": "x", "toolUseId": "y", "content": [CORRUPT_MARKER]}},
            {"contentEnd": {"stopReason": ["END_TURN"], "type": CORRUPT_MARKER}},
            {"usageEvent": {"details": CORRUPT_MARKER, "totalTokens": 1}},
            {"usageEvent": {"details": {"total": {"input": {"speechTokens": CORRUPT_MARKER}}}}},
        )
    ),
}

_WHEN_RE = re.compile(r"^(?:(?P<seconds>\d+(?:\.\d+)?)s|(?P<turns>\d+)turns?|(?P<word>\w+))$")


def idle_cut_message() -> str:
    return IDLE_CUT_MESSAGE


@dataclass(frozen=True)
class FaultPlan:
    kind: FaultKind
    trigger: Trigger = Trigger.START
    value: float = 0.0  # seconds for SECONDS, a turn count for TURNS
    every_stream: bool = False

    def __post_init__(self) -> None:
        if self.kind is FaultKind.ACCESS_DENIED and self.trigger is not Trigger.START:
            raise ValueError("access_denied happens when the stream opens (trigger 'start')")
        if self.value < 0:
            raise ValueError("a fault's value must not be negative")

    @property
    def exception(self) -> tuple[str, str] | None:
        """(exception type, message) for faults sent as an exception message."""
        return EXCEPTION_FAULTS.get(self.kind)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        text = spec.strip()
        every = text.endswith(":every")
        if every:
            text = text[: -len(":every")]
        kind_text, _, when = text.partition("@")
        try:
            kind = FaultKind(kind_text)
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {kind_text!r} (one of {kinds})") from None
        trigger, value = Trigger.START, 0.0
        if when:
            match = _WHEN_RE.match(when)
            if match is None:
                raise ValueError(f"bad fault time {when!r}: start, <N>s, <N>turns, user, assistant")
            if match["seconds"] is not None:
                trigger, value = Trigger.SECONDS, float(match["seconds"])
            elif match["turns"] is not None:
                trigger, value = Trigger.TURNS, float(match["turns"])
            else:
                try:
                    trigger = Trigger(match["word"])
                except ValueError:
                    raise ValueError(
                        f"bad fault time {when!r}: start, <N>s, <N>turns, user, assistant"
                    ) from None
                if trigger in (Trigger.SECONDS, Trigger.TURNS):
                    raise ValueError(f"bad fault time {when!r}: give a number, e.g. 5s or 2turns")
        return cls(kind, trigger, value, every)

    def __str__(self) -> str:
        match self.trigger:
            case Trigger.SECONDS:
                when = f"{self.value:g}s"
            case Trigger.TURNS:
                when = f"{int(self.value)}turns"
            case _:
                when = self.trigger.value
        return f"{self.kind.value}@{when}" + (":every" if self.every_stream else "")


def arm_faults(plans: Iterable[FaultPlan]) -> tuple[list[FaultPlan], list[FaultPlan]]:
    """Split the configured plans for a new stream: (plans for it, plans left for later streams).

    One-shot plans are used up by the stream they are armed for.
    """
    armed: list[FaultPlan] = []
    remaining: list[FaultPlan] = []
    for plan in plans:
        armed.append(plan)
        if plan.every_stream:
            remaining.append(plan)
    return armed, remaining


class FaultTracker:
    """Decides, for one stream, when an armed plan fires (the first due plan wins)."""

    def __init__(self, plans: Iterable[FaultPlan], started_at: float) -> None:
        self._plans = [p for p in plans if p.kind is not FaultKind.ACCESS_DENIED]
        self._started_at = started_at

    @property
    def plans(self) -> list[FaultPlan]:
        return list(self._plans)

    def due(
        self,
        *,
        now: float,
        turns_done: int,
        user_speaking: bool,
        assistant_speaking: bool,
    ) -> FaultPlan | None:
        for plan in self._plans:
            match plan.trigger:
                case Trigger.START:
                    hit = True
                case Trigger.SECONDS:
                    hit = now - self._started_at >= plan.value
                case Trigger.TURNS:
                    hit = turns_done >= plan.value
                case Trigger.USER_SPEECH:
                    hit = user_speaking
                case Trigger.ASSISTANT_SPEECH:
                    hit = assistant_speaking
            if hit:
                self._plans.remove(plan)
                return plan
        return None

    def next_deadline(self) -> float | None:
        """The wall-clock time at which a time-triggered plan becomes due."""
        times = [self._started_at + p.value for p in self._plans if p.trigger is Trigger.SECONDS]
        return min(times) if times else None
