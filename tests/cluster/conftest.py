"""Several bridge processes behind one local gateway, sharing a session directory in a
DynamoDB-compatible server (moto), against one emulator. Each bridge is started as the
container starts it; the gateway health-checks them like the NLB."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from novakit.bridge.directory import DynamoDirectory, create_table
from novakit.dev import free_port
from novakit.emulator import Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..bridge.moto import dynamodb_client, moto_server
from ..gateway_auth import GATEWAY_SECRET
from ..stack.conftest import NOVAKIT, bridge_env, wait_healthy

TABLE = "novakit-sessions"


@dataclass
class Bridge:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.terminate()


@dataclass
class Cluster:
    emulator: Emulator
    gateway: LocalGateway
    bridges: list[Bridge]
    directory: DynamoDirectory
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, size: int = 3, emulator_config: EmulatorConfig | None = None
) -> AsyncIterator[Cluster]:
    config = emulator_config or EmulatorConfig(endpoint_seconds=0.4, pace=0)
    ports = [free_port() for _ in range(size)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with moto_server() as dynamodb:
        create_table(dynamodb_client(dynamodb), TABLE)
        gateway_config = GatewayConfig(
            backends=urls,
            health_path="/health",
            health_interval=0.2,
            unhealthy_threshold=2,
            integration_secret=GATEWAY_SECRET,
        )
        async with Emulator(config) as emu, LocalGateway(gateway_config) as gateway:
            bridges: list[Bridge] = []
            try:
                for port, url in zip(ports, urls, strict=True):
                    env = bridge_env(
                        emu,
                        gateway.management_url,
                        port,
                        NOVAKIT_DIRECTORY_TABLE=TABLE,
                        NOVAKIT_ADVERTISE_URL=url,
                        NOVAKIT_HEARTBEAT_SECONDS="0.3",
                        NOVAKIT_OWNER_TIMEOUT="1.5",
                        NOVAKIT_DRAIN_SECONDS="5",
                        AWS_ENDPOINT_URL_DYNAMODB=dynamodb,
                    )
                    log = tmp_path / f"bridge-{port}.log"
                    # Popen returns at once; the processes are waited for off the loop.
                    process = subprocess.Popen(  # noqa: ASYNC220
                        [str(NOVAKIT), "bridge"],
                        env=env,
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                    )
                    bridges.append(Bridge(url, process, log))
                for bridge in bridges:
                    await wait_healthy(bridge.url, bridge.process)
                directory = DynamoDirectory(TABLE, "us-east-1", client=dynamodb_client(dynamodb))
                await asyncio.sleep(0.5)  # every heartbeat written, every backend checked
                yield Cluster(emu, gateway, bridges, directory)
            finally:
                for bridge in bridges:
                    if bridge.process.poll() is None:
                        bridge.process.terminate()
                for bridge in bridges:
                    try:
                        await asyncio.to_thread(bridge.process.wait, 20)
                    except subprocess.TimeoutExpired:
                        bridge.process.kill()
