"""Phone calls through the Twilio stage: API Gateway messages and bridge CPU per call-minute.

N simulated calls (``novakit.call.TwilioCaller``: Twilio's 20 ms ``media`` messages in real
time, the agent's audio played back at the same pace with its marks echoed) through the local
gateway's ``twilio`` stage, one ``novakit bridge`` process and the emulator in another process.
The caller asks a question (1.5 s of speech), listens to the answer, asks again a second after
it (or 8 s after an unanswered question), for the whole call. The gateway meters every
message each way (as API Gateway bills them); the bridge's CPU is read from ``/proc``. Cost
per call-minute from ``bench/costs.py``'s API Gateway price.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from novakit import audio
from novakit.call import FRAME_BYTES, TwilioCaller
from novakit.localgw import GatewayConfig, LocalGateway

from . import costs, stack
from .common import GATEWAY_SECRET, emulator_process, process_cpu, save


async def _call(url: str, seconds: float, offset: float) -> dict[str, int]:
    question = audio.speech_like(1.5, 8000)
    await asyncio.sleep(offset)
    caller = TwilioCaller()
    step = 2 * FRAME_BYTES
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        inbox: list[str] = []

        async def listen() -> None:
            async for message in ws:
                inbox.append(message if isinstance(message, str) else message.decode())

        listener = asyncio.create_task(listen())
        await ws.send(caller.connected())
        await ws.send(caller.start())
        start = time.monotonic()
        ticks = 0
        pending = bytearray()
        asked_at = -60.0  # when the last question was finished
        heard_then = 0  # what had been heard by then
        quiet_since = start
        while time.monotonic() - start < seconds:
            ticks += 1
            now = time.monotonic()
            answered = len(caller.heard) > heard_then and now - quiet_since > 1.0
            if not pending and not caller.playing and (answered or now - asked_at > 8.0):
                pending = bytearray(question)  # ask (again) once the answer has played
            chunk = bytes(pending[:step])
            del pending[:step]
            await ws.send(caller.media(chunk + bytes(step - len(chunk))))
            if chunk and not pending:
                asked_at, heard_then = now, len(caller.heard)
            played, echoes = caller.play()
            for echo in echoes:
                await ws.send(echo)
            if played or pending:
                quiet_since = now
            while inbox:
                for echo in caller.receive(inbox.pop(0)):
                    await ws.send(echo)
            await asyncio.sleep(max(0.0, start + ticks * 0.02 - time.monotonic()))
        await ws.send(caller.stop())
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await listener
    return {"heard_ms": len(caller.heard) * 1000 // (2 * 8000), "errors": len(caller.errors)}


async def calls(calls: int, seconds: float, workdir: Path) -> dict[str, Any]:
    port = stack.free_port()
    config = GatewayConfig(
        backends=[f"http://127.0.0.1:{port}"],
        integration_secret=GATEWAY_SECRET,
        stages=("twilio",),
    )
    async with emulator_process("--pace", "1") as emu, LocalGateway(config) as gateway:
        options = stack.BridgeOptions()
        log = workdir / "bridge-phone.log"
        async with stack.bridge_process(emu, gateway.management_url, port, options, log) as bridge:
            cpu_before = process_cpu(bridge.pid)
            started = time.monotonic()
            url = gateway.stage_url("twilio")
            results = await asyncio.gather(
                *(_call(url, seconds, i * 0.02 / calls) for i in range(calls))
            )
            wall = time.monotonic() - started
            cpu = process_cpu(bridge.pid) - cpu_before
        totals = gateway.stats.snapshot()["totals"]
    minutes = calls * wall / 60
    messages_in = totals["messages_in"] / minutes
    messages_out = totals["messages_out"] / minutes
    per_million = costs.PRICES.apigw_per_million_messages
    return {
        "calls": calls,
        "seconds": round(wall, 1),
        "messages_per_call_minute_in": round(messages_in, 1),
        "messages_per_call_minute_out": round(messages_out, 1),
        "api_gateway_per_call_minute": round((messages_in + messages_out) * per_million / 1e6, 5),
        "bridge_cpu_seconds_per_call_minute": round(cpu / minutes, 3),
        "heard_ms_per_call": [r["heard_ms"] for r in results],
        "protocol_errors": sum(r["errors"] for r in results),
    }


async def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        seconds = 20.0 if quick else 60.0
        results: dict[str, Any] = {
            "calls": [await calls(n, seconds, Path(tmp)) for n in ((1, 5) if quick else (1, 10))]
        }
    results["path"] = str(save("phone", results))
    print(json.dumps(results["calls"], indent=2))
    return results
