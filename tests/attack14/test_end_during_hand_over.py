"""The client's ``end`` reaching a task while it hands the session over (a deploy): the user
ended the conversation, so the peer must not resume it on the microphone audio still in
flight."""

from __future__ import annotations

import asyncio
import json

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
        "fault: an end frame reaching a session that hands over is dropped silently: the "
        "peer resumes"
    ),
)
async def test_an_end_during_a_hand_over_is_not_lost() -> None:
    directory = MemoryDirectory()
    a, a_out = await task(directory, A)
    b, b_out = await task(directory, B)
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
        # the user presses Disconnect: `end` reaches task A
        end = json.dumps({"type": "end"}).encode()
        assert (await call(a, "/ws/message", "c=", end)).status == 200
        model.may_close.set()
        await draining
        # microphone audio sent just before the end reaches task B
        await call(b, "/ws/message", "c=", audio(1))
        told = [f for f in a_out.frames() + b_out.frames() if f["type"] != "pong"]
        assert "c=" not in b.sessions, (
            "B resumed a conversation the user ended; the client got "
            f"{[(f['type'], f.get('state') or f.get('code')) for f in told]}"
        )
    finally:
        await stop(a, b)
