"""One ordered sender per connection: frames are posted to ``@connections`` one at a time.

API Gateway documents no ordering between separate posts, so a connection never has two in
flight. Barge-in drops the audio still queued and puts ``clear_audio`` at the head of the queue,
so the client stops playback before anything else arrives. A client that left (410) ends the
sender and tells the session; a frame that cannot be delivered after retries is counted and
logged, and the ones behind it still go.

The queue is bounded in bytes (``max_bytes``; each frame counts its text plus
``FRAME_OVERHEAD`` for the objects that hold it), so a client that does not read cannot grow the
bridge. Over the bound the sender sheds, in this order: pongs (all but the newest) and non-fatal
error frames, down to three quarters of the bound; then the oldest audio, down to the bound.
Transcripts, text, tool, turn and session frames are never dropped: if they alone overflow the
bound, or if API Gateway keeps answering 429 (the client's buffer is full) for longer than
``throttled_seconds`` (an episode ends after ``THROTTLE_CLEAR`` without a 429, not at the first
small frame that fits), the sender stops, hangs up (``DELETE @connections/{id}``) and tells the
session why. A frame answered 429 stays at the head of the queue and is tried again. What was
shed is logged once per episode (from the first frame shed until the queue is back under half
the bound, or the sender stops), with counts, and counted in ``ShedFrames``.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ..s2s import FencedError
from .connections import ConnectionGone, ConnectionsClient, PostError
from .dialects.base import FrameKinds
from .dialects.v1 import V1
from .metrics import Metrics

log = logging.getLogger(__name__)

#: Bytes a queued frame costs besides its text: the str header, the (frame, time) tuple, the
#: float and the deque slot (CPython 3.12, 64-bit). A queue of pongs is mostly this.
FRAME_OVERHEAD = 160
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_THROTTLED_SECONDS = 10.0
THROTTLED_PAUSE = 0.2  # between tries of a frame answered 429, on top of the client's backoff
# A 429 episode ends only after this long without one: a full buffer that takes a small frame
# now and then (room for a pong, not for audio) is still a client that does not read.
THROTTLE_CLEAR = 1.0
HANG_UP_TIMEOUT = 5.0  # bound on the DELETE when a client that does not read is let go
OPENING_RETRY_SECONDS = 0.05  # between tries of a frame answered 410 while the connection opens


@dataclass(slots=True)
class ShedEpisode:
    """What one episode of shedding dropped, for its single log line."""

    started: float
    pongs: int = 0
    errors: int = 0
    audio: int = 0
    bytes: int = 0

    @property
    def frames(self) -> int:
        return self.pongs + self.errors + self.audio

    def counts(self) -> dict[str, int]:
        return {
            "pongs": self.pongs,
            "errors": self.errors,
            "audio": self.audio,
            "bytes": self.bytes,
        }


class OrderedSender:
    def __init__(
        self,
        connection_id: str,
        client: ConnectionsClient,
        metrics: Metrics,
        *,
        on_gone: Callable[[], None],
        on_stalled: Callable[[str], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        throttled_seconds: float = DEFAULT_THROTTLED_SECONDS,
        guard: Callable[[], Awaitable[None]] | None = None,
        kinds: FrameKinds = V1.kinds,
        opening_seconds: float = 0.0,
    ) -> None:
        self.connection_id = connection_id
        # How the client protocol's frames are told apart (audio, pongs, errors, order).
        self._kinds = kinds
        # A frame posted right after $connect may reach API Gateway before it has opened the
        # connection (410): until the first post lands, 410 is retried for this long.
        self._opening_until = time.monotonic() + opening_seconds if opening_seconds else None
        self._client = client
        self._metrics = metrics
        self._on_gone = on_gone
        self._on_stalled = on_stalled
        # The session lease's guard: after this task stalled, a post waits until the session
        # is confirmed as still this task's (an answer cut off by a takeover is not finished
        # here while the new owner speaks).
        self._guard = guard
        # (frame, when it was queued): the wait is part of the latency the client sees
        self._queue: deque[tuple[str, float]] = deque()
        self._bytes = 0  # what the queue costs, FRAME_OVERHEAD included
        # a clear_audio frame still to post, and when the interruption it answers happened
        self._clear: tuple[str, float] | None = None
        self._cleared_below = 0  # audio frames with a lower seq belong to an interrupted answer
        self.max_bytes = max_bytes
        self.throttled_seconds = throttled_seconds
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._gone = False
        self._closing = False
        self._episode: ShedEpisode | None = None
        self._throttled_since: float | None = None  # first 429 of the current episode
        self._last_throttled = 0.0
        self.stalled: str | None = None  # why the sender stopped and hung up, if it did
        self.posted = 0
        self.failed = 0
        self.throttled = 0
        self.dropped_audio_frames = 0
        self.peak_bytes = 0
        self.shed = ShedEpisode(0.0)  # totals over the connection
        self._task = asyncio.create_task(self._run(), name=f"sender-{connection_id}")

    @property
    def gone(self) -> bool:
        """No more frames go out: the client left, or the sender stopped and hung up."""
        return self._gone

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def send(self, frames: Iterable[str]) -> None:
        if self._gone:
            return
        now = time.monotonic()
        for frame in frames:
            self._queue.append((frame, now))
            self._bytes += len(frame) + FRAME_OVERHEAD
        if self._bytes > self.max_bytes:
            self._shed(now)
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        if self._queue:
            self._idle.clear()
            self._wake.set()

    def barge_in(self, clear_frames: Iterable[str], since: float | None = None) -> int:
        """Drop queued audio and send ``clear_frames`` before everything still queued.

        ``since``: when the interruption happened (``time.monotonic()``), for ``BargeInMs``."""
        kept = [item for item in self._queue if not self._kinds.is_audio(item[0])]
        dropped = len(self._queue) - len(kept)
        self.dropped_audio_frames += dropped
        now = time.monotonic()
        clears = list(clear_frames)
        if clears:
            self._clear = (clears[-1], now if since is None else since)
        cleared = [(frame, now) for frame in clears]
        self._queue = deque([*cleared, *kept] if self._kinds.clear_first else [*kept, *cleared])
        self._bytes = sum(len(frame) + FRAME_OVERHEAD for frame, _ in self._queue)
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
        if self.stalled is not None:  # let the hang-up finish (bounded)
            await asyncio.wait({self._task}, timeout=max(within, HANG_UP_TIMEOUT))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _shed(self, now: float) -> None:
        """Bring the queue back under ``max_bytes`` (see the module's docstring for the order)."""
        episode = self._episode
        before = self._bytes
        pongs = errors = audio = 0
        # Pongs and errors first, oldest first, down to three quarters of the bound: a client
        # this far behind gains nothing from them, and shedding below the bound keeps one
        # pass from running per frame while pings keep coming.
        target = self.max_bytes * 3 // 4
        newest_pong = next(
            (
                i
                for i in range(len(self._queue) - 1, -1, -1)
                if self._kinds.is_pong(self._queue[i][0])
            ),
            -1,
        )
        kept: deque[tuple[str, float]] = deque()
        for index, item in enumerate(self._queue):
            frame = item[0]
            if self._bytes > target and index != newest_pong:
                if self._kinds.is_pong(frame):
                    pongs += 1
                    self._bytes -= len(frame) + FRAME_OVERHEAD
                    continue
                if self._kinds.is_nonfatal_error(frame):
                    errors += 1
                    self._bytes -= len(frame) + FRAME_OVERHEAD
                    continue
            kept.append(item)
        if self._bytes > self.max_bytes:  # then the oldest audio, down to the bound
            queue, kept = kept, deque()
            for item in queue:
                frame = item[0]
                if self._bytes > self.max_bytes and self._kinds.is_audio(frame):
                    audio += 1
                    self._bytes -= len(frame) + FRAME_OVERHEAD
                    continue
                kept.append(item)
        self._queue = kept
        if pongs or errors or audio:
            if episode is None:
                episode = self._episode = ShedEpisode(now)
            for total in (episode, self.shed):
                total.pongs += pongs
                total.errors += errors
                total.audio += audio
                total.bytes += before - self._bytes
            self.dropped_audio_frames += audio
            self._metrics.count("ShedFrames", pongs + errors + audio)
        if self._bytes > self.max_bytes:
            # Only frames that must not be lost silently are left: stop, and say so.
            self._stall(f"the client is not reading: over {self.max_bytes} bytes of output waiting")

    def _end_episode(self, now: float) -> None:
        episode, self._episode = self._episode, None
        if episode is None or not episode.frames:
            return
        log.warning(
            "client is not keeping up: dropped %d queued frames in %.1f s",
            episode.frames,
            now - episode.started,
            extra={
                "connection_id": self.connection_id,
                **episode.counts(),
                "peak_bytes": self.peak_bytes,
            },
        )

    def _stall(self, reason: str) -> None:
        """Stop sending for good: hang up on the client and tell the session ``reason``."""
        if self._gone:
            return
        self._gone = True
        self.stalled = reason
        self._queue.clear()
        self._bytes = 0
        self._end_episode(time.monotonic())
        self._metrics.count("StalledClients")
        log.warning(
            "%s: hanging up",
            reason,
            extra={"connection_id": self.connection_id, "peak_bytes": self.peak_bytes},
        )
        self._wake.set()  # the run loop hangs up, then ends
        if self._on_stalled is not None:
            self._on_stalled(reason)

    async def _run(self) -> None:
        metrics = self._metrics
        free_since = 0.0  # when the previous post finished
        while True:
            if self.stalled is not None:
                await self._hang_up()
                return
            if not self._queue:
                self._end_episode(time.monotonic())
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._episode is not None and self._bytes <= self.max_bytes // 2:
                self._end_episode(time.monotonic())
            if not await self._may_post():
                return
            frame, queued_at = self._queue.popleft()
            size = len(frame) + FRAME_OVERHEAD
            self._bytes -= size
            started = time.monotonic()
            metrics.observe("OutputDelayMs", (started - max(queued_at, free_since)) * 1000)
            try:
                latency = await self._client.post(
                    self.connection_id, frame.encode(), before_retry=self._guard
                )
            except FencedError:
                self._fenced()
                return
            except ConnectionGone:
                if self._opening_until is not None and time.monotonic() < self._opening_until:
                    # Not open yet at API Gateway: the frame waits at the head of the queue.
                    self._queue.appendleft((frame, queued_at))
                    self._bytes += size
                    await asyncio.sleep(OPENING_RETRY_SECONDS)
                    continue
                self._client_left()
                return
            except PostError as exc:
                free_since = time.monotonic()
                if self._gone:
                    continue  # stopped while the post was out: the loop hangs up
                if exc.status == 429:
                    # The client's buffer is full: the frame waits at the head of the queue.
                    self._queue.appendleft((frame, queued_at))
                    self._bytes += size
                    if self._throttled(started, free_since):
                        await asyncio.sleep(THROTTLED_PAUSE)  # its buffer empties at its pace
                    continue
                self.failed += 1
                metrics.count("PostFailures")
                log.error(
                    "could not post a frame: %s", exc, extra={"connection_id": self.connection_id}
                )
                continue
            free_since = time.monotonic()
            self._opening_until = None
            self._posted(frame, queued_at, latency, free_since)

    def _posted(self, frame: str, queued_at: float, latency: float, done: float) -> None:
        metrics = self._metrics
        if self._throttled_since is not None and done - self._last_throttled > THROTTLE_CLEAR:
            self._throttled_since = None  # the client's buffer emptied: it reads again
        self.posted += 1
        metrics.observe("PostLatencyMs", latency * 1000)
        metrics.observe("OutputLatencyMs", (done - queued_at) * 1000)
        if self._cleared_below and self._kinds.is_audio(frame):
            if self._kinds.order(frame) < self._cleared_below:
                metrics.count("StaleAudioFrames")
        elif self._clear is not None and frame is self._clear[0]:
            metrics.observe("BargeInMs", (done - self._clear[1]) * 1000)
            self._cleared_below = self._kinds.order(frame)
            self._clear = None

    async def _may_post(self) -> bool:
        """False once another task owns the session: nothing more is posted from here."""
        if self._guard is None:
            return True
        try:
            await self._guard()
        except FencedError:
            self._fenced()
            return False
        return True

    def _fenced(self) -> None:
        """Another task owns the session: drop what is queued, post nothing more."""
        self._gone = True
        self._metrics.count("FramesFenced", len(self._queue))
        self._queue.clear()
        self._bytes = 0
        self._idle.set()
        if self._on_stalled is not None:
            self._on_stalled("ownership moved")

    def _client_left(self) -> None:
        self._gone = True
        self._queue.clear()
        self._bytes = 0
        self._end_episode(time.monotonic())
        self._idle.set()
        log.info("client left", extra={"connection_id": self.connection_id})
        self._on_gone()

    def _throttled(self, started: float, now: float) -> bool:
        """Note a post answered 429; False once the episode is too long (the sender stalls)."""
        self.throttled += 1
        self._metrics.count("ThrottledPosts")
        self._last_throttled = now
        if self._throttled_since is None:
            self._throttled_since = started
        elif now - self._throttled_since > self.throttled_seconds:
            self._stall(
                "the client is not reading: @connections answered 429 for over"
                f" {self.throttled_seconds:g} s"
            )
            return False
        return True

    async def _hang_up(self) -> None:
        self._idle.set()
        if not await self._may_post():
            return  # another task holds the conversation now: the connection is its own
        try:
            await self._client.delete(self.connection_id)
        except ConnectionGone:
            pass
        except PostError as exc:
            log.warning(
                "could not hang up on a client that is not reading: %s",
                exc,
                extra={"connection_id": self.connection_id},
            )
