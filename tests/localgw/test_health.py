"""NLB-style health checks: an unhealthy backend stops getting requests, and gets them again
once it recovers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


async def send(url: str, frames: int) -> None:
    async with client(url) as ws:
        for _ in range(frames):
            await ws.send('{"type":"ping"}')
        await asyncio.sleep(0.3)  # let the last integration requests land


async def test_unhealthy_backends_get_no_requests_until_they_recover() -> None:
    async with running(Backend()) as a, running(Backend()) as b:
        settings = {"health_path": "/health", "health_interval": 0.05, "unhealthy_threshold": 2}
        async with gateway([a.url, b.url], **settings) as gw:
            await send(gw.url, 10)
            assert a.messages > 0 and b.messages > 0  # both healthy: spread over both
            b.healthy = False
            await asyncio.sleep(0.4)  # several checks
            before = b.messages
            await send(gw.url, 10)
            assert b.messages == before
            b.healthy = True
            await asyncio.sleep(0.4)
            await send(gw.url, 10)
            assert b.messages > before
