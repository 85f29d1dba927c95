"""Shared benchmark plumbing: the emulator in its own process, machine facts, result files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

RESULTS = Path(__file__).resolve().parent / "results"
# The secret the benchmarks' bridges require and their gateways and load generator send
# (x-gateway-secret). Loopback only, so a fixed value will do.
GATEWAY_SECRET = "bench-gateway-secret-0123456789abcdefABCDEF"


@dataclass(frozen=True)
class EmulatorProcess:
    endpoint: str
    ca_path: str
    region: str
    access_key: str
    secret_key: str
    pid: int

    def extra(self, **overrides: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "region": self.region,
            "base_url": self.endpoint,
            "ca_bundle": self.ca_path,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }
        extra.update(overrides)
        return extra


@contextlib.asynccontextmanager
async def emulator_process(*args: str) -> AsyncIterator[EmulatorProcess]:
    """Run ``novakit emulator`` in a child process, so its CPU is not counted as the client's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from novakit.emulator import cli_main; sys.exit(cli_main(sys.argv[1:]))",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    facts: dict[str, str] = {}
    try:
        async with asyncio.timeout(30):
            while not (line := (await process.stdout.readline()).decode()).startswith("serving"):
                if not line:
                    raise RuntimeError("the emulator exited before serving")
                key, _, value = line.strip().partition("  ")
                facts[key.strip()] = value.strip()
        yield EmulatorProcess(
            endpoint=facts["endpoint"],
            ca_path=facts["CA bundle"],
            region=facts["region"],
            access_key=facts["access key"],
            secret_key=facts["secret key"],
            pid=process.pid,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a child process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds one thread of a process has used so far."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    document = {"benchmark": name, "revision": git_revision(), "machine": machine(), **results}
    path.write_text(json.dumps(document, indent=2))
    return path


def latest_capacity() -> dict[int, int]:
    """Sessions per core within the latency bound, by client frame ms, from the latest capacity
    run (``python -m bench capacity``); empty when there is none."""
    paths = sorted(RESULTS.glob("capacity-*.json"))
    if not paths:
        return {}
    document = json.loads(paths[-1].read_text())
    knees: dict[int, int] = {}
    for sweep in document.get("sweeps", []):
        if sweep.get("knee_sessions"):
            # the bridge's event loop is one thread: its knee is what one core carries
            knees[int(sweep["frame_ms"])] = int(sweep["knee_sessions"])
    return knees


async def healthy(url: str, within: float = 30.0) -> None:
    """Wait until the bridge at ``url`` answers ``/health`` with 200."""
    async with asyncio.timeout(within), aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)  # another process: nothing to wait on but its answer
