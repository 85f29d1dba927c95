"""A task that was frozen wakes with a session another task took over, and ends its stale copy
(its idle timer fired) while the directory is slow to answer the fence: it must not close the
WebSocket of the conversation the new owner now serves, nor remember it as ended."""

from __future__ import annotations

import asyncio

from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.liveness import LivenessEnd
from novakit.dev import free_port

from ..bridge.test_tenure import Clock
from .tasks import audio, call, stop, task

A = "http://10.0.0.1:8080"


class SlowBeats(MemoryDirectory):
    """Heartbeat writes hang while ``slow`` is set (a throttled table, a network blip)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.slow = False
        self.released = asyncio.Event()

    async def heartbeat(self, owner: str) -> None:
        if self.slow:
            await self.released.wait()
        await super().heartbeat(owner)


async def test_a_woken_owner_never_hangs_up_on_a_conversation_taken_over() -> None:
    clock = Clock()
    directory = SlowBeats(clock)
    a, a_out = await task(directory, A, clock)
    b_address = f"http://127.0.0.1:{free_port()}"
    try:
        assert (await call(a, "/ws/connect", "c=")).status == 200
        assert (await call(a, "/ws/message", "c=", audio(0))).status == 200
        await a_out.wait_for("session")
        session = a.sessions["c="]
        # A freezes past the owner timeout; B takes the conversation over and serves it
        clock.now += 20.0
        record = await directory.get("c=")
        assert record is not None
        await directory.heartbeat(b_address)
        assert await directory.claim("c=", b_address, replacing=record) is not None
        # A wakes; the directory is slow; the stale session's idle timer fires
        directory.slow = True
        session.end(LivenessEnd.CLIENT_IDLE)
        assert await session.wait_ended(30)
        route = await directory.owner_of("c=")
        assert route is not None and route.owner == b_address and not route.ended
        posted = [f.get("state") or f["type"] for f in a_out.frames()]
        assert posted == ["ready"], posted  # nothing posted after the takeover: the guard held
        # expected: A fenced (or gave up) quietly; observed: it closes B's client
        assert a_out.hung_up == [], "the stale owner closed the new owner's WebSocket"
        assert "c=" not in a.ended, "the stale owner refuses the live conversation's frames"
    finally:
        directory.released.set()
        await stop(a)
