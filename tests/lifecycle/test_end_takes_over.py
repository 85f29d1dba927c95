"""The owner's task died; the user's ``end`` is the frame that reaches a live task. The
conversation is over: ending it needs no new Bedrock stream (issue 14: no Bedrock stream after a
goodbye)."""

from __future__ import annotations

import json

from novakit.bridge.directory import MemoryDirectory
from novakit.dev import free_port

from ..bridge.test_session import until
from .tasks import call, stop, task

B = "http://10.0.0.2:8080"


async def test_an_end_reaching_a_new_owner_opens_no_bedrock_stream() -> None:
    directory = MemoryDirectory()
    dead = f"http://127.0.0.1:{free_port()}"  # the owner's task is gone: relays are refused
    history = [{"role": "user", "text": "hello"}, {"role": "assistant", "text": "Hi!"}]
    state = {"stage": "", "dialect": "v1", "history": history, "options": {"voice": "matthew"}}
    assert await directory.claim("c=", dead, state=state) is not None
    b, b_out = await task(directory, B)
    try:
        end = json.dumps({"type": "end"}).encode()
        assert (await call(b, "/ws/message", "c=", end)).status == 200
        await until(lambda: "c=" not in b.sessions, within=10)
        route = await directory.owner_of("c=")
        assert route is not None and route.ended
        states = [f.get("state") for f in b_out.frames() if f["type"] == "session"]
        streams = len(b.engine.histories)  # type: ignore[attr-defined]
        assert streams == 0, f"{streams} Bedrock stream opened to say goodbye; client: {states}"
    finally:
        await stop(b)
