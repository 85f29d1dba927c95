"""A conversation ends when its user ends it: after ``end``, microphone audio still in flight
is refused (the client is told once), the bridge sends one ``ended`` and closes the connection,
and no second Bedrock stream is opened. What the emulator saw is counted."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import websockets

from novakit import audio
from novakit.emulator import Script, ScriptTurn

from .conftest import Client, connect, kind, local_stack

HELLO = Script((ScriptTurn(transcript="hi", reply="Hello."),))


async def end_with_audio_in_flight(client: Client) -> None:
    """``end``, then the microphone frames a client still sends: some right behind it, some
    after ``ended`` came back (they were on their way when it was posted)."""
    await client.speak(0.8)
    await client.wait_for(kind("turn_end"))
    await client.send({"type": "end"})
    with contextlib.suppress(websockets.ConnectionClosed):
        await client.send_audio(audio.silence(0.32))
        await client.wait_for(lambda f: f.get("state") == "ended")
        await client.send_audio(audio.silence(0.32))
    # the bridge closes the connection (docs/protocol.md: after ended)
    await asyncio.wait_for(client.closed.wait(), 20)


def assert_ended_once(client: Client) -> None:
    states = [f["state"] for f in client.of_type("session")]
    assert states == ["ready", "ended"], states  # never resumed as a new conversation
    # Told at most once, however many frames came, and before ``ended``. A frame that reaches
    # the session while it is ending gets that error; one that arrives after the end (a busy
    # machine, a relay between tasks) is refused in the integration response only: the client
    # has its ``ended`` already.
    errors = [(f["code"], f["fatal"]) for f in client.of_type("error")]
    assert errors in ([], [("session_ended", True)]), errors
    kinds = [f["type"] for f in client.frames]
    assert kinds[-1] == "session" and "error" not in kinds[kinds.index("session", 1) :]
    assert [f["seq"] for f in client.frames] == list(range(len(client.frames)))


async def test_end_with_audio_in_flight_is_one_stream_and_one_ended(tmp_path: Path) -> None:
    async with local_stack(tmp_path) as stack:
        stack.emulator.script = HELLO
        async with connect(stack) as client:
            await end_with_audio_in_flight(client)
        assert_ended_once(client)
        # A later conversation goes through the same bridge after every frame above: by the
        # time it is over, a stream opened for the ended one would have been counted.
        async with connect(stack) as later:
            await later.speak(0.8)
            await later.wait_for(kind("turn_end"))
        records = await stack.emulator.wait_for_streams(2)
        assert len(records) == 2
        assert records[0].session_end_received  # the ended conversation's, closed in order
