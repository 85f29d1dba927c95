"""The bridge under real-time load: latency, barge-in, memory and messages (hence cost).

Every measurement runs one ``novakit bridge`` process (started as the container starts it),
the emulator in another process and the load generator (``bench.driver``) in a third, which
drives the bridge as API Gateway does (one integration request per client frame, the
``@connections`` posts answered by it); see ``bench/stack.py``.

- ``load``: N conversations (real-time microphone frames of 32 or 100 ms: a question, then
  silence until the answer has played) at a few loads: bridge-added latency from the bridge's
  own telemetry (``InputLatencyMs``, ``OutputDelayMs``, ``OutputLatencyMs``), playback
  underruns, CPU of each process.
- ``barge_in``: the client speaks over every answer: the model's interruption to the
  ``clear_audio`` post completing (``BargeInMs``, the bridge's), the client's first interrupting
  frame to ``clear_audio`` (which includes the model's, here the emulator's, detection), and
  audio of the interrupted answer posted after the clear (should be none).
- ``memory``: bridge RSS with N idle sessions (connected, model stream open, no audio) against
  none.
- ``cost``: messages and 32 KB units per session-minute each way for each client frame size and
  batching setting, and the infra cost per session-minute they imply (``bench/costs.py``).
- ``gateway_check``: a few conversations through the local gateway (WebSocket clients), whose
  metering must agree with the load generator's message counts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from novakit import audio
from novakit.localgw import GatewayConfig, LocalGateway

from . import costs, stack
from .common import GATEWAY_SECRET, EmulatorProcess, emulator_process, latest_capacity, save


async def load(emu: EmulatorProcess, workdir: Path, quick: bool) -> list[dict[str, Any]]:
    seconds = 8.0 if quick else 20.0
    points = (
        ((32, 10), (100, 10), (100, 50))
        if quick
        else ((32, 10), (32, 50), (100, 10), (100, 50), (100, 100))
    )
    results = []
    for frame_ms, sessions in points:
        result = await stack.run(
            emu, workdir, sessions=sessions, seconds=seconds, frame_ms=frame_ms, pin=True
        )
        results.append(result)
        print(
            f"  load {sessions} x {frame_ms} ms: input p99"
            f" {result['input_latency_ms'].get('p99')} ms, output delay p99"
            f" {result['output_delay_ms'].get('p99')} ms, {result['underruns']} underruns",
            flush=True,
        )
    return results


async def barge_in(emu: EmulatorProcess, workdir: Path, quick: bool) -> dict[str, Any]:
    result = await stack.run(
        emu,
        workdir,
        sessions=5 if quick else 10,
        seconds=10.0 if quick else 30.0,
        mode="barge",
        frame_ms=32,
        pin=True,
    )
    result.pop("cdf", None)
    return result


async def memory(emu: EmulatorProcess, workdir: Path, quick: bool) -> dict[str, Any]:
    counts = (25, 50) if quick else (50, 100, 200)
    rows = []
    for sessions in counts:
        result = await stack.run(
            emu, workdir, sessions=sessions, seconds=5.0, mode="idle", warmup_seconds=3.0
        )
        rows.append(
            {
                "sessions": sessions,
                "rss_mb_before": result["bridge_rss_mb_before"],
                "rss_mb": result["bridge_rss_mb"],
                "mb_per_session": round(
                    (result["bridge_rss_mb"] - result["bridge_rss_mb_before"]) / sessions, 3
                ),
                "bridge_cores": result["cpu_cores"].get("bridge"),
                "bridge_cpu_ms_per_session_second": result["bridge_cpu_ms_per_session_second"],
            }
        )
        print(f"  memory: {rows[-1]}", flush=True)
    return {"idle_sessions": rows}


async def cost(
    emu: EmulatorProcess, workdir: Path, quick: bool, capacity: dict[int, int]
) -> list[dict[str, Any]]:
    seconds = 10.0 if quick else 30.0
    rows = []
    for frame_ms in (32, 100):
        for batch_ms in (40, 100, 200, 500):
            result = await stack.run(
                emu,
                workdir,
                sessions=5,
                seconds=seconds,
                frame_ms=frame_ms,
                bridge=stack.BridgeOptions(batch_ms=batch_ms),
            )
            per_vcpu = capacity.get(frame_ms) or result["bridge_sessions_per_core_at_this_cost"]
            row = {
                "frame_ms": frame_ms,
                "batch_ms": batch_ms,
                "messages_per_session_minute_in": result["messages_per_session_minute_in"],
                "messages_per_session_minute_out": result["messages_per_session_minute_out"],
                "units_per_session_minute_in": result["units_per_session_minute_in"],
                "units_per_session_minute_out": result["units_per_session_minute_out"],
                "audio_out_seconds_per_session_minute": result[
                    "audio_out_seconds_per_session_minute"
                ],
                "output_latency_ms_p50": result["output_latency_ms"].get("p50"),
                "underruns": result["underruns"],
                "sessions_per_vcpu_assumed": per_vcpu,
                "usd_per_session_minute": costs.per_session_minute(
                    result["units_per_session_minute_in"],
                    result["units_per_session_minute_out"],
                    per_vcpu or 1,
                    speech_seconds=result["audio_out_seconds_per_session_minute"],
                ),
            }
            rows.append(row)
            print(f"  cost: {row}", flush=True)
    return rows


async def gateway_check(emu: EmulatorProcess, workdir: Path, seconds: float) -> dict[str, Any]:
    port = stack.free_port()
    sessions = 5
    config = GatewayConfig(backends=[f"http://127.0.0.1:{port}"], integration_secret=GATEWAY_SECRET)
    async with LocalGateway(config) as gateway:
        options = stack.BridgeOptions()
        log = workdir / "bridge-gateway.log"
        async with stack.bridge_process(emu, gateway.management_url, port, options, log):
            started = time.monotonic()
            await asyncio.gather(
                *(_ws_conversation(gateway.url, seconds, i * 0.032 / sessions) for i in range(5))
            )
            wall = time.monotonic() - started
        totals = gateway.stats.snapshot()["totals"]
    minutes = sessions * wall / 60
    return {
        "sessions": sessions,
        "seconds": round(wall, 1),
        "messages_per_session_minute_in": round(totals["messages_in"] / minutes, 1),
        "messages_per_session_minute_out": round(totals["messages_out"] / minutes, 1),
    }


async def _ws_conversation(url: str, seconds: float, offset: float) -> None:
    question = audio.speech_like(1.5)
    silence = audio.silence(0.032)
    await asyncio.sleep(offset)
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        turn_over = asyncio.Event()
        turn_over.set()
        played_until = [0.0]  # the answer's audio, played from its arrival in real time

        async def listen() -> None:
            async for message in ws:
                if '"type":"audio"' in message:
                    now = time.monotonic()
                    played_until[0] = max(played_until[0], now) + json.loads(message)["ms"] / 1000
                elif '"type":"turn_end"' in message or '"type":"clear_audio"' in message:
                    turn_over.set()

        listener = asyncio.create_task(listen())
        start = time.monotonic()
        seq = 0
        pending = b""
        while time.monotonic() - start < seconds:
            if not pending and turn_over.is_set() and time.monotonic() >= played_until[0]:
                turn_over.clear()
                pending = question
            chunk, pending = (pending[:1024], pending[1024:]) if pending else (silence, b"")
            data = base64.b64encode(chunk).decode()
            await ws.send(json.dumps({"type": "audio", "seq": seq, "data": data}))
            seq += 1
            await asyncio.sleep(max(0.0, start + seq * 0.032 - time.monotonic()))
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await listener


async def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"costs": costs.describe()}
    capacity = latest_capacity()
    results["capacity_used_for_fargate"] = capacity
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with emulator_process("--pace", "1") as emu:
            results["load"] = await load(emu, workdir, quick)
            results["barge_in"] = await barge_in(emu, workdir, quick)
            results["memory"] = await memory(emu, workdir, quick)
            results["cost"] = await cost(emu, workdir, quick, capacity)
            results["gateway_check"] = await gateway_check(emu, workdir, 10.0)
    results["path"] = str(save("bridge", results))
    return results
