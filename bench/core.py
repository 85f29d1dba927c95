"""The streaming core's cost: CPU per audio event sent through the real SDK, and events per
second for one process. The emulator runs in a child process so only the client is measured.

- ``encode``: building one audioInput event (pure, no SDK): the floor.
- ``saturate``: N sessions send 32 ms audio events as fast as they can: throughput and CPU per
  event through SDK serialisation, SigV4 event signing, awscrt HTTP/2 and TLS.
- ``realtime``: N sessions at real-time pace (one event per 32 ms each): client CPU per
  session, how late sends ran behind schedule, and the sessions one core could carry at that
  cost (an extrapolation, stated as such).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import timeit
from typing import Any

from novakit import s2s
from novakit.s2s.nova.models import NOVA_2_SONIC
from novakit.s2s.nova.protocol import NovaProtocol, StreamSettings

from .common import EmulatorProcess, emulator_process, process_cpu, save

CHUNK = bytes(1024)  # 32 ms of 16 kHz PCM16 silence
STEP = 0.032


def encode_cost(repeat: int = 50000) -> float:
    """Microseconds to build one audioInput event."""
    protocol = NovaProtocol(StreamSettings(model=NOVA_2_SONIC, voice="matthew", instructions=""))
    seconds = timeit.timeit(lambda: protocol.audio_event(CHUNK), number=repeat)
    return seconds / repeat * 1e6


async def _open(emu: EmulatorProcess, count: int) -> tuple[s2s.Engine, list[s2s.Session]]:
    engine = s2s.new("nova", s2s.Config(extra=emu.extra(send_timeout=30.0)))
    sessions = await asyncio.gather(*(engine.start() for _ in range(count)))
    return engine, list(sessions)


async def saturate(emu: EmulatorProcess, count: int, seconds: float) -> dict[str, Any]:
    _, sessions = await _open(emu, count)
    sent = [0] * count
    stop = time.monotonic() + seconds

    async def pump(i: int) -> None:
        while time.monotonic() < stop:
            await sessions[i].send_audio(CHUNK)
            sent[i] += 1

    cpu0, server0, wall0 = time.process_time(), process_cpu(emu.pid), time.monotonic()
    await asyncio.gather(*(pump(i) for i in range(count)))
    cpu, server, wall = (
        time.process_time() - cpu0,
        process_cpu(emu.pid) - server0,
        time.monotonic() - wall0,
    )
    await asyncio.gather(*(s.close() for s in sessions))
    events = sum(sent)
    return {
        "sessions": count,
        "seconds": round(wall, 2),
        "events": events,
        "events_per_second": round(events / wall),
        "client_cpu_us_per_event": round(cpu / events * 1e6, 1),
        "client_cpu_share": round(cpu / wall, 2),
        "emulator_cpu_share": round(server / wall, 2),
    }


async def realtime(emu: EmulatorProcess, count: int, seconds: float) -> dict[str, Any]:
    _, sessions = await _open(emu, count)
    lateness: list[float] = []
    sent = [0]

    async def pump(session: s2s.Session, offset: float) -> None:
        start = time.monotonic() + offset
        for n in range(int(seconds / STEP)):
            due = start + n * STEP
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(max(0.0, time.monotonic() - due))
            await session.send_audio(CHUNK)
            sent[0] += 1

    cpu0, wall0 = time.process_time(), time.monotonic()
    # spread the sessions over one period, as independent clients would be
    await asyncio.gather(*(pump(s, i * STEP / count) for i, s in enumerate(sessions)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    await asyncio.gather(*(s.close() for s in sessions))
    per_session = cpu / wall / count  # core-seconds per session-second
    quantiles = statistics.quantiles(lateness, n=100)
    return {
        "sessions": count,
        "seconds": round(wall, 2),
        "events": sent[0],
        "client_cpu_share": round(cpu / wall, 3),
        "client_cpu_ms_per_session_second": round(per_session * 1000, 2),
        "client_cpu_us_per_event": round(cpu / sent[0] * 1e6, 1),
        "send_lateness_ms_p50": round(quantiles[49] * 1000, 2),
        "send_lateness_ms_p99": round(quantiles[98] * 1000, 2),
        "sessions_per_core_extrapolated": int(1 / per_session) if per_session else None,
    }


async def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    results: dict[str, Any] = {"encode_us_per_event": round(encode_cost(), 2)}
    async with emulator_process("--pace", "1") as emu:
        results["saturate"] = [await saturate(emu, n, seconds) for n in (1, 8)]
        results["realtime"] = [await realtime(emu, n, seconds) for n in (10, 40)]
    results["path"] = str(save("core", results))
    return results
