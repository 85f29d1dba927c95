"""Sessions ended while the model is still answering leave nothing behind: once they have ended
(and Python's collector has run), none of their sessions, model sessions, senders or awscrt
streams is alive. The soak of clients that never read (bench/nonreader.py) starts and ends
such a session every few seconds for as long as it runs."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest
from awscrt.aio.http import AIOHttpClientStreamUnified

from novakit.emulator import Emulator, EmulatorConfig, Script, ScriptTurn

from .harness import conversation, nova_engine

pytestmark = pytest.mark.timeout(120)

SESSIONS = 3
LONG = " ".join(["This answer goes on for a while yet."] * 20)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    script = Script(turns=tuple(ScriptTurn(reply=LONG) for _ in range(SESSIONS)))
    config = EmulatorConfig(endpoint_seconds=0.3, pace=0, script=script, keep_records=2)
    async with Emulator(config) as emulator:
        yield emulator


def crt_streams() -> int:
    return sum(
        type(o) not in weakref.ProxyTypes and isinstance(o, AIOHttpClientStreamUnified)
        for o in gc.get_objects()
    )


async def test_sessions_ended_mid_answer_are_released(emu: Emulator) -> None:
    refs: list[weakref.ref[object]] = []

    def alive() -> list[str]:
        return [type(obj).__name__ for obj in (ref() for ref in refs) if obj is not None]

    for _ in range(SESSIONS):
        async with conversation(nova_engine(emu)) as talk:
            for _ in range(3):
                talk.type("tell me a long story")
            # Ended (on leaving the block) while the answer is still coming.
            await talk.gateway.wait_for(lambda frame: frame.get("type") == "audio")
            model = talk.session._session
            assert model is not None
            refs.extend(weakref.ref(o) for o in (talk.session, talk.session.sender, model))
        assert talk.ended == [talk.session]
        del talk, model
    # A timer an ending session armed may hold it for one batch interval more: bounded.
    async with asyncio.timeout(5):
        while alive():
            gc.collect()
            await asyncio.sleep(0.05)
    assert crt_streams() == 0
