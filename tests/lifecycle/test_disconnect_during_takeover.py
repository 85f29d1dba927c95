"""``$disconnect`` reaching a task while that task is taking the session over (its claim is
written, the session not yet made): the disconnect must end the conversation, not leave a
session running, with a Bedrock stream, on a record already marked ended."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from novakit.bridge.directory import MemoryDirectory, SessionRecord
from novakit.dev import free_port

from ..bridge.test_session import until
from .tasks import audio, call, stop, task

B = "http://10.0.0.2:8080"


class SlowClaims(MemoryDirectory):
    """A takeover's claim is written at once but answered late (DynamoDB's latency)."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()
        self.answer = asyncio.Event()

    async def claim(
        self,
        connection_id: str,
        owner: str,
        *,
        state: Mapping[str, Any] | None = None,
        principal: str = "",
        replacing: SessionRecord | None = None,
    ) -> SessionRecord | None:
        claimed = await super().claim(
            connection_id, owner, state=state, principal=principal, replacing=replacing
        )
        if replacing is not None:
            self.claiming.set()
            await self.answer.wait()
        return claimed


async def test_a_disconnect_while_this_task_takes_the_session_over_ends_it() -> None:
    directory = SlowClaims()
    dead = f"http://127.0.0.1:{free_port()}"  # the owner's task is gone: relays are refused
    assert await directory.claim("c=", dead, state={"options": {}}) is not None
    b, b_out = await task(directory, B)
    try:
        frame = asyncio.create_task(call(b, "/ws/message", "c=", audio(5)))
        await asyncio.wait_for(directory.claiming.wait(), 10)
        # the client leaves; API Gateway's $disconnect lands on B too
        assert (await call(b, "/ws/disconnect", "c=")).status == 200
        directory.answer.set()
        await frame
        route = await directory.owner_of("c=")
        assert route is not None and route.ended  # B marked the conversation over...
        # ...so B must not be running it
        await until(lambda: "c=" not in b.sessions or b_out.posted != [], within=5)
        assert "c=" not in b.sessions, (
            f"B runs a session for a connection it marked ended; it posted {b_out.frames()}"
        )
    finally:
        await stop(b)
