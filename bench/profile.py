"""Aggregate py-spy raw profiles (``py-spy record --format raw``: one collapsed stack and its
sample count per line) into where the time goes.

``python -m bench.profile record [--sessions N] [--frame-ms MS] [--seconds S] [--mode idle]`` runs
the bridge
under load (``bench/stack.py``, the bridge pinned to one core) with py-spy attached for the
measured window, then prints the aggregate below and saves it to ``bench/results``;
``python -m bench.profile FILE [--top N]`` aggregates a raw profile already recorded. Both print:

- **areas**: each sample counted once, for the first rule below that its stack matches (most
  specific first), so the areas add up to 100 %;
- **self**: functions by the samples in which they are the innermost frame;
- **inclusive**: functions by the samples in which they appear anywhere in the stack.

Idle samples (the event loop waiting in ``select``/``epoll``) are counted apart: the areas are
shares of busy time. ``--idle`` records them (py-spy's ``--idle``); without it, an idle thread
is not sampled at all.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

_BRIDGE = Path(__file__).resolve().parents[1] / "runtime" / "novakit" / "bridge"

# (area, substrings of a frame "func (file)"), checked in order against the whole stack; the
# first area with a frame matching one of its patterns takes the sample.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("idle: waiting for events", ("select (selectors.py", "poll (selectors.py")),
    ("@connections SigV4 signing", ("botocore/auth.py", "SigV4Signer.sign")),
    (
        "@connections post (HTTP client)",
        (
            "ConnectionsClient._request",
            "bridge/httpclient.py",
            "aiohttp/client",
            "aiohttp/connector",
        ),
    ),
    (
        "Bedrock send: SDK event signing",
        (
            "aws_sdk_signers",
            "smithy_aws_event_stream/aio/__init__.py:send",
            "EventSigner",
            "s2s/nova/signing.py",
        ),
    ),
    ("Bedrock send: SDK/awscrt", ("BedrockStream.send", "input_stream", "smithy_http", "awscrt")),
    ("Bedrock receive: SDK/awscrt", ("BedrockStream.receive", "_receiver", "AsyncEventReceiver")),
    ("Nova protocol (JSON, base64)", ("s2s/nova/protocol.py",)),
    ("s2s session", ("novakit/s2s/",)),
    # Before the server's area: a frame for a held session is parsed inside the server's
    # callback (and inside aiohttp's handler before), and counts as parsing.
    ("bridge: client frame parsing", ("parse_client_frame", "bridge/protocol.py")),
    (
        "integration request (HTTP server)",
        ("bridge/http.py", "httptools", "aiohttp/web_", "aiohttp/http_parser", "aiohttp/_http"),
    ),
    ("bridge: batching/encoding", ("bridge/batching.py",)),
    # Any bridge module but the entry point, which every stack of the process holds (what runs
    # under it alone is the event loop's own work, the area after next).
    (
        "bridge: sender/session/metrics",
        tuple(
            f"novakit/bridge/{module.relative_to(_BRIDGE).as_posix()}"
            for module in _BRIDGE.rglob("*.py")
            if module.name != "cli.py"
        ),
    ),
    ("logging", ("logging/",)),
    ("asyncio event loop", ("asyncio/",)),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['func']} ({match['file']})"


def aggregate(stacks: list[tuple[list[str], int]], top: int = 25) -> dict[str, Any]:
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        names = [_name(f) for f in frames]
        joined = "\n".join(frames)
        for area, patterns in AREAS:
            if any(p in joined for p in patterns):
                areas[area] += count
                break
        else:
            areas["other"] += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    idle = areas.pop("idle: waiting for events", 0)
    busy = total - idle
    if busy <= 0:
        return {"samples": total, "idle_samples": idle, "areas": {}, "self": [], "inclusive": []}

    def share(n: int) -> float:
        return round(100 * n / busy, 1)

    return {
        "samples": total,
        "idle_samples": idle,
        "areas": {name: share(n) for name, n in areas.most_common()},
        "self": [(name, share(n)) for name, n in own.most_common(top) if "select" not in name],
        "inclusive": [(name, share(n)) for name, n in inclusive.most_common(top)],
    }


async def record(
    sessions: int,
    frame_ms: int,
    seconds: float,
    path: Path,
    mode: str = "talk",
    *,
    event_loop: str = "uvloop",
) -> dict[str, Any]:
    """Profile the bridge under load; the load's own figures are returned too. On uvloop the
    loop's own work is C that py-spy shows as ``Runner.run``; ``event_loop="asyncio"`` names
    it."""
    import tempfile

    from . import stack
    from .common import emulator_process

    with tempfile.TemporaryDirectory() as tmp:
        async with emulator_process("--pace", "1") as emu:
            result = await stack.run(
                emu,
                Path(tmp),
                sessions=sessions,
                seconds=seconds,
                frame_ms=frame_ms,
                profile=path,
                pin=True,
                mode=mode,
                bridge=stack.BridgeOptions(env={"NOVAKIT_EVENT_LOOP": event_loop}),
            )
    result.pop("cdf", None)
    return result


def main() -> None:
    import asyncio
    import sys

    from .common import RESULTS, save

    if sys.argv[1:2] == ["record"]:
        parser = argparse.ArgumentParser(prog="python -m bench.profile record")
        parser.add_argument("--sessions", type=int, default=40)
        parser.add_argument("--frame-ms", type=int, default=32)
        parser.add_argument("--seconds", type=float, default=20.0)
        parser.add_argument("--top", type=int, default=25)
        parser.add_argument("--mode", choices=("talk", "idle"), default="talk")
        parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
        args = parser.parse_args(sys.argv[2:])
        RESULTS.mkdir(exist_ok=True)
        size = "idle" if args.mode == "idle" else f"{args.frame_ms}ms"
        path = RESULTS / f"profile-{args.sessions}x{size}.txt"
        load = asyncio.run(
            record(
                args.sessions,
                args.frame_ms,
                args.seconds,
                path,
                args.mode,
                event_loop=args.event_loop,
            )
        )
        summary = aggregate(parse(path), args.top)
        save("profile", {"raw": str(path), "load": load, **summary})
    else:
        parser = argparse.ArgumentParser(prog="python -m bench.profile")
        parser.add_argument("path", type=Path)
        parser.add_argument("--top", type=int, default=25)
        args = parser.parse_args()
        summary = aggregate(parse(args.path), args.top)
    print(f"{summary['samples']} samples, {summary['idle_samples']} idle; shares of busy time:")
    print("\nareas")
    for name, pct in summary["areas"].items():
        print(f"  {pct:5.1f}%  {name}")
    print("\nself")
    for name, pct in summary["self"]:
        print(f"  {pct:5.1f}%  {name}")
    print("\ninclusive")
    for name, pct in summary["inclusive"]:
        print(f"  {pct:5.1f}%  {name}")


if __name__ == "__main__":
    main()
