"""A client that never reads cannot grow the bridge: the sender's queue is bounded in bytes,
pongs and errors go first, then audio, never a transcript silently; error frames are rate
limited; a client whose posts keep getting 429 is hung up on; the "dropped" warning comes once
per episode, with true counts, and only when something was dropped.

The sender and the session run against fake ``@connections`` clients here; the last test runs
the real local stack (local gateway, ``novakit bridge`` process, emulator) with clients that never
read their socket, and watches the bridge process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import websockets

from novakit import s2s
from novakit.bridge import session as session_module
from novakit.bridge.batching import OutboundBatcher
from novakit.bridge.connections import PostError
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import ClientPing, ErrorCode, FrameRef, ProtocolError
from novakit.bridge.sender import FRAME_OVERHEAD, OrderedSender
from novakit.bridge.session import ERROR_BURST, BridgeSession, State
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tools import ToolRunner

from ..bridge.test_session import FakeEngine
from ..stack.conftest import local_stack

pytestmark = pytest.mark.timeout(120)


class StuckClient:
    """``@connections`` for a client that does not read: posts wait behind a gate (the
    gateway still accepting, slowly) or are answered 429 (its buffer is full)."""

    def __init__(self, *, throttle: bool = False) -> None:
        self.posted: list[str] = []
        self.deleted: list[str] = []
        self.gate = asyncio.Event()
        self.throttle = throttle
        self.every_other = False  # while throttled, every other post is accepted
        self.attempts = 0
        self.changed = asyncio.Condition()

    async def post(self, connection_id: str, data: bytes, *, before_retry: object = None) -> float:
        async with self.changed:
            self.attempts += 1
            self.changed.notify_all()
        if self.throttle and not (self.every_other and self.attempts % 2 == 0):
            await asyncio.sleep(0)  # a round trip to the gateway
            raise PostError(429, "LimitExceededException", "the client is not reading")
        await self.gate.wait()
        async with self.changed:
            self.posted.append(data.decode())
            self.changed.notify_all()
        return 0.001

    async def delete(self, connection_id: str) -> None:
        async with self.changed:
            self.deleted.append(connection_id)
            self.changed.notify_all()


def kind(frame: str) -> str:
    return frame.split('"type":"', 1)[1].split('"', 1)[0]


def new_sender(client: StuckClient, **options: Any) -> OrderedSender:
    return OrderedSender("c=", client, Metrics(), on_gone=lambda: None, **options)  # type: ignore[arg-type]


async def test_the_queue_stays_under_its_bound_and_sheds_pongs_and_errors_before_audio() -> None:
    client = StuckClient()  # the first post never returns: nothing leaves the queue
    bound = 64 * 1024
    sender = new_sender(client, max_bytes=bound)
    batcher = OutboundBatcher()
    answer = batcher.transcript("what is the weather", 0.0)
    answer += batcher.audio(bytes(4800 * 6), 0.0)  # six 100 ms frames, about 40 KB queued
    sender.send(answer)
    async with asyncio.timeout(5), client.changed:
        await client.changed.wait_for(lambda: client.attempts >= 1)  # the transcript's is out
    peak = 0
    for n in range(20_000):  # a hostile client: pings and bad frames, never reading
        error = ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON", ref=FrameRef())
        sender.send(batcher.pong(n, 0.0) if n % 2 else batcher.protocol_error(error, 0.0))
        peak = max(peak, sender.queued_bytes)
    assert peak <= bound
    assert sender.shed.audio == 0  # pongs and errors made all the room needed
    assert sender.shed.pongs + sender.shed.errors > 19_000
    queued = [frame for frame, _ in sender._queue]
    assert [f for f in queued if kind(f) in ("transcript", "audio")] == answer[1:]  # 1st in flight
    # audio is shed next, oldest first, when pongs and errors are not enough
    sender.send(batcher.audio(bytes(4800 * 6), 0.0))
    sender.send(batcher.turn_end(0.0))
    assert sender.queued_bytes <= bound and sender.shed.audio > 0
    kinds = [kind(frame) for frame, _ in sender._queue]
    assert kinds.count("transcript") == 0 and kinds[-1] == "turn_end"  # the transcript is out
    assert sender.stalled is None
    client.gate.set()
    assert await sender.drain(5)
    await sender.close()


async def test_frames_that_must_not_be_lost_stop_the_sender_and_hang_up() -> None:
    client = StuckClient()
    stalled: list[str] = []
    bound = 64 * 1024
    sender = new_sender(client, max_bytes=bound, on_stalled=stalled.append)
    batcher = OutboundBatcher()
    text = "a long answer " * 200
    total = 0
    while not sender.gone:
        assert total <= bound  # it stops on crossing the bound, not before
        frames = batcher.transcript(text, 0.0)
        total += sum(len(frame) + FRAME_OVERHEAD for frame in frames)
        sender.send(frames)
    assert total > bound
    assert len(stalled) == 1 and "not reading" in stalled[0]
    async with asyncio.timeout(5), client.changed:
        await client.changed.wait_for(lambda: client.deleted == ["c="])
    assert sender.queued_bytes == 0 and sender.shed.frames == 0  # nothing dropped silently
    await sender.close()


async def test_a_sender_whose_session_moved_stalls_without_hanging_up() -> None:
    """Another task took the conversation over: this task's sender, stalled, does not close the
    connection the new owner now serves."""
    client = StuckClient()
    moved = False

    async def guard() -> None:
        if moved:
            raise s2s.FencedError("another task holds the conversation")

    sender = new_sender(client, max_bytes=64 * 1024, guard=guard)
    batcher = OutboundBatcher()
    sender.send(batcher.transcript("first", 0.0))
    async with asyncio.timeout(5), client.changed:
        await client.changed.wait_for(lambda: client.attempts >= 1)  # stuck in its first post
    moved = True
    while not sender.gone:  # then frames that must not be lost fill the queue: it stalls
        sender.send(batcher.transcript("a long answer " * 200, 0.0))
    client.gate.set()
    await sender.close()
    assert sender.stalled is not None
    assert client.deleted == []


async def test_posts_answered_429_past_the_limit_end_the_session_and_delete_the_connection() -> (
    None
):
    client = StuckClient(throttle=True)
    engine = FakeEngine()
    session = BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1", throttled_seconds=1),
        connections=client,  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=Metrics(),
        on_ended=lambda s: None,
    )
    started = time.monotonic()
    session.receive(ClientPing("x"))
    assert await session.wait_ended(15)
    took = time.monotonic() - started
    assert client.deleted == ["c="]
    assert session.sender.stalled is not None and "429" in session.sender.stalled
    assert 1.0 <= took < 10
    assert client.posted == []  # nothing ever went; no frame was claimed as posted
    assert session.state is State.ENDED


async def test_a_full_buffer_that_takes_a_frame_now_and_then_is_still_not_reading() -> None:
    client = StuckClient(throttle=True)
    client.every_other = True  # room for one frame after each 429: a trickle, not reading
    client.gate.set()
    stalled: list[str] = []
    sender = new_sender(client, throttled_seconds=1, on_stalled=stalled.append)
    batcher = OutboundBatcher()
    started = time.monotonic()
    sender.send([frame for n in range(200) for frame in batcher.pong(n, 0.0)])
    async with asyncio.timeout(10), client.changed:
        await client.changed.wait_for(lambda: client.deleted == ["c="])
    assert time.monotonic() - started >= 1.0
    assert len(stalled) == 1 and "429" in stalled[0]
    assert 0 < len(client.posted) < 200  # frames did go through meanwhile
    await sender.close()


async def test_a_short_429_episode_loses_nothing() -> None:
    client = StuckClient(throttle=True)
    sender = new_sender(client, throttled_seconds=30)
    batcher = OutboundBatcher()
    sent = batcher.transcript("hello", 0.0) + batcher.turn_end(0.0)
    sender.send(sent)
    async with asyncio.timeout(5), client.changed:
        await client.changed.wait_for(lambda: client.attempts >= 3)  # the head, tried again
    client.throttle = False  # the client reads again
    client.gate.set()
    assert await sender.drain(5)
    assert client.posted == sent and sender.throttled >= 3 and sender.failed == 0
    assert client.deleted == []
    await sender.close()


async def test_error_frames_are_rate_limited_per_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(session_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    client = StuckClient()
    client.gate.set()
    engine = FakeEngine()
    session = BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1", error_frames_per_second=5),
        connections=client,  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=Metrics(),
        on_ended=lambda s: None,
    )
    for _ in range(2000):  # within one instant of the session's clock
        session.reject(ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON"))
    assert await session.sender.drain(5)
    assert len(client.posted) == ERROR_BURST
    now[0] += 0.2  # one token back
    session.reject(ProtocolError(ErrorCode.BAD_AUDIO, "odd length"))
    session.reject(ProtocolError(ErrorCode.BAD_AUDIO, "odd length"))
    assert await session.sender.drain(5)
    assert len(client.posted) == ERROR_BURST + 1
    last = json.loads(client.posted[-1])
    assert last["code"] == "bad_audio"
    assert "(1980 earlier errors not sent: too many)" in last["message"]
    # a fatal error always goes
    session.reject(ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "v2"))
    assert await session.wait_ended(5)
    assert any(json.loads(f).get("fatal") is True for f in client.posted)


async def test_one_dropped_warning_per_episode_with_true_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = StuckClient()
    sender = new_sender(client)  # the default bound, 1 MiB
    batcher = OutboundBatcher()
    with caplog.at_level(logging.INFO, logger="novakit.bridge.sender"):
        # no episode: thousands of frames queued, under the bound: nothing dropped, nothing said
        for n in range(2500):
            sender.send(batcher.pong(n, 0.0))
        assert sender.queued_bytes < sender.max_bytes
        client.gate.set()
        assert await sender.drain(5)
        assert not [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(client.posted) == 2500
        # an episode: 5,000 pongs into a stuck queue bounded at 32 KB, then it drains
        sender.max_bytes = 32 * 1024
        client.gate.clear()
        for n in range(5000):
            sender.send(batcher.pong(n, 0.0))
        client.gate.set()
        assert await sender.drain(5)
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1
    record: Any = warnings[0]
    assert record.pongs == 7500 - len(client.posted)  # true counts: sent minus posted
    assert record.pongs == sender.shed.pongs > 4000
    assert (record.errors, record.audio) == (0, 0)
    assert record.connection_id == "c="
    await sender.close()


# -- through the real local stack ------------------------------------------------------------


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def non_reader(url: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Asks, pings and sends bad frames, never reads; connects again when hung up on."""
    host, port = url_host_port(url)
    while not stop.is_set():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: stuck soon
        try:
            sock.connect((host, port))
            async with websockets.connect(url, sock=sock, max_queue=1, open_timeout=30) as ws:
                counts["connections"] += 1
                await ws.send('{"type":"text","text":"tell me a long story"}')
                n = 0
                while not stop.is_set():
                    n += 1
                    await ws.send(f'{{"type":"ping","id":{n}}}')
                    await ws.send("{not json" if n % 2 else '{"type":"bogus"}')
                    if n % 10 == 0:
                        await ws.send('{"type":"text","text":"and another one"}')
                    await asyncio.sleep(0.002)  # the client's pace
        except (websockets.ConnectionClosed, OSError):
            counts["hung_up"] += 1
        finally:
            sock.close()


