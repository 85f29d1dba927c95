"""Run ``novakit bridge`` with its memory watched from inside: a diagnostic for soaks.

``python -m bench.memprobe OUT SECONDS`` starts the bridge as ``novakit bridge`` does and
appends a JSON line to ``OUT`` every 2 s: RSS; live Python blocks (``sys.getallocatedblocks``);
what glibc's malloc holds over all its arenas, in use and free (``malloc_info``); awscrt's own
native allocations (with ``AWS_CRT_MEMORY_TRACING=1``); threads; and, sampled every 0.1 s, the
peaks of the buffers between Bedrock and the client (awscrt's unread response chunks, the
sessions' event queues, the senders' queues). Cheap enough to leave the soak's figures alone.

With ``MEMPROBE_TRACE=1`` ``tracemalloc`` runs too (``MEMPROBE_FRAMES`` frames, default 6):
each new high of the Python heap adds the sites holding it, and every ``SECONDS`` the objects
by type (``gc``) and the sites that grew since the first and the previous full line. That costs
about twice the heap and much CPU: it explains growth, its RSS figures are not the soak's.

``bench.nonreader --probe FILE`` runs its bridge this way.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

FRAMES = 6
TOP = 25


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {
        "in_use_mb": round((info.uordblks + info.hblkhd) / 2**20, 2),
        "free_mb": round(info.fordblks / 2**20, 2),
        "arena_mb": round(info.arena / 2**20, 2),
    }


def _malloc_info() -> dict[str, float]:
    """glibc's totals over every arena (``mallinfo2`` sees only the main one): what malloc holds
    from the system, and how much of it is in use."""
    libc = ctypes.CDLL("libc.so.6")
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    text = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    tail = text[text.rindex("</heap>") :]
    values = dict(re.findall(r'<(?:total|system) type="(\w+)"[^>]*size="(\d+)"', tail))
    arenas = text.count("<heap nr=")
    mb = {k: round(int(v) / 2**20, 2) for k, v in values.items()}
    return {"arenas": arenas, **mb}


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _native() -> int | None:
    if "awscrt" not in sys.modules or not os.environ.get("AWS_CRT_MEMORY_TRACING"):
        return None
    from awscrt import _test

    return int(_test.native_memory_usage())


_STREAMS: Any = None  # weak set of awscrt response streams
_QUEUES: Any = None  # weak set of novakit.s2s EventQueues
_SENDERS: Any = None  # weak set of the bridge's OrderedSenders
_HIGHS: dict[str, float] = {}
_LARGEST: dict[str, Any] = {}  # the largest event queue seen since the last line


def _watch_buffers() -> None:
    """Keep weak references to the objects whose buffers may grow, for ``_buffers``."""
    global _STREAMS, _QUEUES, _SENDERS
    import weakref

    from awscrt.aio.http import AIOHttpClientStreamUnified

    from novakit.bridge.sender import OrderedSender
    from novakit.s2s.session import EventQueue

    _STREAMS, _QUEUES, _SENDERS = weakref.WeakSet(), weakref.WeakSet(), weakref.WeakSet()
    for cls, registry in (
        (AIOHttpClientStreamUnified, _STREAMS),
        (EventQueue, _QUEUES),
        (OrderedSender, _SENDERS),
    ):
        original = cls.__init__

        def patched(self: Any, *a: Any, _o: Any = original, _r: Any = registry, **k: Any) -> None:
            _o(self, *a, **k)
            _r.add(self)

        cls.__init__ = patched  # type: ignore[method-assign]


def _buffers() -> dict[str, float]:
    """MB (and counts) held right now by the buffers between Bedrock and the client."""
    now: dict[str, float] = {"streams": 0, "crt_chunks_mb": 0.0, "events": 0, "queues_mb": 0.0}
    for stream in list(_STREAMS or ()):
        chunks = list(stream._received_chunks)
        now["streams"] += 1
        now["crt_chunks_mb"] += sum(len(c) for c in chunks) / 2**20
    for queue in list(_QUEUES or ()):
        items = list(queue._items)
        now["events"] += len(items)
        if len(items) > 500 and len(items) > _HIGHS.get("events", 0):
            owners = [o for o in gc.get_referrers(queue) if hasattr(o, "_state")]
            _LARGEST.update(
                events=len(items),
                consumer_waiting=bool(queue._ready._waiters),
                closed=queue._closed,
                session=str(getattr(owners[0], "_state", "?")) if owners else "?",
                leg=repr(getattr(owners[0], "_leg", None)) if owners else "?",
            )
        now["queues_mb"] += sum(len(e.audio or b"") for e in items) / 2**20
    now["senders"] = len(_SENDERS or ())
    now["sender_mb"] = sum(s.queued_bytes for s in list(_SENDERS or ())) / 2**20
    for key, value in now.items():
        _HIGHS[key] = max(_HIGHS.get(key, 0.0), value)
    return {k: round(v, 2) for k, v in now.items()}


def _sites(diff: list[tracemalloc.StatisticDiff]) -> list[dict[str, Any]]:
    return [
        {
            "kb": round(d.size_diff / 1024, 1),
            "count": d.count_diff,
            "total_kb": round(d.size / 1024, 1),
            "where": [
                f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}" for f in d.traceback
            ],
        }
        for d in diff[:TOP]
        if d.size_diff
    ]


def _watch(out: Path, seconds: float, every: float = 2.0) -> None:
    """Every ``every`` seconds a short line (RSS, heap now and its peak since the last line);
    every ``seconds`` the full one; at each new heap high the sites that hold it."""
    first: tracemalloc.Snapshot | None = None
    previous: tracemalloc.Snapshot | None = None
    types_first: Counter[str] | None = None
    started = time.monotonic()
    next_full = started + seconds
    high = 0
    next_line = started
    while True:
        time.sleep(0.1)
        if _STREAMS is not None:
            _buffers()
        if tracemalloc.is_tracing():
            heap = tracemalloc.get_traced_memory()[0]
            if heap <= high + 8 * 2**20 and time.monotonic() < next_line:
                continue
        elif time.monotonic() < next_line:
            continue
        next_line = time.monotonic() + every
        line: dict[str, Any] = {
            "t": round(time.monotonic() - started, 1),
            "rss_mb": round(_rss_kb() / 1024, 2),
            "blocks": sys.getallocatedblocks(),
            "threads": len(os.listdir("/proc/self/task")),
            "glibc": _malloc_info(),
            "native_mb": None if (n := _native()) is None else round(n / 2**20, 2),
            "buffers": _buffers() if _STREAMS is not None else None,
            "buffer_highs": {k: round(v, 2) for k, v in _HIGHS.items()},
            "largest_queue": dict(_LARGEST),
        }
        _HIGHS.clear()
        _LARGEST.clear()
        if not tracemalloc.is_tracing():
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            continue
        heap, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        line.update(heap_mb=round(heap / 2**20, 2), heap_peak_mb=round(peak / 2**20, 2))
        if heap > high + 4 * 2**20:
            high = heap
            held = tracemalloc.take_snapshot().statistics("traceback")
            line["high"] = [
                {
                    "kb": round(s.size / 1024, 1),
                    "count": s.count,
                    "where": [
                        f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}"
                        for f in s.traceback
                    ],
                }
                for s in held[:12]
            ]
        if time.monotonic() >= next_full:
            next_full += seconds
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            types = Counter(type(o).__name__ for o in gc.get_objects())
            line.update(
                malloc=_mallinfo(),
                objects=sum(types.values()),
                types=types.most_common(12),
            )
            if first is None:
                first, types_first = snapshot, types
            else:
                assert previous is not None and types_first is not None
                line["types_grown"] = (types - types_first).most_common(TOP)
                line["since_first"] = _sites(snapshot.compare_to(first, "traceback"))
                line["since_previous"] = _sites(snapshot.compare_to(previous, "traceback"))
            previous = snapshot
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")


def main() -> None:
    out, seconds = Path(sys.argv[1]), float(sys.argv[2])
    if os.environ.get("MEMPROBE_TRACE") == "1":
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", FRAMES)))
    _watch_buffers()
    threading.Thread(target=_watch, args=(out, seconds), daemon=True, name="memprobe").start()
    from novakit.bridge.cli import main as bridge

    sys.exit(bridge([]))


if __name__ == "__main__":
    main()
