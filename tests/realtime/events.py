"""Reading a Realtime connection the way its SDK defines it: every server event the bridge sends
is validated against the ``openai`` package's own pydantic type for it (``RealtimeServerEvent``),
fields the SDK does not define included (none may be there)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def unknown_fields(model: BaseModel, path: str = "") -> list[str]:
    """Fields of ``model`` (and of the models inside it) that its type does not define."""
    found = [f"{path}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value if isinstance(value, list) else [value]
        for index, item in enumerate(values):
            if isinstance(item, BaseModel):
                where = f"{path}{name}[{index}]." if isinstance(value, list) else f"{path}{name}."
                found += unknown_fields(item, where)
    return found


def validated(raw: bytes | str) -> tuple[dict[str, Any], BaseModel]:
    """The event as JSON and as the SDK's model of its type; AssertionError if it does not fit."""
    data = json.loads(raw)
    model = SERVER_EVENT.validate_python(data)
    assert model.type == data["type"], f"{data['type']} parsed as {type(model).__name__}"
    extra = unknown_fields(model)
    assert not extra, f"{data['type']}: fields the SDK does not define: {extra}"
    return data, model


@dataclass
class Events:
    """Every event received on one connection, in order, each validated."""

    connection: Any  # the SDK's AsyncRealtimeConnection
    received: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # bytes of each frame

    async def next(self) -> dict[str, Any]:
        raw = await self.connection.recv_bytes()
        self.sizes.append(len(raw))
        data, _ = validated(raw)
        self.received.append(data)
        return data

    async def until(
        self, kind: str, within: float, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> dict[str, Any]:
        """Read on until an event of type ``kind`` (matching ``where``); it is returned."""
        async with asyncio.timeout(within):
            while True:
                event = await self.next()
                if event["type"] == kind and where(event):
                    return event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.received]
