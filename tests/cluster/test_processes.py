"""One task, several bridge processes behind its one port (``NOVAKIT_PROCESSES``): the kernel
spreads the gateway's connections over them (SO_REUSEPORT), each process owns the sessions it
opened, and frames that land on a sibling are relayed to the owner as between tasks. The task
is ``novakit bridge`` as the container runs it, with a session directory (moto), the local
gateway (a new connection per request, as API Gateway's many connections look to the NLB) and
the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from novakit.bridge.directory import DynamoDirectory, create_table
from novakit.dev import free_port, free_ports
from novakit.emulator import Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..bridge.moto import dynamodb_client, moto_process
from ..gateway_auth import GATEWAY_SECRET
from ..stack.conftest import Client, bridge_env, bridge_process, connect, wait_healthy
from .test_cluster import TURNS, audio_of_stream, converse, finals

TABLE = "novakit-sessions"


@dataclass
class Task:
    url: str  # the task's port, shared by its processes
    relay_port: int
    processes: int
    emulator: Emulator
    gateway: LocalGateway
    directory: DynamoDirectory
    supervisor: subprocess.Popen[bytes]
    log: Path

    def address(self, index: int) -> str:
        return f"http://127.0.0.1:{self.relay_port + index}"

    def lines(self) -> list[dict[str, Any]]:
        """The task's JSON log lines (every process's, and the supervisor's)."""
        entries = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def started(self) -> dict[int, list[int]]:
        """The pids each process index was started with, in order (the supervisor's log)."""
        pids: dict[int, list[int]] = {}
        for entry in self.lines():
            if entry.get("message") == "bridge process started":
                pids.setdefault(entry["index"], []).append(entry["child_pid"])
        return pids

    def relays(self) -> int:
        """Frames relayed to an owner, over every process (RelayLatencyMs samples in EMF)."""
        total = 0
        for entry in self.lines():
            sample = entry.get("RelayLatencyMs")
            if isinstance(sample, dict):
                total += sum(sample["Counts"])
        return total

    async def wait_started(self, index: int, count: int, within: float = 60) -> int:
        """The pid of process ``index`` once it has been started ``count`` times, healthy."""
        async with asyncio.timeout(within):
            while len(self.started().get(index, [])) < count:
                assert self.supervisor.poll() is None, "the supervisor exited"
                await asyncio.sleep(0.1)  # another process's log: nothing to wait on but it
        await wait_healthy(self.address(index), self.supervisor, within)
        return self.started()[index][count - 1]


@contextlib.asynccontextmanager
async def task(tmp_path: Path, processes: int = 2, **extra: str) -> AsyncIterator[Task]:
    port = free_port()
    relay_port = free_ports(processes)
    url = f"http://127.0.0.1:{port}"
    with moto_process() as (dynamodb, _moto):
        create_table(dynamodb_client(dynamodb), TABLE)
        gateway_config = GatewayConfig(
            backends=[url],
            health_path="/health",
            health_interval=0.2,
            unhealthy_threshold=2,
            integration_secret=GATEWAY_SECRET,
            backend_keepalive=False,
        )
        async with (
            Emulator(EmulatorConfig(endpoint_seconds=0.4, pace=0)) as emu,
            LocalGateway(gateway_config) as gateway,
        ):
            env = bridge_env(
                emu,
                gateway.management_url,
                port,
                NOVAKIT_DIRECTORY_TABLE=TABLE,
                NOVAKIT_PROCESSES=str(processes),
                NOVAKIT_RELAY_PORT=str(relay_port),
                NOVAKIT_HEARTBEAT_SECONDS="0.5",
                NOVAKIT_OWNER_TIMEOUT="4",
                NOVAKIT_RELAY_TIMEOUT="6",
                NOVAKIT_METRICS_SECONDS="1",
                AWS_ENDPOINT_URL_DYNAMODB=dynamodb,
                **extra,
            )
            log = tmp_path / "task.log"
            async with bridge_process(env, log) as supervisor:
                running = Task(
                    url,
                    relay_port,
                    processes,
                    emu,
                    gateway,
                    DynamoDirectory(TABLE, "us-east-1", client=dynamodb_client(dynamodb)),
                    supervisor,
                    log,
                )
                await wait_healthy(url, supervisor)
                if processes > 1:
                    for index in range(processes):
                        await running.wait_started(index, 1)
                await asyncio.sleep(0.6)  # every heartbeat written, the gateway's checks passed
                running.emulator.script = TURNS
                yield running


