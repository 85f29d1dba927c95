"""The ordered sender: one post at a time, barge-in drops queued audio, Gone ends it."""

from __future__ import annotations

import asyncio

import pytest

from novakit.bridge import sender as sender_module
from novakit.bridge.batching import OutboundBatcher
from novakit.bridge.connections import ConnectionGone, PostError
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import encode_audio
from novakit.bridge.sender import FRAME_OVERHEAD, OrderedSender


class FakeClock:
    """Stands in for the ``time`` module in the sender: a monotonic clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class FakeConnections:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail: dict[int, Exception] = {}
        self.started = asyncio.Event()  # a post has begun
        self.deleted: list[str] = []

    async def delete(self, connection_id: str) -> None:
        self.deleted.append(connection_id)

    async def post(self, connection_id: str, data: bytes, *, before_retry: object = None) -> float:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started.set()
        try:
            await self.gate.wait()
            index = len(self.posted)
            if index in self.fail:
                error = self.fail.pop(index)
                raise error
            self.posted.append(data.decode())
            return 0.001
        finally:
            self.in_flight -= 1


def frames(batcher: OutboundBatcher) -> list[str]:
    out = batcher.transcript("hello", 0.0)
    out += batcher.audio(bytes(4800 * 3), 0.0)  # three 100 ms audio frames
    out += batcher.assistant_text("Hi", False, 0.0)
    return out


async def test_frames_are_posted_one_at_a_time_in_order() -> None:
    fake = FakeConnections()
    sender = OrderedSender("c=", fake, Metrics(), on_gone=lambda: None)  # type: ignore[arg-type]
    sent = frames(OutboundBatcher())
    sender.send(sent)
    assert await sender.drain(5)
    assert fake.posted == sent
    assert fake.max_in_flight == 1
    await sender.close()


async def test_barge_in_drops_queued_audio_and_clears_first() -> None:
    fake = FakeConnections()
    fake.gate.clear()  # hold the first post so the rest stays queued
    batcher = OutboundBatcher()
    sender = OrderedSender("c=", fake, Metrics(), on_gone=lambda: None)  # type: ignore[arg-type]
    sent = frames(batcher)
    sender.send(sent)
    async with asyncio.timeout(5):
        await fake.started.wait()  # the transcript's post is out
    dropped = sender.barge_in(batcher.barge_in("barge_in", 0.0))
    fake.gate.set()
    assert await sender.drain(5)
    kinds = [frame.split('"type":"')[1].split('"')[0] for frame in fake.posted]
    # the transcript was already in flight; the three audio frames never went; clear came next
    assert kinds == ["transcript", "clear_audio", "text"]
    assert dropped == 3
    await sender.close()


async def test_a_failed_post_is_counted_and_the_next_frames_still_go() -> None:
    fake = FakeConnections()
    fake.fail[1] = PostError(413, "PayloadTooLargeException", "too big")
    metrics = Metrics()
    sender = OrderedSender("c=", fake, metrics, on_gone=lambda: None)  # type: ignore[arg-type]
    sent = frames(OutboundBatcher())
    sender.send(sent)
    assert await sender.drain(5)
    assert fake.posted == [sent[0], *sent[2:]]
    assert sender.failed == 1
    assert metrics.snapshot()["counts"] == {"PostFailures": 1}
    await sender.close()


async def test_gone_stops_the_sender_and_tells_the_session() -> None:
    fake = FakeConnections()
    fake.fail[1] = ConnectionGone("c=")
    told = asyncio.Event()
    sender = OrderedSender("c=", fake, Metrics(), on_gone=told.set)  # type: ignore[arg-type]
    sender.send(frames(OutboundBatcher()))
    async with asyncio.timeout(5):
        await told.wait()
    assert sender.gone and len(fake.posted) == 1
    sender.send(["ignored"])
    assert await sender.drain(1)
    await sender.close()


async def test_a_client_that_cannot_keep_up_loses_old_audio_not_events() -> None:
    fake = FakeConnections()
    fake.gate.clear()
    batcher = OutboundBatcher(batch_ms=20)
    audio = batcher.audio(bytes(960 * 30), 0.0)  # 30 audio frames
    bound = 10 * (len(audio[0]) + FRAME_OVERHEAD)  # room for about ten
    sender = OrderedSender("c=", fake, Metrics(), on_gone=lambda: None, max_bytes=bound)  # type: ignore[arg-type]
    sender.send(audio)
    sender.send(batcher.turn_end(0.0))
    assert sender.queued_bytes <= bound
    fake.gate.set()
    assert await sender.drain(5)
    assert fake.posted[-1].startswith('{"type":"turn_end"')
    assert fake.posted[:-1] == audio[-len(fake.posted) + 1 :]  # the newest audio kept, in order
    assert len(fake.posted) <= 11 and sender.dropped_audio_frames >= 20
    assert sender.dropped_audio_frames + len(fake.posted) == 31
    await sender.close()


async def test_barge_in_is_timed_to_the_clear_posted_and_no_stale_audio_follows() -> None:
    fake = FakeConnections()
    fake.gate.clear()  # the transcript's post is in flight when the model is interrupted
    metrics = Metrics()
    batcher = OutboundBatcher()
    sender = OrderedSender("c=", fake, metrics, on_gone=lambda: None)  # type: ignore[arg-type]
    sender.send(frames(batcher))
    async with asyncio.timeout(5):
        await fake.started.wait()
    interrupted_at = asyncio.get_running_loop().time() - 0.5  # the pump saw it 0.5 s ago
    sender.barge_in(batcher.barge_in("barge_in", 0.0), since=interrupted_at)
    # audio of the next answer: newer than the clear, so not stale
    sender.send(batcher.audio(bytes(4800), 0.0))
    fake.gate.set()
    assert await sender.drain(5)
    values = metrics.snapshot()["values"]
    assert isinstance(values, dict)
    (barge_ms,) = values["BargeInMs"]
    assert 500 <= barge_ms < 5000
    assert "StaleAudioFrames" not in metrics.snapshot()["counts"]  # type: ignore[operator]
    # a frame of the interrupted answer posted after the clear would be counted
    sender.send([encode_audio(1, bytes(4800), 24000)])  # seq 1 < the clear's seq 5
    assert await sender.drain(5)
    assert metrics.snapshot()["counts"] == {"StaleAudioFrames": 1}
    await sender.close()


async def test_output_delay_leaves_out_the_wait_behind_earlier_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(1000.0)
    monkeypatch.setattr(sender_module, "time", clock)
    fake = FakeConnections()
    fake.gate.clear()
    metrics = Metrics()
    sender = OrderedSender("c=", fake, metrics, on_gone=lambda: None)  # type: ignore[arg-type]
    sender.send(frames(OutboundBatcher()))  # five frames, queued at once
    async with asyncio.timeout(5):
        await fake.started.wait()
    clock.now += 0.2  # the first post is held: the others wait behind it
    fake.gate.set()
    assert await sender.drain(5)
    values = metrics.snapshot()["values"]
    assert isinstance(values, dict)
    waited = sorted(v for v, n in values["OutputLatencyMs"].items() for _ in range(n))
    delays = [v for v, n in values["OutputDelayMs"].items() for _ in range(n)]
    assert len(delays) == len(waited) == 5
    assert waited[-1] >= 200  # queued to posted includes the held post
    assert max(delays) < 100  # but each frame went as soon as the one before it was done
    await sender.close()
