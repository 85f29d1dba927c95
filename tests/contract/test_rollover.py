"""Sessions that outlive Bedrock streams: proactive rollover against the emulator, with the
stream limit shortened and time compressed (microphone audio streamed 4x real time)."""

from __future__ import annotations

import asyncio
import base64
import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest

from novakit import s2s
from novakit.emulator import Emulator, EmulatorConfig, Outcome, Script, ScriptTurn
from novakit.emulator.record import StreamRecord
from novakit.s2s.nova.protocol import prepare_history

from .conftest import emulator_extra
from .dialogue import E, Listener, history_sent, quiet, say, spoken

pytestmark = pytest.mark.contract

STREAM_SECONDS = 6.0  # the emulator's stream limit: Bedrock's 8 minutes, compressed 80 times
ROLLOVER_AFTER = 2.0  # the session's threshold: Bedrock's default of 6 minutes, compressed

# Twenty scripted exchanges; the test talks until at least 10 turns and 4 rollovers are done.
TURNS = tuple(
    ScriptTurn(
        transcript=f"question number {n}",
        reply=f"Answer {n} begins here. It has a second sentence, number {n}.",
    )
    for n in range(1, 21)
)


@pytest.fixture
async def long_emulator() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        endpoint_seconds=0.4,
        # Without audio the emulator's clock runs 4x wall time, like the microphone. (At pace 0
        # it would generate everything pending at once when a retired stream's audio closes,
        # "answering" there a question the session replays to the next stream.)
        pace=0.25,
        stream_seconds=STREAM_SECONDS,
        script=Script(TURNS),
        script_scope="emulator",
    )
    async with Emulator(config) as emu:
        yield emu


def opened_audio(record: StreamRecord) -> bool:
    """Whether a stream carried the conversation (it was sent the audio content)."""
    return any(
        e.name == "contentStart" and e.body.get("type") == "AUDIO" for e in record.input_events
    )


def answered_on(record: StreamRecord) -> int:
    """Turns a stream answered to the end (its final assistant text ended with END_TURN)."""
    finals: set[str] = set()
    count = 0
    for event in record.output_events:
        body = event.body
        if event.name == "contentStart" and body.get("role") == "ASSISTANT":
            if body.get("type") == "TEXT" and "FINAL" in body.get("additionalModelFields", ""):
                finals.add(body["contentId"])
        elif event.name == "contentEnd" and body.get("contentId") in finals:
            count += body.get("stopReason") == "END_TURN"
    return count


async def test_a_long_conversation_rolls_over_without_loss(long_emulator: Emulator) -> None:
    telemetry: list[tuple[str, float, dict[str, str]]] = []
    extra = emulator_extra(
        long_emulator,
        rollover_after=ROLLOVER_AFTER,
        on_telemetry=lambda name, value, tags: telemetry.append((name, value, dict(tags))),
    )
    engine = s2s.new("nova", s2s.Config(instructions="Answer by number.", extra=extra))
    done = 0
    async with engine.start() as session:
        listener = Listener(session)
        while done < len(TURNS) and (done < 10 or session.stats.rollovers < 4):  # type: ignore[attr-defined]
            await say(session, 0.8)
            await listener.until(lambda d=done: listener.count(E.TURN_END) > d)
            done += 1
            # The listener plays the answer in real time: a polite user waits for its end.
            await quiet(session, listener.last_answer_seconds() + 0.3)
    await listener.finish()
    stats = session.stats  # type: ignore[attr-defined]

    heard = listener.heard
    assert done >= 10 and stats.rollovers >= 4, (done, stats)
    assert not listener.events(E.ERROR) and not listener.events(E.RECONNECTED)
    assert not listener.events(E.INTERRUPTED)
    # Token counts are the session's: they add up over streams and never go back.
    totals = [e.usage.total_tokens for e in listener.events(E.USAGE) if e.usage]
    assert len(totals) == done and totals == sorted(totals) and totals[0] > 0

    # Every utterance transcribed once, every answer heard once (its exact audio), in order.
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == [t.transcript for t in TURNS[:done]]
    turns: list[list[s2s.Event]] = [[]]
    for h in heard:
        if h.event.type is E.TRANSCRIPT:
            turns.append([])
        turns[-1].append(h.event)
    assert not [e for e in turns[0] if e.type is not E.USAGE]  # nothing before the first words
    for turn, script in zip(turns[1:], TURNS, strict=False):
        finals = " ".join(e.text for e in turn if e.type is E.TEXT_OUTPUT and e.final)
        assert finals == script.reply
        assert b"".join(e.audio for e in turn if e.type is E.AUDIO_OUTPUT) == spoken(script.reply)
        assert [e.type for e in turn].count(E.TURN_END) == 1

    # Each new stream was told exactly what was said before it took over.
    records = long_emulator.records
    await long_emulator.wait_for_streams(len(records))
    check_streams(records, done, stats)

    # Rollover figures: reported, and bounded generously (a shared 2-core machine).
    rollovers = [v for name, v, _ in telemetry if name == "rollover"]
    pauses = [v for name, v, _ in telemetry if name == "rollover_pause"]
    latencies = answer_latencies(heard)
    report: dict[str, Any] = {
        "turns": done,
        "rollovers": len(rollovers),
        "rollover_s_median": statistics.median(rollovers),
        "switch_pause_ms_max": max(pauses) * 1000,
        "answer_latency_ms_median": statistics.median(latencies) * 1000,
        "answer_latency_ms_max": max(latencies) * 1000,
    }
    print("rollover figures:", report)
    switched_at = {tags["at"] for name, _, tags in telemetry if name == "rollover"}
    assert switched_at <= {"turn_end", "quiet"}  # never in the middle of an answer
    assert max(pauses) < 1.0
    # No answer waits noticeably longer for its first audio, switch or not.
    assert max(latencies) < 2.0


