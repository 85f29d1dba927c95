"""What the ownership tests check, as pure functions: which audio frame reached which Bedrock
stream, and the invariants over all of them.

Every audio frame a test client sends says who sent it. A spoken frame carries its own number:
its samples alternate ``1000 + ident`` and ``-(1000 + client)``, loud enough for the emulator's
voice detector. A silent frame carries only its client, as a level far below it
(``client + 1``). The bridge and the provider join and split audio as they like (coalescing,
100 ms events, keep-alive silence made of zeros), but every sample keeps its value, so the
audio each stream received says which client it belongs to and which spoken frames it got,
and how many times.
"""

from __future__ import annotations

import base64
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

FRAME_SAMPLES = 512  # 32 ms at 16 kHz, the size Bedrock recommends
SPEECH_BASE = 1000
FRAMES_PER_CLIENT = 10_000  # spoken frame numbers of one client: 0 .. 9,999


def speech_frame(client: int, number: int) -> bytes:
    if not 0 <= number < FRAMES_PER_CLIENT or not 0 <= client <= 2:
        raise ValueError("client 0-2, frame number below 10,000")
    ident = client * FRAMES_PER_CLIENT + number
    pair = [SPEECH_BASE + ident, -(SPEECH_BASE + client)]
    return np.array(pair * (FRAME_SAMPLES // 2), dtype="<i2").tobytes()


def silence_frame(client: int) -> bytes:
    return np.full(FRAME_SAMPLES, client + 1, dtype="<i2").tobytes()


@dataclass
class Heard:
    """What one Bedrock stream received."""

    index: int
    first_at: float  # when its first input event arrived (emulator clock)
    last_at: float
    clients: set[int] = field(default_factory=set)
    frames: Counter[int] = field(default_factory=Counter)  # spoken frame ident -> copies
    # Each input event: when it arrived, and the spoken frames it carried.
    events: list[tuple[float, frozenset[int]]] = field(default_factory=list)


def heard(index: int, input_events: Sequence[object]) -> Heard | None:
    """Decode a stream's input events (``RecordedEvent``s); None for a stream that got none."""
    if not input_events:
        return None
    times = [e.at for e in input_events]  # type: ignore[attr-defined]
    audio = b"".join(
        base64.b64decode(e.body["content"])  # type: ignore[attr-defined]
        for e in input_events
        if e.name == "audioInput"  # type: ignore[attr-defined]
    )
    samples = np.frombuffer(audio[: len(audio) // 2 * 2], dtype="<i2").astype(np.int32)
    result = Heard(index, min(times), max(times))
    idents, counts = np.unique(samples[samples >= SPEECH_BASE] - SPEECH_BASE, return_counts=True)
    for ident, count in zip(idents.tolist(), counts.tolist(), strict=True):
        result.frames[ident] = round(count / (FRAME_SAMPLES // 2), 2)
        result.clients.add(ident // FRAMES_PER_CLIENT)
    result.clients.update((-samples[samples <= -SPEECH_BASE] - SPEECH_BASE).tolist())
    quiet = samples[(samples >= 1) & (samples <= 3)]
    result.clients.update((quiet - 1).tolist())
    for event in input_events:
        spoken: frozenset[int] = frozenset()
        if event.name == "audioInput":  # type: ignore[attr-defined]
            chunk = base64.b64decode(event.body["content"])  # type: ignore[attr-defined]
            values = np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2").astype(np.int32)
            spoken = frozenset((values[values >= SPEECH_BASE] - SPEECH_BASE).tolist())
        result.events.append((event.at, spoken))  # type: ignore[attr-defined]
    return result


@dataclass(frozen=True)
class Window:
    """A disruption: frames sent from ``start`` to ``end`` may be lost. A freeze also has
    ``frozen`` (the task was stopped) and ``resumed`` (let run again)."""

    what: str
    start: float
    end: float
    resumed: float | None = None
    frozen: float | None = None


# What a frozen task had already handed to the SDK reaches Bedrock when it runs again
# (docs/bridge.md): such events arrive within this long of the resume and carry only frames
# sent before the freeze.
IN_FLIGHT_SECONDS = 1.0


def _in_flight(
    at: float, spoken: frozenset[int], sent_at: Mapping[int, float], windows: Sequence[Window]
) -> bool:
    return any(
        w.resumed is not None
        and w.resumed <= at <= w.resumed + IN_FLIGHT_SECONDS
        and all(sent_at.get(ident, w.end) < (w.frozen or w.start) for ident in spoken)
        for w in windows
    )


def violations(
    streams: Iterable[Heard],
    sent: Mapping[int, Sequence[tuple[int, float]]],
    windows: Sequence[Window],
) -> list[str]:
    """Every broken invariant, in words (empty: all hold).

    - a stream carries one client's audio only;
    - one stream at a time per client: each stream received all its events before the client's
      next stream received any (a task that lost the conversation sends nothing more);
    - each spoken frame reached Bedrock at most once;
    - a spoken frame that never reached Bedrock was sent inside a disruption's window.
    """
    found: list[str] = []
    by_client: dict[int, list[Heard]] = {}
    for stream in streams:
        if len(stream.clients) > 1:
            found.append(f"stream {stream.index} carries several clients: {sorted(stream.clients)}")
        for client in stream.clients:
            by_client.setdefault(client, []).append(stream)
    for client, mine in sorted(by_client.items()):
        mine.sort(key=lambda s: s.first_at)
        sent_at = dict(sent.get(client, ()))
        for before, after in itertools.pairwise(mine):
            late = [
                (at, spoken)
                for at, spoken in before.events
                if at > after.first_at and not _in_flight(at, spoken, sent_at, windows)
            ]
            if late:
                found.append(
                    f"client {client}: stream {before.index} still received {len(late)} events"
                    f" up to {late[-1][0] - after.first_at:.3f} s after stream {after.index}"
                    " began"
                )
        copies: Counter[int] = Counter()
        for stream in mine:
            copies.update(stream.frames)
        twice = sorted(ident for ident, n in copies.items() if n > 1.01)
        if twice:
            found.append(f"client {client}: spoken frames reached Bedrock twice: {twice[:10]}")
        lost = [
            (ident, at)
            for ident, at in sent.get(client, ())
            if copies.get(ident, 0) < 0.99 and not any(w.start <= at <= w.end for w in windows)
        ]
        if lost:
            idents = [ident % FRAMES_PER_CLIENT for ident, _ in lost[:10]]
            found.append(
                f"client {client}: {len(lost)} spoken frames lost outside every disruption"
                f" window, first ones {idents}, sent at {lost[0][1]:.3f} to {lost[-1][1]:.3f};"
                f" streams (first, last event): "
                + ", ".join(f"{s.index}: {s.first_at:.3f}-{s.last_at:.3f}" for s in mine)
            )
    return found


def seq_problems(client: int, frames: Sequence[Mapping[str, object]]) -> list[str]:
    """No server frame twice, none from a task that lost the conversation, in the frames one
    client received, in arrival order.

    Each ``ready`` or ``resumed`` frame starts a numbering (docs/protocol.md). Within one, a
    ``seq`` is never seen twice, and only grows, with one exception the protocol allows: on
    barge-in ``clear_audio`` goes ahead of frames numbered before it, so a frame below a
    ``clear_audio`` already received may still come. A frame of an older owner shows as a
    jump ahead followed by lower numbers that no ``clear_audio`` explains.
    """
    problems: list[str] = []
    last, seen, clears = -1, set[int](), list[int]()
    for frame in frames:
        seq = frame.get("seq")
        if not isinstance(seq, int):
            continue  # the gateway's own error (a frame the bridge could not take)
        kind = frame.get("type")
        if kind == "session" and frame.get("state") in ("ready", "resumed"):
            last, seen, clears = seq, {seq}, []
            continue
        if seq in seen:
            problems.append(f"client {client}: frame seq {seq} ({kind}) twice")
        elif seq <= last and not any(seq < clear <= last for clear in clears):
            problems.append(
                f"client {client}: frame seq {seq} ({kind}) after seq {last}:"
                " from an older owner, or out of the order the protocol allows"
            )
        seen.add(seq)
        if kind == "clear_audio":
            clears.append(seq)
        last = max(last, seq)
    return problems[:5]
