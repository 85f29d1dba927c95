"""Several bridge processes per task, the parts without processes: how many CPUs count, the
restart budget, the settings that choose the processes, their addresses, and their log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sys

import aiohttp
import pytest
from aiohttp import web

from novakit.bridge import cpus, logs
from novakit.bridge.processes import (
    listening_sockets,
    process_address,
    sessions_of,
    sibling_addresses,
    with_port,
)
from novakit.bridge.settings import BridgeSettings, SettingsError
from novakit.bridge.supervisor import RestartBudget, Supervisor
from novakit.dev import free_port

from ..gateway_auth import SECRET_ENV

BASE = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:9000", **SECRET_ENV}
TABLE = {"NOVAKIT_DIRECTORY_TABLE": "sessions"}


# -- CPUs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu_max", "quota", "period", "expected"),
    [
        ("max 100000\n", None, None, None),  # cgroup v2 without a quota
        ("200000 100000\n", None, None, 2.0),  # Fargate's 2 vCPU
        ("150000 100000", None, None, 1.5),
        ("50000 100000", None, None, 0.5),
        (None, "-1\n", "100000\n", None),  # cgroup v1 without a quota
        (None, "400000\n", "100000\n", 4.0),
        (None, "400000", None, None),  # no period: no quota known
        ("garbage", None, None, None),
        ("x 100000", None, None, None),
        (None, "0", "100000", None),
        ("100000 100000", "400000", "100000", 1.0),  # v2 wins
        (None, None, None, None),
    ],
)
def test_quota_from_cgroup_files(cpu_max, quota, period, expected) -> None:
    assert cpus.quota_cpus(cpu_max, quota, period) == expected


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        (8, None, 8),  # no quota: the CPUs the process may run on
        (8, 2.0, 2),  # Fargate: the host has more CPUs than the task
        (8, 1.5, 2),  # a part of a CPU is still worth a process
        (8, 0.25, 1),  # less than one CPU: one process
        (1, 4.0, 1),  # pinned to one CPU (taskset): one process, whatever the quota
        (0, None, 1),
        (4, 2.0000000001, 2),  # float noise does not add a process
    ],
)
def test_usable_cpus_is_the_smaller_limit(affinity, quota, expected) -> None:
    assert cpus.usable(affinity, quota) == expected


def test_usable_cpus_on_this_machine_is_within_its_affinity() -> None:
    import os

    assert 1 <= cpus.usable_cpus() <= len(os.sched_getaffinity(0))


# -- restart budget ---------------------------------------------------------------------------


def test_restart_budget_allows_a_few_then_refuses_within_the_window() -> None:
    budget = RestartBudget(limit=3, window=60.0)
    assert [budget.allow(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert not budget.allow(3.0)  # a crash loop: the fourth within a minute
    assert not budget.allow(59.9)  # refusals are not counted: still three in the window
    assert budget.allow(60.0)  # the first restart has left the window
    assert not budget.allow(60.5)
    assert budget.allow(200.0)  # long after: a fresh budget


def test_restart_budget_of_zero_never_restarts() -> None:
    assert not RestartBudget(limit=0, window=60.0).allow(0.0)


# -- settings ---------------------------------------------------------------------------------


def test_one_process_without_a_directory_table_whatever_the_cpus() -> None:
    settings = BridgeSettings.from_env(BASE)
    assert (settings.processes, settings.process_index, settings.private_port) == (1, None, None)


def test_default_is_one_process_per_usable_cpu_with_a_table() -> None:
    settings = BridgeSettings.from_env({**BASE, **TABLE})
    assert settings.processes == cpus.usable_cpus()
    assert settings.relay_port == settings.port + 1


def test_processes_and_their_ports_are_read() -> None:
    settings = BridgeSettings.from_env(
        {
            **BASE,
            **TABLE,
            "NOVAKIT_PORT": "8080",
            "NOVAKIT_PROCESSES": "4",
            "NOVAKIT_RELAY_PORT": "9100",
            "NOVAKIT_PROCESS_INDEX": "3",
        }
    )
    assert (settings.processes, settings.relay_port, settings.process_index) == (4, 9100, 3)
    assert settings.private_port == 9103


def test_several_processes_need_a_table_and_a_secret_and_ports_that_fit() -> None:
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**BASE, "NOVAKIT_PROCESSES": "2"})
    assert failure.value.problems == [
        "NOVAKIT_PROCESSES=2 needs NOVAKIT_DIRECTORY_TABLE (the processes find each other's "
        "sessions there)"
    ]
    insecure = {"NOVAKIT_CONNECTIONS_URL": "http://x", "NOVAKIT_INSECURE_NO_GATEWAY_SECRET": "1"}
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**insecure, **TABLE, "NOVAKIT_PROCESSES": "2"})
    assert failure.value.problems == [
        "NOVAKIT_PROCESSES=2 needs NOVAKIT_GATEWAY_SECRET (the processes sign the frames they "
        "relay to each other)"
    ]
    # without a secret, the default stays one process
    assert BridgeSettings.from_env({**insecure, **TABLE}).processes == 1
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env(
            {
                **BASE,
                **TABLE,
                "NOVAKIT_PORT": "8081",
                "NOVAKIT_RELAY_PORT": "8080",
                "NOVAKIT_PROCESSES": "3",
                "NOVAKIT_PROCESS_INDEX": "3",
            }
        )
    assert failure.value.problems == [
        "NOVAKIT_PROCESS_INDEX must be between 0 and 2, got 3",
        "NOVAKIT_PORT 8081 is one of the processes' own ports (NOVAKIT_RELAY_PORT 8080 to 8082)",
    ]
    with pytest.raises(SettingsError) as failure:
        BridgeSettings.from_env({**BASE, **TABLE, "NOVAKIT_PROCESSES": "65"})
    assert failure.value.problems == ["NOVAKIT_PROCESSES must be between 1 and 64, got 65"]


# -- addresses and sockets --------------------------------------------------------------------


def test_each_process_is_reached_on_its_own_port_of_the_task_address() -> None:
    settings = BridgeSettings(
        connections_url="http://x", processes=3, relay_port=8081, process_index=1
    )
    assert with_port("http://10.0.1.7:8080", 8082) == "http://10.0.1.7:8082"
    assert with_port("http://[fd00::7]:8080/", 8083) == "http://[fd00::7]:8083"
    assert process_address("http://10.0.1.7:8080", settings, 2) == "http://10.0.1.7:8083"
    assert sibling_addresses("http://10.0.1.7:8082", settings) == {
        "http://10.0.1.7:8081",
        "http://10.0.1.7:8083",
    }
    lone = BridgeSettings(connections_url="http://x")
    assert sibling_addresses("http://10.0.1.7:8080", lone) == frozenset()


def test_supervisor_gives_each_process_its_index_and_address() -> None:
    settings = BridgeSettings(connections_url="http://x", processes=2, relay_port=9001, port=9000)
    supervisor = Supervisor(
        settings, environ={"NOVAKIT_ADVERTISE_URL": "http://10.0.0.9:9000", "KEEP": "1"}
    )
    assert supervisor.task_url == "http://10.0.0.9:9000"
    first, second = supervisor.environment(0), supervisor.environment(1)
    assert first["NOVAKIT_PROCESS_INDEX"] == "0"
    assert first["NOVAKIT_PROCESSES"] == second["NOVAKIT_PROCESSES"] == "2"
    assert first["NOVAKIT_ADVERTISE_URL"] == "http://10.0.0.9:9001"
    assert second["NOVAKIT_ADVERTISE_URL"] == "http://10.0.0.9:9002"
    assert first["KEEP"] == second["KEEP"] == "1"


def test_processes_share_the_task_port_and_each_has_its_own() -> None:
    port, relay = free_port(), free_port()
    settings = [
        BridgeSettings(
            connections_url="http://x",
            host="127.0.0.1",
            port=port,
            processes=2,
            relay_port=relay,
            process_index=index,
        )
        for index in (0, 1)
    ]
    first = listening_sockets(settings[0])
    try:
        assert [s.getsockname()[1] for s in first] == [port, relay]
        # the second process binds the same task port; its own port is the next one
        try:
            second = listening_sockets(settings[1])
        except OSError:
            pytest.skip(f"port {relay + 1} is taken on this machine")
        try:
            assert [s.getsockname()[1] for s in second] == [port, relay + 1]
            # a process's own port is its alone
            with pytest.raises(OSError):
                socket.create_server(("127.0.0.1", relay), reuse_port=True)
        finally:
            for sock in second:
                sock.close()
    finally:
        for sock in first:
            sock.close()
    assert listening_sockets(BridgeSettings(connections_url="http://x")) == []


# -- logs -------------------------------------------------------------------------------------


def test_every_log_line_names_its_process() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("INFO", stream, fields={"process": 1, "pid": 4242})
        logging.getLogger("novakit.test").info("hello", extra={"connection_id": "c1"})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["process"], entry["pid"], entry["message"]) == (1, 4242, "hello")
    assert entry["connection_id"] == "c1"


# -- the supervisor, with stand-in processes --------------------------------------------------

# Stands in for a bridge process: says it is ready, then exits 0 on SIGTERM (as a drained
# bridge does), or with its own status when told to by its environment.
STAND_IN = """
import os, signal, sys, time
if os.environ.get("EXIT_AT_ONCE"):
    sys.exit(int(os.environ["EXIT_AT_ONCE"]))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(os.environ["NOVAKIT_PROCESS_INDEX"], flush=True)