def check_streams(records: list[StreamRecord], done: int, stats: Any) -> None:
    """Each stream that carried the conversation was sent, as history, exactly the turns
    answered before it; all were closed in order, before Bedrock's limit."""
    said: list[s2s.Message] = []
    for turn in TURNS[:done]:
        said += [s2s.Message("user", turn.transcript or ""), s2s.Message("assistant", turn.reply)]
    carried = [r for r in records if opened_audio(r)]
    assert len(carried) == stats.rollovers + 1
    answered = 0
    for record in carried:
        expected = [(m.role.upper(), m.text) for m in prepare_history(said[: 2 * answered])]
        assert history_sent(record.input_events) == expected, record.index
        answered += answered_on(record)
    assert answered == done
    assert {r.outcome for r in carried} == {Outcome.COMPLETED}
    # A stream set up for the next rollover may be left over at the end: closed in order if it
    # was ready, or abandoned while it was still opening.
    spare = [r for r in records if not opened_audio(r)]
    assert [r.index for r in spare] in ([], [len(records) - 1])
    abandoned = [r for r in spare if r.outcome is not Outcome.COMPLETED]
    assert stats.streams_opened == len(records) - len(abandoned)


def answer_latencies(heard: list) -> list[float]:
    """Seconds from each transcript to the first audio of its answer."""
    latencies: list[float] = []
    asked: float | None = None
    for h in heard:
        if h.event.type is E.TRANSCRIPT:
            asked = h.at
        elif h.event.type is E.AUDIO_OUTPUT and asked is not None:
            latencies.append(h.at - asked)
            asked = None
    return latencies


def rollover_session(emu: Emulator, **extra: Any) -> tuple[s2s.Engine, list[tuple[str, dict]]]:
    """An engine whose sessions report telemetry into the returned list."""
    seen: list[tuple[str, dict]] = []
    options = emulator_extra(
        emu, on_telemetry=lambda name, value, tags: seen.append((name, dict(tags))), **extra
    )
    return s2s.new("nova", s2s.Config(extra=options)), seen


async def test_a_barge_in_is_a_switch_point(long_emulator: Emulator) -> None:
    story = " ".join(f"Part {n} of the story goes on for a while." for n in range(1, 7))
    long_emulator.script = Script(
        (ScriptTurn(story, transcript="tell me a story"), ScriptTurn("Okay.", transcript="stop"))
    )
    engine, seen = rollover_session(long_emulator, rollover_after=1.0)
    async with engine.start() as session:
        listener = Listener(session)
        await say(session, 0.8)
        # The story plays; meanwhile the stream passes its threshold and the next is set up.
        await listener.until(lambda: ("stream_opened", {"purpose": "rollover"}) in seen)
        assert session.stats.rollovers == 0  # type: ignore[attr-defined]
        await say(session, 0.6, paced=True)  # the user talks over the story
        await listener.until(lambda: listener.count(E.TURN_END) == 1)
    await listener.finish()

    events = listener.events()
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == ["tell me a story", "stop"]
    cut = listener.events(E.INTERRUPTED)
    assert [e.reason for e in cut] == ["barge_in"]
    assert [tags for name, tags in seen if name == "rollover"] == [{"at": "interrupted"}]
    before, after = events[: events.index(cut[0])], events[events.index(cut[0]) + 1 :]
    heard = b"".join(e.audio for e in before if isinstance(e, s2s.AudioOutput))
    assert spoken(story).startswith(heard) and 0 < len(heard) < len(spoken(story))
    assert b"".join(e.audio for e in after if isinstance(e, s2s.AudioOutput)) == spoken("Okay.")
    # The new stream was told what was said, up to the cut; it heard "stop" (replayed).
    story_told = " ".join(e.text for e in before if e.type is E.TEXT_OUTPUT and e.final)
    records = long_emulator.records
    assert history_sent(records[1].input_events) == [
        ("USER", "tell me a story"),
        *([("ASSISTANT", story_told)] if story_told else []),
    ]
    await long_emulator.wait_for_streams(1)
    assert records[0].outcome is Outcome.COMPLETED


