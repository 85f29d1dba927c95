"""InboundSequencer: in-order release, reordering, duplicates, gaps, bounds."""

from __future__ import annotations

import random

import pytest

from novakit.bridge.protocol import MAX_SEQ, ErrorCode, FrameRef
from novakit.bridge.sequencing import MIN_AHEAD, RESYNC_FRAMES, Delivery, InboundSequencer

pytestmark = pytest.mark.timeout(60)


def released(delivery: Delivery[int]) -> list[int]:
    assert not delivery.errors
    return delivery.released


@pytest.mark.parametrize("first", [0, 1, 1000])
def test_in_order_frames_are_released_at_once(first: int) -> None:
    sequencer: InboundSequencer[int] = InboundSequencer()
    assert sequencer.next_seq is None
    for seq in range(first, first + 50):
        assert sequencer.push(seq, seq, seq * 0.032) == Delivery([seq])
        assert sequencer.next_deadline() is None
    assert sequencer.next_seq == first + 50
    assert (sequencer.delivered, sequencer.skipped, sequencer.rejected) == (50, 0, 0)


def test_frames_reordered_within_the_window_come_out_in_order() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer()
    assert released(sequencer.push(0, 0, 0.0)) == [0]
    assert released(sequencer.push(2, 2, 0.01)) == []
    assert released(sequencer.push(3, 3, 0.02)) == []
    assert sequencer.held == 2 and sequencer.next_deadline() == pytest.approx(0.21)
    assert released(sequencer.push(1, 1, 0.03)) == [1, 2, 3]
    assert sequencer.held == 0 and sequencer.next_deadline() is None
    assert released(sequencer.push(5, 5, 0.04)) == []
    assert released(sequencer.push(4, 4, 0.05)) == [4, 5]
    assert sequencer.skipped == 0


def test_duplicates_are_refused_and_never_released_twice() -> None:
    sequencer: InboundSequencer[str] = InboundSequencer()
    sequencer.push(0, "a", 0.0)
    sequencer.push(1, "b", 0.0)
    delivered_dup = sequencer.push(1, "b again", 0.01)
    assert delivered_dup.released == []
    [error] = delivered_dup.errors
    assert error.code is ErrorCode.OUT_OF_ORDER and not error.fatal
    assert error.ref == FrameRef("audio", 1)
    assert sequencer.push(3, "d", 0.02).released == []
    held_dup = sequencer.push(3, "d again", 0.03)
    assert held_dup.released == [] and held_dup.errors[0].code is ErrorCode.OUT_OF_ORDER
    assert "already held" in held_dup.errors[0].message
    assert sequencer.push(2, "c", 0.04).released == ["c", "d"]  # the first copy of 3 wins
    assert sequencer.rejected == 2 and sequencer.delivered == 4


def test_a_gap_expires_after_max_hold_seconds_and_late_frames_are_refused() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_frames=8, max_hold_seconds=0.2)
    sequencer.push(10, 10, 0.0)
    sequencer.push(13, 13, 1.0)
    sequencer.push(14, 14, 1.05)
    assert sequencer.next_deadline() == pytest.approx(1.2)
    assert sequencer.expire(1.19) == Delivery([])
    expired = sequencer.expire(1.2)
    assert (expired.released, expired.skipped, expired.errors) == ([13, 14], 2, ())
    assert sequencer.next_seq == 15 and sequencer.skipped == 2
    late = sequencer.push(11, 11, 1.3)
    assert late.released == [] and late.errors[0].code is ErrorCode.OUT_OF_ORDER
    assert late.errors[0].ref == FrameRef("audio", 11)
    assert "sequence is at 15" in late.errors[0].message


def test_expiry_skips_gap_by_gap_up_to_the_overdue_frame() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=0.2)
    sequencer.push(0, 0, 0.0)
    sequencer.push(5, 5, 0.0)  # overdue first
    sequencer.push(3, 3, 0.15)
    sequencer.push(8, 8, 0.19)
    delivery = sequencer.expire(0.2)
    # 5 is overdue: the gaps 1-2 and 4 are skipped; 8 may still be waited for
    assert (delivery.released, delivery.skipped) == ([3, 5], 3)
    assert sequencer.held == 1 and sequencer.next_deadline() == pytest.approx(0.39)
    assert sequencer.push(6, 6, 0.3).released == [6]
    assert sequencer.push(7, 7, 0.3).released == [7, 8]


