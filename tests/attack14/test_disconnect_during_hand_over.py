"""``$disconnect`` that reaches a task while it hands the session over (a deploy): the client
left, so the conversation is over and must never be adopted by the peer."""

from __future__ import annotations

import asyncio

import pytest

from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.session import State

from ..bridge.test_session import until
from .tasks import GatedClose, audio, call, stop, task

A = "http://10.0.0.1:8080"
B = "http://10.0.0.2:8080"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "fault: on_disconnect ignores a session already ending for a hand-over: no "
        "tombstone, the peer resumes"
    ),
)
async def test_a_disconnect_during_a_hand_over_is_not_lost() -> None:
    directory = MemoryDirectory()
    a, a_out = await task(directory, A)
    b, _ = await task(directory, B)
    try:
        assert (await call(a, "/ws/connect", "c=")).status == 200
        assert (await call(a, "/ws/message", "c=", audio(0))).status == 200
        await a_out.wait_for("session")
        session = a.sessions["c="]
        model = a.engine.session  # type: ignore[attr-defined]
        assert isinstance(model, GatedClose)
        model.may_close.clear()  # Bedrock takes a moment to close the stream
        draining = asyncio.create_task(a.drain(0.0))  # SIGTERM: B is alive, hand over
        await until(lambda: session.state is State.ENDING)
        # the client closes its WebSocket now; API Gateway sends $disconnect to task A
        assert (await call(a, "/ws/disconnect", "c=")).status == 200
        model.may_close.set()
        await draining
        # a frame API Gateway had queued before the close reaches task B
        answer = await call(b, "/ws/message", "c=", audio(1))
        route = await directory.owner_of("c=")
        # expected: the conversation is over (the client left); B refuses the frame
        assert "c=" not in b.sessions, (
            f"B adopted a conversation whose client left (answer {answer.status}, record {route})"
        )
        assert route is not None and route.ended
    finally:
        await stop(a, b)
