"""A deadline on the first request of each connection (the WebSocket handshake).

aiohttp waits as long as a client likes for a request's headers to be complete: a client that
opens connections and sends half a handshake (or nothing) holds a socket each, forever. API
Gateway closes such connections; so does this, after ``seconds``. The deadline ends when the
first request's headers are in; what follows is bounded by the gateway's own limits (idle and
maximum connection time, aiohttp's keep-alive timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["HandshakeDeadline"]


class HandshakeDeadline:
    """Close each connection of an aiohttp ``web.Server`` whose first request's headers are not
    complete ``seconds`` after it opened; ``on_expired(peer)`` is told of each."""

    def __init__(self, seconds: float, on_expired: Callable[[Any], None]) -> None:
        self.seconds = seconds
        self._on_expired = on_expired
        self._timers: dict[RequestHandler, asyncio.TimerHandle] = {}

    @property
    def pending(self) -> int:
        """Connections still waiting for their first request."""
        return len(self._timers)

    def install(self, server: web.Server) -> None:
        # The hooks are web.Server's own: it is told of every connection made and lost, and its
        # request factory is called once a request's headers are parsed.
        loop = asyncio.get_running_loop()
        made, lost, make_request = (
            server.connection_made,
            server.connection_lost,
            server.request_factory,
        )

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._timers[handler] = loop.call_later(self.seconds, self._expire, handler)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._cancel(handler)
            lost(handler, exc)

        def request_factory(*args: Any) -> web.BaseRequest:
            self._cancel(args[2])  # (message, payload, protocol, writer, task)
            return make_request(*args)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        server.request_factory = request_factory

    def _cancel(self, handler: RequestHandler) -> None:
        timer = self._timers.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, handler: RequestHandler) -> None:
        if self._timers.pop(handler, None) is None:
            return
        transport = handler.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        handler.force_close()
        self._on_expired(peer)
