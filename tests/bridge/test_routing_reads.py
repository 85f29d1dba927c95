"""What the directory is asked per frame that does not land on its owner, counted against a
DynamoDB-compatible server: one small read for a session's first misrouted frame, none for the
next ones while the owner takes them (a route kept for a while), none per frame while draining,
and frames of an ended conversation refused (never adopted) with no read once it is known."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from novakit.bridge.app import Bridge, serving
from novakit.bridge.cluster import ADOPT_HEADER
from novakit.bridge.connections import Unsigned
from novakit.bridge.directory import DynamoDirectory, create_table
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port

from ..gateway_auth import GATEWAY_SECRET, gateway_headers
from .moto import CountingClient, dynamodb_client, moto_server
from .test_session import FakeEngine, until

_tables = itertools.count()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@dataclass
class Peer:
    """Another task (it takes relayed frames) and the @connections API, on one loopback port."""

    url: str
    frames: list[dict[str, str]] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    holds: bool = True  # False: answers relayed frames 409, as a task that lost the session


@contextlib.asynccontextmanager
async def peer() -> AsyncIterator[Peer]:
    port = free_port()
    found = Peer(f"http://127.0.0.1:{port}")

    async def message(request: web.Request) -> web.Response:
        if not found.holds:
            return web.Response(status=409)
        found.frames.append(dict(request.headers))
        return web.Response()

    async def hang_up(request: web.Request) -> web.Response:
        found.hung_up.append(request.match_info["id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ws/message", message)
    app.router.add_delete("/@connections/{id}", hang_up)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


@dataclass
class Running:
    bridge: Bridge
    url: str
    client: CountingClient
    directory: DynamoDirectory


@contextlib.asynccontextmanager
async def bridge(moto_endpoint: str, connections_url: str) -> AsyncIterator[Running]:
    client = CountingClient(dynamodb_client(moto_endpoint))
    table = f"routing-{next(_tables)}"
    create_table(client, table)
    # A long peer list lifetime: the count must not depend on how fast this machine is.
    directory = DynamoDirectory(table, "us-east-1", client=client, peers_ttl=60)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = BridgeSettings(
        connections_url=connections_url,
        host="127.0.0.1",
        port=port,
        advertise_url=url,
        heartbeat_seconds=60,
        gateway_secrets=(GATEWAY_SECRET,),
    )
    running = Bridge(
        settings, engine=FakeEngine(), tools=[], signer=Unsigned(), directory=directory
    )
    async with serving(running, "127.0.0.1", port):
        # the first heartbeat is written at start
        await until(lambda: "update_item" in client.operations(), within=10)
        yield Running(running, url, client, directory)


async def post_frames(url: str, connection_id: str, count: int) -> list[int]:
    statuses = []
    headers = gateway_headers(connection_id, **{"x-route-key": "$default"})
    async with aiohttp.ClientSession() as http:
        for seq in range(count):
            frame = json.dumps({"type": "audio", "seq": seq, "data": "AAAA"})
            async with http.post(f"{url}/ws/message", data=frame, headers=headers) as response:
                statuses.append(response.status)
    return statuses


async def test_misrouted_frames_cost_one_read_of_the_owner_only(moto_endpoint: str) -> None:
    async with peer() as owner, peer() as new_owner, bridge(moto_endpoint, owner.url) as running:
        long_history = [{"role": "user", "text": "words " * 500}] * 10
        record = await running.directory.claim("m=", owner.url, state={"history": long_history})
        await running.directory.heartbeat(owner.url)
        before = len(running.client.calls)
        assert await post_frames(running.url, "m=", 10) == [200] * 10
        assert len(owner.frames) == 10  # each relayed to the owner
        calls = running.client.calls[before:]
        # the first frame reads the owner; the next ones go where it went
        assert [name for name, _ in calls] == ["get_item"]
        for _, kwargs in calls:
            assert kwargs["Key"] == {"pk": {"S": "conn#m="}}
            assert "state" not in kwargs["ProjectionExpression"]
        assert not running.bridge.sessions
        # the session moves on; the old owner says it no longer holds it (409): the next frame
        # reads the directory again, and goes to the new owner, as do the ones after it
        assert record is not None
        assert await running.directory.claim("m=", new_owner.url, replacing=record) is not None
        await running.directory.heartbeat(new_owner.url)
        owner.holds = False
        before = len(running.client.calls)
        assert await post_frames(running.url, "m=", 5) == [200] * 5
        assert (len(owner.frames), len(new_owner.frames)) == (10, 5)
        assert [name for name, _ in running.client.calls[before:]] == ["get_item"]
        assert not running.bridge.sessions


async def test_a_draining_task_reads_the_peer_list_once_not_per_frame(
    moto_endpoint: str,
) -> None:
    async with peer() as other, bridge(moto_endpoint, other.url) as running:
        await running.directory.heartbeat(other.url)
        await running.bridge.drain(0.0)  # no sessions: it only stops taking them
        before = len(running.client.calls)
        assert await post_frames(running.url, "d=", 20) == [200] * 20
        assert [f[ADOPT_HEADER] for f in other.frames] == [running.url] * 20
        # (its own heartbeat, written every few seconds, may fall in between)
        calls = [c for c in running.client.calls[before:] if c[0] != "update_item"]
        assert [(name, kwargs["Key"]) for name, kwargs in calls] == [
            ("get_item", {"pk": {"S": "tasks"}})
        ]


async def test_frames_of_an_ended_conversation_are_refused_and_its_connection_closed(
    moto_endpoint: str,
) -> None:
    async with peer() as api, bridge(moto_endpoint, api.url) as running:
        await running.directory.claim("e=", "http://127.0.0.1:9", principal="user-1")
        assert await running.directory.end("e=", owner="http://127.0.0.1:9")
        before = len(running.client.calls)
        assert await post_frames(running.url, "e=", 5) == [200] * 5
        assert not running.bridge.sessions  # never adopted as a fresh conversation
        # one read found the tombstone; the bridge remembers it for the next frames
        assert running.client.operations(before) == ["get_item"]
        await until(lambda: bool(api.hung_up))
        assert api.hung_up == ["e="]  # closed once, in case its task stopped before it could
        route = await running.directory.owner_of("e=")
        assert route is not None and route.ended
