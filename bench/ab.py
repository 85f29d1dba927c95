"""Before/after: the same bridge load with two (or more) bridge variants, interleaved.

``python -m bench.ab --variant NAME[:KEY=VALUE,...] ... [--sessions N[,N...]]
[--frame-ms MS[,MS...]] [--seconds S] [--runs R] [--mode talk|idle] [--pin]``

Each variant is a bridge process option set: ``pythonpath=DIR`` (run the ``novakit`` package
found in DIR: a copy of the code before a change), ``uvloop=1``, ``batch_ms=N``, or any
``NOVAKIT_*=VALUE``. Runs alternate between the variants (A B A B ...) so that the machine's
background load falls on all of them alike; the report gives each variant's median and the
ratio to the first. The machine is shared: read ratios, not absolute figures.

Several session counts and frame sizes make a grid (``--sessions 10,40,100 --frame-ms 100,32
--pin``): each cell is its own interleaved comparison, and the report ends with a table of CPU ms
per session-second and MB per session for every variant and cell, the units of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from . import stack
from .common import emulator_process, save


def parse_variant(text: str) -> tuple[str, stack.BridgeOptions]:
    name, _, spec = text.partition(":")
    options = stack.BridgeOptions()
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key == "pythonpath":
            options.env["PYTHONPATH"] = value
        elif key == "uvloop":
            options.uvloop = value not in ("0", "")
        elif key == "batch_ms":
            options.batch_ms = int(value)
        elif key.startswith("NOVAKIT_"):
            options.env[key] = value
        else:
            raise SystemExit(f"unknown variant option {key!r}")
    return name, options


KEYS = (
    ("bridge_cpu_ms_per_session_second", None),
    ("input_latency_ms", "p50"),
    ("input_latency_ms", "p99"),
    ("output_latency_ms", "p50"),
    ("output_latency_ms", "p99"),
    ("output_delay_ms", "p50"),
    ("output_delay_ms", "p99"),
    ("client_request_ms", "p99"),
    ("bridge_mb_per_session", None),
)


def _value(result: dict[str, Any], key: str, sub: str | None) -> float | None:
    value = result.get(key)
    if sub is not None:
        value = value.get(sub) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


async def compare(
    variants: list[tuple[str, stack.BridgeOptions]],
    *,
    sessions: int,
    seconds: float,
    runs: int,
    frame_ms: int = 32,
    pin: bool = False,
    mode: str = "talk",
) -> dict[str, Any]:
    runs_by: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        async with emulator_process("--pace", "1") as emu:
            for _ in range(runs):
                for name, options in variants:
                    result = await stack.run(
                        emu,
                        Path(tmp),
                        sessions=sessions,
                        seconds=seconds,
                        frame_ms=frame_ms,
                        bridge=options,
                        pin=pin,
                        mode=mode,
                    )
                    result.pop("cdf", None)
                    result["bridge_mb_per_session"] = round(
                        (result["bridge_rss_mb"] - result["bridge_rss_mb_before"]) / sessions, 3
                    )
                    runs_by[name].append(result)
                    print(
                        f"  {name}: {result['bridge_cpu_ms_per_session_second']} ms CPU per"
                        f" session-second, input p99 {result['input_latency_ms'].get('p99')} ms,"
                        f" output delay p99 {result['output_delay_ms'].get('p99')} ms,"
                        f" cores {result['cpu_cores']}",
                        flush=True,
                    )
    summary: dict[str, dict[str, float | None]] = {}
    for name, results in runs_by.items():
        row: dict[str, float | None] = {}
        for key, sub in KEYS:
            values = [v for r in results if (v := _value(r, key, sub)) is not None]
            row[f"{key}.{sub}" if sub else key] = (
                round(statistics.median(values), 2) if values else None
            )
        summary[name] = row
    first = variants[0][0]
    base = summary[first]["bridge_cpu_ms_per_session_second"]
    for row in summary.values():
        cpu = row["bridge_cpu_ms_per_session_second"]
        row["cpu_ratio_to_first"] = round(cpu / base, 3) if cpu and base else None
    return {
        "sessions": sessions,
        "seconds": seconds,
        "runs": runs,
        "frame_ms": frame_ms,
        "pinned": pin,
        "mode": mode,
        "median": summary,
        "runs_by_variant": runs_by,
    }


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def table(cells: list[dict[str, Any]]) -> str:
    """Markdown: a row per (frame size, sessions), CPU and memory per variant."""
    names = list(cells[0]["median"])
    head = ["frame", "sessions"] + [
        f"{name} {unit}" for name in names for unit in ("ms CPU/session-s", "MB/session")
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        row = [f"{cell['frame_ms']} ms", str(cell["sessions"])]
        for name in names:
            median = cell["median"][name]
            row += [
                str(median["bridge_cpu_ms_per_session_second"]),
                str(median["bridge_mb_per_session"]),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--sessions", type=_numbers, default=[40], help="e.g. 10,40,100")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frame-ms", type=_numbers, default=[32], help="e.g. 100,32")
    parser.add_argument("--name", default="ab")
    parser.add_argument("--pin", action="store_true", help="bridge on one core, rest on the other")
    parser.add_argument(
        "--mode", choices=("talk", "idle"), default="talk", help="conversations, or idle sessions"
    )
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    cells = []
    for frame_ms in args.frame_ms:
        for sessions in args.sessions:
            print(f"{frame_ms} ms frames, {sessions} sessions", flush=True)
            cell = asyncio.run(
                compare(
                    variants,
                    sessions=sessions,
                    seconds=args.seconds,
                    runs=args.runs,
                    frame_ms=frame_ms,
                    pin=args.pin,
                    mode=args.mode,
                )
            )
            for name, row in cell["median"].items():
                print(" ", name, row, flush=True)
            cells.append(cell)
    results = cells[0] if len(cells) == 1 else {"cells": cells}
    print(table(cells))
    print(save(args.name, results))


if __name__ == "__main__":
    main()