async def test_a_stream_that_reaches_its_limit_first_is_replaced() -> None:
    """An answer still playing when Bedrock's limit arrives: no quiet point came, so the
    stream set up for the rollover takes over as a recovery; nothing is lost or repeated."""
    # ~21 s of story, played (4x) from ~0.1 s to ~5.3 s: past the first stream's 3.5 s limit.
    # The rollover's stream is set up from 2 s on: 1.5 s to be ready on a busy machine, and at
    # most 1.5 s old when the limit comes (younger than a rollover's age, so it is taken).
    story = " ".join(f"Part {n} of the story goes on for a while." for n in range(1, 8))
    config = EmulatorConfig(
        endpoint_seconds=0.4,
        pace=0.25,
        stream_seconds=3.5,
        script=Script((ScriptTurn(story, transcript="a story"), ScriptTurn("Yes.", "more"))),
        script_scope="emulator",
    )
    async with Emulator(config) as emu:
        engine, seen = rollover_session(emu, rollover_after=2.0)
        async with engine.start() as session:
            listener = Listener(session)
            await say(session, 0.8)
            await listener.until(lambda: listener.count(E.TURN_END) == 1)
            await listener.until(lambda: listener.count(E.RECONNECTED) == 1)
            await quiet(session, 1.0)
            await say(session, 0.8)
            await listener.until(lambda: listener.count(E.TURN_END) == 2)
        await listener.finish()
        stats = session.stats  # type: ignore[attr-defined]
        records = emu.records
        await emu.wait_for_streams(len(records))

    # (On a loaded machine the story may outlast the second stream too: more of the same.)
    reasons = [e.reason for e in listener.events(E.RECONNECTED)]
    assert reasons and set(reasons) == {"model_timeout"} == set(stats.recoveries)
    # The first replacement was the stream already set up for the rollover: no new one.
    first_recovery = next(i for i, (name, _) in enumerate(seen) if name == "recovery")
    assert ("stream_opened", {"purpose": "recovery"}) not in seen[:first_recovery]
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == ["a story", "more"]
    assert not listener.events(E.INTERRUPTED)  # the story had been generated whole
    assert b"".join(e.audio for e in listener.events(E.AUDIO_OUTPUT)) == spoken(story) + spoken(
        "Yes."
    )
    assert records[0].outcome is Outcome.TIMEOUT
    assert history_sent(records[1].input_events) == [("USER", "a story"), ("ASSISTANT", story)]
    assert stats.dropped_audio_seconds == 0


async def test_keep_alive_follows_the_live_stream() -> None:
    """An idle caller (no audio at all) across a rollover: the session's silence goes to
    whichever stream is live, so Bedrock's idle cut (shortened to 1 s here) never fires."""
    config = EmulatorConfig(
        endpoint_seconds=0.4,
        pace=0.25,
        idle_seconds=1.0,
        script=Script((ScriptTurn("Fine.", transcript="hello"), ScriptTurn("Yes.", "again"))),
        script_scope="emulator",
    )
    async with Emulator(config) as emu:
        switched = asyncio.Event()
        engine = s2s.new(
            "nova",
            s2s.Config(
                extra=emulator_extra(
                    emu,
                    rollover_after=1.0,
                    keepalive_after=0.2,
                    on_telemetry=lambda name, *_: name == "rollover" and switched.set(),
                )
            ),
        )
        async with engine.start() as session:
            listener = Listener(session)
            await say(session, 0.8)
            await listener.until(lambda: listener.count(E.TURN_END) == 1)
            async with asyncio.timeout(10):  # the caller sends nothing until the switch
                await switched.wait()
            await asyncio.sleep(1.5)  # longer than the idle limit, on the new stream
            await say(session, 0.8)
            await listener.until(lambda: listener.count(E.TURN_END) == 2)
        await listener.finish()
        records = emu.records
        await emu.wait_for_streams(len(records))

    assert not listener.events(E.ERROR) and not listener.events(E.RECONNECTED)
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == ["hello", "again"]
    assert {r.outcome for r in records} == {Outcome.COMPLETED}  # no idle cut anywhere
    # The keep-alive's silence reached the new stream while the caller sent nothing.
    silent = [b64(e) for e in records[1].input_events if e.name == "audioInput"]
    assert sum(len(pcm) for pcm in silent if not any(pcm)) / 32000 > 0.3


def b64(event: Any) -> bytes:
    return base64.b64decode(event.body["content"])
