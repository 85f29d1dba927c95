"""The ownership tests' checker, on made-up streams: it finds each broken invariant, so a
passing ownership test means something."""

from __future__ import annotations

import base64

from novakit.emulator.record import RecordedEvent

from ..cluster.ownership import (
    Window,
    heard,
    seq_problems,
    silence_frame,
    speech_frame,
    violations,
)


def events(pcm_chunks: list[bytes], start: float, step: float = 0.01) -> list[RecordedEvent]:
    """A stream's input: setup, then one audio event per chunk."""
    out = [RecordedEvent("sessionStart", {}, start)]
    for n, chunk in enumerate(pcm_chunks):
        content = base64.b64encode(chunk).decode()
        out.append(RecordedEvent("audioInput", {"content": content}, start + (n + 1) * step))
    return out


def test_frames_are_found_however_the_audio_was_cut_and_joined() -> None:
    pcm = b"".join(speech_frame(1, n) for n in range(5)) + silence_frame(1) + bytes(3200)
    chunks = [pcm[:700], pcm[700:3000], pcm[3000:]]  # cut mid-frame, on even bytes
    stream = heard(0, events(chunks, 10.0))
    assert stream is not None
    assert stream.clients == {1}
    assert dict(stream.frames) == {10_000 + n: 1.0 for n in range(5)}
    assert (stream.first_at, stream.last_at) == (10.0, 10.03)


def test_all_hold_for_a_clean_takeover() -> None:
    first = heard(0, events([speech_frame(0, n) for n in range(3)], 1.0))
    second = heard(1, events([speech_frame(0, n) for n in range(3, 6)], 2.0))
    sent = {0: [(n, 1.0 + n * 0.1) for n in range(6)]}
    assert violations([first, second], sent, []) == []  # type: ignore[list-item]


def test_overlapping_streams_duplicates_and_losses_are_each_reported() -> None:
    first = heard(0, events([speech_frame(0, n) for n in range(4)], 1.0, step=1.0))
    # began before the first stream's last event, and got frame 3 again
    second = heard(1, events([speech_frame(0, n) for n in range(3, 6)], 3.5))
    mixed = heard(2, events([speech_frame(1, 0), speech_frame(2, 0)], 9.0))
    sent = {0: [(n, float(n)) for n in range(8)]}  # frames 6 and 7 never arrived
    found = violations(
        [first, second, mixed],  # type: ignore[list-item]
        sent,
        [Window("stall", 6.5, 6.6)],  # covers frame... none of them: 6 was sent at 6.0
    )
    assert any("several clients" in v for v in found)
    assert any("still received" in v for v in found)
    assert any("twice: [3]" in v for v in found)
    assert any("2 spoken frames lost" in v for v in found)


def test_a_loss_inside_a_disruption_window_is_allowed() -> None:
    stream = heard(0, events([speech_frame(2, 0)], 1.0))
    sent = {2: [(20_000, 1.0), (20_001, 5.0)]}
    assert violations([stream], sent, [Window("kill", 4.0, 6.0)]) == []  # type: ignore[list-item]
    assert violations([stream], sent, [Window("kill", 6.0, 7.0)])  # type: ignore[list-item]


def test_what_a_frozen_task_had_already_sent_may_arrive_after_the_takeover_only() -> None:
    # frames 0-2 sent before the freeze (at 1.0-1.2); the freeze: 2.0 to 5.0; the new stream
    # from 3.0; the old one's last event arrives at 5.2, just after the resume
    old = events([speech_frame(0, n) for n in range(3)], 1.0)
    old[-1] = RecordedEvent("audioInput", old[-1].body, 5.2)  # frame 2, handed over in time
    new = heard(1, events([speech_frame(0, 3)], 3.0))
    sent = {0: [(n, 1.0 + n * 0.1) for n in range(4)]}
    freeze = [Window("stall", 2.0, 8.0, resumed=5.0, frozen=2.1)]
    assert violations([heard(0, old), new], sent, freeze) == []  # type: ignore[list-item]
    # the same event arriving long after the resume is the old task still talking
    old[-1] = RecordedEvent("audioInput", old[-1].body, 7.0)
    assert violations([heard(0, old), new], sent, freeze)  # type: ignore[list-item]
    # and so is a frame sent after the freeze began, whenever it arrives
    late_frame = base64.b64encode(speech_frame(0, 3)).decode()
    old[-1] = RecordedEvent("audioInput", {"content": late_frame}, 5.2)
    sent = {0: [(n, 1.0 + n * 0.1) for n in range(3)] + [(3, 2.5)]}
    assert violations([heard(0, old), new], sent, freeze)  # type: ignore[list-item]


def numbered(*frames: tuple[str, int]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for kind, seq in frames:
        if kind in ("ready", "resumed"):
            out.append({"type": "session", "state": kind, "seq": seq})
        else:
            out.append({"type": kind, "seq": seq})
    return out


def test_seq_only_grows_within_a_numbering_and_restarts_at_resumed() -> None:
    fine = numbered(("ready", 0), ("text", 1), ("audio", 2), ("resumed", 0), ("text", 1))
    assert seq_problems(0, fine) == []
    twice = numbered(("ready", 0), ("text", 1), ("text", 1))
    assert seq_problems(0, twice) == ["client 0: frame seq 1 (text) twice"]
    # a late frame of the task that held the conversation, after the new owner's resumed
    older = numbered(("ready", 0), ("text", 27), ("resumed", 0), ("audio", 28), ("text", 1))
    assert len(seq_problems(0, older)) == 1
    # the new owner's frame before its resumed frame looks the same, and is caught
    early = numbered(("ready", 0), ("usage", 27), ("error", 0), ("resumed", 1))
    assert [p.startswith("client 0: frame seq 0 (error)") for p in seq_problems(0, early)] == [True]


def test_clear_audio_may_overtake_frames_numbered_before_it() -> None:
    barge_in = numbered(("ready", 0), ("audio", 80), ("clear_audio", 84), ("text", 81))
    assert seq_problems(0, barge_in) == []
    # but not frames numbered after it, nor frames it did not overtake
    assert seq_problems(0, numbered(("ready", 0), ("clear_audio", 84), ("text", 84))) != []
    assert seq_problems(0, numbered(("ready", 0), ("text", 9), ("clear_audio", 4), ("text", 3)))
