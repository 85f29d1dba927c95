"""The processes of a bridge benchmark: one ``novakit bridge`` (started as the container starts
it), the emulator (``common.emulator_process``) and the load generator (``bench.driver``), each
in its own process so that each one's CPU is its own.

``Run`` starts a bridge, runs one driver against it and returns what both measured: the
driver's figures, the bridge's own telemetry (its EMF lines, only those written while the
driver was measuring), and the CPU and memory of every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novakit.dev import free_port

from .common import GATEWAY_SECRET, EmulatorProcess, healthy, process_cpu, thread_cpu

# The bridge writes its aggregated metrics this often during a benchmark (default: 60 s), so
# that the lines written while the load ramps up can be left out.
METRICS_SECONDS = 1.0
REPO = Path(__file__).resolve().parent.parent


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Put every thread of a process on ``cpus`` (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def rss_kb(pid: int) -> int:
    """Resident memory of a process and of its children (a supervised bridge's processes)."""
    total = 0
    for one in (pid, *children(pid)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the bridge processes of a supervisor), none if gone."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def percentiles(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values)}
    q = statistics.quantiles(values, n=1000, method="inclusive")
    return {
        "p50": round(q[499], digits),
        "p90": round(q[899], digits),
        "p99": round(q[989], digits),
        "p999": round(q[998], digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def telemetry(log: Path, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
    """The bridge's EMF observations (values repeated by their counts) and counts, from lines
    written after ``since`` (epoch seconds) and no later than ``until`` plus one interval."""
    values: dict[str, list[float]] = {}
    counts: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        stamp = document["_aws"]["Timestamp"] / 1000
        if not since < stamp <= until + METRICS_SECONDS + 0.5:
            continue
        for name, value in document.items():
            if isinstance(value, dict) and "Values" in value:
                bucket = values.setdefault(name, [])
                for v, n in zip(value["Values"], value["Counts"], strict=True):
                    bucket.extend([v] * n)
            elif isinstance(value, int | float) and name not in ("SessionsActive",):
                counts[name] = counts.get(name, 0) + value
    return {"values": values, "counts": counts}


@dataclass
class BridgeOptions:
    batch_ms: int = 100
    uvloop: bool = False
    cpus: set[int] | None = None  # CPU affinity of the bridge process
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # instead of ``novakit bridge`` (e.g. ``bench.memprobe``)


@contextlib.asynccontextmanager
async def bridge_process(
    emu: EmulatorProcess, connections_url: str, port: int, options: BridgeOptions, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    env.update(
        NOVAKIT_HOST="127.0.0.1",
        NOVAKIT_PORT=str(port),
        NOVAKIT_CONNECTIONS_URL=connections_url,
        NOVAKIT_BATCH_MS=str(options.batch_ms),
        NOVAKIT_DRAIN_SECONDS="1",
        NOVAKIT_MAX_SESSIONS="5000",
        NOVAKIT_LOG_LEVEL="WARNING",
        NOVAKIT_METRICS_SECONDS=str(METRICS_SECONDS),
        NOVAKIT_GATEWAY_SECRET=GATEWAY_SECRET,
        AWS_REGION=emu.region,
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=emu.endpoint,
        AWS_CA_BUNDLE=emu.ca_path,
        AWS_ACCESS_KEY_ID=emu.access_key,
        AWS_SECRET_ACCESS_KEY=emu.secret_key,
    )
    env.update(options.env)
    if options.command:
        command = options.command
    elif options.uvloop:
        command = [
            sys.executable,
            "-c",
            "import sys, uvloop; uvloop.install(); from novakit.bridge.cli import main; "
            "sys.exit(main([]))",
        ]
    else:
        command = [str(Path(sys.executable).parent / "novakit"), "bridge"]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        if options.cpus:
            set_affinity(process.pid, options.cpus)
        # Several processes: every one of them answers on its own port before the load starts.
        processes = int(env.get("NOVAKIT_PROCESSES", "1"))
        first = int(env.get("NOVAKIT_RELAY_PORT", str(port + 1)))
        ports = [port] + ([first + i for i in range(processes)] if processes > 1 else [])
        try:
            for ready in ports:
                await healthy(f"http://127.0.0.1:{ready}")
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)


class Sampler:
    """CPU of some processes over the measured window, sampled from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.wall = 0.0
        self._t0 = 0.0

    def _read(self) -> dict[str, float]:
        cpu = {name: process_cpu(pid) for name, pid in self.pids.items()}
        # The bridge's event loop is its main thread; awscrt's threads (TLS, HTTP/2) are others.
        bridge = self.pids.get("bridge")
        if bridge is not None:
            processes = children(bridge)
            if processes:  # a supervisor: the bridge is its processes (their loops)
                cpu["bridge"] += sum(_cpu_or_zero(pid) for pid in processes)
                cpu["bridge_loop_thread"] = sum(_loop_cpu_or_zero(pid) for pid in processes)
            else:
                cpu["bridge_loop_thread"] = thread_cpu(bridge, bridge)
        return cpu

    def begin(self) -> None:
        self._t0 = time.monotonic()
        self.start = self._read()

    def finish(self) -> None:
        self.wall = time.monotonic() - self._t0
        self.end = self._read()

    def shares(self) -> dict[str, float]:
        """Cores used by each process over the window (1.0 = one core busy)."""
        if not self.wall:
            return {}
        return {n: round((self.end[n] - self.start[n]) / self.wall, 3) for n in self.end}


def _cpu_or_zero(pid: int) -> float:
    try:
        return process_cpu(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _loop_cpu_or_zero(pid: int) -> float:
    try:
        return thread_cpu(pid, pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


async def run_driver(
    config: dict[str, Any],
    on_measuring: Any = None,
    on_done: Any = None,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """Run ``bench.driver`` with ``config``; ``on_measuring``/``on_done`` are called (with the
    driver's pid) when its measured window starts and ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.driver",
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    assert process.stdout is not None
    results: dict[str, Any] = {}
    while line := await process.stdout.readline():
        message = json.loads(line)
        event = message.pop("event")
        if event == "measuring":
            results["measured_from"] = message["epoch"]
            if on_measuring is not None:
                on_measuring(process.pid)
        elif event == "done":
            results["measured_until"] = message["epoch"]
            if on_done is not None:
                on_done(process.pid)
        elif event == "results":
            text = await asyncio.to_thread(Path(config["out"]).read_text)
            results.update(json.loads(text))
    await process.wait()
    if process.returncode != 0 or "seconds" not in results:
        raise RuntimeError(f"the load generator failed (exit status {process.returncode})")
    return results


async def run(
    emu: EmulatorProcess,
    workdir: Path,
    *,
    sessions: int,
    seconds: float,
    mode: str = "talk",
    frame_ms: int = 32,
    bridge: BridgeOptions | None = None,
    ramp_seconds: float | None = None,
    warmup_seconds: float = 3.0,
    driver_uvloop: bool = True,
    profile: Path | None = None,
    pin: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One measurement: a fresh bridge, ``sessions`` clients for ``seconds`` after the ramp."""
    options = bridge or BridgeOptions()
    others: set[int] | None = None
    if pin and (os.cpu_count() or 1) >= 2:
        # The bridge (every thread of it) on one core, the emulator and the load generator on
        # the other: what one core carries, as far as the other core can drive it.
        options = dataclasses.replace(options, cpus={1})
        others = {0}
    elif options.cpus:
        # The bridge's CPUs chosen (several processes): everything else on the others.
        others = set(range(os.cpu_count() or 1)) - options.cpus or None
    set_affinity(emu.pid, others or set(range(os.cpu_count() or 1)))
    port, sink = free_port(), free_port()
    ramp = ramp_seconds if ramp_seconds is not None else max(2.0, sessions / 40)
    log = workdir / f"bridge-{mode}-{sessions}-{frame_ms}-{options.batch_ms}.log"
    config = {
        "bridge_url": f"http://127.0.0.1:{port}",
        "sink_port": sink,
        "sessions": sessions,
        "seconds": seconds,
        "mode": mode,
        "frame_ms": frame_ms,
        "ramp_seconds": ramp,
        "warmup_seconds": warmup_seconds,
        "uvloop": driver_uvloop,
        "out": str(workdir / f"driver-{port}.json"),
        # A session directory outlives the bridge: its ended conversations must not be the
        # next run's (their frames would be refused).
        **({"tag": f"r{port}x"} if "NOVAKIT_DIRECTORY_TABLE" in options.env else {}),
        **(extra or {}),
    }
    async with bridge_process(emu, f"http://127.0.0.1:{sink}", port, options, log) as process:
        rss_before = rss_kb(process.pid)
        sampler = Sampler({"bridge": process.pid, "emulator": emu.pid})
        memory: dict[str, int] = {}
        profiler: list[asyncio.subprocess.Process] = []

        def measuring(driver_pid: int) -> None:
            memory["rss_kb"] = rss_kb(process.pid)  # every session connected and open
            sampler.pids["driver"] = driver_pid
            sampler.begin()
            if profile is not None:
                profiler.append(_start_profiler(process.pid, seconds, profile))

        def done(_driver_pid: int) -> None:
            sampler.finish()
            memory["rss_kb_end"] = rss_kb(process.pid)

        driven = await run_driver(config, measuring, done, others)
        for spy in profiler:
            await asyncio.to_thread(spy.wait, 30)
    observed = telemetry(log, driven["measured_from"], driven["measured_until"])
    return summarize(
        sessions, mode, frame_ms, options, driven, observed, sampler, rss_before, memory
    )


def _start_profiler(pid: int, seconds: float, path: Path) -> Any:
    spy = Path(sys.executable).parent / "py-spy"
    import subprocess

    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds) - 1)),
            "--rate",
            "200",
            "--format",
            "raw",
            # --native (C frames: what awscrt does under a Python call) pauses the process
            *(["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else ["--nonblocking"]),
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(  # noqa: PLR0917 - one call site, every argument a different measurement
    sessions: int,
    mode: str,
    frame_ms: int,
    options: BridgeOptions,
    driven: dict[str, Any],
    observed: dict[str, Any],
    sampler: Sampler,
    rss_before: int,
    memory: dict[str, int],
) -> dict[str, Any]:
    values = observed["values"]
    shares = sampler.shares()
    minutes = driven["session_minutes"] or 1.0
    bridge_share = shares.get("bridge", 0.0)
    per_session_ms = bridge_share / sessions * 1000 if sessions else 0.0
    result: dict[str, Any] = {
        "sessions": sessions,
        "mode": mode,
        "frame_ms": frame_ms,
        "batch_ms": options.batch_ms,
        "bridge_uvloop": options.uvloop,
        "pinned": options.cpus is not None,
        "seconds": driven["seconds"],
        "cpu_cores": shares,
        "bridge_cpu_ms_per_session_second": round(per_session_ms, 2),
        "bridge_sessions_per_core_at_this_cost": int(1000 / per_session_ms)
        if per_session_ms
        else None,
        "bridge_rss_mb": round(memory.get("rss_kb", 0) / 1024, 1),
        "bridge_rss_mb_before": round(rss_before / 1024, 1),
        "bridge_rss_mb_end": round(memory.get("rss_kb_end", 0) / 1024, 1),
        "input_latency_ms": percentiles(values.get("InputLatencyMs", [])),
        "output_latency_ms": percentiles(values.get("OutputLatencyMs", [])),
        "output_delay_ms": percentiles(values.get("OutputDelayMs", [])),
        "post_latency_ms": percentiles(values.get("PostLatencyMs", [])),
        "barge_in_bridge_ms": percentiles(values.get("BargeInMs", [])),
        "time_to_first_audio_ms": percentiles(values.get("TimeToFirstAudioMs", [])),
        "client_lateness_ms": percentiles(driven["lateness_ms"]),
        "client_request_ms": percentiles(driven["request_ms"]),
        "client_barge_in_ms": percentiles(driven["barge_in_ms"]),
        "underruns": driven["underruns"],
        "underrun_ms": driven["underrun_ms"],
        "stale_audio_frames": driven["stale_audio_frames"],
        "stale_audio_posted": int(observed["counts"].get("StaleAudioFrames", 0)),
        "turns": driven["turns"],
        "errors": driven["errors"],
        "error_codes": driven["error_codes"],
        "failed_requests": driven["failed_requests"],
        "coalesced_frames": int(observed["counts"].get("CoalescedFrames", 0)),
        "messages_per_session_minute_in": round(driven["frames_sent"] / minutes, 1),
        "messages_per_session_minute_out": round(driven["frames_received"] / minutes, 1),
        "units_per_session_minute_in": round(driven["units_in"] / minutes, 1),
        "units_per_session_minute_out": round(driven["units_out"] / minutes, 1),
        "audio_out_seconds_per_session_minute": round(driven["audio_ms"] / 1000 / minutes, 1),
        "cdf": {
            "input_latency_ms": cdf(values.get("InputLatencyMs", [])),
            "output_delay_ms": cdf(values.get("OutputDelayMs", [])),
            "output_latency_ms": cdf(values.get("OutputLatencyMs", [])),
            "client_lateness_ms": cdf(driven["lateness_ms"]),
        },
    }
    return result


# The quantiles kept for plotting a distribution (percent).
CDF_POINTS = (0.5, *range(1, 100), 99.5, 99.9)


def cdf(values: Sequence[float]) -> list[tuple[float, float]]:
    """(percent, value) pairs: a distribution small enough to keep in a result file."""
    if len(values) < 2:
        return []
    ordered = sorted(values)
    last = len(ordered) - 1
    return [(p, round(ordered[min(last, round(p / 100 * last))], 3)) for p in CDF_POINTS]
