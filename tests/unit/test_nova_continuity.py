"""The sans-I/O decisions behind rollover and recovery: the audio ring, the turn tracker, the
retry policy, the telemetry recorder, and the protocol's split opening."""

import json
import random

import pytest

from novakit import audio
from novakit.s2s import Message
from novakit.s2s.nova.continuity import (
    OPEN_MIC_QUIET_SECONDS,
    AudioRing,
    OpenMicrophone,
    Phase,
    RecoveryPolicy,
    StallWatch,
    TurnTracker,
    caller_silent,
    ends_in_speech,
    keepalive_wait,
)
from novakit.s2s.nova.models import NOVA_2_SONIC
from novakit.s2s.nova.protocol import NovaProtocol, StreamSettings
from novakit.s2s.nova.telemetry import StatsRecorder

# -- the audio ring -----------------------------------------------------------------------------


def test_the_ring_reads_from_any_offset() -> None:
    ring = AudioRing(1000)
    ring.append(b"ab")
    ring.append(b"cdef")
    assert (ring.start, ring.end) == (0, 6)
    assert ring.read(0) == b"abcdef"
    assert ring.read(3) == b"def"
    assert ring.read(6) == b""
    assert ring.read(100) == b""


def test_the_ring_drops_the_oldest_past_its_bound() -> None:
    ring = AudioRing(8)
    for chunk in (b"aaaa", b"bbbb", b"cccc"):
        ring.append(chunk)
    assert ring.start == 4 and ring.end == 12
    assert ring.read(0) == b"bbbbcccc"  # what is gone is gone
    assert ring.dropped == 4
    ring.append(b"dd")
    assert ring.read(0) == b"bbccccdd"  # a chunk is cut, in whole samples
    assert ring.seconds == 8 / 32000


def test_forgetting_is_not_dropping() -> None:
    ring = AudioRing(100)
    ring.append(b"0123456789")
    ring.forget_before(4)
    assert ring.read(0) == b"456789"
    assert ring.dropped == 0
    ring.forget_before(2)  # already gone: no effect
    ring.forget_before(50)  # past the end: all gone, offsets stay monotonic
    assert (ring.start, ring.end, ring.read(0)) == (10, 10, b"")
    ring.append(b"ab")
    assert ring.read(10) == b"ab"


def test_a_ring_needs_room() -> None:
    with pytest.raises(ValueError, match="room"):
        AudioRing(1)


# -- the turn tracker -----------------------------------------------------------------------------


def test_quiet_only_when_nothing_is_owed_or_playing() -> None:
    turns = TurnTracker()
    assert turns.quiet(now=0.0)
    turns.user_input()
    assert not turns.quiet(0.0) and turns.owes_answer
    turns.assistant_audio(1.0, now=0.0)
    turns.assistant_audio(1.0, now=0.1)  # the answer lasts 2 s
    assert turns.phase is Phase.SPEAKING and not turns.quiet(0.2)
    turns.turn_ended()
    assert turns.phase is Phase.PLAYING_OUT
    turns.input_audio(1.9)
    assert not turns.quiet(1.0)  # 1.9 s of microphone audio: still playing
    turns.input_audio(0.1)
    assert turns.quiet(1.0)  # played out by the audio clock
    assert turns.phase is Phase.IDLE


def test_playing_out_also_ends_by_wall_time() -> None:
    turns = TurnTracker()
    turns.assistant_audio(2.0, now=10.0)
    turns.turn_ended()
    assert not turns.quiet(11.9)  # no microphone audio at all
    assert turns.quiet(12.0)


def test_a_barge_in_is_quiet_at_once() -> None:
    turns = TurnTracker()
    turns.user_input()
    turns.assistant_audio(5.0, now=0.0)
    turns.interrupted()
    assert turns.quiet(0.0)


def test_an_outstanding_tool_call_is_never_quiet() -> None:
    turns = TurnTracker()
    turns.tool_called("t1")
    assert turns.phase is Phase.AWAITING
    turns.assistant_audio(0.5, now=0.0)
    turns.turn_ended()  # Nova 2 may finish speaking while the tool runs
    assert not turns.quiet(100.0)
    turns.tool_answered("t1")
    assert turns.quiet(100.0)


def test_a_cut_stream_keeps_the_answer_owed() -> None:
    turns = TurnTracker()
    turns.user_input()
    assert not turns.stream_cut()  # nothing was being spoken
    turns.assistant_audio(0.5, now=0.0)
    assert turns.stream_cut()  # an answer was being spoken: the caller must drop it
    assert turns.phase is Phase.AWAITING and turns.owes_answer
    turns.answer_abandoned()  # the new stream cannot be asked again (Nova Sonic v1)
    assert turns.quiet(0.0)


