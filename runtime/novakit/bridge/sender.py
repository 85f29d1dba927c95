"""One ordered sender per connection: frames are posted to ``@connections`` one at a time.

API Gateway documents no ordering between separate posts, so a connection never has two in
flight. Barge-in drops the audio still queued and puts ``clear_audio`` at the head of the queue,
so the client stops playback before anything else arrives. A client that left (410) ends the
sender and tells the session; a frame that cannot be delivered after retries is counted and
logged, and the ones behind it still go.

Metrics, per frame posted: ``OutputLatencyMs`` (queued to posted, including the wait behind the
connection's earlier frames: Nova generates faster than real time, so an answer's frames queue
up), ``OutputDelayMs`` (the part the bridge adds: from when the frame could go, queued and the
previous post done, to its post starting) and ``PostLatencyMs`` (the post itself). Per barge-in:
``BargeInMs``, the model's interruption to ``clear_audio`` posted, and ``StaleAudioFrames``,
audio of the interrupted answer posted after the clear (the design says none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from .connections import ConnectionGone, ConnectionsClient, PostError
from .metrics import Metrics
from .protocol import frame_seq, is_audio_frame

log = logging.getLogger(__name__)


class OrderedSender:
    def __init__(
        self,
        connection_id: str,
        client: ConnectionsClient,
        metrics: Metrics,
        *,
        on_gone: Callable[[], None],
        max_queued: int = 2000,
    ) -> None:
        self.connection_id = connection_id
        self._client = client
        self._metrics = metrics
        self._on_gone = on_gone
        # (frame, when it was queued): the wait is part of the latency the client sees
        self._queue: deque[tuple[str, float]] = deque()
        # a clear_audio frame still to post, and when the interruption it answers happened
        self._clear: tuple[str, float] | None = None
        self._cleared_below = 0  # audio frames with a lower seq belong to an interrupted answer
        self._max_queued = max_queued
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._gone = False
        self._closing = False
        self.posted = 0
        self.failed = 0
        self.dropped_audio_frames = 0
        self._task = asyncio.create_task(self._run(), name=f"sender-{connection_id}")

    @property
    def gone(self) -> bool:
        return self._gone

    def send(self, frames: Iterable[str]) -> None:
        if self._gone:
            return
        now = time.monotonic()
        self._queue.extend((frame, now) for frame in frames)
        if len(self._queue) > self._max_queued:
            # The client cannot keep up; shed the oldest audio rather than grow without bound.
            self._shed()
        if self._queue:
            self._idle.clear()
            self._wake.set()

    def barge_in(self, clear_frames: Iterable[str], since: float | None = None) -> int:
        """Drop queued audio and send ``clear_frames`` before everything still queued.

        ``since``: when the interruption happened (``time.monotonic()``), for ``BargeInMs``."""
        kept = [item for item in self._queue if not is_audio_frame(item[0])]
        dropped = len(self._queue) - len(kept)
        self.dropped_audio_frames += dropped
        now = time.monotonic()
        clears = list(clear_frames)
        if clears:
            self._clear = (clears[-1], now if since is None else since)
        self._queue = deque([*((frame, now) for frame in clears), *kept])
        if self._queue and not self._gone:
            self._idle.clear()
            self._wake.set()
        return dropped

    async def drain(self, within: float) -> bool:
        """Wait until everything queued is posted; False if the bound passed first."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, within: float = 5.0) -> None:
        """Post what is queued (bounded), then stop."""
        self._closing = True
        await self.drain(within)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _shed(self) -> None:
        excess = len(self._queue) - self._max_queued
        kept: deque[tuple[str, float]] = deque()
        for item in self._queue:
            if excess > 0 and is_audio_frame(item[0]):
                excess -= 1
                self.dropped_audio_frames += 1
                continue
            kept.append(item)
        self._queue = kept
        log.warning(
            "client is not keeping up: dropped queued audio",
            extra={"connection_id": self.connection_id, "queued": len(kept)},
        )

    async def _run(self) -> None:
        metrics = self._metrics
        free_since = 0.0  # when the previous post finished
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            frame, queued_at = self._queue.popleft()
            started = time.monotonic()
            metrics.observe("OutputDelayMs", (started - max(queued_at, free_since)) * 1000)
            try:
                latency = await self._client.post(self.connection_id, frame.encode())
            except ConnectionGone:
                self._gone = True
                self._queue.clear()
                self._idle.set()
                log.info("client left", extra={"connection_id": self.connection_id})
                self._on_gone()
                return
            except PostError as exc:
                self.failed += 1
                metrics.count("PostFailures")
                log.error(
                    "could not post a frame: %s", exc, extra={"connection_id": self.connection_id}
                )
                free_since = time.monotonic()
                continue
            free_since = done = time.monotonic()
            self.posted += 1
            metrics.observe("PostLatencyMs", latency * 1000)
            metrics.observe("OutputLatencyMs", (done - queued_at) * 1000)
            if self._cleared_below and is_audio_frame(frame):
                if frame_seq(frame) < self._cleared_below:
                    metrics.count("StaleAudioFrames")
            elif self._clear is not None and frame is self._clear[0]:
                metrics.observe("BargeInMs", (done - self._clear[1]) * 1000)
                self._cleared_below = frame_seq(frame)
                self._clear = None
