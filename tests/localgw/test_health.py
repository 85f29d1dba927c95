"""NLB-style health checks: an unhealthy backend stops getting requests, and gets them again
once it recovers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from .conftest import client, gateway


class Backend:
    def __init__(self) -> None:
        self.healthy = True
        self.messages = 0
        self.url = ""

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def route(self, request: web.Request) -> web.Response:
        if request.path == "/ws/message":
            self.messages += 1
        return web.Response()


@asynccontextmanager
async def running(backend: Backend) -> AsyncIterator[Backend]:
    app = web.Application()
    app.router.add_get("/health", backend.health)
    app.router.add_post("/ws/{route}", backend.route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    backend.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield backend
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait until ``condition()`` holds: the gateway's pool and the backends' counts signal
    nothing, so they are looked at every 20 ms (bounded)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def send(url: str, frames: int, *backends: Backend) -> None:
    """Send ``frames`` frames and wait until ``backends`` got them all."""
    before = sum(b.messages for b in backends)
    async with client(url) as ws:
        for _ in range(frames):
            await ws.send('{"type":"ping"}')
        await until(lambda: sum(b.messages for b in backends) >= before + frames)


async def test_unhealthy_backends_get_no_requests_until_they_recover() -> None:
    async with running(Backend()) as a, running(Backend()) as b:
        settings = {"health_path": "/health", "health_interval": 0.05, "unhealthy_threshold": 2}
        async with gateway([a.url, b.url], **settings) as gw:
            pool = gw._backends
            await send(gw.url, 10, a, b)
            assert a.messages > 0 and b.messages > 0  # both healthy: spread over both
            b.healthy = False
            await until(lambda: not pool.healthy[b.url])  # the checks saw it
            before = b.messages
            await send(gw.url, 10, a, b)
            assert b.messages == before
            b.healthy = True
            await until(lambda: pool.healthy[b.url])
            await send(gw.url, 10, a, b)
            assert b.messages > before
