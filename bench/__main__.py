"""``python -m bench [NAME ...] [--quick]``: run benchmarks and print what they measured.

With no name, every benchmark runs but the soaks (run those by name). Results are also written
to ``bench/results/*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json

# name -> (module, what it measures)
BENCHMARKS = {
    "core": ("bench.core", "CPU per audio event through the SDK, emulator in another process"),
    "rollover": ("bench.rollover", "cost of stream rollover and recovery in long conversations"),
    "micro": ("bench.micro", "per-frame work of the bridge, microseconds, no sockets"),
    "capacity": ("bench.capacity", "sessions per bridge process within 20 ms added latency"),
    "bridge": ("bench.bridge", "latency, barge-in, memory and messages/cost of the bridge"),
    "phone": ("bench.phone", "phone calls: API Gateway messages and bridge CPU per call-minute"),
    "cluster": ("bench.cluster", "relay latency and takeover time, three bridge processes"),
    "processes": ("bench.processes", "capacity with 1 and 2 bridge processes in one task"),
    "speech": ("bench.speech", "the emulator's offline speech: accuracy, latency, CPU"),
    "plots": ("bench.plots", "PNG plots of the latest results"),
    "nonreader": ("bench.nonreader", "bridge memory under clients that never read (a soak)"),
}
# Soaks, and sweeps that repeat another's, run only when named (see their own --help).
NAMED_ONLY = {"nonreader", "processes"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], help="which to run")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    args = parser.parse_args()
    for name in args.names or [name for name in BENCHMARKS if name not in NAMED_ONLY]:
        module, about = BENCHMARKS[name]
        print(f"{name}: {about}", flush=True)
        results = asyncio.run(importlib.import_module(module).run(quick=args.quick))
        print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
