"""One accepted client: its frames go to the backends, the backends' posts come back to it.

Four kinds of task serve a connection, started by ``run`` and gone when it returns:

* the receiver (``run`` itself) reads frames, applies the frame limits and queues text frames;
* forwarders (``max_inflight_per_connection`` of them) turn queued frames into ``$default``
  integration requests; with one forwarder a connection's frames reach the backends one at a
  time in arrival order, with more their requests overlap and may complete out of order;
* the sender writes ``@connections`` posts in the order they were accepted, from a queue bounded
  in bytes (a client that stops reading makes further posts fail with 429, not grow memory);
* a watchdog closes the connection when the idle or duration limit expires.

When the connection ends it stops accepting posts at once (they get 410), forwards the frames
that already arrived (within one integration timeout), and reports how it closed; the gateway
then sends ``$disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable
from enum import Enum, auto

from aiohttp import WSMsgType, web

from .backends import BackendPool
from .ids import new_request_id
from .integration import (
    ConnectionContext,
    internal_server_error_frame,
    is_integration_failure,
    message_request,
)
from .limits import (
    ABNORMAL_CLOSURE,
    BINARY_FRAME,
    GOING_AWAY,
    Close,
    ConnectionClock,
    check_text_frame,
    client_close,
)
from .logs import log
from .metering import ConnectionStats, GatewayStats

__all__ = ["CLOSE_TIMEOUT", "Connection", "Delivery"]

CLOSE_TIMEOUT = 5.0  # seconds for a client to answer our close frame before the socket is cut
INBOX_FRAMES = 256  # frames read ahead of the forwarders before reading pauses (TCP pushes back)


class Delivery(Enum):
    """The fate of an ``@connections`` post."""

    QUEUED = auto()
    BUFFER_FULL = auto()
    GONE = auto()


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Connection:
    def __init__(
        self,
        context: ConnectionContext,
        socket: web.WebSocketResponse,
        abort: Callable[[], None],
        *,
        backends: BackendPool,
        stats: ConnectionStats,
        gateway_stats: GatewayStats,
        idle_seconds: float,
        max_seconds: float,
        integration_timeout: float,
        max_inflight: int,
        outbound_buffer: int,
        on_closing: Callable[[Connection], None],
    ) -> None:
        self.context = context
        self.connected_at = datetime.datetime.fromtimestamp(
            context.connected_at_ms / 1000, datetime.UTC
        )
        self.last_active_at = self.connected_at
        self._socket = socket
        self._abort = abort
        self._backends = backends
        self._stats = stats
        self._gateway_stats = gateway_stats
        self._clock = ConnectionClock(
            time.monotonic(), idle_seconds=idle_seconds, max_seconds=max_seconds
        )
        self._integration_timeout = integration_timeout
        self._max_inflight = max_inflight
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(INBOX_FRAMES)
        self._outbox: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._outbox_bytes = 0
        self._outbound_buffer = outbound_buffer
        self._on_closing = on_closing
        self._close: Close | None = None
        self._closer: asyncio.Task[None] | None = None
        self._log_extra = {"connection_id": context.connection_id}

    @property
    def id(self) -> str:
        return self.context.connection_id

    @property
    def open(self) -> bool:
        return self._close is None

    @property
    def final_close(self) -> Close:
        """How the connection ended (an abnormal closure until it is known)."""
        return self._close or ABNORMAL_CLOSURE

    # -- called by the gateway ---------------------------------------------------------------

    def post(self, frame: str, size: int) -> Delivery:
        """Queue ``frame`` (``size`` bytes of UTF-8) for the client, if it fits the buffer."""
        if not self.open:
            return Delivery.GONE
        if self._outbox_bytes + size > self._outbound_buffer:
            return Delivery.BUFFER_FULL
        self._outbox.put_nowait((frame, size))
        self._outbox_bytes += size
        return Delivery.QUEUED

    def close(self, close: Close) -> None:
        """Close the socket with ``close`` (the first close requested wins)."""
        if self._mark_closing(close):
            self._closer = asyncio.create_task(self._close_socket(close))

    async def run(self) -> Close:
        """Serve the client until the connection ends; return how it ended."""
        tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._watch_limits()),
            *(asyncio.create_task(self._forward_loop()) for _ in range(self._max_inflight)),
        ]
        try:
            ended = await self._receive_loop()
            self._mark_closing(ended)
            # Frames that arrived before the close still reach the backends, then $disconnect.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._integration_timeout):
                    await self._inbox.join()
        finally:
            self._mark_closing(GOING_AWAY)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._closer is not None:
                await asyncio.gather(self._closer, return_exceptions=True)
        return self.final_close

    # -- internals ---------------------------------------------------------------------------

    def _mark_closing(self, close: Close) -> bool:
        if self._close is not None:
            return False
        self._close = close
        self._on_closing(self)
        return True

    async def _close_socket(self, close: Close) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._socket.close(code=close.code, message=close.reason.encode())
        except TimeoutError:
            # The client neither reads nor answers: cut the TCP connection.
            self._abort()

    async def _receive_loop(self) -> Close:
        while True:
            message = await self._socket.receive()
            if message.type is WSMsgType.TEXT:
                frame = message.data.encode()
                violation = check_text_frame(len(frame))
                if violation is not None:
                    self.close(violation)
                    return violation
                self._clock.frame_received(time.monotonic())
                self.last_active_at = _utc_now()
                self._stats.record_in(len(frame))
                await self._inbox.put(frame)
            elif message.type is WSMsgType.BINARY:
                self.close(BINARY_FRAME)
                return BINARY_FRAME
            elif message.type is WSMsgType.CLOSE:
                return client_close(message.data, message.extra or "")
            elif message.type is WSMsgType.ERROR:
                # A protocol error aiohttp already answered (bad UTF-8: 1007, oversize: 1009).
                code = self._socket.close_code or ABNORMAL_CLOSURE.code
                return self._close or Close(code, str(message.data) or "Protocol error")
            else:  # CLOSING (we closed) or CLOSED (the transport went away)
                return self._close or ABNORMAL_CLOSURE

    async def _forward_loop(self) -> None:
        while True:
            frame = await self._inbox.get()
            try:
                await self._forward(frame)
            finally:
                self._inbox.task_done()

    async def _forward(self, frame: bytes) -> None:
        request_id = new_request_id()
        result = await self._backends.send(message_request(self.context, request_id, frame))
        if not is_integration_failure(result.status):
            if result.status is not None and result.status >= 400:
                log.info(
                    "$default %s answered %s; the client is not told",
                    result.backend,
                    result.status,
                    extra=self._log_extra,
                )
            return
        self._gateway_stats.integration_errors += 1
        log.warning(
            "$default integration failed at %s: %s",
            result.backend,
            result.error or f"status {result.status}",
            extra={**self._log_extra, "request_id": request_id},
        )
        error = internal_server_error_frame(self.id, request_id)
        if self.post(error, len(error.encode())) is Delivery.BUFFER_FULL:
            log.warning("error frame dropped: outbound buffer full", extra=self._log_extra)

    async def _send_loop(self) -> None:
        while True:
            frame, size = await self._outbox.get()
            try:
                await self._socket.send_str(frame)
            except ConnectionError:
                return  # the receiver sees the closed transport and ends the connection
            finally:
                self._outbox_bytes -= size
            self._stats.record_out(size)
            self.last_active_at = _utc_now()

    async def _watch_limits(self) -> None:
        while True:
            now = time.monotonic()
            expired = self._clock.expired(now)
            if expired is not None:
                log.info("closing: %s", expired.reason, extra=self._log_extra)
                self.close(expired)
                return
            await asyncio.sleep(self._clock.deadline() - now)