while True:
    time.sleep(1)
"""


def stand_in_supervisor(tmp_path, processes: int, **environ: str) -> Supervisor:
    return Supervisor(
        BridgeSettings(connections_url="http://x", processes=processes),
        environ=environ,
        command=[sys.executable, "-c", STAND_IN],
        restarts=2,
        restart_window=60.0,
    )


async def test_the_supervisor_stops_every_process_and_exits_cleanly(tmp_path) -> None:
    supervisor = stand_in_supervisor(tmp_path, 3)
    running = asyncio.create_task(supervisor.run())
    async with asyncio.timeout(30):
        await supervisor.all_running.wait()
        pids = supervisor.pids
        supervisor.stop()
        assert await running == 0
    assert len(set(pids)) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_crash_loop_is_bounded_and_stops_the_task(tmp_path, caplog) -> None:
    supervisor = stand_in_supervisor(tmp_path, 2, EXIT_AT_ONCE="3")
    caplog.set_level(logging.INFO, logger="novakit.bridge.supervisor")
    async with asyncio.timeout(60):
        assert await supervisor.run() == 1
    assert supervisor.gave_up
    restarts = [r for r in caplog.records if "starting it again" in r.getMessage()]
    gave_up = [r for r in caplog.records if "stopping the task" in r.getMessage()]
    # the first process to spend its budget (2 restarts) stops the task
    assert len(gave_up) == 1
    assert gave_up[0].levelname == "ERROR"
    assert "exited 3 times within 60 s" in gave_up[0].getMessage()
    assert 2 <= len(restarts) <= 4
    assert all(r.status == 3 for r in restarts)


async def test_a_task_counts_its_siblings_sessions_from_their_health() -> None:
    async def health(sessions: int) -> tuple[web.AppRunner, str]:
        async def answer(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "sessions": sessions})

        app = web.Application()
        app.router.add_get("/health", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"

    (first, a), (second, b) = await health(3), await health(4)
    gone = f"http://127.0.0.1:{free_port()}"  # a process being started again
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            assert await sessions_of(http, [a, b, gone]) == 7
            assert await sessions_of(http, []) == 0
    finally:
        await first.cleanup()
        await second.cleanup()
