"""Bridge tasks in one process, sharing one in-memory directory, driven through their request
handler as API Gateway would (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
from collections.abc import Callable
from typing import Any

from novakit.bridge.app import Bridge
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.http import Response, make_request
from novakit.bridge.metrics import Metrics
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tenure import Heartbeat, Tenure

from ..bridge.test_session import FakeConnections, FakeEngine, FakeSession
from ..gateway_auth import GATEWAY_SECRET, gateway_headers


class StageConnections(FakeConnections):
    def for_stage(self, stage: str) -> StageConnections:
        return self

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.posted]


class GatedClose(FakeSession):
    """A model session whose close takes as long as the test says (Bedrock closing slowly)."""

    def __init__(self) -> None:
        super().__init__()
        self.may_close = asyncio.Event()
        self.may_close.set()

    async def close(self) -> None:
        await self.may_close.wait()
        await super().close()


async def task(
    directory: MemoryDirectory, address: str, clock: Callable[[], float] | None = None
) -> tuple[Bridge, StageConnections]:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9", gateway_secrets=(GATEWAY_SECRET,)
    )
    engine = FakeEngine()
    engine.session = GatedClose()
    bridge = Bridge(
        settings,
        engine=engine,
        tools=[],
        metrics=Metrics("t", out=io.StringIO()),
        directory=directory,
    )
    bridge.address = address
    connections = StageConnections()
    bridge.connections = connections  # type: ignore[assignment]
    bridge.heartbeat = Heartbeat(
        directory, address, Tenure(6.0) if clock is None else Tenure(6.0, clock=clock)
    )
    assert await bridge.heartbeat.beat()
    return bridge, connections


async def call(bridge: Bridge, path: str, connection_id: str, body: bytes = b"") -> Response:
    request = make_request(
        "POST",
        path,
        headers=gateway_headers(connection_id, **{"x-route-key": "$default"}),
        body=body,
    )
    answer = bridge.handle(request)
    return await answer if inspect.isawaitable(answer) else answer


def audio(seq: int) -> bytes:
    data = base64.b64encode(bytes(640)).decode()  # 20 ms of silence at 16 kHz
    return json.dumps({"type": "audio", "seq": seq, "data": data}).encode()


async def stop(*bridges: Bridge) -> None:
    for bridge in bridges:
        for session in list(bridge.sessions.values()):
            session.end("test over")
        await asyncio.gather(*(s.wait_ended(5) for s in list(bridge.sessions.values())))
        await bridge.relay.close()
