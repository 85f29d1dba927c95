"""The bridge under real-time load: N conversations through the local gateway and one bridge
process (started as the container starts it) against the emulator in another process.

Each conversation is a WebSocket client that streams 32 ms audio frames at real-time pace: a
spoken question, then silence until the assistant's turn ends, again and again. Measured:

- bridge CPU per session-second (the bridge process alone, from /proc);
- bridge-added latency, from the bridge's own telemetry (its EMF lines): ``InputLatencyMs``,
  a client frame's arrival to the SDK accepting the audio for Bedrock; ``OutputLatencyMs``, a
  client frame ready to post (after batching) to API Gateway accepting the post; and
  ``PostLatencyMs``, the post alone;
- messages and 32 KB units per session-minute through the gateway, in and out, and the API
  Gateway cost they imply at published prices.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from novakit import audio
from novakit.localgw import GatewayConfig, LocalGateway

from .common import EmulatorProcess, emulator_process, process_cpu, save

CHUNK = 1024  # 32 ms of 16 kHz PCM16
STEP = 0.032
# API Gateway WebSocket prices (us-east-1, first billion): messages per million (metered in
# 32 KB units) and connection-minutes per million.
PRICE_PER_MILLION_MESSAGES = 1.00
PRICE_PER_MILLION_CONNECTION_MINUTES = 0.25


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def bridge_process(
    emu: EmulatorProcess, gateway_url: str, port: int, batch_ms: int, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    env.update(
        NOVAKIT_HOST="127.0.0.1",
        NOVAKIT_PORT=str(port),
        NOVAKIT_CONNECTIONS_URL=gateway_url,
        NOVAKIT_BATCH_MS=str(batch_ms),
        NOVAKIT_DRAIN_SECONDS="1",
        NOVAKIT_MAX_SESSIONS="1000",
        NOVAKIT_LOG_LEVEL="WARNING",
        AWS_REGION=emu.region,
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=emu.endpoint,
        AWS_CA_BUNDLE=emu.ca_path,
        AWS_ACCESS_KEY_ID=emu.access_key,
        AWS_SECRET_ACCESS_KEY=emu.secret_key,
    )
    novakit = Path(sys.executable).parent / "novakit"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(novakit), "bridge", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(30), aiohttp.ClientSession() as http:
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/health") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.1)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)


def telemetry(log: Path) -> dict[str, list[float]]:
    """Every observation the bridge wrote as EMF (values repeated by their counts)."""
    values: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for name, value in document.items():
            if isinstance(value, dict) and "Values" in value:
                bucket = values.setdefault(name, [])
                for v, n in zip(value["Values"], value["Counts"], strict=True):
                    bucket.extend([v] * n)
    return values


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    q = statistics.quantiles(values, n=100)
    return {
        "p50": round(q[49], 2),
        "p90": round(q[89], 2),
        "p99": round(q[98], 2),
        "n": len(values),
    }


async def conversation(url: str, seconds: float, offset: float, stats: dict[str, int]) -> None:
    """Real-time microphone frames: 1.5 s of speech, then silence until the turn ends."""
    question = audio.speech_like(1.5)
    silence = audio.silence(STEP)
    await asyncio.sleep(offset)
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        turn_over = asyncio.Event()
        turn_over.set()

        async def listen() -> None:
            async for message in ws:
                if '"type":"turn_end"' in message or '"type":"clear_audio"' in message:
                    stats["turns"] += 1
                    turn_over.set()
                elif '"type":"audio"' in message:
                    stats["audio_frames"] += 1
                elif '"type":"error"' in message:
                    stats["errors"] += 1

        listener = asyncio.create_task(listen())
        start = time.monotonic()
        seq = 0
        pending = b""
        while (elapsed := time.monotonic() - start) < seconds:
            if not pending and turn_over.is_set():
                turn_over.clear()
                pending = question
            chunk, pending = (pending[:CHUNK], pending[CHUNK:]) if pending else (silence, b"")
            data = base64.b64encode(chunk).decode()
            await ws.send(json.dumps({"type": "audio", "seq": seq, "data": data}))
            seq += 1
            due = start + seq * STEP
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            stats["late_frames"] += int(time.monotonic() - due > 0.02)
        del elapsed
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await listener


async def load(
    emu: EmulatorProcess, sessions: int, seconds: float, batch_ms: int, workdir: Path
) -> dict[str, Any]:
    port = _free_port()
    log = workdir / f"bridge-{sessions}-{batch_ms}.log"
    config = GatewayConfig(backends=[f"http://127.0.0.1:{port}"])
    async with LocalGateway(config) as gateway:
        async with bridge_process(emu, gateway.management_url, port, batch_ms, log) as bridge:
            stats = {"turns": 0, "audio_frames": 0, "errors": 0, "late_frames": 0}
            cpu0, wall0 = process_cpu(bridge.pid), time.monotonic()
            await asyncio.gather(
                *(
                    conversation(gateway.url, seconds, i * STEP / sessions, stats)
                    for i in range(sessions)
                )
            )
            cpu, wall = process_cpu(bridge.pid) - cpu0, time.monotonic() - wall0
            rss_kb = _rss_kb(bridge.pid)
        totals = gateway.stats.snapshot()["totals"]
    observed = telemetry(log)
    minutes = sessions * wall / 60
    messages_in, messages_out = totals["messages_in"], totals["messages_out"]
    units = totals.get("units_in", 0) + totals.get("units_out", 0)
    cost = units / 1e6 * PRICE_PER_MILLION_MESSAGES + (
        minutes / 1e6 * PRICE_PER_MILLION_CONNECTION_MINUTES
    )
    per_session = cpu / wall / sessions
    return {
        "sessions": sessions,
        "batch_ms": batch_ms,
        "seconds": round(wall, 1),
        "turns": stats["turns"],
        "errors": stats["errors"],
        "client_late_frames": stats["late_frames"],
        "bridge_cpu_ms_per_session_second": round(per_session * 1000, 2),
        "bridge_sessions_per_core_extrapolated": int(1 / per_session) if per_session else None,
        "bridge_rss_mb_at_end": round(rss_kb / 1024, 1),
        "input_latency_ms": percentiles(observed.get("InputLatencyMs", [])),
        "output_latency_ms": percentiles(observed.get("OutputLatencyMs", [])),
        "post_latency_ms": percentiles(observed.get("PostLatencyMs", [])),
        "time_to_first_audio_ms": percentiles(observed.get("TimeToFirstAudioMs", [])),
        "messages_per_session_minute_in": round(messages_in / minutes, 1),
        "messages_per_session_minute_out": round(messages_out / minutes, 1),
        "api_gateway_usd_per_session_minute": round(cost / minutes, 6),
    }


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run(quick: bool = False) -> dict[str, Any]:
    import tempfile

    seconds = 10.0 if quick else 30.0
    counts = (5, 20) if quick else (10, 25, 50)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with emulator_process("--pace", "1") as emu:
            results["load"] = [await load(emu, n, seconds, 100, Path(tmp)) for n in counts]
            results["batching"] = [
                await load(emu, counts[0], seconds, batch_ms, Path(tmp))
                for batch_ms in (40, 200, 500)
            ]
    results["path"] = str(save("bridge", results))
    return results
