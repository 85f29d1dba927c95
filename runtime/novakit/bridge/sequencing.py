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

A frame more than ``max_ahead`` numbers ahead of the expected one is held like any early frame
(frames before it may just be slow), but the sequence never jumps to it: if it is still that far
ahead when its wait ends, it is dropped. Otherwise one stray ``seq`` (``2**53-1``, say) would
make the bridge give up on everything before it, and every later frame would be "behind the
sequence": the connection's microphone muted. A client that really did renumber (ahead, or far
behind) is followed once ``resync_frames`` far frames in a row continue one another: a stray
frame moves nothing, and the frames of a new numbering that arrived before the sequence
followed it are the price.
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
        if abs(seq - expected) > self.max_ahead and self._renumbered(seq):
            return self._follow(seq, payload)
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
            return Delivery(delivery.released, (error, *delivery.errors), delivery.skipped)
        released: list[T] = []
        errors: list[ProtocolError] = []
        skipped = 0
        if seq == expected:
            self._next = seq + 1
            released.append(payload)
            self._release_run(released)
        else:
            self._held[seq] = (payload, now)
            if len(self._held) > self.max_hold_frames:
                skipped += self._skip_gap(released, errors)
        skipped += self._expire(now, released, errors)
        self.delivered += len(released)
        return Delivery(released, tuple(errors), skipped)

    def _renumbered(self, seq: int) -> bool:
        """Whether far frame ``seq`` completes a run of ``resync_frames`` far frames in a row,
        each continuing the one before."""
        run = self._far_run
        count = run[1] + 1 if run is not None and seq == run[0] + 1 else 1
        self._far_run = (seq, count)
        return count >= self.resync_frames

    def _follow(self, seq: int, payload: T) -> Delivery[T]:
        """The client renumbered: everything held goes, in order, and the sequence follows."""
        self._far_run = None
        released = [
            self._held.pop(earlier)[0] for earlier in sorted(k for k in self._held if k < seq)
        ]
        released.append(payload)
        self._next = seq + 1
        self._release_run(released)  # frames of the new numbering that came early
        self.delivered += len(released)
        return Delivery(released)

    def expire(self, now: float) -> Delivery[T]:
        """Release frames held past ``max_hold_seconds``, skipping the gaps before them."""
        released: list[T] = []
        errors: list[ProtocolError] = []
        skipped = self._expire(now, released, errors)
        self.delivered += len(released)
        return Delivery(released, tuple(errors), skipped)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` will have something to release (``None`` while nothing is held)."""
        if not self._held:
            return None
        return min(arrival for _, arrival in self._held.values()) + self.max_hold_seconds

    def _expire(self, now: float, released: list[T], errors: list[ProtocolError]) -> int:
        skipped = 0
        while True:
            deadline = self.next_deadline()
            if deadline is None or now < deadline:
                return skipped
            skipped += self._skip_gap(released, errors)

    def _skip_gap(self, released: list[T], errors: list[ProtocolError]) -> int:
        """Give up on the gap before the lowest held frame; release the run from there. A
        frame still more than ``max_ahead`` ahead is dropped instead: it never moves the
        sequence."""
        assert self._next is not None
        first = min(self._held)
        gap = first - self._next
        if gap > self.max_ahead:
            del self._held[first]
            self.rejected += 1
            errors.append(
                ProtocolError(
                    ErrorCode.OUT_OF_ORDER,
                    f"{self.frame_type} seq {first} dropped: more than {self.max_ahead} ahead"
                    f" of the expected {self._next}; number frames one by one",
                    ref=FrameRef(self.frame_type, first),
                )
            )
            return 0
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