def url_host_port(url: str) -> tuple[str, int]:
    host_port = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0]
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


RSS_GROWTH_BOUND_MB = 96


@pytest.mark.timeout(240)
async def test_clients_that_never_read_leave_the_bridge_bounded(tmp_path: Path) -> None:
    """Three clients that never read, for at least 25 s and until each was hung up on once
    (bounded: 150 s), through the real stack: every sender's queue stays under its bound, the
    clients are hung up on, and the bridge's RSS stays under RSS_GROWTH_BOUND_MB of growth."""
    bound = 256 * 1024
    async with local_stack(
        tmp_path,
        gateway_options={"outbound_buffer": 128 * 1024},
        NOVAKIT_OUTPUT_QUEUE_BYTES=str(bound),
        NOVAKIT_THROTTLED_SECONDS="3",
    ) as stack:
        pid = stack.bridge.pid
        counts = {"connections": 0, "hung_up": 0}
        stop = asyncio.Event()
        clients = [asyncio.create_task(non_reader(stack.url, stop, counts)) for _ in range(3)]
        started = time.monotonic()
        samples: list[int] = []
        try:
            while True:
                samples.append(vm_rss_kb(pid))
                elapsed = time.monotonic() - started
                if (elapsed >= 25 and counts["hung_up"] >= 3) or elapsed >= 150:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)  # a sample a second
        finally:
            stop.set()
            await asyncio.gather(*clients)
        samples.append(vm_rss_kb(pid))
    records = [
        json.loads(line)
        for line in (tmp_path / "bridge.log").read_text().splitlines()
        if line.startswith("{")
    ]
    # RSS climbs in steps while the first queues fill and spikes for a second or two when
    # hung-up clients reconnect (measured here: 10-50 MB, given back), so half a minute cannot
    # tell a slow leak from that noise: the bound below catches a gross one, the queue bounds
    # asserted next are what keeps memory flat, and bench/nonreader.py measures it for 10 min.
    print(f"RSS {samples[0]} kB to {max(samples)} kB")
    print("RSS samples, kB, one a second:", samples)
    assert (max(samples) - samples[0]) / 1024 < RSS_GROWTH_BOUND_MB, samples
    assert counts["hung_up"] >= 3, counts  # clients that do not read were let go
    hang_ups = [r for r in records if "hanging up" in str(r.get("message", ""))]
    assert len(hang_ups) >= 3
    # every report of a sender's queue is under its bound
    peaks = [r["peak_bytes"] for r in records if "peak_bytes" in r]
    assert peaks and max(peaks) <= bound
    # refusals were not logged one per frame: the first, then a line per 10 s, per session
    # (frames that reach the bridge after it hung up start sessions of their own)
    refused = [r for r in records if str(r.get("message", "")).startswith("refused a frame")]
    sessions = [r for r in records if str(r.get("message", "")).startswith("session ending")]
    assert len(refused) <= len(sessions) * (2 + (time.monotonic() - started) / 10)
    # frames that reach the bridge after it hung up start no session of their own
    per_connection = Counter(r["connection_id"] for r in sessions)
    assert max(per_connection.values()) == 1, per_connection
    frames_refused = len(refused) + sum(sum(r.get("counts", {}).values()) for r in refused)
    assert frames_refused > 5 * len(refused)
