"""Scale-out costs: relay latency and takeover time, with three bridge processes behind the
local gateway, a session directory in moto's DynamoDB-compatible server, and the emulator in
another process.

- relay: N conversations stream real-time audio; the gateway spreads frames over the three
  processes, so two frames in three are relayed to their owner. ``RelayLatencyMs`` comes from
  the bridges' own telemetry (their EMF lines).
- takeover: one process is killed (SIGKILL) while its clients keep streaming; the time from
  the kill to each client's ``resumed`` frame. Then another is stopped (SIGTERM) and the same
  is measured for its hand-over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from novakit import audio
from novakit.bridge.directory import create_table
from novakit.dev import free_port
from novakit.localgw import GatewayConfig, LocalGateway

from .common import GATEWAY_SECRET, EmulatorProcess, emulator_process, healthy, save
from .stack import percentiles, telemetry

TABLE = "novakit-sessions"
CHUNK = 1024


@contextlib.contextmanager
def dynamodb_server() -> Any:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        from botocore.session import get_session

        client = get_session().create_client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                create_table(client, TABLE)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _bridge(emu: EmulatorProcess, gateway: str, port: int, dynamodb: str, log: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    env.update(
        NOVAKIT_HOST="127.0.0.1",
        NOVAKIT_PORT=str(port),
        NOVAKIT_CONNECTIONS_URL=gateway,
        NOVAKIT_ADVERTISE_URL=f"http://127.0.0.1:{port}",
        NOVAKIT_DIRECTORY_TABLE=TABLE,
        NOVAKIT_PROCESSES="1",  # each bridge stands for a one-process task
        NOVAKIT_HEARTBEAT_SECONDS="0.5",
        NOVAKIT_OWNER_TIMEOUT="2",
        NOVAKIT_DRAIN_SECONDS="5",
        NOVAKIT_LOG_LEVEL="WARNING",
        NOVAKIT_GATEWAY_SECRET=GATEWAY_SECRET,
        AWS_REGION=emu.region,
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=emu.endpoint,
        AWS_CA_BUNDLE=emu.ca_path,
        AWS_ACCESS_KEY_ID=emu.access_key,
        AWS_SECRET_ACCESS_KEY=emu.secret_key,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb,
    )
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "novakit"), "bridge"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


class Listener:
    """A client streaming real-time audio (a question now and then) and noting when it sees
    ``resumed``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection_id = ""
        self.resumed_at: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        question = audio.speech_like(1.0) + audio.silence(2.0)
        async with websockets.connect(self.url, open_timeout=30, max_queue=None) as ws:

            async def listen() -> None:
                async for message in ws:
                    frame = json.loads(message)
                    if frame.get("type") == "session":
                        self.connection_id = frame["connection_id"]
                        if frame["state"] == "resumed":
                            self.resumed_at.append(time.monotonic())

            listener = asyncio.create_task(listen())
            seq, start = 0, time.monotonic()
            while not self.stop.is_set():
                offset = (seq * CHUNK) % len(question)
                chunk = question[offset : offset + CHUNK]
                data = base64.b64encode(chunk).decode()
                await ws.send(json.dumps({"type": "audio", "seq": seq, "data": data}))
                seq += 1
                await asyncio.sleep(max(0.0, start + seq * 0.032 - time.monotonic()))
            listener.cancel()


async def run(quick: bool = False) -> dict[str, Any]:
    sessions = 6 if quick else 12
    steady = 10.0 if quick else 20.0
    results: dict[str, Any] = {"sessions": sessions}
    with tempfile.TemporaryDirectory() as tmp, dynamodb_server() as dynamodb:
        async with emulator_process("--pace", "1") as emu:
            ports = [free_port() for _ in range(3)]
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            config = GatewayConfig(
                backends=urls,
                health_path="/health",
                health_interval=0.5,
                unhealthy_threshold=2,
                integration_secret=GATEWAY_SECRET,
            )
            async with LocalGateway(config) as gateway:
                logs = [Path(tmp) / f"bridge-{p}.log" for p in ports]
                bridges = [
                    _bridge(emu, gateway.management_url, p, dynamodb, log)
                    for p, log in zip(ports, logs, strict=True)
                ]
                try:
                    for url in urls:
                        await healthy(url)
                    await asyncio.sleep(1.0)
                    listeners = [Listener(gateway.url) for _ in range(sessions)]
                    tasks = [asyncio.create_task(x.run()) for x in listeners]
                    await asyncio.sleep(steady)
                    results["takeover_after_kill"] = await _stop_one(
                        bridges[0], urls[0], listeners, signal.SIGKILL, dynamodb
                    )
                    await asyncio.sleep(3.0)
                    results["hand_over_after_sigterm"] = await _stop_one(
                        bridges[1], urls[1], listeners, signal.SIGTERM, dynamodb
                    )
                    for listener in listeners:
                        listener.stop.set()
                    await asyncio.gather(*tasks, return_exceptions=True)
                finally:
                    for bridge in bridges:
                        if bridge.poll() is None:
                            bridge.terminate()
                    for bridge in bridges:
                        await asyncio.to_thread(bridge.wait, 30)
                relayed: list[float] = []
                for log in logs:
                    relayed += telemetry(log)["values"].get("RelayLatencyMs", [])
                results["relay_latency_ms"] = percentiles(relayed)
    results["path"] = str(save("cluster", results))
    return results


async def _stop_one(
    bridge: Any, url: str, listeners: list[Listener], how: signal.Signals, dynamodb: str
) -> dict[str, Any]:
    from botocore.session import get_session

    client = get_session().create_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=dynamodb,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    owned = []
    for listener in listeners:
        item = client.get_item(
            TableName=TABLE,
            Key={"pk": {"S": f"conn#{listener.connection_id}"}},
            ConsistentRead=True,
        ).get("Item", {})
        if item.get("owner", {}).get("S") == url:
            owned.append(listener)
    before = {id(x): len(x.resumed_at) for x in owned}
    stopped_at = time.monotonic()
    bridge.send_signal(how)
    deadline = stopped_at + 30
    # Polls the listeners, which note their frames without signalling anyone.
    while time.monotonic() < deadline and any(len(x.resumed_at) == before[id(x)] for x in owned):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    delays = [x.resumed_at[-1] - stopped_at for x in owned if len(x.resumed_at) > before[id(x)]]
    return {
        "sessions_moved": len(delays),
        "sessions_owned": len(owned),
        "seconds_median": round(statistics.median(delays), 2) if delays else None,
        "seconds_max": round(max(delays), 2) if delays else None,
    }
