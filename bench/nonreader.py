"""Soak: clients that never read their socket, against the local stack, and the bridge's memory.

Each client connects through the local gateway, asks for long answers, sends pings and bad
frames (about a thousand frames a second, machine permitting) and never reads what comes back;
when the bridge hangs up on it, it connects again, as a hostile client would. The emulator
answers at ``--pace 0`` (as fast as it can), so the model side sends faster than any client
listens. Every few seconds the bridge process's RSS is sampled (``/proc/<pid>/status``:
``VmRSS``, and its anonymous part ``RssAnon``, the heaps; the rest is mapped files).

The verdict (``flat``): after the first minute (imports, caches, first sessions, allocator
arenas), the least-squares slope of RSS is under ``FLAT_MB_PER_MINUTE`` (1 MB a minute), and so
is the slope over the last five minutes (the last half of a shorter run): no growth trend, not
merely a slow one. Also reported: first, end of warm-up, last and peak RSS, and what the bridge's
log says it did (frames shed, clients hung up, log lines per minute).

``python -m bench.nonreader --clients 3 --minutes 10`` (defaults: 3 clients, 10 minutes);
``python -m bench nonreader`` runs the defaults (``--quick``: 1 minute). ``--probe FILE`` runs
the bridge under ``bench.memprobe`` (Python heap, malloc, awscrt and buffer figures in FILE, a
summary in the result) to tell apart what grows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from novakit.dev import free_port
from novakit.localgw import GatewayConfig, LocalGateway

from . import stack
from .common import GATEWAY_SECRET, emulator_process, save

SAMPLE_SECONDS = 5.0
WARM_UP_SECONDS = 60.0  # left out of the slope: imports, caches and first sessions settle
TREND_SECONDS = 300.0  # the last five minutes: their slope shows a trend the whole run may hide
FLAT_MB_PER_MINUTE = 1.0


async def non_reader(url: str, until: float, counts: dict[str, int]) -> None:
    """One hostile client: asks, pings, sends bad frames, never reads; reconnects when cut."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit(":", 1)
    while time.monotonic() < until:
        sock = socket.socket()
        # A small receive window (set before connecting, so the window is announced small):
        # the gateway's buffer for this client fills in seconds rather than minutes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.connect((host, int(port)))
            async with websockets.connect(url, sock=sock, max_queue=1, open_timeout=30) as ws:
                counts["connections"] += 1
                await ws.send('{"type":"text","text":"tell me a long story"}')
                n = 0
                while time.monotonic() < until:
                    n += 1
                    await ws.send(f'{{"type":"ping","id":{n}}}')
                    await ws.send("{not json" if n % 2 else '{"type":"bogus"}')
                    if n % 10 == 0:
                        await ws.send('{"type":"text","text":"and another one"}')
                    counts["frames"] += 2 + (n % 10 == 0)
                    await asyncio.sleep(0.002)
        except (websockets.ConnectionClosed, OSError, TimeoutError):
            counts["cut"] += 1
        finally:
            sock.close()


