"""Scale-out: three bridge processes behind one gateway. Frames reach their owner wherever they
land; a killed process's sessions are taken over with their history; a stopped one hands its
sessions over; racing takeovers have one winner. What each client heard is asserted."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import aiohttp

from novakit.bridge.cluster import ADOPT_HEADER, RELAYED_HEADER
from novakit.emulator import Script, ScriptTurn

from ..gateway_auth import gateway_headers, signed
from ..stack.conftest import Client, connect
from .conftest import cluster, no_sessions

TURNS = Script(
    (
        ScriptTurn(transcript="first question", reply="First answer."),
        ScriptTurn(transcript="second question", reply="Second answer."),
        ScriptTurn(transcript="third question", reply="Third answer."),
    )
)


def turn_ends(client: Client) -> int:
    return len(client.of_type("turn_end"))


def finals(client: Client) -> list[str]:
    return [f["text"] for f in client.of_type("text") if f["final"]]


async def converse(client: Client, turns: int) -> None:
    for n in range(1, turns + 1):
        await client.speak(0.8, pause=0.6)
        await client.wait_for(lambda f, n=n: turn_ends(client) >= n, within=60)


async def keep_talking_until(client: Client, accept, within: float) -> dict:
    """Stream silence, as a live microphone does, until a frame ``accept`` takes arrives."""

    async def silence() -> None:
        while True:
            await client.send_audio(bytes(1024))
            await asyncio.sleep(0.032)

    pump = asyncio.create_task(silence())
    try:
        return await client.wait_for(accept, within=within)
    finally:
        pump.cancel()


def audio_of_stream(record) -> bytes:
    return b"".join(
        base64.b64decode(e.body["content"]) for e in record.output_events if e.name == "audioOutput"
    )


async def test_thirty_conversations_over_three_processes(tmp_path: Path) -> None:
    async with cluster(tmp_path) as running:
        running.emulator.script = TURNS
        clients: list[Client] = []

        async def one() -> Client:
            async with connect(running.url) as client:
                await converse(client, 2)
                return client

        clients = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(30))), 150)
        records = await running.emulator.wait_for_streams(30, timeout=60)
        # one Bedrock stream per conversation, opened by whichever process owns it
        assert len(records) == 30
        expected_audio = audio_of_stream(records[0])
        owners = set()
        for client in clients:
            ready = client.frames[0]
            assert (ready["type"], ready["state"]) == ("session", "ready")
            assert [f["text"] for f in client.of_type("transcript")] == [
                "first question",
                "second question",
            ]
            assert finals(client) == ["First answer.", "Second answer."]
            assert client.audio_bytes() == expected_audio  # every byte, in order
            assert [f["seq"] for f in client.frames] == list(range(len(client.frames)))
            owners.add(ready["connection_id"])
        assert len(owners) == 30
        # frames were spread over every process, and relayed to the owners
        logs = [b.log.read_text() for b in running.bridges]
        assert all('"session open"' in text for text in logs)


async def test_a_killed_process_sessions_are_taken_over_with_history(tmp_path: Path) -> None:
    async with cluster(tmp_path) as running:
        running.emulator.script = TURNS
        async with (
            connect(running.url) as a,
            connect(running.url) as b,
            connect(running.url) as c,
        ):
            clients = [a, b, c]
            await asyncio.gather(*(converse(x, 1) for x in clients))
            owners = [
                (await running.directory.get(x.frames[0]["connection_id"])).owner for x in clients
            ]
            victim = running.bridges[0]
            orphans = [x for x, owner in zip(clients, owners, strict=True) if owner == victim.url]
            assert orphans, "round-robin connects put one session on each process"
            killed_at = time.monotonic()
            victim.kill()
            for client in orphans:
                resumed = await keep_talking_until(
                    client, lambda f: f.get("state") == "resumed", within=15
                )
                assert resumed["type"] == "session"
            takeover = time.monotonic() - killed_at
            assert takeover < 10, f"takeover took {takeover:.1f} s"
            # after the takeover nothing is lost: the next turns are heard in full
            for client in clients:
                await converse_more(client)
            for client in orphans:
                assert finals(client)[-1] == "Second answer."
                assert [f["text"] for f in client.of_type("transcript")][-1] == "second question"
        # the new streams began with the conversation so far
        resumed_streams = [
            r
            for r in running.emulator.records
            if any(
                e.name == "textInput" and e.body.get("content") == "first question"
                for e in r.input_events
            )
        ]
        assert len(resumed_streams) == len(orphans)
        for record in resumed_streams:
            texts = [e.body["content"] for e in record.input_events if e.name == "textInput"]
            assert texts[1:3] == ["first question", "First answer."]


async def test_racing_takeovers_have_one_winner(tmp_path: Path) -> None:
    async with cluster(tmp_path) as running:
        running.emulator.script = TURNS
        connection_id = "RaceTestConn0=="
        dead = "http://127.0.0.1:9"  # nothing listens there
        record = await running.directory.claim(
            connection_id, dead, state={"history": [{"role": "user", "text": "hello"}]}
        )
        assert record is not None
        frame = json.dumps({"type": "text", "text": "are you there"})
        headers = gateway_headers(connection_id, **{"x-route-key": "$default"})

        async def post(bridge_url: str) -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{bridge_url}/ws/message", data=frame, headers=headers) as response,
            ):
                return response.status

        statuses = await asyncio.gather(*(post(b.url) for b in running.bridges))
        assert statuses == [200, 200, 200]
        owner = (await running.directory.get(connection_id)).owner
        assert owner in {b.url for b in running.bridges}
        # exactly one process opened a Bedrock stream for it, and it got all three frames
        (stream,) = await running.emulator.wait_for_streams(1, timeout=60)
        # once no process holds a session, no other stream can come
        await no_sessions(running)
        assert len(running.emulator.records) == 1
        typed = [e.body["content"] for e in stream.input_events if e.name == "textInput"]
        assert typed.count("are you there") == 3
        assert "hello" in typed


async def test_sigterm_hands_sessions_over_without_losing_a_turn(tmp_path: Path) -> None:
    async with cluster(tmp_path) as running:
        running.emulator.script = TURNS
        async with connect(running.url) as client:
            await converse(client, 1)
            owner_url = (await running.directory.get(client.frames[0]["connection_id"])).owner
            owner = next(b for b in running.bridges if b.url == owner_url)
            owner.terminate()
            await keep_talking_until(client, lambda f: f.get("state") == "resumed", within=15)
            assert await asyncio.to_thread(owner.process.wait, 20) == 0
            await converse_more(client)
            assert finals(client) == ["First answer.", "Second answer."]
            assert not [f for f in client.frames if f.get("state") == "ended"]
            assert not client.of_type("error")


async def test_a_handed_over_frame_goes_to_the_task_that_adopted_the_session(
    tmp_path: Path,
) -> None:
    # A task that is shutting down passes its frames to its peers in turn. Once one peer has
    # adopted the session, a frame the draining task passes to another peer must reach the
    # adopter: taking the session from it would leave two sessions answering one client.
    async with cluster(tmp_path) as running:
        running.emulator.script = TURNS
        async with connect(running.url) as client:
            await converse(client, 1)
            connection_id = client.frames[0]["connection_id"]
            adopter = (await running.directory.get(connection_id)).owner
            other = next(b for b in running.bridges if b.url != adopter)
            draining = "http://127.0.0.1:9"  # the task handing over; not the owner any more
            headers = gateway_headers(
                connection_id, **{"x-route-key": "$default", RELAYED_HEADER: "1"}
            )
            headers[ADOPT_HEADER] = draining
            frame = json.dumps({"type": "ping"}).encode()
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    other.url + "/ws/message",
                    data=frame,
                    headers=signed("/ws/message", headers, frame),
                ) as response,
            ):
                assert response.status == 200
            assert (await running.directory.get(connection_id)).owner == adopter
            await client.wait_for(lambda f: f.get("type") == "pong", within=5)
            await converse_more(client)
            assert finals(client) == ["First answer.", "Second answer."]
            assert [f["state"] for f in client.of_type("session")] == ["ready"]


async def converse_more(client: Client) -> None:
    before = turn_ends(client)
    await client.speak(0.8, pause=0.6)
    await client.wait_for(lambda f: turn_ends(client) > before, within=30)