def test_a_finished_answer_survives_a_cut() -> None:
    turns = TurnTracker()
    turns.assistant_audio(3.0, now=0.0)
    turns.turn_ended()
    assert not turns.stream_cut()
    assert turns.phase is Phase.PLAYING_OUT


# -- the retry policy ---------------------------------------------------------------------------


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RecoveryPolicy(attempts=5, budget=30.0, base_delay=0.25, max_delay=4.0)
    rng = random.Random(7)
    for made, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        delays = [policy.delay(made, 0.0, rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert max(d for d in delays if d is not None) > ceiling * 0.8  # spread over [0, b)
    assert policy.delay(5, 0.0, rng) is None  # out of attempts


def test_backoff_respects_the_time_budget() -> None:
    policy = RecoveryPolicy(attempts=100, budget=3.0, base_delay=10.0, max_delay=10.0)
    rng = random.Random(1)
    assert all((policy.delay(1, 2.5, rng) or 0) <= 0.5 for _ in range(100))
    assert policy.delay(1, 3.0, rng) is None


def test_only_a_replacement_that_never_worked_continues_its_outage() -> None:
    policy = RecoveryPolicy(proven_after=30.0)
    assert policy.continues_outage(replacement=True, heard_from=False, age=2.0)
    assert not policy.continues_outage(replacement=True, heard_from=True, age=2.0)
    assert not policy.continues_outage(replacement=True, heard_from=False, age=31.0)
    assert not policy.continues_outage(replacement=False, heard_from=False, age=2.0)


def test_zero_attempts_never_retries() -> None:
    assert RecoveryPolicy(attempts=0).delay(0, 0.0, random.Random()) is None


# -- telemetry ----------------------------------------------------------------------------------


def test_stats_and_hook() -> None:
    seen: list[tuple[str, float, dict[str, str]]] = []
    stats = StatsRecorder(lambda name, value, tags: seen.append((name, value, dict(tags))))
    stats.stream_opened(0.1, "initial")
    stats.rolled_over(2.0, 0.01, "turn_end")
    stats.rolled_over(4.0, 0.03, "quiet")
    stats.rollover_audio_gap(0.5)
    stats.recovered(0.7, "throttled", 2)
    stats.recovery_failed(5, "throttled")
    snapshot = stats.snapshot()
    assert (snapshot.streams_opened, snapshot.rollovers) == (1, 2)
    assert (snapshot.last_rollover_seconds, snapshot.mean_rollover_seconds) == (4.0, 3.0)
    assert snapshot.last_rollover_pause_seconds == 0.03
    assert snapshot.recoveries == {"throttled": 1} and snapshot.failed_recoveries == 1
    assert ("recovery", 0.7, {"reason": "throttled", "attempts": "2"}) in seen
    assert ("rollover", 2.0, {"at": "turn_end"}) in seen


def test_a_failing_hook_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, value: float, tags: object) -> None:
        raise RuntimeError("metrics down")

    stats = StatsRecorder(broken)
    stats.stream_opened(0.1, "initial")  # does not raise
    assert stats.snapshot().streams_opened == 1
    assert "on_telemetry hook failed" in caplog.text


# -- a stream opened ahead of use ---------------------------------------------------------------


def names(events: list[bytes]) -> list[str]:
    return [next(iter(json.loads(e)["event"])) for e in events]


def protocol() -> NovaProtocol:
    return NovaProtocol(
        StreamSettings(model=NOVA_2_SONIC, voice="matthew", instructions="Be brief.", history=[])
    )


def test_setup_then_start_is_the_opening_sequence() -> None:
    p = protocol()
    assert names(p.setup_events()) == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
    ]
    start = p.start_events([Message("assistant", "dropped"), Message("user", "hi")])
    assert names(start) == ["contentStart", "textInput", "contentEnd", "contentStart"]
    assert json.loads(start[1])["event"]["textInput"]["content"] == "hi"
    assert names(p.closing_events()) == ["contentEnd", "promptEnd", "sessionEnd"]


def test_a_stream_only_set_up_closes_without_an_audio_content() -> None:
    p = protocol()
    p.setup_events()
    assert names(p.closing_events()) == ["promptEnd", "sessionEnd"]
    assert names(p.closing_events()) == ["sessionEnd"]  # closing twice ends nothing twice


# -- the stall watch and the keep-alive bound ---------------------------------------------------


def test_a_stall_counts_from_the_later_of_what_is_owed_and_what_was_heard() -> None:
    watch = StallWatch(20.0)
    assert watch.deadline(last_received=5.0) is None  # nothing owed: never stalled
    watch.expect(10.0)
    assert watch.deadline(last_received=5.0) == 30.0
    assert watch.deadline(last_received=25.0) == 45.0  # output keeps it alive
    assert not watch.stalled(44.9, last_received=25.0)
    assert watch.stalled(45.0, last_received=25.0)
    watch.expect(50.0)  # asked again: counts from then
    assert watch.deadline(last_received=25.0) == 70.0
    watch.settle()
    assert not watch.stalled(1000.0, last_received=0.0)


