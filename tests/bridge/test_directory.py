"""The session directory: both implementations pass the same tests (DynamoDB through moto's
server on loopback)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from novakit.bridge.directory import Directory, DynamoDirectory, MemoryDirectory, create_table

from .moto import dynamodb_client, moto_server

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
