"""The session directory: which bridge task owns which connection, and what it needs to resume.

API Gateway's VPC link spreads a connection's frames over every task, but only one task holds
the connection's Bedrock stream. The directory records ``connection id -> owner`` with the
state a new owner needs (options, conversation history), and each task's heartbeat. Ownership
changes only by conditional write, so two tasks never both own a session: a task takes a
session over only if the record still names the owner it saw, and that owner is gone.

Two implementations pass the same tests: ``MemoryDirectory`` (one process) and
``DynamoDirectory`` (a DynamoDB table; ``AWS_ENDPOINT_URL_DYNAMODB`` points it at a local
DynamoDB-compatible server in tests).

Table layout (partition key ``pk``, string; TTL attribute ``expires_at``):

- ``conn#{connection id}``: ``owner``, ``version``, ``state`` (JSON), ``principal``,
  ``updated_at``, ``expires_at``; ``handed_over_by`` while a draining task has handed it over
- ``task#{owner address}``: ``heartbeat_at``, ``expires_at``
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

# Records outlive API Gateway's 2-hour connection limit, then DynamoDB's TTL removes them.
RECORD_TTL_SECONDS = 3 * 3600


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

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        """Store new state if ``record`` is still current (same owner and version)."""
        ...

    async def release(self, record: SessionRecord, *, forget: bool) -> None:
        """Give up ownership: delete the record (``forget``, the client left) or clear its
        owner so that another task takes the session on (hand-over), marking the record as
        handed over by ``record.owner``."""
        ...

    async def heartbeat(self, owner: str) -> None: ...

    async def alive(self, owner: str, within: float) -> bool:
        """Whether ``owner`` sent a heartbeat in the last ``within`` seconds."""
        ...

    async def peers(self, within: float) -> list[str]:
        """Every task with a heartbeat in the last ``within`` seconds."""
        ...

    async def close(self) -> None: ...


class MemoryDirectory:
    """The directory of a single process (or of tests that share one object)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._heartbeats: dict[str, float] = {}
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
            if current is None or current.version != replacing.version:
                return None
            record = replace(
                current,
                owner=owner,
                version=current.version + 1,
                state=dict(state) if state is not None else current.state,
                handed_over_by="",
            )
        self._records[connection_id] = record
        return record

    async def get(self, connection_id: str) -> SessionRecord | None:
        return self._records.get(connection_id)

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        current = self._records.get(record.connection_id)
        if current is None or (current.owner, current.version) != (record.owner, record.version):
            return None
        saved = replace(current, version=current.version + 1, state=dict(state))
        self._records[record.connection_id] = saved
        return saved

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
    connect, hand-over and saved turn, and one heartbeat per task every few seconds.
    """

    def __init__(self, table: str, region: str, client: Any = None) -> None:
        self._table = table
        if client is None:
            from botocore.config import Config
            from botocore.session import get_session

            config = Config(
                connect_timeout=2, read_timeout=3, retries={"max_attempts": 3, "mode": "adaptive"}
            )
            client = get_session().create_client("dynamodb", region_name=region, config=config)
        self._client = client

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(
            getattr(self._client, operation), TableName=self._table, **kwargs
        )

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
            principal = principal or replacing.principal
            condition = {
                "ConditionExpression": "version = :seen",
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
            item.get("handed_over_by", {}).get("S", ""),
        )

    async def save(self, record: SessionRecord, state: Mapping[str, Any]) -> SessionRecord | None:
        now = int(time.time())
        try:
            await self._call(
                "update_item",
                Key={"pk": {"S": f"conn#{record.connection_id}"}},
                UpdateExpression=(
                    "SET #state = :state, version = :next, updated_at = :now, expires_at = :exp"
                ),
                ConditionExpression="version = :seen AND #owner = :owner",
                ExpressionAttributeNames={"#state": "state", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":state": {"S": json.dumps(state, separators=(",", ":"))},
                    ":next": {"N": str(record.version + 1)},
                    ":seen": {"N": str(record.version)},
                    ":owner": {"S": record.owner},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(now + RECORD_TTL_SECONDS)},
                },
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                return None
            raise
        return replace(record, version=record.version + 1, state=dict(state))

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

    async def heartbeat(self, owner: str) -> None:
        now = time.time()
        await self._call(
            "put_item",
            Item={
                "pk": {"S": f"task#{owner}"},
                "heartbeat_at": {"N": f"{now:.3f}"},
                "expires_at": {"N": str(int(now) + RECORD_TTL_SECONDS)},
            },
        )

    async def alive(self, owner: str, within: float) -> bool:
        response = await self._call(
            "get_item", Key={"pk": {"S": f"task#{owner}"}}, ConsistentRead=True
        )
        item = response.get("Item")
        return item is not None and time.time() - float(item["heartbeat_at"]["N"]) <= within

    async def peers(self, within: float) -> list[str]:
        # A few tasks, a few items: a filtered scan is cheaper than an index here.
        found: list[str] = []
        kwargs: dict[str, Any] = {
            "FilterExpression": "begins_with(pk, :task)",
            "ExpressionAttributeValues": {":task": {"S": "task#"}},
            "ConsistentRead": True,
        }
        now = time.time()
        while True:
            page = await self._call("scan", **kwargs)
            for item in page.get("Items", []):
                if now - float(item["heartbeat_at"]["N"]) <= within:
                    found.append(item["pk"]["S"].removeprefix("task#"))
            if "LastEvaluatedKey" not in page:
                return sorted(found)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def create_table(client: Any, table: str) -> None:
    """The table as the stack creates it (for local DynamoDB-compatible servers and tests)."""
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
