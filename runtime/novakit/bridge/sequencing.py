"""Inbound sequencing: client audio frames back in ``seq`` order, with bounded waiting.

Each client frame reaches the bridge as its own integration request, and the bridge handles them
concurrently, so two audio frames can arrive swapped; a client may also resend a frame.
:class:`InboundSequencer` releases payloads in ``seq`` order, holds a frame that arrives early
until the gap before it fills, and gives up on a gap (skips it) when more than
``max_hold_frames`` frames wait or the oldest has waited ``max_hold_seconds``: audio late by more
than that is useless to a live conversation. Nothing is released twice, nothing is held forever
(provided the service calls ``expire`` at ``next_deadline()``).

The first ``seq`` seen starts the sequence (clients may start at 0 or 1), so a frame that
overtakes the very first one makes that first one "too late".

A frame more than ``max_ahead`` numbers away from the expected one (ahead, or behind by more than
a resend could be) is refused without moving the sequence: held, it would be given up as a gap
and every later frame would be "behind the sequence", so one stray ``seq`` (``2**53-1``, say)
would mute the connection's microphone. A client that really did renumber is followed again
once ``resync_frames`` such frames in a row continue one another; the first frames of the new
numbering are the price, a stray frame moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import ErrorCode, FrameRef, ProtocolError

__all__ = ["MIN_AHEAD", "RESYNC_FRAMES", "Delivery", "InboundSequencer"]

#: The smallest ``max_ahead``: about a second of 32 ms frames, far more than reordering or a
#: client's own dropped frames explain.
MIN_AHEAD = 32
#: Far frames in a row, each continuing the one before, after which the sequence follows them.
RESYNC_FRAMES = 4


@dataclass(frozen=True, slots=True)
class Delivery[T]:
    """What one call released: ``released`` payloads in ``seq`` order; ``errors`` for refused
    frames (``out_of_order``: a duplicate, or a frame behind the sequence); ``skipped``: how many
    sequence numbers were given up as a gap (for the service's log)."""

    released: list[T]
    errors: tuple[ProtocolError, ...] = ()
    skipped: int = 0


class InboundSequencer[T]:
    """Reorders the numbered frames of one connection (one instance per connection)."""

    __slots__ = (
        "_far_run",
        "_held",
        "_next",
        "delivered",
        "frame_type",
        "max_ahead",
        "max_hold_frames",
        "max_hold_seconds",
        "rejected",
        "resync_frames",
        "skipped",
    )

    def __init__(
        self, max_hold_frames: int = 8, max_hold_seconds: float = 0.2, *, frame_type: str = "audio"
    ) -> None:
        if max_hold_frames < 0 or max_hold_seconds < 0:
            raise ValueError("max_hold_frames and max_hold_seconds must not be negative")
        self.max_hold_frames = max_hold_frames
        self.max_hold_seconds = max_hold_seconds
        #: How far from the expected ``seq`` a frame may be: four hold windows, at least MIN_AHEAD.
        self.max_ahead = max(MIN_AHEAD, 4 * max_hold_frames)
        #: Consecutive far frames, each one after the other, that make a new numbering.
        self.resync_frames = RESYNC_FRAMES
        self.frame_type = frame_type
        self._next: int | None = None
        self._held: dict[int, tuple[T, float]] = {}
        self._far_run: tuple[int, int] | None = None  # (last far seq, how many in a row)
        #: Frames released, sequence numbers skipped as gaps, frames refused.
        self.delivered = 0
        self.skipped = 0
        self.rejected = 0

    @property
    def next_seq(self) -> int | None:
        """The ``seq`` expected next (``None`` before the first frame)."""
        return self._next

    @property
    def held(self) -> int:
        """Frames waiting for a gap before them to fill."""
        return len(self._held)

    def push(self, seq: int, payload: T, now: float) -> Delivery[T]:
        """Take frame ``seq``; release it and whatever it unblocks, in order."""
        expected = self._next
        if expected is None:
            expected = self._next = seq
        if seq == expected and not self._held:  # the common case: in order, nothing waiting
            self._next = seq + 1
            self.delivered += 1
            self._far_run = None
            return Delivery([payload])
        if abs(seq - expected) > self.max_ahead:
            return self._far(seq, payload, expected, now)
        self._far_run = None
        if seq < expected or seq in self._held:
            self.rejected += 1
            why = "it is already held" if seq >= expected else f"the sequence is at {expected}"
            error = ProtocolError(
                ErrorCode.OUT_OF_ORDER,
                f"{self.frame_type} seq {seq} dropped as a duplicate or too late: {why}",
                ref=FrameRef(self.frame_type, seq),
            )
            # Time still passes for the frames held: a late frame must not delay their release.
            delivery = self.expire(now)
            return Delivery(delivery.released, (error,), delivery.skipped)
        released: list[T] = []
        skipped = 0
        if seq == expected:
            self._next = seq + 1
            released.append(payload)
            self._release_run(released)
        else:
            self._held[seq] = (payload, now)
            if len(self._held) > self.max_hold_frames:
                skipped += self._skip_gap(released)
        skipped += self._expire(now, released)
        self.delivered += len(released)
        return Delivery(released, (), skipped)

    def _far(self, seq: int, payload: T, expected: int, now: float) -> Delivery[T]:
        """A frame too far from the sequence: refused, unless it completes a run of
        ``resync_frames`` consecutive far frames, which the sequence then follows."""
        run = self._far_run
        count = run[1] + 1 if run is not None and seq == run[0] + 1 else 1
        if count < self.resync_frames:
            self._far_run = (seq, count)
            self.rejected += 1
            error = ProtocolError(
                ErrorCode.OUT_OF_ORDER,
                f"{self.frame_type} seq {seq} refused: more than {self.max_ahead} from the"
                f" expected {expected}; number frames one by one",
                ref=FrameRef(self.frame_type, seq),
            )
            delivery = self.expire(now)
            return Delivery(delivery.released, (error,), delivery.skipped)
        # The client renumbered: what is held of the old numbering goes first, in order.
        self._far_run = None
        released = [held for _, (held, _) in sorted(self._held.items())]
        self._held.clear()
        released.append(payload)
        self._next = seq + 1
        self.delivered += len(released)
        return Delivery(released)

    def expire(self, now: float) -> Delivery[T]:
        """Release frames held past ``max_hold_seconds``, skipping the gaps before them."""
        released: list[T] = []
        skipped = self._expire(now, released)
        self.delivered += len(released)
        return Delivery(released, (), skipped)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` will have something to release (``None`` while nothing is held)."""
        if not self._held:
            return None
        return min(arrival for _, arrival in self._held.values()) + self.max_hold_seconds

    def _expire(self, now: float, released: list[T]) -> int:
        skipped = 0
        while True:
            deadline = self.next_deadline()
            if deadline is None or now < deadline:
                return skipped
            skipped += self._skip_gap(released)

    def _skip_gap(self, released: list[T]) -> int:
        """Give up on the gap before the lowest held frame; release the run from there."""
        assert self._next is not None
        first = min(self._held)
        gap = first - self._next
        self.skipped += gap
        self._next = first
        self._release_run(released)
        return gap

    def _release_run(self, released: list[T]) -> None:
        assert self._next is not None
        held = self._held
        seq = self._next
        while seq in held:
            released.append(held.pop(seq)[0])
            seq += 1
        self._next = seq
