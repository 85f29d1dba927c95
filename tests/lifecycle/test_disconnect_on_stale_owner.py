"""``$disconnect`` reaching a task that was frozen and whose session another task took over,
before the woken task fenced itself: it ends its stale copy and writes nothing, and the new
owner is never told the client left."""

from __future__ import annotations

from novakit.bridge.directory import MemoryDirectory
from novakit.dev import free_port

from ..bridge.test_session import until
from ..bridge.test_tenure import Clock
from .tasks import audio, call, stop, task

A = "http://10.0.0.1:8080"


async def test_a_disconnect_on_a_task_whose_session_was_taken_over_reaches_the_conversation() -> (
    None
):
    clock = Clock()
    directory = MemoryDirectory(clock=clock)
    a, a_out = await task(directory, A, clock)
    b_address = f"http://127.0.0.1:{free_port()}"  # the new owner (nobody answers relays there)
    try:
        assert (await call(a, "/ws/connect", "c=")).status == 200
        assert (await call(a, "/ws/message", "c=", audio(0))).status == 200
        await a_out.wait_for("session")
        # A freezes (SIGSTOP) past the owner timeout; B takes the session over meanwhile
        clock.now += 20.0
        record = await directory.get("c=")
        assert record is not None and record.owner == A
        await directory.heartbeat(b_address)
        assert await directory.claim("c=", b_address, replacing=record) is not None
        # A wakes; the client leaves and API Gateway sends $disconnect to A
        assert (await call(a, "/ws/disconnect", "c=")).status == 200
        await until(lambda: "c=" not in a.sessions)
        route = await directory.owner_of("c=")
        # expected: the $disconnect goes to the conversation's owner (here gone: then the
        # conversation is over, a tombstone); observed: A took it for its own and wrote nothing
        assert route is not None and route.ended, (
            f"the conversation lives on at {route.owner if route else None!r},"
            f" while task A remembers it ended: {'c=' in a.ended}"
        )
    finally:
        await stop(a)