def test_push_releases_overdue_frames_when_the_timer_is_late() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=0.2)
    sequencer.push(0, 0, 0.0)
    sequencer.push(2, 2, 0.0)
    # the gap filler arrives on time for itself: it fills the gap rather than being refused
    assert sequencer.push(1, 1, 5.0) == Delivery([1, 2])
    sequencer.push(4, 4, 5.0)
    # a later frame arriving after the deadline releases the overdue one too, in order
    delivery = sequencer.push(6, 6, 5.5)
    assert (delivery.released, delivery.skipped) == ([4], 1)
    duplicate = sequencer.push(2, 2, 6.0)  # a refused frame also lets time pass for the held
    assert (duplicate.released, duplicate.skipped, len(duplicate.errors)) == ([6], 1, 1)


def test_held_frames_are_bounded_by_max_hold_frames() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_frames=8, max_hold_seconds=60)
    sequencer.push(0, 0, 0.0)
    for seq in range(2, 10):  # 8 held: the bound, still waiting for 1
        assert sequencer.push(seq, seq, 0.0).released == []
    assert sequencer.held == 8
    delivery = sequencer.push(10, 10, 0.0)  # a ninth: give up on 1
    assert (delivery.released, delivery.skipped) == (list(range(2, 11)), 1)
    assert sequencer.held == 0


def test_no_reordering_with_a_zero_window() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_frames=0)
    sequencer.push(0, 0, 0.0)
    assert sequencer.push(2, 2, 0.0) == Delivery([2], (), 1)
    assert sequencer.push(1, 1, 0.0).errors[0].code is ErrorCode.OUT_OF_ORDER


def test_the_first_frame_seen_starts_the_sequence() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer()
    assert sequencer.push(1, 1, 0.0).released == [1]  # 0 overtaken by 1: 0 is now too late
    assert sequencer.push(0, 0, 0.0).errors[0].code is ErrorCode.OUT_OF_ORDER


def test_frame_type_names_the_refused_frame() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(frame_type="video")
    sequencer.push(0, 0, 0.0)
    assert sequencer.push(0, 0, 0.0).errors[0].ref == FrameRef("video", 0)
    with pytest.raises(ValueError, match="negative"):
        InboundSequencer(max_hold_frames=-1)


@pytest.mark.parametrize("seed", range(20))
def test_random_delivery_keeps_order_bounds_and_uniqueness(seed: int) -> None:
    rng = random.Random(seed)
    max_hold = rng.choice([0, 1, 4, 8])
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold, 0.2)
    # frames 0..299, each sent at 32 ms, arriving with jitter; some lost, some resent
    arrivals: list[tuple[float, int]] = []
    for seq in range(300):
        if rng.random() < 0.03:
            continue  # lost
        for _ in range(2 if rng.random() < 0.05 else 1):
            arrivals.append((seq * 0.032 + rng.expovariate(1 / 0.03), seq))
    arrivals.sort()
    out: list[int] = []
    refused = skipped = 0
    for now, seq in arrivals:
        deadline = sequencer.next_deadline()
        if deadline is not None and deadline <= now and rng.random() < 0.7:
            delivery = sequencer.expire(now)  # the timer, when it is on time
            out += delivery.released
            skipped += delivery.skipped
        delivery = sequencer.push(seq, seq, now)
        assert sequencer.held <= max_hold
        for error in delivery.errors:
            assert error.code is ErrorCode.OUT_OF_ORDER and error.ref == FrameRef("audio", seq)
        refused += len(delivery.errors)
        out += delivery.released
        skipped += delivery.skipped
        if sequencer.held:
            deadline = sequencer.next_deadline()
            assert deadline is not None and now < deadline <= now + 0.2 + 1e-9  # none overdue
    final = sequencer.expire(float("inf"))
    out += final.released
    skipped += final.skipped
    assert sequencer.held == 0 and sequencer.next_deadline() is None
    assert out == sorted(set(out))  # in order, nothing twice
    first = arrivals[0][1]
    assert set(out) <= {seq for _, seq in arrivals}
    # every sequence number from the first to the last is either released or skipped
    assert len(out) + skipped == out[-1] - first + 1
    assert refused + len(out) == len(arrivals)
    assert (sequencer.delivered, sequencer.skipped, sequencer.rejected) == (
        len(out),
        skipped,
        refused,
    )


