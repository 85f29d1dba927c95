"""PNG plots of the latest results in ``bench/results/``: ``python -m bench plots``.

- ``capacity.png``: bridge-added latency p99 and the cores each process used, against the
  number of concurrent sessions, for 32 ms and 100 ms client frames (``capacity-*.json``);
- ``latency.png``: distributions (CDF) of the bridge-added latency at each load of the
  ``bridge`` benchmark (``bridge-*.json``);
- ``cost.png``: messages per session-minute and infra cost per session-minute for each client
  frame size and batching setting (``bridge-*.json``).

Needs matplotlib (a development dependency).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import RESULTS


def latest(name: str) -> dict[str, Any] | None:
    paths = sorted(RESULTS.glob(f"{name}-*.json"))
    return json.loads(paths[-1].read_text()) if paths else None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "figure.dpi": 110})
    return plt


def _footnote(fig: Any, document: dict[str, Any]) -> None:
    m = document.get("machine", {})
    fig.text(
        0.01,
        0.005,
        f"{m.get('cores')}-core {m.get('cpu')}, Python {m.get('python')},"
        f" load average {m.get('load_average', [0])[0]:.1f} at start; revision"
        f" {document.get('revision')}",
        fontsize=6,
        color="0.4",
    )


def capacity(document: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    colors = {32: "tab:red", 100: "tab:blue"}
    for sweep in document["sweeps"]:
        frame = sweep["frame_ms"]
        steps = sweep["steps"]
        n = [s["sessions"] for s in steps]
        color = colors.get(frame, "k")
        top.plot(
            n,
            [s["input_latency_ms"].get("p99") for s in steps],
            "o-",
            color=color,
            label=f"{frame} ms frames: input p99",
        )
        top.plot(
            n,
            [s["output_delay_ms"].get("p99") for s in steps],
            "s--",
            color=color,
            label=f"{frame} ms frames: output delay p99",
        )
        bottom.plot(
            n,
            [s["cpu_cores"].get("bridge") for s in steps],
            "o-",
            color=color,
            label=f"{frame} ms: bridge",
        )
        bottom.plot(
            n,
            [s["cpu_cores"].get("emulator") for s in steps],
            ":",
            color=color,
            label=f"{frame} ms: emulator",
        )
        bottom.plot(
            n,
            [s["cpu_cores"].get("driver") for s in steps],
            "-.",
            color=color,
            label=f"{frame} ms: load generator",
        )
        late = [s for s in steps if s.get("verdict", "").startswith("load generator")]
        if late:
            top.plot(
                [s["sessions"] for s in late],
                [s["input_latency_ms"].get("p99") for s in late],
                "x",
                color="k",
                markersize=9,
                label="load generator late (see the cores used)" if frame == 32 else None,
            )
        if sweep.get("knee_sessions"):
            top.axvline(sweep["knee_sessions"], color=color, alpha=0.3, linewidth=4)
    top.axhline(document.get("bound_ms", 20), color="k", linewidth=0.8)
    top.set_yscale("log")
    top.set_ylabel("bridge-added latency p99 (ms)")
    top.set_title("One bridge process: added latency and CPU against concurrent sessions")
    top.legend(fontsize=6)
    bottom.set_ylabel("cores used")
    bottom.set_xlabel("concurrent real-time sessions")
    bottom.legend(fontsize=6, ncol=2)
    bottom.axhline(1.0, color="k", linewidth=0.8)
    _footnote(fig, document)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = out / "capacity.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def latency(document: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2), sharey=True)
    for ax, key, title in (
        (axes[0], "input_latency_ms", "client frame → SDK send (InputLatencyMs)"),
        (axes[1], "output_delay_ms", "output frame able to go → post start (OutputDelayMs)"),
    ):
        for run in document.get("load", []):
            points = run.get("cdf", {}).get(key, [])
            points = [(p, max(v, 0.01)) for p, v in points]  # log axis: 0 ms shown as 0.01
            if not points:
                continue
            ax.plot(
                [v for _, v in points],
                [p for p, _ in points],
                label=f"{run['sessions']} sessions, {run['frame_ms']} ms frames",
            )
        ax.set_xscale("log")
        ax.set_xlabel("ms")
        ax.set_title(title, fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("percent of frames at or below")
    axes[0].legend(fontsize=6)
    _footnote(fig, document)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "latency.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def cost(document: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    rows = document.get("cost", [])
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.0))
    labels = [f"{r['frame_ms']}/{r['batch_ms']}" for r in rows]
    x = range(len(rows))
    left.bar(x, [r["messages_per_session_minute_in"] for r in rows], label="in (client → bridge)")
    left.bar(
        x,
        [r["messages_per_session_minute_out"] for r in rows],
        bottom=[r["messages_per_session_minute_in"] for r in rows],
        label="out (@connections)",
    )
    left.set_xticks(list(x), labels, rotation=45)
    left.set_xlabel("client frame ms / batch ms")
    left.set_ylabel("messages per session-minute")
    left.legend(fontsize=6)
    parts = ("api_gateway", "fargate", "lambda")
    bottom = [0.0] * len(rows)
    for part in parts:
        values = [r["usd_per_session_minute"][part] * 1000 for r in rows]
        right.bar(x, values, bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.axhline(1.0, color="k", linewidth=0.8)
    right.set_xticks(list(x), labels, rotation=45)
    right.set_xlabel("client frame ms / batch ms")
    right.set_ylabel("USD per 1,000 session-minutes")
    right.legend(fontsize=6)
    _footnote(fig, document)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "cost.png"
    fig.savefig(path)
    plt.close(fig)
    return path


async def run(quick: bool = False) -> dict[str, Any]:
    made: list[str] = []
    capacity_doc = latest("capacity")
    if capacity_doc:
        made.append(str(capacity(capacity_doc, RESULTS)))
    bridge_doc = latest("bridge")
    if bridge_doc:
        made.append(str(latency(bridge_doc, RESULTS)))
        if bridge_doc.get("cost"):
            made.append(str(cost(bridge_doc, RESULTS)))
    return {"plots": made}
