"""Contract tests: the real aws-sdk-bedrock-runtime (awscrt HTTP/2 over TLS) driven through
``novakit.s2s`` against the emulator on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from novakit import audio, s2s
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig

CHUNK = 1024  # 32 ms of 16 kHz PCM16, the size Bedrock recommends


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(endpoint_seconds=0.4, pace=0)) as emu:
        yield emu


def emulator_extra(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "region": emu.config.region,
        "base_url": emu.endpoint,
        "ca_bundle": emu.ca_path,
        "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
        "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
        "open_timeout": 5.0,
        "send_timeout": 5.0,
        "close_timeout": 3.0,
    }
    extra.update(overrides)
    return extra


@pytest.fixture
def engine_for(emulator: Emulator) -> Callable[..., s2s.Engine]:
    def make(**config: Any) -> s2s.Engine:
        extra = emulator_extra(emulator, **config.pop("extra", {}))
        return s2s.new("nova", s2s.Config(extra=extra, **config))

    return make


@contextlib.asynccontextmanager
async def streaming_silence(session: s2s.Session, speed: float = 4.0) -> AsyncIterator[None]:
    """Keep the audio flowing as a real client does (silence between utterances), at ``speed``
    times real time; stops quietly when the session closes."""

    async def pump() -> None:
        silence = audio.silence(CHUNK / 32000)
        with contextlib.suppress(s2s.SessionClosedError, s2s.ProviderError):
            while not session.closed:
                await session.send_audio(silence)
                await asyncio.sleep(CHUNK / 32000 / speed)

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def send_speech(session: s2s.Session, seconds: float, *, silence_after: float = 0.8) -> None:
    """An utterance then the pause that ends it, in 32 ms events."""
    pcm = audio.speech_like(seconds) + audio.silence(silence_after)
    for i in range(0, len(pcm), CHUNK):
        await session.send_audio(pcm[i : i + CHUNK])


async def collect_until(
    session: s2s.Session, stop: Callable[[s2s.Event], bool], within: float = 10.0
) -> list[s2s.Event]:
    """Events up to and including the first one ``stop`` accepts; fails past ``within`` s."""
    events: list[s2s.Event] = []
    async with asyncio.timeout(within):
        async for event in session.recv():
            events.append(event)
            if stop(event):
                return events
    raise AssertionError(f"recv() ended before the awaited event; got {[e.type for e in events]}")


def of_type(events: list[s2s.Event], kind: s2s.EventType) -> list[s2s.Event]:
    return [e for e in events if e.type is kind]
