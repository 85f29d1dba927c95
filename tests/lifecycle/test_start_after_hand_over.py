"""A task drains (a deploy) between a client's ``$connect`` and its ``start`` frame: the peer
that adopts the connection must still honour that ``start`` (its voice, its sample rates), since
the conversation has not started; a telephony client's 8 kHz audio read as 16 kHz is noise."""

from __future__ import annotations

import json

from novakit.bridge.directory import MemoryDirectory

from .tasks import call, stop, task

A = "http://10.0.0.1:8080"
B = "http://10.0.0.2:8080"


async def test_a_start_after_a_hand_over_sets_the_conversations_options() -> None:
    directory = MemoryDirectory()
    a, _ = await task(directory, A)
    b, b_out = await task(directory, B)
    try:
        assert (await call(a, "/ws/connect", "c=")).status == 200
        await a.drain(0.0)  # SIGTERM right after $connect: B is alive, A hands over
        assert "c=" not in a.sessions
        start = {"type": "start", "voice": "tiffany", "input_sample_rate": 8000}
        assert (await call(b, "/ws/message", "c=", json.dumps(start).encode())).status == 200
        await b_out.wait_for("session")
        frames = b_out.frames()
        sessions = [f for f in frames if f["type"] == "session"]
        errors = [f.get("code") for f in frames if f["type"] == "error"]
        assert errors == [], f"the client's start was refused: {errors}"
        assert (sessions[0]["voice"], sessions[0]["input_sample_rate"]) == ("tiffany", 8000)
    finally:
        await stop(a, b)
