"""A session ends when its client is gone, even when ``$disconnect`` never comes, and a silent
client does not keep Bedrock streams open (issue 13, item 5). Short settings stand in for the
real ones (10 min idle, 30 s first frame, 60 s presence, 120 s keep-alive bound, ~3 min
Bedrock idle cut)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator

import pytest

from novakit.bridge.liveness import LivenessEnd
from novakit.bridge.protocol import ClientPing
from novakit.bridge.session import State
from novakit.emulator import Emulator, EmulatorConfig, Outcome, Script, ScriptTurn
from tests.contract.dialogue import history_sent

from .harness import CONNECTION_ID, conversation, nova_engine

Q1, R1 = "what time is it", "It is noon."
Q2, R2 = "and tomorrow", "Tomorrow is Tuesday."


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    script = Script((ScriptTurn(R1, transcript=Q1), ScriptTurn(R2, transcript=Q2)))
    # Bedrock's idle cut (~3 min) compressed to 1.5 s.
    config = EmulatorConfig(
        endpoint_seconds=0.4, pace=0, script=script, script_scope="emulator", idle_seconds=1.5
    )
    async with Emulator(config) as emulator:
        yield emulator


def ending_logged(caplog: pytest.LogCaptureFixture, reason: str) -> bool:
    return any(
        r.getMessage() == f"session ending: {reason}"
        and getattr(r, "connection_id", None) == CONNECTION_ID
        and getattr(r, "reason", None) == reason
        for r in caplog.records
    )


def is_turn_end(frame: dict[str, object]) -> bool:
    return frame.get("type") == "turn_end"


async def test_lost_disconnect_idle_client_ends_the_session_and_its_stream(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novakit.bridge.session")
    async with conversation(
        nova_engine(emu), idle_seconds=1.5, first_frame_seconds=0, presence_seconds=0
    ) as talk:
        talk.type(Q1)
        last_frame = time.monotonic()
        await talk.gateway.wait_for(is_turn_end)  # answered while the client was still there
        # The client is gone; API Gateway's $disconnect never reaches the bridge.
        assert await talk.session.wait_ended(15)
        ended_after = time.monotonic() - last_frame
        await emu.wait_for_streams(1, timeout=10)

        assert talk.ended == [talk.session] and talk.session.state is State.ENDED
        assert 1.5 <= ended_after < 8.0
        assert talk.count("EndedClientIdle") == 1 and talk.count("SessionsEnded") == 1
        assert ending_logged(caplog, LivenessEnd.CLIENT_IDLE)
        # Its Bedrock stream was closed in order, not left to Bedrock's limits.
        assert len(emu.records) == 1
        assert emu.records[0].outcome is Outcome.COMPLETED
        assert talk.gateway.deletes == 1  # hung up, in case API Gateway still holds it


async def test_frames_keep_an_idle_timeout_from_ending_a_live_session(emu: Emulator) -> None:
    async with conversation(
        nova_engine(emu), idle_seconds=1.0, first_frame_seconds=0, presence_seconds=0
    ) as talk:
        talk.type(Q1)
        began = time.monotonic()
        while time.monotonic() - began < 2.5:  # pings only: the client is there
            talk.session.receive(ClientPing())
            await asyncio.sleep(0.2)
        assert talk.session.state is State.OPEN and not talk.ended
        assert await talk.session.wait_ended(10)  # then it stops sending
        assert talk.count("EndedClientIdle") == 1


async def test_no_first_frame_ends_the_session_without_a_stream(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novakit.bridge.session")
    async with conversation(
        nova_engine(emu), first_frame_seconds=0.5, idle_seconds=0, presence_seconds=0
    ) as talk:
        began = time.monotonic()
        assert await talk.session.wait_ended(10)
        assert time.monotonic() - began >= 0.5
        assert talk.ended == [talk.session]
        assert talk.count("EndedNoFirstFrame") == 1
        assert ending_logged(caplog, LivenessEnd.NO_FIRST_FRAME)
        assert emu.records == []  # no Bedrock stream was ever opened for it
        assert talk.gateway.deletes == 1


async def test_gone_from_get_connections_ends_the_session(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novakit.bridge.session")
    async with conversation(
        nova_engine(emu), presence_seconds=0.3, idle_seconds=0, first_frame_seconds=0
    ) as talk:
        talk.type(Q1)
        await talk.gateway.wait_for(is_turn_end)
        # Checks that find the client keep the session.
        await talk.gateway.until(lambda: talk.gateway.gets >= 2, within=10)
        assert talk.session.state is State.OPEN
        talk.gateway.gone = True  # the client left; $disconnect was lost
        assert await talk.session.wait_ended(10)
        await emu.wait_for_streams(1, timeout=10)
        assert talk.count("EndedClientGone") == 1
        assert ending_logged(caplog, LivenessEnd.CLIENT_ABSENT)
        assert emu.records[0].outcome is Outcome.COMPLETED


def keepalive_seconds(emu: Emulator, index: int) -> float:
    """Seconds of audio stream ``index`` was sent."""
    sent = sum(
        len(base64.b64decode(e.body["content"]))
        for e in emu.records[index].input_events
        if e.name == "audioInput"
    )
    return sent / 32000


@pytest.mark.parametrize("resume", ["text", "audio"])
async def test_a_silent_client_burns_no_streams_and_resumes_with_its_history(
    emu: Emulator, resume: str
) -> None:
    engine = nova_engine(emu, keepalive_after=0.2, keepalive_limit=1.0)
    async with conversation(
        engine, idle_seconds=0, first_frame_seconds=0, presence_seconds=0
    ) as talk:
        talk.type(Q1)
        await talk.gateway.wait_for(is_turn_end)

        # Then only pings: the client is connected but says nothing. The keep-alive stops
        # after its bound, Bedrock cuts the stream for idleness, and no stream replaces it.
        async def ping_until(done: float) -> None:
            while time.monotonic() < done:
                talk.session.receive(ClientPing())
                await asyncio.sleep(0.2)

        pinging = asyncio.create_task(ping_until(time.monotonic() + 60))
        try:
            await emu.wait_for_streams(1, timeout=20)
            record = emu.records[0]
            assert record.outcome is Outcome.TIMEOUT
            assert record.error is not None and "531" in record.error.message
            silent_until = time.monotonic() + 3.0  # several idle cuts' worth of time
            while time.monotonic() < silent_until:
                assert len(emu.records) == 1, "a stream was opened for a silent client"
                await asyncio.sleep(0.1)
        finally:
            pinging.cancel()
        # All that stream heard after the text was keep-alive silence, bounded by the limit
        # (less the 0.2 s before it starts; up to 1 s of catch-up on a busy machine).
        assert 0.2 <= keepalive_seconds(emu, 0) <= 2.0
        assert talk.session.state is State.OPEN and not talk.ended

        # The client speaks again: a new stream, with what was said before.
        if resume == "text":
            talk.type(Q2)
        else:
            await talk.speak(0.8)
        await talk.gateway.wait_for(lambda f: len(talk.gateway.of_type("turn_end")) >= 2)
        assert len(emu.records) == 2
        history = history_sent(emu.records[1].input_events)
        assert history == [("USER", Q1), ("ASSISTANT", R1)]
        finals = [f["text"] for f in talk.gateway.of_type("text") if f.get("final")]
        assert finals == [R1, R2]
        reconnected = [
            f for f in talk.gateway.of_type("session") if f.get("state") == "reconnected"
        ]
        assert [f.get("reason") for f in reconnected] == ["idle_timeout"]
        assert not talk.gateway.of_type("error")