def test_a_frame_far_ahead_waits_but_never_moves_the_sequence() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=0.2)
    assert sequencer.max_ahead == MIN_AHEAD == 32
    sequencer.push(0, 0, 0.0)
    sequencer.push(2, 2, 0.0)  # held: 1 is missing
    far = sequencer.push(200, 99, 0.1)  # more than 32 ahead of the expected 1
    assert far == Delivery([])  # held: the frames before it may only be slow
    assert (sequencer.next_seq, sequencer.held) == (1, 2)
    # 1 never comes: its gap is given up; the far frame, still far when its wait ends, is
    # dropped; the sequence does not jump to it
    late = sequencer.expire(0.35)
    assert (late.released, late.skipped) == ([2], 1)
    (error,) = late.errors
    assert error.code is ErrorCode.OUT_OF_ORDER and error.ref == FrameRef("audio", 200)
    assert (sequencer.next_seq, sequencer.held) == (3, 0)
    assert released(sequencer.push(3, 3, 0.3)) == [3]


def test_frames_reordered_by_more_than_the_window_all_arrive() -> None:
    # 40 arrives before 9..39 (slow relays, a busy machine): nothing is lost
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=0.2)
    order = [*range(8), 40, *range(8, 40), *range(41, 50)]
    out = [p for seq in order for p in released(sequencer.push(seq, seq, 0.0))]
    assert out == list(range(50)) and sequencer.held == 0


def test_a_stray_max_seq_does_not_mute_what_follows() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=0.2)
    sequencer.push(0, 0, 0.0)
    assert sequencer.push(MAX_SEQ, -1, 0.0) == Delivery([])
    dropped = sequencer.expire(10.0)
    assert dropped.released == [] and dropped.errors[0].ref == FrameRef("audio", MAX_SEQ)
    out = [p for seq in range(1, 50) for p in released(sequencer.push(seq, seq, 10.0))]
    assert out == list(range(1, 50))
    # with frames arriving meanwhile, the stray is dropped when its wait ends, in their flow
    sequencer = InboundSequencer(max_hold_seconds=0.2)
    sequencer.push(0, 0, 0.0)
    sequencer.push(MAX_SEQ, -1, 0.0)
    out, errors = [], []
    for seq in range(1, 20):
        delivery = sequencer.push(seq, seq, seq * 0.032)
        out += delivery.released
        errors += delivery.errors
    assert out == list(range(1, 20)) and [e.ref for e in errors] == [FrameRef("audio", MAX_SEQ)]


def test_a_renumbering_client_is_followed_after_resync_frames_in_a_row() -> None:
    sequencer: InboundSequencer[int] = InboundSequencer(max_hold_seconds=60)
    for seq in range(5):
        sequencer.push(seq, seq, 0.0)
    sequencer.push(6, 6, 0.0)  # held, waiting for 5
    start = 10_000
    early = [sequencer.push(start + n, start + n, 0.0) for n in range(RESYNC_FRAMES - 1)]
    assert all(d == Delivery([]) for d in early)  # held: far ahead, waiting
    followed = sequencer.push(start + RESYNC_FRAMES - 1, -7, 0.0)  # far frames in a row
    # what was held goes first, in order: the old numbering's, then the new one's
    assert followed.released == [6, *range(start, start + RESYNC_FRAMES - 1), -7]
    assert sequencer.next_seq == start + RESYNC_FRAMES and sequencer.held == 0
    # far frames that do not continue one another never make a numbering
    sequencer = InboundSequencer(max_hold_seconds=60)
    sequencer.push(0, 0, 0.0)
    for n in range(20):
        sequencer.push(1000 + 2 * n, n, 0.0)
        assert sequencer.next_seq == 1 and sequencer.held <= sequencer.max_hold_frames
