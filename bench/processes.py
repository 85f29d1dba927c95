"""Capacity with one and with several bridge processes in one task (``NOVAKIT_PROCESSES``).

``python -m bench.processes [--processes 1,2] [--frame-ms 32] [--sessions 10,25,40,...]
[--seconds S] [--quick]``

For each process count, the capacity sweep of ``bench.capacity`` (N real-time conversations,
N growing until the bridge's added latency p99 passes 20 ms, the audio underruns or the load
generator runs late) against ``novakit bridge`` started as the container starts it: the
supervisor and its processes on one port (SO_REUSEPORT), a session directory in moto's
DynamoDB-compatible server (which several processes need), the emulator in another process.
The report gives each count's knee and the scaling against one process: the issue's bound is
0.8 N. The bridge's CPU per session-second sums every process.

The bridge's processes get their CPUs with ``--bridge-cpus`` (default: the last N of the
machine's), the emulator, the load generator and moto the others. With no CPU left for them
(two cores and two processes) nothing is pinned: the figures then say what the machine
carries, not what N cores of a task carry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from novakit.dev import free_ports

from . import capacity, stack
from .cluster import TABLE, dynamodb_server
from .common import emulator_process, save


def bridge_cpus(processes: int) -> set[int] | None:
    """The last ``processes`` CPUs for the bridge, when at least one is left for the rest."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) <= processes:
        return None
    return set(available[-processes:])


async def run(
    quick: bool = False,
    *,
    counts: tuple[int, ...] = (1, 2),
    frame_ms: int = 32,
    steps: tuple[int, ...] | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    seconds = seconds or (8.0 if quick else 15.0)
    steps = steps or (capacity.QUICK_STEPS if quick else capacity.STEPS)[frame_ms]
    results: dict[str, Any] = {"frame_ms": frame_ms, "bound_ms": capacity.BOUND_MS, "sweeps": []}
    with tempfile.TemporaryDirectory() as tmp, dynamodb_server() as dynamodb:
        async with emulator_process("--pace", "1") as emu:
            for processes in counts:
                cpus = bridge_cpus(processes)
                options = stack.BridgeOptions(
                    cpus=cpus,
                    env={
                        "NOVAKIT_PROCESSES": str(processes),
                        "NOVAKIT_RELAY_PORT": str(free_ports(processes)),
                        "NOVAKIT_DIRECTORY_TABLE": TABLE,
                        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
                    },
                )
                print(f"{processes} process(es), bridge CPUs {sorted(cpus or [])}", flush=True)
                workdir = Path(tmp) / f"p{processes}"
                workdir.mkdir()
                sweep = await capacity.sweep(
                    emu, workdir, frame_ms, steps, seconds, pin=False, bridge=options
                )
                sweep["processes"] = processes
                sweep["bridge_cpus"] = sorted(cpus) if cpus else "unpinned"
                results["sweeps"].append(sweep)
    knees = {s["processes"]: s["knee_sessions"] for s in results["sweeps"]}
    if knees.get(1):
        results["scaling"] = {n: round(knee / knees[1], 2) for n, knee in knees.items()}
    results["path"] = str(save("processes", results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.processes")
    parser.add_argument("--processes", default="1,2", help="process counts, e.g. 1,2")
    parser.add_argument("--frame-ms", type=int, default=32, choices=sorted(capacity.STEPS))
    parser.add_argument("--sessions", default="", help="session counts to step through")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds a step")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter steps")
    args = parser.parse_args()
    results = asyncio.run(
        run(
            args.quick,
            counts=tuple(int(n) for n in args.processes.split(",")),
            frame_ms=args.frame_ms,
            steps=tuple(int(n) for n in args.sessions.split(",")) if args.sessions else None,
            seconds=args.seconds,
        )
    )
    for sweep in results["sweeps"]:
        print(
            f"{sweep['processes']} process(es): knee {sweep['knee_sessions']} sessions"
            f" ({sweep['frame_ms']} ms frames, bridge CPUs {sweep['bridge_cpus']})"
        )
    if "scaling" in results:
        print(f"scaling against one process: {results['scaling']}")
    print(f"saved {results['path']}")


if __name__ == "__main__":
    main()
