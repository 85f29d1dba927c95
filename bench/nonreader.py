"""Soak: clients that never read their socket, against the local stack, and the bridge's memory.

Each client connects through the local gateway, asks for long answers, sends pings and bad
frames (about a thousand frames a second, machine permitting) and never reads what comes back;
when the bridge hangs up on it, it connects again, as a hostile client would. Every few seconds
the bridge process's RSS (``/proc/<pid>/status`` VmRSS) is sampled; the result is the series,
the least-squares slope after the first minute (MB per minute: about zero when output per
connection is bounded) and what the bridge's log says it did (frames shed, clients hung up, log
lines per minute).

``python -m bench.nonreader --clients 3 --minutes 10`` (defaults: 3 clients, 10 minutes);
``python -m bench nonreader`` runs the defaults (``--quick``: 1 minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
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


async def soak(clients: int, minutes: float, workdir: Path) -> dict[str, Any]:
    seconds = minutes * 60
    port = free_port()
    async with (
        emulator_process("--pace", "0") as emu,
        LocalGateway(
            GatewayConfig(backends=[f"http://127.0.0.1:{port}"], integration_secret=GATEWAY_SECRET)
        ) as gateway,
    ):
        options = stack.BridgeOptions(env={"NOVAKIT_LOG_LEVEL": "INFO"})
        log = workdir / "bridge.log"
        async with stack.bridge_process(emu, gateway.management_url, port, options, log) as bridge:
            counts = {"connections": 0, "cut": 0, "frames": 0}
            started = time.monotonic()
            until = started + seconds
            done = asyncio.gather(*(non_reader(gateway.url, until, counts) for _ in range(clients)))
            samples: list[tuple[float, int]] = []
            while not done.done():
                samples.append((time.monotonic() - started, stack.rss_kb(bridge.pid)))
                print(f"{samples[-1][0]:7.1f} s  RSS {samples[-1][1] / 1024:7.1f} MB", flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), SAMPLE_SECONDS)
            await done
            # after the clients left (their sessions ending): reported apart from the run
            after = stack.rss_kb(bridge.pid)
            throttled = gateway.stats.throttled_posts
    settled = [s for s in samples if s[0] >= min(WARM_UP_SECONDS, seconds / 2)]
    rss_mb = [kb / 1024 for _, kb in samples]
    return {
        "clients": clients,
        "minutes": minutes,
        "client": counts,
        "gateway_throttled_posts": throttled,
        "rss_mb": {
            "first": round(rss_mb[0], 1),
            "max": round(max(rss_mb), 1),
            "last": round(rss_mb[-1], 1),
            "slope_mb_per_minute_after_warm_up": slope_mb_per_minute(settled),
            "after_clients_left": round(after / 1024, 1),
        },
        "rss_series": [(round(t, 1), round(kb / 1024, 1)) for t, kb in samples],
        "bridge": from_log(log, minutes),
    }


async def run(quick: bool = False, clients: int = 3, minutes: float = 10.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        results = await soak(clients, 1.0 if quick else minutes, Path(tmp))
    results["path"] = str(save("nonreader", results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nonreader", description=__doc__)
    parser.add_argument("--clients", type=int, default=3, help="non-reading clients (3)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    args = parser.parse_args()
    results = asyncio.run(run(clients=args.clients, minutes=args.minutes))
    summary = {k: v for k, v in results.items() if k != "rss_series"}
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
