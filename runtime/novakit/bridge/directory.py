"""The session directory: which bridge task owns which connection, and what it needs to resume.

API Gateway's VPC link spreads a connection's frames over every task, but only one task holds
the connection's Bedrock stream. The directory records ``connection id -> owner`` with the
state a new owner needs (options, conversation history), and each task's heartbeat. Ownership
changes only by conditional write, so two tasks never both own a session: a task takes a
session over only if the record still names the owner it saw, and that owner is gone.

Two implementations pass the same tests: ``MemoryDirectory`` (one process) and
``DynamoDirectory`` (a DynamoDB table; ``AWS_ENDPOINT_URL_DYNAMODB`` points it at a local
DynamoDB-compatible server in tests).

A conversation that is over (the client ended it or left, or the bridge ended it) keeps its
record as an **ended tombstone** until the TTL removes it: no owner, no state, and ``ended_at``.
Frames still in flight for it are then refused on every task instead of starting a new
conversation (the bridge writes the tombstone once the client has been sent ``ended``).

Reads on the frame path are small. A frame that is not for a local session needs only the
owner: ``owner_of`` fetches ``owner`` and the tombstone field (a projection), never the state,
which can be tens of KB to transfer and parse; the whole record is read only to take a session
over. (DynamoDB bills a read by the whole item's size, projection or not: the saving is in
transfer and parsing, not in read units.) The peers a draining task passes frames
to come from one item (``tasks``) that holds every task's heartbeat as an attribute: one
``GetItem``, whatever the table holds, where a filtered ``Scan`` would read (and bill) every
session record with its history. ``DynamoDirectory`` also keeps the peer list for a second
(``peers_ttl``), so a draining task reads it about once a second, not once per frame. One item
takes every task's heartbeat: at a beat every 2 s, a few hundred tasks stay far below the write
rate of one partition.

Table layout (partition key ``pk``, string; TTL attribute ``expires_at``):

- ``conn#{connection id}``: ``owner``, ``version``, ``state`` (JSON), ``principal``,
  ``updated_at``, ``expires_at``, ``write_id`` (the last save or fence, to recognise it when
  its answer was lost); a tombstone also has ``ended_at``;
  ``handed_over_by`` while a draining task has handed it over
- ``tasks``: one attribute per task, named by its address, holding its last heartbeat (epoch
  seconds); ``expires_at``. Entries older than ``STALE_TASK_SECONDS`` are removed by the next
  heartbeat of any task.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

# Records outlive API Gateway's 2-hour connection limit, then DynamoDB's TTL removes them.
RECORD_TTL_SECONDS = 3 * 3600
TASKS_KEY = "tasks"
# A task silent this long is gone for good: its heartbeat entry is removed.
STALE_TASK_SECONDS = 600.0
# How long DynamoDirectory reuses the peer list it read.
PEERS_TTL_SECONDS = 1.0
#: Threads for directory calls (a heartbeat has its own besides).
DIRECTORY_THREADS = 16


@dataclass(frozen=True, slots=True)
class SessionRecord:
    connection_id: str
    owner: str  # the owning task's internal base URL; "" while handed over
    version: int
    state: Mapping[str, Any] = field(default_factory=dict)
    principal: str = ""
    # The task that released the session for another to adopt (``release(forget=False)``);
    # "" otherwise. A peer adopts a handed-over frame only when this names the sender.
    handed_over_by: str = ""
    ended: bool = False  # a tombstone: the conversation is over


@dataclass(frozen=True, slots=True)
class Route:
    """What routing a frame needs from a record: its owner, and whether the conversation is
    over."""

    owner: str
    ended: bool = False


class Directory(Protocol):
    async def claim(
        self,
        connection_id: str,
        owner: str,
        *,
        state: Mapping[str, Any] | None = None,
        principal: str = "",
        replacing: SessionRecord | None = None,
    ) -> SessionRecord | None:
        """Make ``owner`` the owner. New connections: only if no record exists. Takeovers
        (``replacing``): only if the record is still at ``replacing.version``. ``None`` when
        another task won."""
        ...

    async def get(self, connection_id: str) -> SessionRecord | None: ...

    async def owner_of(self, connection_id: str) -> Route | None:
        """The owner (and tombstone) of a record, without its state: what routing needs."""
        ...

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        """Store new state if ``record`` is still current (same owner and version)."""
        ...

    async def confirm(self, record: SessionRecord) -> SessionRecord | None:
        """Fence: move the record to the next version if ``record`` is still current (same
        owner and version), so that a takeover decided on an older version fails. ``None``
        when another task owns the session now (or it ended)."""
        ...

    async def release(self, record: SessionRecord, *, forget: bool) -> None:
        """Give up ownership: delete the record (``forget``, the client left) or clear its
        owner so that another task takes the session on (hand-over), marking the record as
        handed over by ``record.owner``."""
        ...

    async def end(self, connection_id: str, *, owner: str) -> bool:
        """The conversation is over: replace the record by an ended tombstone (kept until its
        TTL) if ``owner`` still owns it (``""``: nobody does). False when another task owns it,
        or it is already ended."""
        ...

    async def heartbeat(self, owner: str) -> None: ...

    async def alive(self, owner: str, within: float) -> bool:
        """Whether ``owner`` sent a heartbeat in the last ``within`` seconds."""
        ...

    async def peers(self, within: float) -> list[str]:
        """Every task with a heartbeat in the last ``within`` seconds (possibly a second old)."""
        ...

    async def close(self) -> None: ...


class MemoryDirectory:
    """The directory of a single process (or of tests that share one object). Tombstones are
    dropped after ``RECORD_TTL_SECONDS``, as DynamoDB's TTL does."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._heartbeats: dict[str, float] = {}
        self._tombstones: deque[tuple[float, str]] = deque()  # (when ended, id), oldest first
        self._clock = clock

    async def claim(
        self,
        connection_id: str,
        owner: str,
        *,
        state: Mapping[str, Any] | None = None,
        principal: str = "",
        replacing: SessionRecord | None = None,
    ) -> SessionRecord | None:
        current = self._records.get(connection_id)
        if replacing is None:
            if current is not None:
                return None
            record = SessionRecord(connection_id, owner, 1, dict(state or {}), principal)
        else:
            if current is None or current.version != replacing.version or current.ended:
                return None
            record = replace(
                current,
                owner=owner,
                version=current.version + 1,
                state=dict(state) if state is not None else current.state,
                # The record's principal is the one $connect authenticated: it stays.
                principal=current.principal or principal,
                handed_over_by="",
            )
        self._records[connection_id] = record
        return record

    async def get(self, connection_id: str) -> SessionRecord | None:
        return self._records.get(connection_id)

    async def owner_of(self, connection_id: str) -> Route | None:
        record = self._records.get(connection_id)
        if record is None:
            return None
        return Route(record.owner, record.ended)

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        current = self._records.get(record.connection_id)
        if current is None or (current.owner, current.version) != (record.owner, record.version):
            return None
        saved = replace(current, version=current.version + 1, state=dict(state))
        self._records[record.connection_id] = saved
        return saved

    async def confirm(self, record: SessionRecord) -> SessionRecord | None:
        current = self._records.get(record.connection_id)
        if current is None or (current.owner, current.version) != (record.owner, record.version):
            return None
        confirmed = replace(current, version=current.version + 1)
        self._records[record.connection_id] = confirmed
        return confirmed

    async def release(self, record: SessionRecord, *, forget: bool) -> None:
        current = self._records.get(record.connection_id)
        if current is None or current.owner != record.owner:
            return
        if forget:
            del self._records[record.connection_id]
        else:
            self._records[record.connection_id] = replace(
                current, owner="", version=current.version + 1, handed_over_by=current.owner
            )

    async def end(self, connection_id: str, *, owner: str) -> bool:
        current = self._records.get(connection_id)
        if current is None or current.ended or current.owner != owner:
            return False
        self._records[connection_id] = replace(
            current, owner="", version=current.version + 1, state={}, ended=True
        )
        now = self._clock()
        self._tombstones.append((now, connection_id))
        while self._tombstones and now - self._tombstones[0][0] > RECORD_TTL_SECONDS:
            _, expired = self._tombstones.popleft()
            self._records.pop(expired, None)
        return True

    async def heartbeat(self, owner: str) -> None:
        self._heartbeats[owner] = self._clock()

    async def alive(self, owner: str, within: float) -> bool:
        seen = self._heartbeats.get(owner)
        return seen is not None and self._clock() - seen <= within

    async def peers(self, within: float) -> list[str]:
        now = self._clock()
        return sorted(o for o, seen in self._heartbeats.items() if now - seen <= within)

    async def close(self) -> None:
        return None


