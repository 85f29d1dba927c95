"""A bridge session on the real Nova provider and SDK against the emulator on loopback, with an
in-memory ``@connections`` API the test controls (posts recorded; GET and DELETE answered as
the test says). Frames reach the session as integration requests hand them over
(``BridgeSession.receive``); a lost ``$disconnect`` is simply never delivered."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from novakit import audio, s2s
from novakit.bridge.connections import ConnectionGone
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import ClientAudio, ClientText
from novakit.bridge.session import BridgeSession
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tools import ToolRunner
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator

CHUNK = 1024  # 32 ms of 16 kHz PCM16
CONNECTION_ID = "sec-conn="


class Gateway:
    """The management API as the session sees it; ``gone`` makes every call answer 410."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.gets = 0
        self.deletes = 0
        self.gone = False
        self._changed = asyncio.Event()

    async def post(self, connection_id: str, data: bytes, *, before_retry: object = None) -> float:
        if self.gone:
            raise ConnectionGone(connection_id)
        self.frames.append(json.loads(data))
        self._changed.set()
        return 0.0

    async def get(self, connection_id: str) -> dict[str, Any]:
        self.gets += 1
        self._changed.set()
        if self.gone:
            raise ConnectionGone(connection_id)
        return {"ConnectedAt": "2026-01-01T00:00:00.000Z"}

    async def delete(self, connection_id: str) -> None:
        self.deletes += 1
        if self.gone:
            raise ConnectionGone(connection_id)
        self.gone = True

    async def hang_up(self, connection_id: str, within: float = 5.0) -> bool:
        """As the real client's: ``delete``, never raising; True once the connection is closed."""
        with contextlib.suppress(ConnectionGone):
            await self.delete(connection_id)
        return True

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    async def until(self, done: Callable[[], bool], within: float = 20.0) -> None:
        """Wait (bounded) until ``done()``, checked whenever the session calls the API."""
        async with asyncio.timeout(within):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self, accept: Callable[[dict[str, Any]], bool], within: float = 20.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for frame in self.frames:
                    if accept(frame):
                        return frame
                self._changed.clear()
                await self._changed.wait()

    def audio_bytes(self) -> bytes:
        return b"".join(base64.b64decode(f["data"]) for f in self.of_type("audio"))


@dataclass
class Conversation:
    session: BridgeSession
    gateway: Gateway
    metrics: Metrics
    ended: list[BridgeSession] = field(default_factory=list)
    seq: int = 0

    def send_audio(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK):
            self.session.receive(ClientAudio(self.seq, pcm[i : i + CHUNK]))
            self.seq += 1

    async def speak(self, seconds: float, *, pause: float = 1.0, speed: float = 4.0) -> None:
        """An utterance and the pause that ends it, ``speed`` times faster than real time."""
        pcm = audio.speech_like(seconds) + audio.silence(pause)
        for i in range(0, len(pcm), CHUNK):
            self.send_audio(pcm[i : i + CHUNK])
            await asyncio.sleep(CHUNK / 32000 / speed)

    def type(self, text: str) -> None:
        self.session.receive(ClientText(text))

    def count(self, name: str) -> int:
        counts = self.metrics.snapshot()["counts"]
        assert isinstance(counts, dict)
        return int(counts.get(name, 0))


def nova_engine(emu: Emulator, **options: Any) -> s2s.Engine:
    extra: dict[str, Any] = {
        "region": emu.config.region,
        "base_url": emu.endpoint,
        "ca_bundle": emu.ca_path,
        "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
        "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
        "open_timeout": 5.0,
        "send_timeout": 5.0,
        "close_timeout": 2.0,
    }
    extra.update(options)
    return s2s.new("nova", s2s.Config(extra=extra))


@contextlib.asynccontextmanager
async def conversation(engine: s2s.Engine, **settings: Any) -> AsyncIterator[Conversation]:
    """A session as ``$connect`` creates it; ended (if still open) when the block exits."""
    gateway = Gateway()
    metrics = Metrics()
    ended: list[BridgeSession] = []
    session = BridgeSession(
        CONNECTION_ID,
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1", **settings),
        connections=gateway,  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=metrics,
        on_ended=ended.append,
    )
    talk = Conversation(session, gateway, metrics, ended)
    try:
        yield talk
    finally:
        session.end("test over")
        await session.wait_ended(15)
        await engine.close()