def test_a_zero_stall_timeout_never_stalls() -> None:
    watch = StallWatch(0.0)
    watch.expect(0.0)
    assert watch.deadline(0.0) is None and not watch.stalled(1e9, 0.0)


@pytest.mark.parametrize(
    ("now", "last_input", "limit", "silent"),
    [(100.0, 0.0, 120.0, False), (120.0, 0.0, 120.0, True), (1e9, 0.0, 0.0, False)],
)
def test_the_caller_is_silent_past_the_keepalive_limit(
    now: float, last_input: float, limit: float, silent: bool
) -> None:
    assert caller_silent(now, last_input, limit) is silent


def chunked(pcm: bytes, size: int = 1024) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


@pytest.mark.parametrize(
    ("pcm", "speech"),
    [
        (audio.speech_like(1.0), True),  # it ends on the dip between two syllables: still speech
        (audio.speech_like(1.0)[: 15 * 1024], True),
        (audio.speech_like(1.0) + audio.silence(0.3), False),  # a pause after the sentence
        (audio.silence(1.0), False),
        (audio.speech_like(1.0, level=0.005), False),  # a quiet room's hum, about -50 dBFS
        (b"", False),
    ],
)
def test_the_end_of_the_callers_audio_is_speech_or_not(pcm: bytes, speech: bool) -> None:
    assert ends_in_speech(chunked(pcm), 32000) is speech
    assert ends_in_speech(chunked(pcm, 160), 32000) is speech  # 5 ms chunks: the same answer


def test_other_input_rates_look_at_the_same_length_of_time() -> None:
    loud = audio.speech_like(0.5, 8000)
    assert ends_in_speech(chunked(loud, 320), 16000)
    assert not ends_in_speech(chunked(loud + audio.silence(0.3, 8000), 320), 16000)


def test_the_keepalive_waits_longer_after_speech_never_shorter() -> None:
    speech, quiet = chunked(audio.speech_like(0.5)), chunked(audio.silence(0.5))
    assert keepalive_wait(1.0, 3.0, speech, 32000) == 3.0
    assert keepalive_wait(1.0, 3.0, quiet, 32000) == 1.0
    assert keepalive_wait(1.0, 3.0, [], 32000) == 1.0  # a caller that only types
    assert keepalive_wait(5.0, 3.0, speech, 32000) == 5.0


def test_an_open_microphone_waits_for_stalls_a_typing_caller_does_not() -> None:
    speech, quiet = chunked(audio.speech_like(0.5)), chunked(audio.silence(0.5))
    assert keepalive_wait(1.0, 3.0, quiet, 32000, after_stall=10.0, open_microphone=True) == 10.0
    assert keepalive_wait(1.0, 3.0, speech, 32000, after_stall=10.0, open_microphone=True) == 10.0
    assert keepalive_wait(1.0, 3.0, [], 32000, after_stall=10.0) == 1.0
    assert keepalive_wait(1.0, 3.0, speech, 32000, after_stall=2.0, open_microphone=True) == 3.0


def feed(microphone: OpenMicrophone, pcm: bytes, chunk: int) -> OpenMicrophone:
    for piece in chunked(pcm, chunk):
        microphone.feed(piece)
    return microphone


@pytest.mark.parametrize("chunk", [320, 1024, 3200])  # 10, 32 and 100 ms
def test_a_microphone_is_open_once_it_streamed_two_seconds_of_quiet_in_one_go(chunk: int) -> None:
    sentence = audio.speech_like(1.5)
    pause = audio.silence(OPEN_MIC_QUIET_SECONDS - 0.1)
    # push-to-talk: speech, short pauses, speech; never two seconds of quiet in a row
    assert not feed(OpenMicrophone(32000), sentence + pause + sentence + pause, chunk).open
    # a hum far below speech is quiet too: an open microphone in a quiet room
    hum = audio.speech_like(OPEN_MIC_QUIET_SECONDS + 0.1, level=0.005)
    assert feed(OpenMicrophone(32000), sentence + hum, chunk).open
    assert feed(OpenMicrophone(32000), pause + audio.silence(0.2), chunk).open
    # once open, it stays open (and looks at nothing more)
    assert feed(OpenMicrophone(32000), pause + audio.silence(0.2) + sentence, chunk).open


def test_an_open_microphone_counts_time_at_any_input_rate() -> None:
    at_8k = OpenMicrophone(16000)
    feed(at_8k, audio.silence(OPEN_MIC_QUIET_SECONDS - 0.1, 8000), 320)
    assert not at_8k.open
    feed(at_8k, audio.silence(0.1, 8000), 320)
    assert at_8k.open
    odd = OpenMicrophone(32000)
    odd.feed(b"\x01")  # half a sample: nothing to hear
    assert not odd.open
