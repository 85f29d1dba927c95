"""The local stack as a client sees it: a WebSocket client → the local API Gateway → the bridge,
started as the container starts it (``novakit bridge``, settings from the environment) → the
Bedrock emulator over TLS/HTTP/2 with SigV4. Every server runs on loopback and stops with the
test."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from novakit import audio
from novakit.dev import free_port
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..gateway_auth import GATEWAY_SECRET, SECRET_ENV

REPO = Path(__file__).resolve().parents[2]
NOVAKIT = Path(sys.executable).parent / "novakit"
CHUNK = 1024  # 32 ms of 16 kHz PCM16


@dataclass
class Stack:
    emulator: Emulator
    gateway: LocalGateway
    bridge_url: str
    bridge: subprocess.Popen[bytes]
    token: str

    @property
    def url(self) -> str:
        return f"{self.gateway.url}?token={self.token}"

    def bridge_log(self) -> str:
        return ""


@contextlib.asynccontextmanager
async def bridge_process(
    env: dict[str, str], log_path: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``novakit bridge`` as the container runs it; SIGTERM at the end, then a bounded wait
    (off the event loop: the emulator in this process must keep answering while it drains)."""
    with log_path.open("wb") as log:
        # Popen returns at once; the process is only ever waited for off the loop.
        process = subprocess.Popen(  # noqa: ASYNC220
            [str(NOVAKIT), "bridge"], env=env, stdout=log, stderr=log
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    await asyncio.to_thread(process.wait, 20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    await asyncio.to_thread(process.wait, 5)


async def wait_healthy(url: str, process: subprocess.Popen[bytes], within: float = 30) -> None:
    async with asyncio.timeout(within), aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the bridge exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)


def bridge_env(emu: Emulator, gateway_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    env.update(
        {
            "NOVAKIT_HOST": "127.0.0.1",
            "NOVAKIT_PORT": str(port),
            "NOVAKIT_CONNECTIONS_URL": gateway_url,
            "NOVAKIT_TOOLS_DIR": str(REPO / "tests" / "stack" / "tools"),
            "NOVAKIT_BATCH_MS": "100",
            "NOVAKIT_DRAIN_SECONDS": "2",
            "NOVAKIT_LOG_LEVEL": "INFO",
            "AWS_REGION": emu.config.region,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emu.endpoint,
            "AWS_CA_BUNDLE": emu.ca_path,
            "AWS_ACCESS_KEY_ID": DEFAULT_CREDENTIALS.access_key_id,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_CREDENTIALS.secret_access_key,
            "NOVAKIT_PROVIDER_EXTRA": json.dumps({"close_timeout": 3.0}),
            **SECRET_ENV,
        }
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def local_stack(
    tmp_path: Path,
    emulator_config: EmulatorConfig | None = None,
    gateway_options: dict[str, Any] | None = None,
    **bridge_extra: str,
) -> AsyncIterator[Stack]:
    config = emulator_config or EmulatorConfig(endpoint_seconds=0.4, pace=0)
    port = free_port()
    bridge_url = f"http://127.0.0.1:{port}"
    credentials = (DEFAULT_CREDENTIALS.access_key_id, DEFAULT_CREDENTIALS.secret_access_key)
    gateway_config = GatewayConfig(
        backends=[bridge_url],
        token="dev-token",
        credentials=credentials,
        integration_secret=GATEWAY_SECRET,
        **(gateway_options or {}),
    )
    async with Emulator(config) as emu, LocalGateway(gateway_config) as gateway:
        env = bridge_env(emu, gateway.management_url, port, **bridge_extra)
        async with bridge_process(env, tmp_path / "bridge.log") as process:
            await wait_healthy(bridge_url, process)
            yield Stack(emu, gateway, bridge_url, process, "dev-token")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(tmp_path) as running:
        yield running


@dataclass
class Client:
    """A WebSocket client of the local gateway that records every frame it receives."""

    ws: websockets.ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # monotonic, one per frame
    seq: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def reader(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
                self.received_at.append(time.monotonic())
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def send_audio(self, pcm: bytes, *, realtime: float = 0.0) -> None:
        for i in range(0, len(pcm), CHUNK):
            data = base64.b64encode(pcm[i : i + CHUNK]).decode()
            await self.send({"type": "audio", "seq": self.seq, "data": data})
            self.seq += 1
            if realtime:
                await asyncio.sleep(CHUNK / 32000 / realtime)

    async def speak(self, seconds: float, *, pause: float = 1.0) -> None:
        """An utterance then the pause that ends it, at four times real time."""
        await self.send_audio(audio.speech_like(seconds) + audio.silence(pause), realtime=4.0)

    async def wait_for(
        self, accept: Callable[[dict[str, Any]], bool], within: float = 20.0
    ) -> dict[str, Any]:
        """The first frame (already received or still to come) that ``accept`` takes."""
        async with asyncio.timeout(within):
            while True:
                for frame in self.frames:
                    if accept(frame):
                        return frame
                if self.closed.is_set():
                    kinds = [f.get("type") for f in self.frames]
                    raise AssertionError(f"connection closed before the frame; got {kinds}")
                self._arrived.clear()
                await self._arrived.wait()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    def audio_bytes(self) -> bytes:
        return b"".join(base64.b64decode(f["data"]) for f in self.of_type("audio"))


@contextlib.asynccontextmanager
async def connect(target: Stack | str, *, pings: bool = True) -> AsyncIterator[Client]:
    """A client of ``target`` (a stack, or a gateway URL). ``pings=False``: no keep-alive pings,
    as a browser's WebSocket sends none (a gateway busy with a frozen backend may not answer
    them in time)."""
    url = target if isinstance(target, str) else target.url
    async with websockets.connect(
        url, open_timeout=10, close_timeout=5, ping_interval=20 if pings else None
    ) as ws:
        client = Client(ws)
        reader = asyncio.create_task(client.reader())
        try:
            yield client
        finally:
            await ws.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await reader


def kind(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("type") == name
