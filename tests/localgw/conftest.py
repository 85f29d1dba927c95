"""A fake bridge for the local gateway's tests, and helpers to drive the gateway.

``FakeBackend`` is a small aiohttp server on 127.0.0.1 that records every integration request
(backend, path, headers, body) in arrival order and answers with a configurable status. Tests
wait on what it has received, always within ``WAIT`` seconds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from novakit.localgw import GatewayConfig, LocalGateway

WAIT = 5.0  # seconds: the bound on every wait in these tests


@dataclass(frozen=True)
class Received:
    backend: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def route(self) -> str:
        return self.headers["x-route-key"]

    @property
    def connection_id(self) -> str:
        return self.headers["x-connection-id"]


Responder = Callable[[Received], Awaitable[int]]


@dataclass
class Recorder:
    """Integration requests received by one or more fake backends, in arrival order."""

    received: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, item: Received) -> None:
        async with self.changed:
            self.received.append(item)
            self.changed.notify_all()

    def routes(self, route: str, connection_id: str | None = None) -> list[Received]:
        return [
            r
            for r in self.received
            if r.route == route and connection_id in (None, r.connection_id)
        ]

    async def wait_for(
        self, route: str, count: int = 1, connection_id: str | None = None
    ) -> list[Received]:
        """The first ``count`` requests of ``route``, once that many have arrived."""
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(lambda: len(self.routes(route, connection_id)) >= count)
            return self.routes(route, connection_id)[:count]


class FakeBackend:
    """A bridge stand-in: records integration requests and answers each with a status."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.statuses = {"/ws/connect": 200, "/ws/message": 200, "/ws/disconnect": 200}
        self.responder: Responder | None = None  # overrides ``statuses`` when set
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeBackend:
        app = web.Application()
        app.router.add_post("/ws/{route}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            backend=self.url,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
        )
        await self.recorder.add(received)
        if self.responder is not None:
            status = await self.responder(received)
        else:
            status = self.statuses[request.path]
        # A body the gateway must not pass on to the client ($default is one-way).
        return web.json_response({"echo": "not for the client"}, status=status)


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as running:
        yield running


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@asynccontextmanager
async def gateway(
    backends: list[str] | FakeBackend, **settings: Any
) -> AsyncIterator[LocalGateway]:
    urls = [backends.url] if isinstance(backends, FakeBackend) else backends
    async with LocalGateway(GatewayConfig(backends=urls, **settings)) as gw:
        yield gw


@asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    options.setdefault("proxy", None)
    options.setdefault("open_timeout", WAIT)
    options.setdefault("close_timeout", WAIT)
    async with websockets.connect(url, **options) as connection:
        yield connection


async def receive(connection: ClientConnection) -> str | bytes:
    async with asyncio.timeout(WAIT):
        return await connection.recv()


async def closed_by_server(connection: ClientConnection) -> websockets.frames.Close:
    """Wait for the server to close; the close frame it sent."""
    async with asyncio.timeout(WAIT):
        await connection.wait_closed()
    assert connection.close_code is not None
    rcvd = connection.protocol.close_rcvd
    assert rcvd is not None, "the server closed the TCP connection without a close frame"
    return rcvd


@asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session
