"""Conversations over a cluster while its tasks are killed, drained, frozen, or its directory is
slow; then the invariants of ownership.py over everything Bedrock received.

Each client talks on its own: a spoken utterance (frames numbered, ownership.py), a pause, then
the silence of an open microphone until the answer has ended, again and again. The disruption
hits the task that owns a chosen client's conversation at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from novakit.emulator import Script, ScriptTurn

from ..stack.conftest import Client, connect
from .conftest import RELAY_TIMEOUT, Cluster, cluster, no_sessions
from .ownership import Window, heard, seq_problems, silence_frame, speech_frame, violations

Kind = Literal["kill", "drain", "stall", "short_stall", "slow_directory"]

SPEECH_FRAMES = 25  # 0.8 s
PAUSE_FRAMES = 19  # 0.6 s: the emulator's endpointing pause is 0.4 s
# Times real time. Each frame is an integration request, one at a time per connection: on a
# machine with a CPU hog a faster client outruns the pipeline and its frames queue up in the
# gateway (the end of the run waits for them, see ``run``).
SPEED = 2.0
FRAME_SECONDS = 0.032
# How long after a disruption ends frames already on their way may still be lost: a relay that
# was waiting on the frozen owner, the health checks taking a dead task out of the gateway.
SETTLE = RELAY_TIMEOUT + 3.0
ANSWER_WITHIN = 60.0  # a turn's answer, however busy the machine
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class Disruption:
    kind: Kind
    client: int  # the task that owns this client's conversation is hit
    seconds: float = 0.0  # how long a stall or a slow directory lasts


@dataclass
class Talker:
    """One client's side: what it sent (spoken frames, when) and what it heard."""

    number: int
    client: Client
    sent: list[tuple[int, float]] = field(default_factory=list)
    seq_of: dict[int, int] = field(default_factory=dict)  # spoken frame ident -> its audio seq
    spoken: int = 0

    @property
    def turns(self) -> int:
        return len(self.client.of_type("turn_end"))

    async def _send(self, pcm: bytes) -> None:
        await self.client.send_audio(pcm)
        await asyncio.sleep(FRAME_SECONDS / SPEED)  # a microphone's pace, sped up

    async def utterance(self) -> None:
        for _ in range(SPEECH_FRAMES):
            ident = self.number * 10_000 + self.spoken
            self.sent.append((ident, time.monotonic()))
            self.seq_of[ident] = self.client.seq
            await self._send(speech_frame(self.number, self.spoken))
            self.spoken += 1
        for _ in range(PAUSE_FRAMES):
            await self._send(silence_frame(self.number))

    async def turn(self, within: float = ANSWER_WITHIN) -> bool:
        """Speak, then keep the microphone open until the answer ended; False if none came
        (the utterance fell into a disruption)."""
        before = self.turns
        await self.utterance()
        deadline = time.monotonic() + within
        while self.turns <= before and time.monotonic() < deadline:
            await self._send(silence_frame(self.number))
        return self.turns > before

    async def talk(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.turn(within=10.0)


@dataclass
class Outcome:
    problems: list[str]
    streams: int
    turns: list[int]
    logs: str  # every bridge's log


async def owner_of(running: Cluster, talker: Talker) -> int:
    connection_id = talker.client.frames[0]["connection_id"]
    record = await running.directory.get(connection_id)
    assert record is not None
    return next(i for i, b in enumerate(running.bridges) if b.url == record.owner)


async def disrupt(running: Cluster, talkers: list[Talker], event: Disruption) -> Window:
    start = time.monotonic()
    resumed = frozen = None
    target = running.bridges[await owner_of(running, talkers[event.client])]
    match event.kind:
        case "kill":
            target.kill()
            await running.restart(target)  # a replacement task at the same address
        case "drain":
            target.terminate()
            await running.restart(target)
        case "stall" | "short_stall":
            target.stop()
            frozen = time.monotonic()  # frames sent before may have reached it
            await asyncio.sleep(event.seconds)  # the stall itself is what is tested
            target.resume()
            resumed = time.monotonic()
        case "slow_directory":
            running.directory_process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(event.seconds)
            running.directory_process.send_signal(signal.SIGCONT)
    return Window(event.kind, start, time.monotonic() + SETTLE, resumed, frozen)


async def run(tmp_path: Path, schedule: list[Disruption], seed: int, clients: int = 3) -> Outcome:
    """Run the schedule against a fresh cluster; the invariants' violations come back."""
    problems: list[str] = []
    windows: list[Window] = []
    async with (
        cluster(tmp_path, spread_seed=seed) as running,
        contextlib.AsyncExitStack() as stack,
    ):
        running.emulator.script = Script(
            tuple(ScriptTurn(transcript="a question", reply="An answer.") for _ in range(50))
        )
        talkers = [
            Talker(n, await stack.enter_async_context(connect(running.url, pings=False)))
            for n in range(clients)
        ]
        for talker in talkers:  # everyone is talking before anything breaks
            assert await talker.turn(), f"client {talker.number} got no first answer"
        stop = asyncio.Event()
        chatter = [asyncio.create_task(t.talk(stop)) for t in talkers]
        try:
            for event in schedule:
                before = [t.turns for t in talkers]
                windows.append(await disrupt(running, talkers, event))
                # still answering: every conversation is answered after the disruption
                for talker, turns in zip(talkers, before, strict=True):
                    await talker.client.wait_for(
                        lambda _frame, t=talker, n=turns: t.turns > n,
                        within=ANSWER_WITHIN * 2,
                    )
        finally:
            stop.set()
            await asyncio.gather(*chatter, return_exceptions=True)
        for talker in talkers:  # and at the end, each answers once more
            if not await talker.turn():
                problems.append(f"client {talker.number} got no answer at the end")
            ends = [f for f in talker.client.frames if f.get("state") == "ended"]
            if ends:
                problems.append(f"client {talker.number} was told its conversation ended")
            problems += seq_problems(talker.number, talker.client.frames)
        # Frames still queued in the gateway are not lost: hang up, and let the gateway forward
        # what it holds (it sends $disconnect once it has, which ends the sessions) before
        # reading what Bedrock got.
        await stack.aclose()
        await no_sessions(running, within=120)
        records = list(running.emulator.records)
        logs = "\n".join(b.log.read_text(errors="replace") for b in running.bridges)
    streams = [s for r in records if (s := heard(r.index, r.input_events)) is not None]
    problems += violations(streams, {t.number: t.sent for t in talkers}, windows)
    if problems:
        ends = [
            f"stream {r.index}: {len(r.input_events)} input events, outcome {r.outcome},"
            f" error {r.error}, fault {r.fault}"
            for r in records
        ]
        keep_evidence(tmp_path, schedule, seed, windows, problems + ends, talkers=talkers)
    return Outcome(problems, len(records), [t.turns for t in talkers], logs)


def keep_evidence(
    tmp_path: Path,
    schedule: list[Disruption],
    seed: int,
    windows: list[Window],
    problems: list[str],
    *,
    talkers: list[Talker],
) -> None:
    """A failed schedule's evidence, kept under test-artifacts/ to read later: the bridges'
    and the gateway's logs, the windows, and for each client what it sent (spoken frames with
    their seq and time) and every frame it got that was not audio or text, with its time."""
    target = ARTIFACTS / f"ownership-{seed}-{int(time.time())}"
    target.mkdir(parents=True, exist_ok=True)
    for log in (*tmp_path.glob("bridge-*.log"), *tmp_path.glob("gateway.log")):
        shutil.copy(log, target / log.name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    clocks = f"monotonic {time.monotonic():.3f} is {now}"
    summary = [f"seed {seed}", f"schedule {schedule}", clocks, *map(str, windows), *problems]
    (target / "summary.txt").write_text("\n".join(summary) + "\n")
    for talker in talkers:
        seq_of = talker.seq_of
        lines = [f"sent {ident} seq {seq_of[ident]} at {at:.3f}" for ident, at in talker.sent]
        client = talker.client
        lines += [
            f"got at {at:.3f}: {json.dumps(frame)}"
            for frame, at in zip(client.frames, client.received_at, strict=False)
            if frame.get("type") not in ("audio", "transcript")
        ]
        (target / f"client-{talker.number}.txt").write_text("\n".join(lines) + "\n")
