"""Driving a long conversation against the emulator: a listener that records every event with
its arrival time, and a user that speaks and then streams silence as a microphone does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from novakit import audio, s2s
from novakit.emulator.conversation import _sentences
from novakit.emulator.speech import synthesize

E = s2s.EventType
CHUNK = 1024  # 32 ms of 16 kHz PCM16
SPEED = 4.0  # microphone audio is streamed this many times faster than real time


@dataclass(frozen=True)
class Heard:
    at: float  # time.monotonic() on arrival
    event: s2s.Event


class Listener:
    """Reads ``session.recv()`` in the background, keeping every event."""

    def __init__(self, session: s2s.Session) -> None:
        self.session = session
        self.heard: list[Heard] = []
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.session.recv():
                self.heard.append(Heard(time.monotonic(), event))
                self._changed.set()
        finally:
            self.ended = True
            self._changed.set()

    def events(self, kind: s2s.EventType | None = None) -> list[s2s.Event]:
        return [h.event for h in self.heard if kind is None or h.event.type is kind]

    def count(self, kind: s2s.EventType) -> int:
        return sum(1 for h in self.heard if h.event.type is kind)

    async def until(
        self, done: Callable[[], bool], *, within: float = 20.0, speak_silence: bool = True
    ) -> None:
        """Stream silence (a microphone in a quiet room) until ``done()``; fail past ``within``."""
        silence = audio.silence(CHUNK / 32000)
        async with asyncio.timeout(within):
            while not done():
                if self.ended:
                    raise AssertionError(f"recv() ended early: {self.summary()}")
                if speak_silence and not self.session.closed:
                    with contextlib.suppress(s2s.SessionClosedError):
                        await self.session.send_audio(silence)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), CHUNK / 32000 / SPEED)

    async def finish(self, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            await self._task

    def last_answer_seconds(self) -> float:
        """How long the audio received since the last transcript plays."""
        size = 0
        for h in reversed(self.heard):
            if h.event.type is E.TRANSCRIPT:
                break
            if h.event.type is E.AUDIO_OUTPUT:
                size += len(h.event.audio)
        return size / 2 / 24000

    def summary(self) -> list[str]:
        return [
            f"{h.event.type.value}:{getattr(h.event, 'text', '')[:20]}" for h in self.heard[-30:]
        ]


async def say(
    session: s2s.Session, seconds: float, *, pause: float = 0.8, paced: bool = False
) -> None:
    """An utterance then the pause that ends it: as fast as the session takes it, or
    ``paced`` like a microphone (``SPEED`` times real time), which matters when the model must
    be able to react while the user is still speaking (barge-in)."""
    pcm = audio.speech_like(seconds) + audio.silence(pause)
    for i in range(0, len(pcm), CHUNK):
        await session.send_audio(pcm[i : i + CHUNK])
        if paced:
            await asyncio.sleep(CHUNK / 32000 / SPEED)


async def quiet(session: s2s.Session, seconds: float) -> None:
    """``seconds`` of silence, streamed ``SPEED`` times faster than real time."""
    silence = audio.silence(CHUNK / 32000)
    for _ in range(round(seconds * 32000 / CHUNK)):
        await session.send_audio(silence)
        await asyncio.sleep(CHUNK / 32000 / SPEED)


def spoken(reply: str, rate: int = 24000) -> bytes:
    """The exact audio the emulator speaks for ``reply``."""
    return b"".join(synthesize(sentence, rate) for sentence in _sentences(reply))


def history_sent(input_events: list) -> list[tuple[str, str]]:
    """The (role, text) history blocks a stream was sent: non-interactive USER/ASSISTANT text."""
    blocks: list[tuple[str, str]] = []
    open_blocks: dict[str, tuple[str, list[str]]] = {}
    for event in input_events:
        body = event.body
        if event.name == "contentStart" and body.get("type") == "TEXT":
            if body["role"] in ("USER", "ASSISTANT") and not body["interactive"]:
                open_blocks[body["contentName"]] = (body["role"], [])
        elif event.name == "textInput" and body["contentName"] in open_blocks:
            open_blocks[body["contentName"]][1].append(body["content"])
        elif event.name == "contentEnd" and body["contentName"] in open_blocks:
            role, parts = open_blocks.pop(body["contentName"])
            blocks.append((role, "".join(parts)))
    return blocks


def typed_sent(input_events: list) -> list[str]:
    """Interactive USER texts a stream was sent (typed input, or a question asked again)."""
    texts: list[str] = []
    names: set[str] = set()
    for event in input_events:
        body = event.body
        if event.name == "contentStart" and body.get("type") == "TEXT":
            if body["role"] == "USER" and body["interactive"]:
                names.add(body["contentName"])
                texts.append("")
        elif event.name == "textInput" and body["contentName"] in names:
            texts[-1] += body["content"]
    return texts
