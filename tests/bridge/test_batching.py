"""OutboundBatcher: frame counts and sizes, byte-exact audio, seq order, flushing, barge-in."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from novakit.bridge.batching import MAX_MESSAGE_CHARS, MIN_FRAME_BYTES, OutboundBatcher
from novakit.bridge.protocol import (
    MAX_FRAME_BYTES,
    ErrorCode,
    FrameRef,
    ProtocolError,
    frame_seq,
    is_audio_frame,
)
from novakit.s2s.events import Usage

pytestmark = pytest.mark.timeout(60)


def pcm_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def nova_chunks(pcm: bytes, seed: int = 1) -> list[bytes]:
    """Split audio the way a model delivers it: uneven chunks of whole samples."""
    rng = random.Random(seed)
    chunks, offset = [], 0
    while offset < len(pcm):
        size = rng.randrange(2, 1920, 2)
        chunks.append(pcm[offset : offset + size])
        offset += size
    return chunks


def decoded(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in frames]


def audio_of(frames: list[str]) -> bytes:
    return b"".join(base64.b64decode(f["data"]) for f in decoded(frames) if f["type"] == "audio")


def check_seq(frames: list[str], first: int = 0) -> None:
    assert [json.loads(frame)["seq"] for frame in frames] == list(range(first, first + len(frames)))
    assert [frame_seq(frame) for frame in frames] == list(range(first, first + len(frames)))


def stream(batcher: OutboundBatcher, pcm: bytes, *, realtime: float = 0.25) -> list[str]:
    """Feed audio at ``realtime`` times its duration (Nova is faster than real time), serving
    deadlines as a service timer would, then end the turn. Chunks of at most 40 ms of 24 kHz
    audio at 0.25 of real time arrive within 20 ms of each other: the timer fires only for
    the tail (and at lower rates, where a chunk lasts longer)."""
    frames: list[str] = []
    now = 0.0
    for chunk in nova_chunks(pcm):
        deadline = batcher.next_deadline()
        if deadline is not None and deadline <= now:
            frames += batcher.due(now)
        frames += batcher.audio(chunk, now)
        now += len(chunk) / 2 / batcher.sample_rate * realtime
    frames += batcher.turn_end(now)
    return frames


# -- counts and sizes ------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_ms", "expected_frames"), [(20, 500), (100, 100), (500, 20)])
def test_ten_seconds_at_24khz_makes_one_frame_per_batch(
    batch_ms: int, expected_frames: int
) -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=batch_ms)
    pcm = pcm_of(24000 * 2 * 10)
    frames = stream(batcher, pcm, realtime=0.25)
    audio = [f for f in decoded(frames) if f["type"] == "audio"]
    assert len(audio) == expected_frames
    assert all(f["ms"] == batch_ms for f in audio)
    assert audio_of(frames) == pcm
    assert max(len(frame) for frame in frames) <= MAX_FRAME_BYTES
    check_seq(frames)
    counters = batcher.counters
    assert (counters.frames, counters.audio_frames) == (expected_frames + 1, expected_frames)
    assert counters.audio_bytes == len(pcm) and counters.audio_ms == pytest.approx(10_000)
    assert counters.frame_bytes == sum(len(frame) for frame in frames)
    # base64 (4/3) plus a small envelope per frame
    assert counters.frame_bytes < len(pcm) * 4 / 3 + 100 * len(frames)


def test_one_second_batches_are_cut_at_the_frame_limit() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=1000)
    pcm = pcm_of(48000 * 3)
    frames = batcher.audio(pcm, 0.0) + batcher.flush(0.0)
    assert audio_of(frames) == pcm
    assert all(MAX_FRAME_BYTES - 32 <= len(frame) <= MAX_FRAME_BYTES for frame in frames[:-1])
    assert len(frames) == -(-len(pcm) // batcher.frame_pcm_bytes) == 6


EDGE_LIMITS = [
    MIN_FRAME_BYTES,
    1025,
    1026,
    1027,
    1028,
    2048,
    4097,
    32764,
    32765,
    32766,
    32767,
    32768,
]


@pytest.mark.parametrize("max_frame_bytes", EDGE_LIMITS)
@pytest.mark.parametrize("sample_rate", [8000, 16000, 24000])
def test_no_frame_exceeds_the_limit_and_audio_stays_exact(
    max_frame_bytes: int, sample_rate: int
) -> None:
    for batch_ms in (20, 100, 1000):
        batcher = OutboundBatcher(
            sample_rate=sample_rate, batch_ms=batch_ms, max_frame_bytes=max_frame_bytes
        )
        assert batcher.frame_pcm_bytes % 2 == 0 and batcher.frame_pcm_bytes > 0
        pcm = pcm_of(sample_rate * 2 * 2 + 2, seed=max_frame_bytes)
        frames = stream(batcher, pcm)
        frames += batcher.transcript("ü" * 5000, 9.0)
        frames += batcher.error(ErrorCode.INTERNAL, "x" * 5000, True, FrameRef("audio", 1), 9.0)
        assert max(len(frame) for frame in frames) <= max_frame_bytes
        assert all(len(frame.encode()) == len(frame) for frame in frames)
        assert audio_of(frames) == pcm
        check_seq(frames)
        audio = [frame for frame in frames if is_audio_frame(frame)]
        if batcher.frame_pcm_bytes < sample_rate * 2 * batch_ms // 1000:
            # limited by the frame size: full frames use it, bar the reserve for long numbers
            assert all(len(frame) > max_frame_bytes - 32 for frame in audio[:-1])


@pytest.mark.parametrize(
    "options",
    [
        {"max_frame_bytes": MAX_FRAME_BYTES + 1},
        {"max_frame_bytes": MIN_FRAME_BYTES - 1},
        {"batch_ms": 19},
        {"batch_ms": 1001},
        {"sample_rate": 22050},
    ],
)
def test_options_outside_the_protocol_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        OutboundBatcher(**options)


# -- order and flushing ----------------------------------------------------------------------


def test_events_flush_buffered_audio_first() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)
    assert batcher.audio(pcm_of(1000), 0.0) == []
    assert batcher.buffered_bytes == 1000
    frames = batcher.transcript("hello", 0.01)
    assert [json.loads(f)["type"] for f in frames] == ["audio", "transcript"]
    assert audio_of(frames) == pcm_of(1000)
    check_seq(frames)
    assert batcher.buffered_bytes == 0 and batcher.next_deadline() is None
    assert batcher.assistant_text("Hi.", True, 0.02) == [
        '{"type":"text","seq":2,"role":"assistant","text":"Hi.","final":true}'
    ]


def test_every_event_helper_flushes_then_numbers_in_order() -> None:
    batcher = OutboundBatcher(sample_rate=16000, batch_ms=100)
    calls: list[Callable[[float], list[str]]] = [
        lambda now: batcher.session("ready", "cid", "model", "matthew", now),
        lambda now: batcher.assistant_text("Let me check.", False, now),
        lambda now: batcher.tool("call-1", "lookup", "started", now),
        lambda now: batcher.tool("call-1", "lookup", "succeeded", now, ms=120),
        lambda now: batcher.usage(Usage(1, 2, 3, 4, 10), now),
        lambda now: batcher.error(ErrorCode.TOOL_FAILED, "slow", False, None, now),
        lambda now: batcher.protocol_error(ProtocolError(ErrorCode.BAD_AUDIO, "odd"), now),
        lambda now: batcher.pong("p", now),
        lambda now: batcher.event({"type": "turn_end"}, now),
        batcher.turn_end,
        lambda now: batcher.session("ended", "cid", "model", "matthew", now, reason="bye"),
    ]
    frames: list[str] = []
    for i, call in enumerate(calls):
        frames += batcher.audio(pcm_of(500, seed=i), i * 0.01)
        out = call(i * 0.01)
        assert [is_audio_frame(f) for f in out] == [True, False]
        frames += out
    check_seq(frames)
    assert audio_of(frames) == b"".join(pcm_of(500, seed=i) for i in range(len(calls)))
    session = json.loads(frames[1])
    assert (session["output_sample_rate"], session["batch_ms"]) == (16000, 100)
    assert json.loads(frames[-1])["reason"] == "bye"


def test_due_flushes_the_tail_once_its_oldest_byte_waited_batch_ms() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)  # 4800 bytes per frame
    assert batcher.next_deadline() is None
    assert batcher.audio(pcm_of(3000, 1), 1.0) == []
    assert batcher.next_deadline() == pytest.approx(1.1)
    first = batcher.audio(pcm_of(3000, 2), 1.05)  # one full frame; 1200 bytes of chunk 2 remain
    assert len(first) == 1 and batcher.buffered_bytes == 1200
    deadline = batcher.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(1.15)  # dated by chunk 2, not chunk 1
    assert batcher.due(1.1) == []
    assert batcher.due(deadline - 1e-9) == []
    tail = batcher.due(deadline)
    assert len(tail) == 1 and json.loads(tail[0])["ms"] == 25
    assert audio_of(first + tail) == pcm_of(3000, 1) + pcm_of(3000, 2)
    assert batcher.next_deadline() is None and batcher.due(5.0) == []
    check_seq(first + tail)


def test_an_odd_byte_waits_for_the_rest_of_its_sample() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)
    pcm = pcm_of(4803)
    frames = batcher.audio(pcm[:4801], 0.0)
    assert len(frames) == 1 and batcher.buffered_bytes == 1
    assert batcher.next_deadline() is None and batcher.due(10.0) == []
    assert batcher.flush(10.0) == []
    frames += batcher.audio(pcm[4801:], 10.0)
    assert batcher.next_deadline() == pytest.approx(0.1)  # the odd byte arrived at 0
    frames += batcher.due(10.0)
    assert audio_of(frames) == pcm[:4802] and batcher.buffered_bytes == 1
    check_seq(frames)


def test_no_audio_is_lost_when_an_event_cannot_be_encoded() -> None:
    batcher = OutboundBatcher(max_frame_bytes=MIN_FRAME_BYTES)
    batcher.audio(pcm_of(100), 0.0)
    with pytest.raises(ValueError, match="fixed fields"):
        batcher.session("ready", "c" * 2000, "m", "v", 0.0)
    with pytest.raises(ValueError, match="audio"):
        batcher.event({"type": "audio", "data": ""}, 0.0)
    with pytest.raises(ValueError, match="clear_audio"):
        batcher.event({"type": "clear_audio", "reason": "client"}, 0.0)
    with pytest.raises(ValueError, match="seq"):
        batcher.event({"type": "turn_end", "seq": 1}, 0.0)
    with pytest.raises(ValueError, match="max_frame_bytes"):
        batcher.event({"type": "note", "text": "x" * 2000}, 0.0)
    with pytest.raises(ValueError, match="status"):
        batcher.tool("c", "n", "done", 0.0)  # type: ignore[arg-type]
    assert batcher.buffered_bytes == 100 and batcher.next_seq == 0
    frames = batcher.turn_end(0.0)
    assert audio_of(frames) == pcm_of(100)
    check_seq(frames)


# -- barge-in --------------------------------------------------------------------------------


def test_barge_in_drops_buffered_audio_and_returns_clear_audio() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)
    sent = batcher.audio(pcm_of(4800 * 2 + 1000), 0.0)
    assert len(sent) == 2 and batcher.buffered_bytes == 1000
    clear = batcher.barge_in("barge_in", 0.01)
    assert decoded(clear) == [{"type": "clear_audio", "seq": 2, "reason": "barge_in"}]
    assert batcher.buffered_bytes == 0 and batcher.next_deadline() is None
    assert batcher.counters.dropped_bytes == 1000
    assert batcher.counters.dropped_ms == pytest.approx(1000 / 48)
    after = batcher.audio(pcm_of(4800, 9), 0.02)
    assert audio_of(after) == pcm_of(4800, 9) and frame_seq(after[0]) == 3
    assert decoded(batcher.barge_in("client", 0.03))[0]["reason"] == "client"
    assert batcher.counters.dropped_bytes == 1000  # nothing was buffered the second time
    with pytest.raises(ValueError, match="reason"):
        batcher.barge_in("user", 0.04)  # type: ignore[arg-type]
    assert batcher.next_seq == 5
    check_seq(sent + clear + after)


def test_sender_queue_filtering_keeps_every_non_audio_frame() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=20)
    queue = batcher.assistant_text("Sure.", False, 0.0) + batcher.audio(pcm_of(9600), 0.0)
    queue += batcher.tool("c", "weather", "started", 0.0) + batcher.audio(pcm_of(1920), 0.0)
    clear = batcher.barge_in("barge_in", 0.0)
    kept = [frame for frame in queue if not is_audio_frame(frame)] + clear
    assert [json.loads(f)["type"] for f in kept] == ["text", "tool", "clear_audio"]
    assert frame_seq(clear[0]) > max(frame_seq(frame) for frame in queue)


# -- text that does not fit one frame ------------------------------------------------------


@pytest.mark.parametrize("max_frame_bytes", [MIN_FRAME_BYTES, 4096, MAX_FRAME_BYTES])
def test_long_text_is_split_into_pieces_that_join_back(max_frame_bytes: int) -> None:
    batcher = OutboundBatcher(max_frame_bytes=max_frame_bytes)
    words = random.Random(5).choices(["hello", "wörld", "👋", "a" * 40, "\n", '"q"'], k=6000)
    text = " ".join(words)
    frames = batcher.transcript(text, 0.0)
    assert len(frames) > 1
    pieces = decoded(frames)
    assert "".join(p["text"] for p in pieces) == text
    assert [p.get("continues", False) for p in pieces] == [True] * (len(pieces) - 1) + [False]
    assert all(len(frame) <= max_frame_bytes for frame in frames)
    # pieces are as large as the limit allows, give or take the split at a space
    assert all(len(frame) > max_frame_bytes // 2 - 100 for frame in frames[:-1])
    check_seq(frames)
    spoken = batcher.assistant_text(text, True, 1.0)
    assert all(p["final"] is True for p in decoded(spoken))
    assert "".join(p["text"] for p in decoded(spoken)) == text
    check_seq(spoken, first=len(frames))
    assert batcher.counters.split_texts == 2


def test_split_text_without_spaces() -> None:
    batcher = OutboundBatcher(max_frame_bytes=MIN_FRAME_BYTES)
    text = "🙂" * 3000  # 12 escaped bytes each
    frames = batcher.assistant_text(text, False, 0.0)
    assert "".join(p["text"] for p in decoded(frames)) == text
    assert all(len(frame) <= MIN_FRAME_BYTES for frame in frames)


def test_messages_are_cut_to_a_bound_and_to_the_frame() -> None:
    batcher = OutboundBatcher()
    [frame] = batcher.error(ErrorCode.SESSION_FAILED, "e" * 50_000, True, None, 0.0)
    message = json.loads(frame)["message"]
    assert len(message) == MAX_MESSAGE_CHARS and message.endswith("…")
    small = OutboundBatcher(max_frame_bytes=MIN_FRAME_BYTES)
    [tool] = small.tool("c", "n", "failed", 0.0, ms=3, error="é" * 900)
    assert len(tool) <= MIN_FRAME_BYTES
    cut = json.loads(tool)["error"]
    assert cut.endswith("…") and cut[:-1] == "é" * (len(cut) - 1)
    assert len(tool) > MIN_FRAME_BYTES - 12  # as long as fits
    [session] = small.session("draining", "c", "m", "v", 0.0, reason="r" * 5000)
    assert len(session) <= MIN_FRAME_BYTES and json.loads(session)["reason"].endswith("…")
    [short] = batcher.error(ErrorCode.INTERNAL, "fine", False, None, 0.0)
    assert json.loads(short)["message"] == "fine"
    assert (batcher.counters.truncated_messages, small.counters.truncated_messages) == (1, 2)


def test_counters_add_up_over_a_conversation() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)
    frames = batcher.session("ready", "c", "m", "v", 0.0)
    frames += stream(batcher, pcm_of(48000))
    batcher.audio(pcm_of(700), 5.0)
    frames += batcher.barge_in("barge_in", 5.0)
    counters = batcher.counters
    assert counters.frames == len(frames) == batcher.next_seq
    assert counters.audio_frames == sum(map(is_audio_frame, frames)) == 10
    assert counters.frame_bytes == sum(map(len, frames))
    assert (counters.audio_bytes, counters.dropped_bytes) == (48000, 700)
    assert counters.audio_ms == pytest.approx(1000)
    assert counters.dropped_ms == pytest.approx(700 / 48)


def test_configure_changes_rate_and_batch_without_restarting_seq() -> None:
    batcher = OutboundBatcher(sample_rate=24000, batch_ms=100)
    frames = batcher.pong(1, 0.0) + batcher.audio(pcm_of(1001), 0.0)
    flushed = batcher.configure(0.1, sample_rate=16000, batch_ms=200)
    assert [json.loads(f)["sample_rate"] for f in flushed] == [24000]
    assert audio_of(flushed) == pcm_of(1001)[:1000]
    assert batcher.buffered_bytes == 0 and batcher.counters.dropped_bytes == 1  # the odd byte
    assert (batcher.sample_rate, batcher.batch_ms, batcher.frame_pcm_bytes) == (16000, 200, 6400)
    after = batcher.audio(pcm_of(6400), 0.2)
    assert json.loads(after[0])["sample_rate"] == 16000 and json.loads(after[0])["ms"] == 200
    [session] = batcher.session("ready", "c", "m", "v", 0.3)
    assert (json.loads(session)["output_sample_rate"], json.loads(session)["batch_ms"]) == (
        16000,
        200,
    )
    check_seq(frames + flushed + after + [session])
    batcher.audio(pcm_of(10), 0.4)
    with pytest.raises(ValueError, match="sample_rate"):
        batcher.configure(0.4, sample_rate=44100)
    with pytest.raises(ValueError, match="batch_ms"):
        batcher.configure(0.4, batch_ms=5)
    assert batcher.buffered_bytes == 10 and batcher.sample_rate == 16000  # nothing changed
    assert batcher.configure(0.5, batch_ms=20) != [] and batcher.frame_pcm_bytes == 640
