"""Edges of ownership that need no cluster: a retried $connect on a second task, a hand-over
with output still queued, a post retried after a takeover, a directory write whose answer was
lost, a slow liveness read."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiohttp import web

from novakit.bridge.app import Bridge
from novakit.bridge.connections import ConnectionsClient, Unsigned
from novakit.bridge.directory import DynamoDirectory, MemoryDirectory, create_table
from novakit.bridge.http import make_request
from novakit.bridge.lease import SessionLease
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import ClientAudio
from novakit.bridge.sender import OrderedSender
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tenure import Heartbeat, Tenure
from novakit.dev import free_port

from ..gateway_auth import GATEWAY_SECRET, gateway_headers
from .moto import dynamodb_client, moto_server
from .test_session import FakeConnections, FakeEngine, bridge_session, until
from .test_tenure import Clock

A = "http://10.0.0.1:8080"
B = "http://10.0.0.2:8080"


async def second_task(directory: MemoryDirectory) -> Bridge:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9", gateway_secrets=(GATEWAY_SECRET,)
    )
    bridge = Bridge(
        settings,
        engine=FakeEngine(),
        tools=[],
        metrics=Metrics("t", out=io.StringIO()),
        directory=directory,
    )
    bridge.address = B
    bridge.connections = FakeConnections()  # type: ignore[assignment]
    bridge.heartbeat = Heartbeat(directory, B, Tenure(6.0))
    assert await bridge.heartbeat.beat()
    return bridge


async def test_a_retried_connect_on_another_task_starts_no_second_session() -> None:
    directory = MemoryDirectory()
    assert await directory.claim("c=", A) is not None  # the first $connect, on task A
    bridge = await second_task(directory)
    try:
        request = make_request("POST", "/ws/connect", headers=gateway_headers("c="))
        assert (await bridge.on_connect(request)).status == 200
        assert "c=" not in bridge.sessions  # A holds it; B would answer the client twice
        assert await directory.end("c=", owner=A)
        request = make_request("POST", "/ws/connect", headers=gateway_headers("c="))
        assert (await bridge.on_connect(request)).status == 403  # over: never started again
        assert "c=" not in bridge.sessions
    finally:
        await bridge.relay.close()


class RecordingConnections(FakeConnections):
    """Posts take a moment (API Gateway's latency); a post begun after ``adopted`` was set
    went out while another task held the session."""

    def __init__(self) -> None:
        super().__init__()
        self.after_adoption: list[str] = []
        self.adopted = False

    async def post(self, connection_id: str, data: bytes, **kwargs: Any) -> float:
        if self.adopted:
            self.after_adoption.append(data.decode())
        await asyncio.sleep(0.02)  # a post's latency
        return await super().post(connection_id, data, **kwargs)


async def test_a_handed_over_session_posts_nothing_once_released() -> None:
    directory = MemoryDirectory()
    record = await directory.claim("c=", A)
    assert record is not None
    connections = RecordingConnections()
    session = bridge_session(FakeEngine(), connections, lease=SessionLease(directory, record))
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    # the answer being spoken: generated faster than real time, it waits in the sender
    session.sender.send([f'{{"type":"audio","seq":{n},"data":"AAAA"}}' for n in range(40)])
    session.end("this task is stopping", hand_over=True)

    async def released() -> bool:
        stored = await directory.get("c=")
        return stored is not None and stored.owner == ""

    await until(released)
    handed = await directory.get("c=")
    assert await directory.claim("c=", B, replacing=handed) is not None  # B adopts and speaks
    connections.adopted = True
    assert await session.wait_ended(10)
    assert connections.after_adoption == []


async def test_a_post_is_not_retried_for_a_session_taken_over_meanwhile() -> None:
    clock = Clock()
    directory = MemoryDirectory(clock=clock)
    heartbeat = Heartbeat(directory, A, Tenure(owner_timeout=6.0, clock=clock))
    assert await heartbeat.beat()
    record = await directory.claim("c=", A)
    assert record is not None
    lease = SessionLease(directory, record, heartbeat)
    received: list[tuple[bool, bytes]] = []
    taken_over = asyncio.Event()

    async def post(request: web.Request) -> web.Response:
        received.append((taken_over.is_set(), await request.read()))
        if len(received) == 1:
            # A freezes with this post out; B takes the session over; A's post times out
            clock.now += 20.0
            assert await directory.claim("c=", B, replacing=await directory.get("c=")) is not None
            taken_over.set()
            await asyncio.sleep(1.0)  # longer than the client's timeout: it will retry
        return web.Response(status=200)

    port = free_port()
    app = web.Application()
    app.router.add_post("/@connections/{id}", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = ConnectionsClient(f"http://127.0.0.1:{port}", Unsigned(), attempts=4, timeout=0.3)
    stopped: list[str] = []
    sender = OrderedSender(
        "c=",
        client,
        Metrics("t", out=io.StringIO()),
        on_gone=lambda: None,
        on_stalled=stopped.append,
        guard=lease.guard,
    )
    try:
        sender.send(['{"type":"audio","seq":7,"data":"AAAA"}'])
        await until(lambda: bool(stopped), within=10)
    finally:
        await sender.close(within=1)
        await client.close()
        await runner.cleanup()
    assert stopped == ["ownership moved"]
    assert [after for after, _ in received] == [False]  # not posted again after the takeover
    assert lease.lost


class LateAnswers:
    """A botocore client whose conditional writes are applied, then answered as if lost and
    retried (the retry then fails its condition), as botocore does after a read timeout."""

    def __init__(self, client: Any, clock: Clock | None = None) -> None:
        self._client = client
        self._clock = clock

    def update_item(self, **kwargs: Any) -> Any:
        self._client.update_item(**kwargs)
        return self._client.update_item(**kwargs)  # the retry: its condition now fails

    def get_item(self, **kwargs: Any) -> Any:
        answer = self._client.get_item(**kwargs)
        if self._clock is not None:
            self._clock.now += 2.5  # a slow read
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_write_applied_but_answered_late_is_still_this_tasks() -> None:
    with moto_server() as endpoint:
        raw = dynamodb_client(endpoint)
        create_table(raw, "late")
        directory = DynamoDirectory("late", "us-east-1", client=LateAnswers(raw))
        try:
            record = await directory.claim("c=", A, state={"history": []})
            assert record is not None
            confirmed = await directory.confirm(record)
            assert confirmed is not None and confirmed.version == record.version + 1
            saved = await directory.save(confirmed, {"history": [{"role": "user", "text": "hi"}]})
            assert saved is not None and saved.version == confirmed.version + 1
            # another task's write is still told apart: a claim moved the record on
            seen = await directory.get("c=")
            assert await directory.claim("c=", B, replacing=seen) is not None
            assert await directory.confirm(saved) is None
        finally:
            await directory.close()


async def test_a_slow_liveness_read_does_not_age_the_beat() -> None:
    clock = Clock()
    with moto_server() as endpoint:
        raw = dynamodb_client(endpoint)
        create_table(raw, "slow")
        directory = DynamoDirectory(
            "slow", "us-east-1", client=LateAnswers(raw, clock), clock=clock
        )
        try:
            await directory.heartbeat(A)
            clock.now += 5.0  # a beat 5 s old, asked with a 6 s limit, answered 2.5 s later
            assert await directory.alive(A, 6.0)
        finally:
            await directory.close()
