"""What a long conversation costs at its stream boundaries: proactive rollover and reactive
recovery, through the real SDK against the emulator in another process (so that its work does
not delay the client's events).

A simulated user talks turn after turn: an utterance, then silence streamed like a microphone
(``speed`` times real time: 1 for the full run, 4 with ``--quick``) until the answer has been
generated and has played out. Emulator streams are cut short so that boundaries come often.

- ``rollover``: streams end after ``stream_seconds``; sessions roll over after
  ``rollover_after``. Per switch: ``stream_open_ms`` (setting up the next stream, in the
  background), ``rollover_wait_s`` (from the threshold to the switch: waiting for a quiet
  point), ``switch_pause_ms`` (the caller's audio held while history and the buffered audio go
  to the new stream), ``audio_gap_s`` (last answer audio on the old stream to the first on the
  new one; at a turn boundary this spans the user's next utterance), and the answer latency
  (transcript to first audio) of the first answer on a new stream against all the others.
- ``recovery``: the same with rollover off, so every stream runs into Bedrock's limit
  (``model_timeout``) and is replaced after the fact: ``downtime_ms`` (failure to a new stream
  in place, including the jittered backoff) and answer latencies after it.
- ``reset``: every stream is reset (RST_STREAM) a third of the way to the limit, before any
  rollover: recovery from a network-level failure mid-conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novakit import audio, s2s

from .common import EmulatorProcess, emulator_process, save

CHUNK = 1024  # 32 ms of 16 kHz PCM16
REPLIES = [f"Answer number {n} is a sentence of about two seconds." for n in range(1, 41)]


@dataclass
class Trace:
    """What one session saw: events and telemetry, with arrival times."""

    events: list[tuple[float, s2s.Event]] = field(default_factory=list)
    telemetry: list[tuple[float, str, float, dict[str, str]]] = field(default_factory=list)

    def hook(self, name: str, value: float, tags: Any) -> None:
        self.telemetry.append((time.monotonic(), name, value, dict(tags)))

    def values(self, name: str) -> list[float]:
        return [value for _, n, value, _ in self.telemetry if n == name]

    def answer_latencies(self) -> tuple[list[float], list[float]]:
        """(first answers on a new stream, the other answers): transcript to first audio."""
        boundaries = sorted(t for t, n, _, _ in self.telemetry if n in ("rollover", "recovery"))
        after_boundary: list[float] = []
        others: list[float] = []
        asked: float | None = None
        last_answer = 0.0
        for at, event in self.events:
            if event.type is s2s.EventType.TRANSCRIPT:
                asked = at
            elif event.type is s2s.EventType.AUDIO_OUTPUT and asked is not None:
                new_stream = any(last_answer < b <= at for b in boundaries)
                (after_boundary if new_stream else others).append(at - asked)
                asked, last_answer = None, at
        return after_boundary, others


async def converse(emu: EmulatorProcess, turns: int, speed: float, **options: Any) -> Trace:
    trace = Trace()
    extra = emu.extra(on_telemetry=trace.hook, keepalive_after=1.0, **options)
    engine = s2s.new("nova", s2s.Config(instructions="Answer by number.", extra=extra))
    step = CHUNK / 32000 / speed
    silence = audio.silence(CHUNK / 32000)
    async with engine.start() as session:
        changed = asyncio.Event()

        async def listen() -> None:
            async for event in session.recv():
                trace.events.append((time.monotonic(), event))
                changed.set()

        listener = asyncio.create_task(listen())

        async def stream_until(done: Any, within: float = 60.0) -> None:
            async with asyncio.timeout(within):
                while not done():
                    await session.send_audio(silence)
                    await asyncio.sleep(step)

        def count(kind: s2s.EventType) -> int:
            return sum(1 for _, e in trace.events if e.type is kind)

        for n in range(1, turns + 1):
            speech = audio.speech_like(0.8) + audio.silence(0.5)
            for i in range(0, len(speech), CHUNK):
                await session.send_audio(speech[i : i + CHUNK])
                await asyncio.sleep(step)
            await stream_until(lambda n=n: count(s2s.EventType.TURN_END) >= n)
            # Let the answer play out before the next question (no barge-in).
            answer = 0
            for _, event in reversed(trace.events):
                if isinstance(event, s2s.Transcript):
                    break
                if isinstance(event, s2s.AudioOutput):
                    answer += len(event.audio)
            played_by = time.monotonic() + answer / 48000 / speed + 0.3
            await stream_until(lambda played_by=played_by: time.monotonic() >= played_by)
        stats = session.stats  # type: ignore[attr-defined]
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(listener, 10)
    errors = [e for _, e in trace.events if e.type is s2s.EventType.ERROR]
    if errors:
        raise RuntimeError(f"the conversation failed: {errors}")
    assert stats.streams_opened >= 1
    return trace


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(values),
        "median": round(statistics.median(values) * scale, digits),
        "p95": round(p95 * scale, digits),
        "max": round(ordered[-1] * scale, digits),
    }


def summarize(traces: list[Trace]) -> dict[str, Any]:
    def gather(name: str) -> list[float]:
        return [v for trace in traces for v in trace.values(name)]

    opened = [
        v
        for trace in traces
        for _, n, v, tags in trace.telemetry
        if n == "stream_opened" and tags.get("purpose") != "initial"
    ]
    after, others = [], []
    for trace in traces:
        a, o = trace.answer_latencies()
        after += a
        others += o
    reasons: dict[str, int] = {}
    for trace in traces:
        for _, n, _, tags in trace.telemetry:
            if n == "recovery":
                reasons[tags["reason"]] = reasons.get(tags["reason"], 0) + 1
    return {
        "sessions": len(traces),
        "turns": sum(
            1 for trace in traces for _, e in trace.events if e.type is s2s.EventType.TURN_END
        ),
        "stream_open_ms": spread(opened, 1000),
        "rollover_wait_s": spread(gather("rollover"), digits=2),
        "switch_pause_ms": spread(gather("rollover_pause"), 1000),
        "audio_gap_s": spread(gather("rollover_audio_gap"), digits=2),
        "recovery_downtime_ms": spread(gather("recovery"), 1000),
        "recoveries_by_reason": reasons,
        "answer_latency_ms_first_on_new_stream": spread(after, 1000),
        "answer_latency_ms_other": spread(others, 1000),
        "audio_dropped_s": round(sum(gather("audio_dropped")), 3),
    }


async def scenario(
    args: list[str], sessions: int, turns: int, speed: float, **options: Any
) -> dict[str, Any]:
    async with emulator_process(*args) as emu:
        traces = [await converse(emu, turns, speed, **options) for _ in range(sessions)]
    return summarize(traces)


async def run(quick: bool = False) -> dict[str, Any]:
    speed = 4.0 if quick else 1.0
    sessions, turns = (2, 6) if quick else (2, 8)
    # Stream lengths scale with the pace, so that boundaries come every turn or two.
    stream, after = 8.0 / speed * 1.5, 4.0 / speed * 1.5
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps({"turns": [{"reply": r} for r in REPLIES]}))
        base = ["--script", str(script), "--endpoint-ms", "400", "--pace", str(1 / speed)]
        results: dict[str, Any] = {
            "method": (
                f"{sessions} sessions x {turns} turns per scenario, sequential; microphone "
                f"audio at {speed:g}x real time; emulator in its own process, streams cut "
                f"after {stream:g} s; rollover after {after:g} s"
            ),
            "speed": speed,
        }
        results["rollover"] = await scenario(
            [*base, "--stream-seconds", str(stream)], sessions, turns, speed, rollover_after=after
        )
        results["recovery"] = await scenario(
            [*base, "--stream-seconds", str(stream)], sessions, turns, speed, rollover_after=0
        )
        results["reset"] = await scenario(
            [*base, "--stream-seconds", "600", "--fault", f"reset@{stream / 3:g}s:every"],
            sessions,
            turns,
            speed,
            rollover_after=after,
        )
    results["path"] = str(save("rollover", results))
    return results