def slope_mb_per_minute(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS (kB) over time (s), in MB per minute."""
    if len(samples) < 3:
        return None
    xs = [t for t, _ in samples]
    ys = [kb / 1024 for _, kb in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return round(slope * 60, 3)


def rss_parts_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process, kB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["RssAnon"].split()[0])


def verdict(samples: list[tuple[float, int]], seconds: float) -> dict[str, Any]:
    """RSS figures of a run and whether it held flat (the module's criterion)."""
    warm_up = min(WARM_UP_SECONDS, seconds / 2)
    settled = [s for s in samples if s[0] >= warm_up]
    trend_from = max(warm_up, samples[-1][0] - TREND_SECONDS) if samples else 0.0
    trend = [s for s in samples if s[0] >= trend_from]
    after_warm_up = slope_mb_per_minute(settled)
    last_minutes = slope_mb_per_minute(trend)
    mb = [kb / 1024 for _, kb in samples]
    return {
        "first": round(mb[0], 1),
        "end_of_warm_up": round(settled[0][1] / 1024, 1) if settled else None,
        "last": round(mb[-1], 1),
        "peak": round(max(mb), 1),
        "growth_after_warm_up": round((samples[-1][1] - settled[0][1]) / 1024, 1)
        if settled
        else None,
        "slope_mb_per_minute_after_warm_up": after_warm_up,
        "slope_mb_per_minute_last_minutes": last_minutes,
        "last_minutes": round((samples[-1][0] - trend_from) / 60, 1) if samples else 0,
        "criterion": f"both slopes < {FLAT_MB_PER_MINUTE:g} MB/min, first {warm_up:g} s left out",
        "flat": after_warm_up is not None
        and last_minutes is not None
        and after_warm_up < FLAT_MB_PER_MINUTE
        and last_minutes < FLAT_MB_PER_MINUTE,
    }


def probe_summary(path: Path) -> dict[str, Any]:
    """First, end-of-warm-up and last lines of a ``bench.memprobe`` file, and buffer peaks."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return {}

    def brief(line: dict[str, Any]) -> dict[str, Any]:
        glibc = line.get("glibc", {})
        return {
            "t": line["t"],
            "rss_mb": line["rss_mb"],
            "python_blocks": line["blocks"],
            "malloc_in_use_mb": round(glibc.get("current", 0) - glibc.get("rest", 0), 1),
            "malloc_free_mb": glibc.get("rest"),
            "awscrt_mb": line.get("native_mb"),
            "threads": line["threads"],
        }

    warm = next((line for line in lines if line["t"] >= WARM_UP_SECONDS), lines[-1])
    peaks: dict[str, float] = {}
    for line in lines:
        for key, value in (line.get("buffer_highs") or {}).items():
            peaks[key] = max(peaks.get(key, 0.0), value)
    return {
        "first": brief(lines[0]),
        "end_of_warm_up": brief(warm),
        "last": brief(lines[-1]),
        "buffer_peaks": peaks,
    }


def from_log(log: Path, minutes: float) -> dict[str, Any]:
    """What the bridge says it did: shed frames, hang-ups, its log volume."""
    lines = log.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    shed = [r for r in records if str(r.get("message", "")).startswith("client is not keeping up")]
    hung_up = [r for r in records if "hanging up" in str(r.get("message", ""))]
    refused = [r for r in records if str(r.get("message", "")).startswith("refused a frame")]
    peaks = [r["peak_bytes"] for r in records if "peak_bytes" in r]
    return {
        "log_lines": len(lines),
        "log_lines_per_minute": round(len(lines) / minutes, 1),
        "refused_frame_lines": len(refused),
        "shed_episodes": len(shed),
        "shed_frames": {
            key: sum(int(r.get(key, 0)) for r in shed) for key in ("pongs", "errors", "audio")
        },
        "hung_up": len(hung_up),
        "hang_up_reasons": sorted({str(r["message"]) for r in hung_up}),
        "peak_queue_bytes": max(peaks, default=0),
    }


async def soak(
    clients: int,
    minutes: float,
    workdir: Path,
    probe: Path | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    seconds = minutes * 60
    port = free_port()
    async with (
        emulator_process("--pace", "0") as emu,
        LocalGateway(
            GatewayConfig(backends=[f"http://127.0.0.1:{port}"], integration_secret=GATEWAY_SECRET)
        ) as gateway,
    ):
        options = stack.BridgeOptions(env={"NOVAKIT_LOG_LEVEL": "INFO"})
        if probe is not None:
            options.env["AWS_CRT_MEMORY_TRACING"] = "1"
            options.command = [sys.executable, "-m", "bench.memprobe", str(probe), "30"]
        if command:
            options.command = command
        log = workdir / "bridge.log"
        async with stack.bridge_process(emu, gateway.management_url, port, options, log) as bridge:
            counts = {"connections": 0, "cut": 0, "frames": 0}
            started = time.monotonic()
            until = started + seconds
            done = asyncio.gather(*(non_reader(gateway.url, until, counts) for _ in range(clients)))
            samples: list[tuple[float, int]] = []
            anon: list[int] = []
            while not done.done():
                rss, heaps = rss_parts_kb(bridge.pid)
                samples.append((time.monotonic() - started, rss))
                anon.append(heaps)
                print(
                    f"{samples[-1][0]:7.1f} s  RSS {rss / 1024:7.1f} MB (anonymous"
                    f" {heaps / 1024:.1f})  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), SAMPLE_SECONDS)
            await done
            # after the clients left (their sessions ending): reported apart from the run
            after = stack.rss_kb(bridge.pid)
            throttled = gateway.stats.throttled_posts
            load = os.getloadavg()
    if probe is not None:
        shutil.copy(log, probe.with_suffix(".log"))
    results: dict[str, Any] = {
        "clients": clients,
        "minutes": minutes,
        "client": counts,
        "gateway_throttled_posts": throttled,
        "rss_mb": {
            **verdict(samples, seconds),
            "anonymous_first": round(anon[0] / 1024, 1),
            "anonymous_last": round(anon[-1] / 1024, 1),
            "after_clients_left": round(after / 1024, 1),
        },
        "load_average_1_5_15": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "rss_series": [(round(t, 1), round(kb / 1024, 1)) for t, kb in samples],
        "bridge": from_log(log, minutes),
    }
    if probe is not None:
        results["probe"] = probe_summary(probe)
    return results


async def run(
    quick: bool = False,
    clients: int = 3,
    minutes: float = 10.0,
    probe: Path | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        results = await soak(clients, 1.0 if quick else minutes, Path(tmp), probe, command)
    results["path"] = str(save("nonreader", results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nonreader", description=__doc__)
    parser.add_argument("--clients", type=int, default=3, help="non-reading clients (3)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    parser.add_argument(
        "--probe",
        type=Path,
        help="run the bridge under bench.memprobe, its JSON lines to this file (diagnosis)",
    )
    parser.add_argument(
        "--bridge-command",
        help="run the bridge with this command line instead (e.g. under a memory profiler)",
    )
    args = parser.parse_args()
    command = shlex.split(args.bridge_command) if args.bridge_command else None
    results = asyncio.run(
        run(clients=args.clients, minutes=args.minutes, probe=args.probe, command=command)
    )
    summary = {k: v for k, v in results.items() if k != "rss_series"}
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
