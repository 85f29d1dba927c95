"""The stage seam: each integration request names its API Gateway stage (``x-stage``), which
chooses the connection's client protocol (dialect) and the ``@connections`` its frames go to;
the directory record keeps the stage, so a task that takes the conversation over speaks the
same protocol through the same stage."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from novakit.bridge import app as bridge_app
from novakit.bridge.app import Bridge, serving
from novakit.bridge.connections import ConnectionsClient, Unsigned
from novakit.bridge.dialects import STAGE_DIALECTS, V1, Dialect, dialect_for_stage
from novakit.bridge.dialects.v1 import V1Codec
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.metrics import Metrics
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port

from ..gateway_auth import GATEWAY_SECRET, gateway_headers
from .test_session import FakeEngine, until


@dataclass
class Management:
    """An ``@connections`` API on loopback that records (stage, id, frame) of each post; the
    first ``refuse`` posts are answered 410, as API Gateway answers before a connection is
    open."""

    url: str
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    refuse: int = 0
    refused: int = 0


@contextlib.asynccontextmanager
async def management() -> AsyncIterator[Management]:
    port = free_port()
    found = Management(f"http://127.0.0.1:{port}")

    async def post(request: web.Request) -> web.Response:
        if found.refused < found.refuse:
            found.refused += 1
            return web.json_response({"message": "gone"}, status=410)
        body = json.loads(await request.read())
        found.posts.append((request.match_info["stage"], request.match_info["id"], body))
        return web.Response()

    app = web.Application()
    app.router.add_post("/{stage}/@connections/{id}", post)

    async def hang_up(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app.router.add_delete("/{stage}/@connections/{id}", hang_up)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_bridge(
    connections_url: str, directory: MemoryDirectory
) -> AsyncIterator[tuple[Bridge, str]]:
    settings = BridgeSettings(
        connections_url=connections_url, gateway_secrets=(GATEWAY_SECRET,), port=0
    )
    bridge = Bridge(
        settings,
        engine=FakeEngine(),
        tools=[],
        signer=Unsigned(),
        metrics=Metrics("t", out=io.StringIO()),
        directory=directory,
    )
    async with serving(bridge) as url:
        try:
            yield bridge, url
        finally:
            for session in list(bridge.sessions.values()):
                session.end("test over")
                await session.wait_ended(5)


async def call(url: str, path: str, connection_id: str, stage: str, body: bytes = b"") -> int:
    headers = gateway_headers(connection_id, **{"x-stage": stage})
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, data=body, headers=headers) as response,
    ):
        return response.status


def test_a_stage_without_a_dialect_of_its_own_speaks_v1() -> None:
    for stage in ("live", "", None, "Realtime", "anything"):
        assert dialect_for_stage(stage) is V1
    for stage, dialect in STAGE_DIALECTS.items():
        assert dialect_for_stage(stage) is dialect
        assert dialect is not V1


def test_the_connections_client_reaches_each_stage() -> None:
    client = ConnectionsClient("https://api.example.com/{stage}", Unsigned())
    assert client.for_stage("live").url("a=") == "https://api.example.com/live/@connections/a%3D"
    assert client.for_stage("realtime").url("a=") == (
        "https://api.example.com/realtime/@connections/a%3D"
    )
    assert client.for_stage("live") is client.for_stage("live")  # one view per stage
    # a request that named no stage (a bridge driven by hand): the stage-less base
    assert client.for_stage("").url("a=") == "https://api.example.com/@connections/a%3D"
    fixed = ConnectionsClient("https://api.example.com/live", Unsigned())
    assert fixed.for_stage("other") is fixed  # a base URL that names its stage keeps it


async def test_frames_go_out_through_the_stage_the_client_connected_to() -> None:
    directory = MemoryDirectory()
    async with management() as api, running_bridge(f"{api.url}/{{stage}}", directory) as (_, url):
        for connection_id, stage in (("a=", "live"), ("b=", "other")):
            assert await call(url, "/ws/connect", connection_id, stage) == 200
            ping = json.dumps({"type": "ping", "id": connection_id}).encode()
            assert await call(url, "/ws/message", connection_id, stage, ping) == 200
        await until(lambda: sum(frame["type"] == "pong" for _, _, frame in api.posts) == 2)
        record = await directory.get("b=")
    assert {(stage, cid) for stage, cid, _ in api.posts} == {("live", "a="), ("other", "b=")}
    assert record is not None
    assert record.state["stage"] == "other"
    assert record.state["dialect"] == "v1"


async def test_a_takeover_speaks_through_the_stage_in_the_record() -> None:
    directory = MemoryDirectory()
    # A task that is gone claimed the connection on stage "other" and saved a turn.
    record = await directory.claim(
        "c=", "http://127.0.0.1:9", state={"stage": "other", "dialect": "v1"}
    )
    assert record is not None
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):
        ping = json.dumps({"type": "ping", "id": 7}).encode()
        # x-stage of a frame cannot move a conversation to another stage's @connections
        assert await call(url, "/ws/message", "c=", "live", ping) == 200
        await until(lambda: any(frame["type"] == "pong" for _, _, frame in api.posts))
        session = bridge.sessions["c="]
        assert session.stage == "other"
        assert session.saved_state()["stage"] == "other"
    assert {stage for stage, _, _ in api.posts} == {"other"}


class GreetingCodec(V1Codec):
    """v1 plus a frame posted as soon as the connection is open (as OpenAI Realtime does)."""

    __slots__ = ()

    def greeting(self, connection_id: str, model: str, voice: str, now: float) -> list[str]:
        return self.event({"type": "hello", "connection_id": connection_id}, now)


def _greeting_codec(
    *,
    batch_ms: int,
    saved: Mapping[str, Any] | None = None,
    allow_client_instructions: bool = True,
) -> GreetingCodec:
    return GreetingCodec(batch_ms=batch_ms)


GREETING = Dialect("greeting", "test dialect", V1.kinds, _greeting_codec)


async def test_a_greeting_waits_for_api_gateway_to_open_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        bridge_app, "dialect_for_stage", lambda stage: GREETING if stage == "hi" else V1
    )
    directory = MemoryDirectory()
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):
        api.refuse = 3  # the connection is not open yet when the greeting goes out
        assert await call(url, "/ws/connect", "g=", "hi") == 200
        await until(lambda: len(api.posts) == 1)
        assert bridge.sessions["g="].state.value == "waiting"  # not ended by the early 410s
        assert api.refused == 3
        assert api.posts == [("hi", "g=", {"type": "hello", "seq": 0, "connection_id": "g="})]


async def test_a_v1_connection_gets_no_greeting() -> None:
    directory = MemoryDirectory()
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):
        assert await call(url, "/ws/connect", "v=", "live") == 200
        await asyncio.sleep(0.2)  # nothing is announced: there is nothing to wait for
        assert "v=" in bridge.sessions
        assert api.posts == []


async def test_a_realtime_conversation_taken_over_goes_on_in_realtime() -> None:
    directory = MemoryDirectory()
    # A task that is gone held a Realtime conversation in telephone audio (its saved state).
    codec_state = {
        "config": {
            "voice": "amy",
            "input_format": "audio/pcmu",
            "output_format": "audio/pcmu",
            "model": "gpt-realtime",
        }
    }
    record = await directory.claim(
        "r=",
        "http://127.0.0.1:9",
        state={"stage": "realtime", "dialect": "realtime", "codec": codec_state},
    )
    assert record is not None
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):
        update = json.dumps({"type": "session.update", "session": {"type": "realtime"}}).encode()
        assert await call(url, "/ws/message", "r=", "realtime", update) == 200
        await until(lambda: len(api.posts) == 1)
        session = bridge.sessions["r="]
        assert session.dialect.name == "realtime"
        assert session.saved_state()["codec"]["config"]["output_format"] == "audio/pcmu"
    [(stage, _, updated)] = api.posts[:1]
    assert (stage, updated["type"]) == ("realtime", "session.updated")
    assert updated["session"]["audio"]["output"] == {
        "format": {"type": "audio/pcmu"},
        "voice": "amy",
        "speed": 1.0,
    }
