"""The send guard: a caller that no longer holds a conversation (another process took it over)
stops the session from sending the model anything, opening a stream included."""

from __future__ import annotations

import asyncio

import pytest

from novakit import audio, s2s
from novakit.emulator import Emulator

from .conftest import CHUNK

E = s2s.EventType
pytestmark = pytest.mark.contract


class Fence:
    """A guard that lets sends through until ``close()``; counts what it was asked."""

    def __init__(self) -> None:
        self.asked = 0
        self.closed = False

    async def __call__(self) -> None:
        self.asked += 1
        if self.closed:
            raise s2s.FencedError("another process took the conversation over")

    def close(self) -> None:
        self.closed = True


async def first_of(session: s2s.Session, kind: s2s.EventType, within: float = 20.0) -> s2s.Event:
    async with asyncio.timeout(within):
        async for event in session.recv():
            if event.type is kind:
                return event
    raise AssertionError(f"the session closed without a {kind}")


async def test_a_fenced_session_sends_nothing_more_and_fails_with_fenced(
    emulator: Emulator, engine_for
) -> None:
    fence = Fence()
    engine = engine_for()
    session = await engine.start(send_guard=fence)
    try:
        silence = audio.silence(CHUNK / 32000)
        for _ in range(5):
            await session.send_audio(silence)
        (record,) = emulator.records  # opened by start()
        assert fence.asked >= 2  # the setup, then sends

        fence.close()
        with pytest.raises((s2s.ProviderError, s2s.SessionClosedError)):
            for _ in range(50):  # the first send after the fence raises, or finds it closed
                await session.send_audio(silence)
        error = await first_of(session, E.ERROR)
        assert error.error is not None
        assert (error.error.code, error.error.fatal, error.error.retryable) == (
            "fenced",
            True,
            False,
        )
        await session.close()
        await emulator.wait_for_streams(1)
        audio_events = record.input_names().count("audioInput")
        assert audio_events <= 5  # nothing after the fence closed
        # not even the polite close: the events that end a prompt are sends too
        assert "sessionEnd" not in record.input_names()
        assert len(emulator.records) == 1  # and no new stream was opened to recover
    finally:
        await session.close()


async def test_a_session_fenced_before_it_opens_opens_no_stream(
    emulator: Emulator, engine_for
) -> None:
    fence = Fence()
    fence.close()
    with pytest.raises(s2s.ProviderError) as refused:
        await engine_for().start(send_guard=fence)
    assert refused.value.code == "fenced"
    assert emulator.records == []
