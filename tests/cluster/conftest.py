"""Several bridge processes behind one local gateway, sharing a session directory in a
DynamoDB-compatible server (moto), against one emulator. Each bridge is started as the
container starts it; the gateway health-checks them like the NLB.

With ``NOVAKIT_CPU_HOG=2`` (``make test``, ``make cluster-hog``, ``make soak``) every test here
runs beside a CPU hog (tests/cpu_hog.py): ownership must hold on a busy machine, where a slow
task is normal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from novakit.bridge.directory import DynamoDirectory, create_table
from novakit.dev import free_port
from novakit.emulator import Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..bridge.moto import dynamodb_client, moto_process
from ..cpu_hog import cpu_hog
from ..gateway_auth import GATEWAY_SECRET
from ..stack.conftest import NOVAKIT, bridge_env, wait_healthy

TABLE = "novakit-sessions"


@pytest.fixture(autouse=True, scope="package")
def busy_machine() -> Iterator[None]:
    with cpu_hog():
        yield


# Ownership timings: a task counts as gone after OWNER_TIMEOUT without a heartbeat (peers only
# look when a relay to it failed). Long enough that a task starved of CPU by other work on the
# machine is not taken for a dead one; a killed task is noticed at once (its port refuses).
# A relay that times out costs its frame (503): with a hog and a dozen processes on two cores,
# a relay can take seconds, so the tests give it more than a dedicated task needs (2 s).
HEARTBEAT_SECONDS = 0.5
OWNER_TIMEOUT = 4.0
RELAY_TIMEOUT = 6.0


@dataclass
class Bridge:
    """A bridge process, started as the container starts it."""

    url: str
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.start()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.terminate()

    def stop(self) -> None:
        """Freeze it (SIGSTOP): a task starved or paused, its port still accepting."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def start(self) -> None:
        """Start it (again): the same address, as a replacement task would have its own."""
        with self.log.open("ab") as log:
            # Popen returns at once; the process is waited for off the loop.
            self.process = subprocess.Popen(
                [str(NOVAKIT), "bridge"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )


@dataclass
class Cluster:
    emulator: Emulator
    gateway: LocalGateway
    bridges: list[Bridge]
    directory: DynamoDirectory
    directory_process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url

    async def restart(self, bridge: Bridge) -> None:
        """Start a bridge that exited again and wait until it is healthy."""
        await asyncio.to_thread(bridge.process.wait, 30)
        bridge.start()
        await wait_healthy(bridge.url, bridge.process)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path,
    size: int = 3,
    emulator_config: EmulatorConfig | None = None,
    spread_seed: int | None = None,
) -> AsyncIterator[Cluster]:
    """``size`` bridges behind a gateway; ``spread_seed``: frames go to any bridge at random
    (repeatably), not in turn."""
    config = emulator_config or EmulatorConfig(endpoint_seconds=0.4, pace=0)
    ports = [free_port() for _ in range(size)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    with moto_process() as (dynamodb, dynamodb_process):
        create_table(dynamodb_client(dynamodb), TABLE)
        gateway_config = GatewayConfig(
            backends=urls,
            health_path="/health",
            health_interval=0.2,
            unhealthy_threshold=2,
            integration_secret=GATEWAY_SECRET,
            spread="round_robin" if spread_seed is None else "random",
            spread_seed=spread_seed,
        )
        async with (
            Emulator(config) as emu,
            LocalGateway(gateway_config) as gateway,
            contextlib.AsyncExitStack() as stack,
        ):
            stack.enter_context(gateway_log(tmp_path / "gateway.log"))
            bridges: list[Bridge] = []
            try:
                for port, url in zip(ports, urls, strict=True):
                    env = bridge_env(
                        emu,
                        gateway.management_url,
                        port,
                        NOVAKIT_DIRECTORY_TABLE=TABLE,
                        NOVAKIT_ADVERTISE_URL=url,
                        NOVAKIT_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
                        NOVAKIT_OWNER_TIMEOUT=str(OWNER_TIMEOUT),
                        NOVAKIT_RELAY_TIMEOUT=str(RELAY_TIMEOUT),
                        NOVAKIT_DRAIN_SECONDS="5",
                        # One process per bridge: each is a task here (signals, freezes).
                        NOVAKIT_PROCESSES="1",
                        AWS_ENDPOINT_URL_DYNAMODB=dynamodb,
                    )
                    bridges.append(Bridge(url, tmp_path / f"bridge-{port}.log", env))
                for bridge in bridges:
                    await wait_healthy(bridge.url, bridge.process)
                directory = DynamoDirectory(TABLE, "us-east-1", client=dynamodb_client(dynamodb))
                await asyncio.sleep(0.5)  # every heartbeat written, every backend checked
                yield Cluster(emu, gateway, bridges, directory, dynamodb_process)
            finally:
                dynamodb_process.send_signal(signal.SIGCONT)
                for bridge in bridges:
                    if bridge.process.poll() is None:
                        bridge.process.send_signal(signal.SIGCONT)
                        bridge.process.terminate()
                for bridge in bridges:
                    try:
                        await asyncio.to_thread(bridge.process.wait, 20)
                    except subprocess.TimeoutExpired:
                        bridge.process.kill()


class _MonotonicFormatter(logging.Formatter):
    """The test's own clock (the windows' and the clients'), and the connection."""

    def format(self, record: logging.LogRecord) -> str:
        connection = getattr(record, "connection_id", "")
        return f"{time.monotonic():.3f} {record.levelname} {record.getMessage()} {connection}"


@contextlib.contextmanager
def gateway_log(path: Path) -> Iterator[None]:
    """The local gateway's own log (health checks, failed integrations, frames the client is
    not told about) written to ``path``, for a failed test's evidence."""
    handler = logging.FileHandler(path)
    handler.setFormatter(_MonotonicFormatter())
    logger = logging.getLogger("novakit.localgw")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


async def no_sessions(running: Cluster, within: float = 30) -> None:
    """Wait until no bridge holds a session (each says so on /health)."""
    async with asyncio.timeout(within), aiohttp.ClientSession() as http:
        for bridge in running.bridges:
            while True:
                async with http.get(f"{bridge.url}/health") as response:
                    if (await response.json())["sessions"] == 0:
                        break
                await asyncio.sleep(0.1)  # another process: nothing to wait on but its answer