async def exited(process: subprocess.Popen[bytes], within: float) -> int:
    return await asyncio.to_thread(process.wait, within)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_processes_behind_one_port_relay_frames_to_the_owner(tmp_path: Path) -> None:
    async with task(tmp_path) as running:
        owners: set[str] = set()

        async def one() -> Client:
            async with connect(running.gateway.url) as client:
                await converse(client, 2)
                record = await running.directory.get(client.frames[0]["connection_id"])
                owners.add(record.owner)
                return client

        clients = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), 120)
        records = await running.emulator.wait_for_streams(6, timeout=60)
        assert len(records) == 6  # one Bedrock stream per conversation, on its owner
        expected_audio = audio_of_stream(records[0])
        for client in clients:
            assert (client.frames[0]["type"], client.frames[0]["state"]) == ("session", "ready")
            transcripts = [f["text"] for f in client.of_type("transcript")]
            assert transcripts == ["first question", "second question"]
            assert finals(client) == ["First answer.", "Second answer."]
            assert client.audio_bytes() == expected_audio  # every byte, in order
            assert [f["seq"] for f in client.frames] == list(range(len(client.frames)))
            assert not client.of_type("error")
        # each session is owned by one of the processes, at its own address
        assert owners <= {running.address(0), running.address(1)}
        # each process beats as a task of its own
        assert set(await running.directory.peers(10)) == {running.address(0), running.address(1)}
        running.supervisor.terminate()
        assert await exited(running.supervisor, 30) == 0
        # frames landed on the process that did not own their session, and were relayed
        assert running.relays() > 0
        # each process wrote its own lines, each naming it
        ready = [e for e in running.lines() if e.get("message") == "bridge ready"]
        assert sorted(e["process"] for e in ready) == [0, 1]
        assert {e["address"] for e in ready} == {running.address(0), running.address(1)}


async def test_sigterm_drains_every_process_and_the_supervisor_exits(tmp_path: Path) -> None:
    async with (
        task(tmp_path, NOVAKIT_DRAIN_SECONDS="3") as running,
        connect(running.gateway.url) as first,
        connect(running.gateway.url) as second,
    ):
        await asyncio.gather(converse(first, 1), converse(second, 1))
        children = [running.started()[i][0] for i in range(running.processes)]
        running.supervisor.send_signal(signal.SIGTERM)
        # alone (no other task), each process warns its clients, lets them go on, then ends
        for client in (first, second):
            await client.wait_for(lambda f: f.get("state") == "draining", within=15)
            await client.wait_for(lambda f: f.get("state") == "ended", within=20)
        assert await exited(running.supervisor, 30) == 0
        assert not any(alive(pid) for pid in children)
        stopped = [e for e in running.lines() if e.get("message") == "bridge process exited"]
        assert sorted(e["index"] for e in stopped) == [0, 1]
        assert all(e["status"] == 0 for e in stopped)


async def test_a_killed_process_is_started_again(tmp_path: Path) -> None:
    async with task(tmp_path) as running:
        victim = running.started()[0][0]
        os.kill(victim, signal.SIGKILL)
        replacement = await running.wait_started(0, 2)
        assert replacement != victim
        assert running.supervisor.poll() is None
        warnings = [
            e
            for e in running.lines()
            if e.get("message") == "bridge process exited unexpectedly: starting it again"
        ]
        assert [(w["index"], w["status"], w["process"]) for w in warnings] == [
            (0, -signal.SIGKILL, "supervisor")
        ]
        # the task still carries conversations, on both processes' ports
        async with connect(running.gateway.url) as client:
            await converse(client, 1)
            assert finals(client) == ["First answer."]
        running.supervisor.terminate()
        assert await exited(running.supervisor, 30) == 0


async def test_one_process_is_the_bridge_itself(tmp_path: Path) -> None:
    async with task(tmp_path, processes=1) as running:
        async with connect(running.gateway.url) as client:
            await converse(client, 1)
            assert finals(client) == ["First answer."]
            record = await running.directory.get(client.frames[0]["connection_id"])
            # no supervisor, no port of its own: it advertises the task's port, as before
            assert record.owner == running.url
        (ready,) = [e for e in running.lines() if e.get("message") == "bridge ready"]
        assert "process" not in ready
        assert ready["address"] == running.url
        assert not running.started()
        with socket.create_server(("127.0.0.1", running.relay_port)):
            pass  # nothing listens on the relay port
        async with aiohttp.ClientSession() as http, http.get(f"{running.url}/health") as health:
            assert health.status == 200
        running.supervisor.terminate()
        assert await exited(running.supervisor, 30) == 0
