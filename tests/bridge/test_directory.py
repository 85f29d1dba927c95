"""The session directory: both implementations pass the same tests (DynamoDB through moto's
server on loopback)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from novakit.bridge.directory import (
    DIRECTORY_THREADS,
    RECORD_TTL_SECONDS,
    STALE_TASK_SECONDS,
    Directory,
    DynamoDirectory,
    MemoryDirectory,
    Route,
    create_table,
)

from .moto import CountingClient, dynamodb_client, moto_server

_tables = itertools.count()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(params=["memory", "dynamodb"])
async def directory(request: pytest.FixtureRequest) -> AsyncIterator[Directory]:
    if request.param == "memory":
        yield MemoryDirectory()
        return
    client = dynamodb_client(request.getfixturevalue("moto_endpoint"))
    table = f"sessions-{next(_tables)}"
    create_table(client, table)
    found = DynamoDirectory(table, "us-east-1", client=client)
    yield found
    await found.close()


async def test_a_new_connection_has_one_owner(directory: Directory) -> None:
    record = await directory.claim("c1=", "http://a", state={"voice": "tiffany"}, principal="u")
    assert record is not None and (record.owner, record.version) == ("http://a", 1)
    assert await directory.claim("c1=", "http://b") is None
    stored = await directory.get("c1=")
    assert stored == record
    assert await directory.get("nobody=") is None


async def test_saves_need_the_current_version(directory: Directory) -> None:
    record = await directory.claim("c2=", "http://a")
    assert record is not None
    saved = await directory.save(record, {"history": [{"role": "USER", "text": "hi"}]})
    assert saved is not None and saved.version == 2
    assert await directory.save(record, {"history": []}) is None  # stale: version 1
    stored = await directory.get("c2=")
    assert stored is not None and stored.state == {"history": [{"role": "USER", "text": "hi"}]}


async def test_exactly_one_of_many_racing_tasks_takes_a_session_over(
    directory: Directory,
) -> None:
    original = await directory.claim("c3=", "http://dead", state={"n": 1})
    assert original is not None
    seen = await directory.get("c3=")
    assert seen is not None
    winners = await asyncio.gather(
        *(directory.claim("c3=", f"http://task{i}", replacing=seen) for i in range(8))
    )
    won = [w for w in winners if w is not None]
    assert len(won) == 1
    stored = await directory.get("c3=")
    assert stored == won[0]
    assert stored.state == {"n": 1} and stored.version == 2
    # the old owner can no longer write
    assert await directory.save(original, {"n": 2}) is None


async def test_hand_over_and_forget(directory: Directory) -> None:
    record = await directory.claim("c4=", "http://a", state={"n": 1})
    assert record is not None
    await directory.release(record, forget=False)
    handed = await directory.get("c4=")
    assert handed is not None and handed.owner == "" and handed.state == {"n": 1}
    taken = await directory.claim("c4=", "http://b", replacing=handed)
    assert taken is not None and taken.owner == "http://b"
    await directory.release(record, forget=True)  # not the owner any more: no effect
    assert await directory.get("c4=") is not None
    await directory.release(taken, forget=True)
    assert await directory.get("c4=") is None


async def test_heartbeats(directory: Directory) -> None:
    assert not await directory.alive("http://a", within=5)
    await directory.heartbeat("http://a")
    assert await directory.alive("http://a", within=5)
    await directory.heartbeat("http://b")
    assert await directory.peers(within=5) == ["http://a", "http://b"]
    await asyncio.sleep(0.3)
    assert not await directory.alive("http://a", within=0.1)
    assert await directory.peers(within=0.1) == []


async def test_an_ended_conversation_leaves_a_tombstone_nobody_can_claim(
    directory: Directory,
) -> None:
    record = await directory.claim("c5=", "http://a", state={"history": ["x"]}, principal="u")
    assert record is not None
    assert not await directory.end("c5=", owner="http://b")  # not the owner: no effect
    assert await directory.owner_of("c5=") == Route("http://a", ended=False)
    assert await directory.end("c5=", owner="http://a")
    assert await directory.owner_of("c5=") == Route("", ended=True)
    tombstone = await directory.get("c5=")
    assert tombstone is not None and tombstone.ended and tombstone.owner == ""
    assert tombstone.state == {}  # the conversation is not kept past its end
    assert not await directory.end("c5=", owner="")  # ended once
    # neither a new claim nor a takeover starts it again
    assert await directory.claim("c5=", "http://b") is None
    assert await directory.claim("c5=", "http://b", replacing=tombstone) is None
    assert await directory.claim("c5=", "http://b", replacing=record) is None
    assert await directory.save(record, {"history": []}) is None


async def test_a_record_nobody_holds_can_be_ended(directory: Directory) -> None:
    record = await directory.claim("c6=", "http://a")
    assert record is not None
    await directory.release(record, forget=False)
    assert await directory.end("c6=", owner="")
    assert await directory.owner_of("c6=") == Route("", ended=True)
    assert await directory.owner_of("nobody=") is None
    assert not await directory.end("nobody=", owner="")


async def test_a_takeover_keeps_the_principal_connect_recorded(directory: Directory) -> None:
    record = await directory.claim("c7=", "http://a", principal="user-1")
    assert record is not None
    taken = await directory.claim("c7=", "http://b", replacing=record, principal="")
    assert taken is not None and taken.principal == "user-1"
    again = await directory.claim("c7=", "http://c", replacing=taken, principal="someone-else")
    assert again is not None and again.principal == "user-1"
    stored = await directory.get("c7=")
    assert stored is not None and stored.principal == "user-1"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted(moto_endpoint: str) -> tuple[CountingClient, str]:
    client = CountingClient(dynamodb_client(moto_endpoint))
    table = f"sessions-{next(_tables)}"
    create_table(client, table)
    return client, table


async def test_peers_read_one_item_whatever_the_table_holds_and_are_kept_a_moment(
    counted: tuple[CountingClient, str],
) -> None:
    client, table = counted
    clock = FakeClock()
    directory = DynamoDirectory(table, "us-east-1", client=client, peers_ttl=1.0, clock=clock)
    for n in range(20):  # sessions with their conversations: a scan would read them all
        await directory.claim(f"s{n}=", "http://a", state={"history": ["words " * 200]})
    await directory.heartbeat("http://a")
    await directory.heartbeat("http://b")
    before = len(client.calls)
    assert await directory.peers(within=5) == ["http://a", "http://b"]
    ((operation, kwargs),) = client.calls[before:]
    assert operation == "get_item" and kwargs["Key"] == {"pk": {"S": "tasks"}}
    clock.now += 0.5
    assert await directory.peers(within=5) == ["http://a", "http://b"]
    assert len(client.calls) == before + 1  # kept: no read
    clock.now += 5.4  # read again: heartbeats older than `within` no longer count
    assert await directory.peers(within=5) == []
    await directory.heartbeat("http://b")
    assert await directory.peers(within=5) == []  # kept for a second: a new beat waits
    clock.now += 1.1
    assert await directory.peers(within=5) == ["http://b"]
    assert "scan" not in client.operations()


async def test_a_task_silent_for_long_leaves_the_tasks_item(
    counted: tuple[CountingClient, str],
) -> None:
    client, table = counted
    clock = FakeClock()
    directory = DynamoDirectory(table, "us-east-1", client=client, peers_ttl=0.0, clock=clock)
    await directory.heartbeat("http://gone")
    clock.now += STALE_TASK_SECONDS + 1
    await directory.heartbeat("http://a")
    assert await directory.peers(within=5) == ["http://a"]
    await directory.heartbeat("http://a")  # removes the stale entry it saw
    item = client.get_item(TableName=table, Key={"pk": {"S": "tasks"}})["Item"]
    assert "http://gone" not in item and "http://a" in item
    assert await directory.alive("http://a", within=5)
    assert not await directory.alive("http://gone", within=3600)


async def test_routing_reads_the_owner_not_the_conversation(
    counted: tuple[CountingClient, str],
) -> None:
    client, table = counted
    directory = DynamoDirectory(table, "us-east-1", client=client)
    await directory.claim("r=", "http://a", state={"history": ["a long conversation " * 100]})
    before = len(client.calls)
    assert await directory.owner_of("r=") == Route("http://a")
    ((operation, kwargs),) = client.calls[before:]
    assert operation == "get_item"
    names = kwargs["ExpressionAttributeNames"]
    projected = {names.get(p.strip(), p.strip()) for p in kwargs["ProjectionExpression"].split(",")}
    assert projected == {"owner", "ended_at"}


async def test_memory_tombstones_go_after_the_record_ttl() -> None:
    clock = FakeClock()
    directory = MemoryDirectory(clock=clock)
    for name in ("old=", "new="):
        assert await directory.claim(name, "http://a") is not None
    assert await directory.end("old=", owner="http://a")
    clock.now += RECORD_TTL_SECONDS + 1
    assert await directory.end("new=", owner="http://a")
    assert await directory.owner_of("old=") is None  # expired, as DynamoDB's TTL removes it
    assert await directory.owner_of("new=") == Route("", ended=True)


async def test_a_hand_over_marks_the_record_with_the_task_that_released_it(
    directory: Directory,
) -> None:
    record = await directory.claim("c-handed=", "http://a", state={"n": 1}, principal="u")
    assert record is not None and record.handed_over_by == ""
    await directory.release(record, forget=False)
    handed = await directory.get("c-handed=")
    assert handed is not None
    assert (handed.owner, handed.handed_over_by, handed.version) == ("", "http://a", 2)
    assert (handed.state, handed.principal) == ({"n": 1}, "u")
    # the adopter's claim clears the marker: the session is its own now
    adopted = await directory.claim("c-handed=", "http://b", replacing=handed)
    assert adopted is not None and adopted.handed_over_by == ""
    stored = await directory.get("c-handed=")
    assert stored is not None and (stored.owner, stored.handed_over_by) == ("http://b", "")
    # a task that no longer owns the session cannot mark it
    await directory.release(record, forget=False)
    stored = await directory.get("c-handed=")
    assert stored is not None and (stored.owner, stored.handed_over_by) == ("http://b", "")


async def test_a_confirmed_record_fences_a_takeover_decided_on_the_version_before(
    directory: Directory,
) -> None:
    # The owner woke from a stall and confirms before it sends again; a peer that read the
    # record during the stall must then lose its claim.
    record = await directory.claim("c9=", "http://a", state={"history": [1, 2]})
    assert record is not None
    seen_by_peer = await directory.get("c9=")
    confirmed = await directory.confirm(record)
    assert confirmed is not None and confirmed.version == record.version + 1
    assert confirmed.state == {"history": [1, 2]}  # the state is untouched
    assert await directory.claim("c9=", "http://b", replacing=seen_by_peer) is None
    assert (await directory.get("c9=")).owner == "http://a"
    # the other way round: the peer's claim landed first, so the owner learns it lost
    taken = await directory.claim("c9=", "http://b", replacing=await directory.get("c9="))
    assert taken is not None
    assert await directory.confirm(confirmed) is None
    assert (await directory.get("c9=")).owner == "http://b"


async def test_every_directory_thread_keeps_its_own_connection() -> None:
    """botocore keeps 10 connections by default; the directory calls from more threads than
    that (and a heartbeat thread), and each call beyond them opened a connection and threw it
    away ("Connection pool is full") on a busy task."""
    directory = DynamoDirectory("novakit-sessions", "us-east-1")
    try:
        assert directory._client.meta.config.max_pool_connections == DIRECTORY_THREADS + 1
        assert directory._pool._max_workers == DIRECTORY_THREADS
    finally:
        await directory.close()