class DynamoDirectory:
    """The directory in a DynamoDB table (the stack's ``NOVAKIT_DIRECTORY_TABLE``).

    botocore's client is synchronous; calls run in worker threads. They are few: one per
    connect, hand-over, saved turn and end, one small read per frame that lands on a task not
    holding its session, and one heartbeat per task every few seconds.
    """

    def __init__(
        self,
        table: str,
        region: str,
        client: Any = None,
        *,
        peers_ttl: float = PEERS_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._peers_ttl = peers_ttl
        self._clock = clock
        # The tasks item as last read (when, and every task's heartbeat), for ``peers``.
        self._beats: tuple[float, dict[str, float]] | None = None
        self._stale: set[str] = set()  # tasks gone for good: the next heartbeat removes them
        if client is None:
            from botocore.config import Config
            from botocore.session import get_session

            config = Config(
                connect_timeout=2,
                read_timeout=3,
                retries={"max_attempts": 3, "mode": "adaptive"},
                # A connection for each thread below: with fewer (botocore keeps 10), calls
                # beyond them open a connection each and throw it away.
                max_pool_connections=DIRECTORY_THREADS + 1,
            )
            client = get_session().create_client("dynamodb", region_name=region, config=config)
        self._client = client
        # The directory's own threads, not the loop's default pool (which a tool or anything
        # else may fill): a heartbeat never waits behind other calls, since a late beat can
        # make a slow task look gone.
        self._pool = ThreadPoolExecutor(DIRECTORY_THREADS, thread_name_prefix="directory")
        self._beats_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heartbeat")

    async def _call(self, operation: str, /, **kwargs: Any) -> Any:
        return await self._call_in(self._pool, operation, **kwargs)

    async def _call_in(self, pool: ThreadPoolExecutor, operation: str, /, **kwargs: Any) -> Any:
        call = functools.partial(getattr(self._client, operation), TableName=self._table, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def _conditional_failed(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return bool(code == "ConditionalCheckFailedException")

    async def claim(
        self,
        connection_id: str,
        owner: str,
        *,
        state: Mapping[str, Any] | None = None,
        principal: str = "",
        replacing: SessionRecord | None = None,
    ) -> SessionRecord | None:
        now = int(time.time())
        if replacing is None:
            version = 1
            kept_state: Mapping[str, Any] = state or {}
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            version = replacing.version + 1
            kept_state = state if state is not None else replacing.state
            # The record's principal is the one $connect authenticated: it stays.
            principal = replacing.principal or principal
            condition = {
                "ConditionExpression": "version = :seen AND attribute_not_exists(ended_at)",
                "ExpressionAttributeValues": {":seen": {"N": str(replacing.version)}},
            }
        item = {
            "pk": {"S": f"conn#{connection_id}"},
            "owner": {"S": owner},
            "version": {"N": str(version)},
            "state": {"S": json.dumps(kept_state, separators=(",", ":"))},
            "principal": {"S": principal},
            "updated_at": {"N": str(now)},
            "expires_at": {"N": str(now + RECORD_TTL_SECONDS)},
        }
        try:
            await self._call("put_item", Item=item, **condition)
        except Exception as exc:
            if self._conditional_failed(exc):
                return None
            raise
        return SessionRecord(connection_id, owner, version, dict(kept_state), principal)

    async def get(self, connection_id: str) -> SessionRecord | None:
        response = await self._call(
            "get_item", Key={"pk": {"S": f"conn#{connection_id}"}}, ConsistentRead=True
        )
        item = response.get("Item")
        if item is None:
            return None
        return SessionRecord(
            connection_id,
            item["owner"]["S"],
            int(item["version"]["N"]),
            json.loads(item["state"]["S"]),
            item.get("principal", {}).get("S", ""),
            handed_over_by=item.get("handed_over_by", {}).get("S", ""),
            ended="ended_at" in item,
        )

    async def owner_of(self, connection_id: str) -> Route | None:
        item = await self._read(connection_id, "#owner, ended_at")
        if item is None:
            return None
        return Route(item["owner"]["S"], "ended_at" in item)

    async def _read(self, connection_id: str, fields: str) -> dict[str, Any] | None:
        """A consistent read of a connection's record, only ``fields`` (``#owner`` for
        owner)."""
        response = await self._call(
            "get_item",
            Key={"pk": {"S": f"conn#{connection_id}"}},
            ConsistentRead=True,
            ProjectionExpression=fields,
            ExpressionAttributeNames={"#owner": "owner"},
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        now = int(time.time())
        moved = await self._move_on(
            record,
            "#state = :state, updated_at = :now, expires_at = :exp",
            names={"#state": "state"},
            values={
                ":state": {"S": json.dumps(state, separators=(",", ":"))},
                ":now": {"N": str(now)},
                ":exp": {"N": str(now + RECORD_TTL_SECONDS)},
            },
        )
        return replace(record, version=record.version + 1, state=dict(state)) if moved else None

    async def confirm(self, record: SessionRecord) -> SessionRecord | None:
        moved = await self._move_on(record, "", names={}, values={})
        return replace(record, version=record.version + 1) if moved else None

    async def _move_on(
        self,
        record: SessionRecord,
        update: str,
        *,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> bool:
        """Move the record to the next version (setting ``update`` too) if ``record`` is still
        current; False when another task wrote it since."""
        write = uuid.uuid4().hex
        try:
            await self._call(
                "update_item",
                Key={"pk": {"S": f"conn#{record.connection_id}"}},
                UpdateExpression="SET version = :next, write_id = :write"
                + (f", {update}" if update else ""),
                ConditionExpression="version = :seen AND #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", **names},
                ExpressionAttributeValues={
                    ":next": {"N": str(record.version + 1)},
                    ":seen": {"N": str(record.version)},
                    ":owner": {"S": record.owner},
                    ":write": {"S": write},
                    **values,
                },
            )
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise
            return await self._applied(record, write)
        return True

    async def _applied(self, record: SessionRecord, write: str) -> bool:
        """After a write conditional on ``record`` failed its condition: whether it was this
        very write (its ``write_id``), applied by an earlier attempt whose answer was lost
        (botocore retries a request that timed out), rather than anyone else's."""
        item = await self._read(record.connection_id, "#owner, version, write_id, ended_at")
        return (
            item is not None
            and "ended_at" not in item
            and item.get("write_id", {}).get("S") == write
            and item["owner"]["S"] == record.owner
            and int(item["version"]["N"]) == record.version + 1
        )

    async def release(self, record: SessionRecord, *, forget: bool) -> None:
        key = {"pk": {"S": f"conn#{record.connection_id}"}}
        condition = {
            "ConditionExpression": "#owner = :owner",
            "ExpressionAttributeNames": {"#owner": "owner"},
        }
        try:
            if forget:
                await self._call(
                    "delete_item",
                    Key=key,
                    **condition,
                    ExpressionAttributeValues={":owner": {"S": record.owner}},
                )
            else:
                await self._call(
                    "update_item",
                    Key=key,
                    UpdateExpression=(
                        "SET #owner = :none, version = :next, handed_over_by = :owner"
                    ),
                    **condition,
                    ExpressionAttributeValues={
                        ":owner": {"S": record.owner},
                        ":none": {"S": ""},
                        ":next": {"N": str(record.version + 1)},
                    },
                )
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise

    async def end(self, connection_id: str, *, owner: str) -> bool:
        now = int(self._clock())
        try:
            await self._call(
                "update_item",
                Key={"pk": {"S": f"conn#{connection_id}"}},
                UpdateExpression=(
                    "SET #owner = :none, #state = :empty, version = version + :one,"
                    " ended_at = :now, updated_at = :now, expires_at = :exp"
                ),
                ConditionExpression=(
                    "attribute_exists(pk) AND #owner = :owner AND attribute_not_exists(ended_at)"
                ),
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":none": {"S": ""},
                    ":empty": {"S": "{}"},
                    ":one": {"N": "1"},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(now + RECORD_TTL_SECONDS)},
                },
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                return False
            raise
        return True

    async def heartbeat(self, owner: str) -> None:
        now = self._clock()
        names = {"#me": owner}
        update = "SET #me = :now, expires_at = :exp"
        stale = sorted(self._stale - {owner})
        if stale:
            names.update({f"#gone{i}": address for i, address in enumerate(stale)})
            update += " REMOVE " + ", ".join(f"#gone{i}" for i in range(len(stale)))
        await self._call_in(
            self._beats_pool,
            "update_item",
            Key={"pk": {"S": TASKS_KEY}},
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":now": {"N": f"{now:.3f}"},
                ":exp": {"N": str(int(now) + RECORD_TTL_SECONDS)},
            },
        )
        self._stale.difference_update(stale)

    async def alive(self, owner: str, within: float) -> bool:
        # The clock is read before asking: a slow answer must not make a beat look older.
        now = self._clock()
        response = await self._call(
            "get_item",
            Key={"pk": {"S": TASKS_KEY}},
            ConsistentRead=True,
            ProjectionExpression="#task",
            ExpressionAttributeNames={"#task": owner},
        )
        seen = response.get("Item", {}).get(owner, {}).get("N")
        return seen is not None and now - float(seen) <= within

    async def peers(self, within: float) -> list[str]:
        now = self._clock()
        if self._beats is None or now - self._beats[0] > self._peers_ttl:
            response = await self._call(
                "get_item", Key={"pk": {"S": TASKS_KEY}}, ConsistentRead=True
            )
            item = response.get("Item", {})
            beats = {
                name: float(value["N"])
                for name, value in item.items()
                if name not in ("pk", "expires_at") and "N" in value
            }
            self._beats = (now, beats)
            self._stale.update(a for a, seen in beats.items() if now - seen > STALE_TASK_SECONDS)
        return sorted(a for a, seen in self._beats[1].items() if now - seen <= within)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._beats_pool.shutdown(wait=False, cancel_futures=True)


def create_table(client: Any, table: str) -> None:
    """The table as the stack creates it (for local DynamoDB-compatible servers and tests)."""
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
