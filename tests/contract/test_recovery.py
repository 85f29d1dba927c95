"""Recovery from faults mid-conversation: a fresh stream with the history, one RECONNECTED
event, and the conversation goes on; final faults end the session once, without retry storms."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from novakit import s2s
from novakit.emulator import (
    Emulator,
    EmulatorConfig,
    FaultKind,
    FaultPlan,
    Outcome,
    Script,
    ScriptTurn,
    ToolCall,
    Trigger,
)

from .conftest import emulator_extra
from .dialogue import E, Listener, history_sent, quiet, say, spoken, typed_sent

pytestmark = pytest.mark.contract

Q1, R1 = "what is the first thing", "The first thing is this. It comes before the second."
Q2, R2 = "and the second", "The second thing is that."
SCRIPT = Script((ScriptTurn(R1, transcript=Q1), ScriptTurn(R2, transcript=Q2)))

# How each injected fault surfaces (RST_STREAM reads as the end of the stream in the SDK).
RECOVERABLE = [
    (FaultKind.THROTTLE, "throttled"),
    (FaultKind.RESET, "stream_ended"),
    (FaultKind.MODEL_STREAM_ERROR, "model_stream_error"),
    (FaultKind.IDLE_CUT, "idle_timeout"),
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(endpoint_seconds=0.4, pace=0, script=SCRIPT, script_scope="emulator")
    async with Emulator(config) as emulator:
        yield emulator


def engine(emu: Emulator, **extra: object) -> s2s.Engine:
    return s2s.new("nova", s2s.Config(extra=emulator_extra(emu, **extra)))


async def two_turns(session: s2s.Session, listener: Listener) -> None:
    """The user asks two questions, waiting for each answer to be spoken."""
    for asked in (1, 2):
        await say(session, 0.8)
        await listener.until(lambda n=asked: listener.count(E.TURN_END) >= n)
        await quiet(session, listener.last_answer_seconds() + 0.3)


def after(events: list[s2s.Event], kind: s2s.EventType) -> list[s2s.Event]:
    index = next(i for i, e in enumerate(events) if e.type is kind)
    return events[index + 1 :]


@pytest.mark.parametrize(("kind", "code"), RECOVERABLE)
async def test_a_fault_while_the_user_speaks_loses_nothing(
    emu: Emulator, kind: FaultKind, code: str
) -> None:
    emu.faults = [FaultPlan(kind, Trigger.USER_SPEECH)]
    async with engine(emu).start() as session:
        listener = Listener(session)
        await two_turns(session, listener)
    await listener.finish()

    events = listener.events()
    reconnected = listener.events(E.RECONNECTED)
    assert len(reconnected) == 1
    assert reconnected[0].reason == code
    assert reconnected[0].attempts == 1
    assert reconnected[0].downtime < 5.0
    # Nothing lost: the words the failed stream was hearing were replayed to the next one.
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == [Q1, Q2]
    assert not listener.events(E.INTERRUPTED) and not listener.events(E.ERROR)
    finals = [e.text for e in listener.events(E.TEXT_OUTPUT) if e.final]
    assert " ".join(finals) == f"{R1} {R2}"
    audio = b"".join(e.audio for e in listener.events(E.AUDIO_OUTPUT))
    assert audio == spoken(R1) + spoken(R2)
    assert events.index(reconnected[0]) < events.index(listener.events(E.TRANSCRIPT)[0])

    records = emu.records
    assert len(records) == 2
    assert records[0].fault is kind
    assert records[1].outcome is Outcome.COMPLETED
    assert history_sent(records[1].input_events) == []  # nothing had been said yet
    assert typed_sent(records[1].input_events) == []  # nothing to ask again


@pytest.mark.parametrize(("kind", "code"), RECOVERABLE)
async def test_a_fault_while_the_assistant_speaks_repeats_the_answer(
    emu: Emulator, kind: FaultKind, code: str
) -> None:
    emu.faults = [FaultPlan(kind, Trigger.ASSISTANT_SPEECH)]
    async with engine(emu).start() as session:
        listener = Listener(session)
        await two_turns(session, listener)
    await listener.finish()

    events = listener.events()
    reconnected = listener.events(E.RECONNECTED)
    assert [e.reason for e in reconnected] == [code]
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == [Q1, Q2]  # the question: once
    # The cut answer ended with INTERRUPTED(recovery), dropping what was still queued; what
    # reached the listener before it (often nothing) is the start of the answer. That start is
    # what was lost: the answer is then given again in full, once.
    # An RST_STREAM discards what the stream had not sent yet: then no answer audio arrived,
    # and there is nothing to cut.
    cut = [e for e in events if e.type is E.INTERRUPTED]
    assert [e.reason for e in cut] == ([] if kind is FaultKind.RESET else ["recovery"])
    head = events[: events.index(cut[0] if cut else reconnected[0])]
    before = b"".join(e.audio for e in head if isinstance(e, s2s.AudioOutput))
    assert spoken(R1).startswith(before)
    assert len(before) < len(spoken(R1))
    assert events.index(cut[0]) < events.index(reconnected[0]) if cut else not before
    rest = after(events, E.RECONNECTED)
    assert b"".join(e.audio for e in rest if isinstance(e, s2s.AudioOutput)) == spoken(R1) + spoken(
        R2
    )
    finals = [e.text for e in listener.events(E.TEXT_OUTPUT) if e.final]
    assert " ".join(finals) == f"{R1} {R2}"
    assert not listener.events(E.ERROR)

    records = emu.records
    assert len(records) == 2
    assert history_sent(records[1].input_events) == []  # the question is not history...
    transcribed_before = events.index(listener.events(E.TRANSCRIPT)[0]) < events.index(
        reconnected[0]
    )
    if transcribed_before:  # ...it is asked again as text, once
        assert typed_sent(records[1].input_events) == [Q1]
    else:  # an RST_STREAM discarded the transcript too: its audio was replayed instead
        assert kind is FaultKind.RESET
        assert typed_sent(records[1].input_events) == []


async def test_a_fault_in_the_second_turn_keeps_the_first_in_history(emu: Emulator) -> None:
    emu.faults = [FaultPlan(FaultKind.MODEL_STREAM_ERROR, Trigger.TURNS, 1)]
    async with engine(emu).start() as session:
        listener = Listener(session)
        await two_turns(session, listener)
    await listener.finish()
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == [Q1, Q2]
    assert len(listener.events(E.RECONNECTED)) == 1
    assert b"".join(e.audio for e in listener.events(E.AUDIO_OUTPUT)) == spoken(R1) + spoken(R2)
    assert history_sent(emu.records[1].input_events) == [("USER", Q1), ("ASSISTANT", R1)]


async def test_audio_sent_during_the_outage_is_kept(emu: Emulator) -> None:
    """The caller keeps streaming while no stream is up: nothing raises, nothing is lost."""
    emu.faults = [FaultPlan(FaultKind.THROTTLE, Trigger.USER_SPEECH)]
    emu_faults_after = [FaultPlan(FaultKind.THROTTLE, Trigger.START)]  # the first retry too
    async with engine(emu).start() as session:
        emu.faults = emu_faults_after
        listener = Listener(session)
        await two_turns(session, listener)
    await listener.finish()
    # One outage, one announcement, even though the first new stream was refused at once.
    reconnected = listener.events(E.RECONNECTED)
    assert [(e.reason, e.attempts) for e in reconnected] == [("throttled", 2)]
    assert [e.text for e in listener.events(E.TRANSCRIPT)] == [Q1, Q2]
    assert len(emu.records) == 3


async def test_a_tool_call_cut_by_a_fault_is_answered_after_it(emu: Emulator) -> None:
    lookup = s2s.ToolDefinition(
        "lookup", "Look a topic up.", {"type": "object", "properties": {"t": {"type": "string"}}}
    )
    emu.script = Script(
        (ScriptTurn("You get {result}.", transcript=Q1, tool=ToolCall("lookup", {"t": "x"})),)
    )
    emu.faults = [FaultPlan(FaultKind.RESET, Trigger.SECONDS, 1.0)]
    config = s2s.Config(tools=[lookup], extra=emulator_extra(emu))
    async with s2s.new("nova", config).start() as session:
        listener = Listener(session)
        await say(session, 0.8)
        await listener.until(lambda: listener.count(E.TOOL_CALL) == 1)
        first = listener.events(E.TOOL_CALL)[0].tool_call
        assert first is not None
        # The tool takes a while; meanwhile the stream that asked for it fails.
        await listener.until(lambda: listener.count(E.RECONNECTED) == 1)
        assert session.pending_tool_calls == {first.call_id}  # type: ignore[attr-defined]
        await session.send_tool_result(s2s.ToolResult(first.call_id, [s2s.TextPart('{"n": 7}')]))
        with pytest.raises(ValueError, match="is waiting"):
            await session.send_tool_result(s2s.ToolResult(first.call_id, [s2s.TextPart("again")]))
        # The new stream was told the result as text. (The emulator's model, not being one,
        # answers any new input with the script's turn, and so asks for the tool again.)
        await listener.until(lambda: listener.count(E.TOOL_CALL) == 2)
        second = listener.events(E.TOOL_CALL)[1].tool_call
        assert second is not None and second.call_id != first.call_id
        await session.send_tool_result(s2s.ToolResult(second.call_id, [s2s.TextPart('{"n": 7}')]))
        await listener.until(lambda: listener.count(E.TURN_END) == 1)
    await listener.finish()
    assert not listener.events(E.INTERRUPTED)  # no answer had begun
    finals = [e.text for e in listener.events(E.TEXT_OUTPUT) if e.final]
    assert finals == ['You get {"n": 7}.']
    records = emu.records
    assert len(records) == 2
    history = history_sent(records[1].input_events)
    assert history[0] == ("USER", Q1)
    assert history[1][0] == "ASSISTANT" and "lookup" in history[1][1]
    assert "no result yet" in history[1][1]
    told = typed_sent(records[1].input_events)
    assert len(told) == 1 and '{"n": 7}' in told[0] and "lookup" in told[0]


async def test_credentials_are_fetched_again_for_each_stream(emu: Emulator) -> None:
    """Rotated credentials: every new stream signs with what the source gives at that time."""
    from smithy_aws_core.identity import AWSCredentialsIdentity

    from novakit.emulator import Credentials

    emu.config.credentials = (
        Credentials("AKIDFIRST", "first-secret"),
        Credentials("AKIDSECOND", "second-secret"),
    )
    keys = iter([("AKIDFIRST", "first-secret"), ("AKIDSECOND", "second-secret")])

    class Rotating:
        async def get_identity(self, *, properties: object) -> AWSCredentialsIdentity:
            key, secret = next(keys)
            return AWSCredentialsIdentity(access_key_id=key, secret_access_key=secret)

    extra = emulator_extra(emu, credentials_resolver=Rotating())
    del extra["aws_access_key_id"], extra["aws_secret_access_key"]
    emu.faults = [FaultPlan(FaultKind.MODEL_TIMEOUT, Trigger.USER_SPEECH)]
    async with s2s.new("nova", s2s.Config(extra=extra)).start() as session:
        listener = Listener(session)
        await say(session, 0.8)
        await listener.until(lambda: listener.count(E.TURN_END) == 1)
    assert [r.access_key_id for r in emu.records] == ["AKIDFIRST", "AKIDSECOND"]


# -- what recovery does not paper over ---------------------------------------------------------


async def test_access_denied_on_reconnect_ends_the_session_once(emu: Emulator) -> None:
    emu.faults = [FaultPlan(FaultKind.THROTTLE, Trigger.USER_SPEECH)]
    session = await engine(emu).start()
    emu.faults = [FaultPlan(FaultKind.ACCESS_DENIED)]  # the account lost access meanwhile
    listener = Listener(session)
    started = time.monotonic()
    with contextlib.suppress(s2s.SessionClosedError):  # it may close while we speak
        await say(session, 0.8)
    await listener.until(lambda: listener.ended, within=15)
    await session.close()
    errors = listener.events(E.ERROR)
    assert len(errors) == 1 and errors[0].error is not None
    assert (errors[0].error.code, errors[0].error.fatal) == ("access_denied", True)
    assert not errors[0].error.retryable
    assert session.closed and time.monotonic() - started < 15
    assert len(emu.records) == 2
    with pytest.raises(s2s.SessionClosedError, match="access_denied"):
        await session.send_audio(b"\0\0")


async def test_a_rejected_event_ends_the_session_without_retry(emu: Emulator) -> None:
    emu.faults = [FaultPlan(FaultKind.VALIDATION, Trigger.USER_SPEECH)]
    session = await engine(emu).start()
    listener = Listener(session)
    with contextlib.suppress(s2s.SessionClosedError):  # it may close while we speak
        await say(session, 0.8)
    await listener.until(lambda: listener.ended, within=15)
    await session.close()
    errors = listener.events(E.ERROR)
    assert [(e.error.code, e.error.fatal) for e in errors if e.error] == [("validation", True)]
    assert not listener.events(E.RECONNECTED)
    assert len(emu.records) == 1


async def test_a_model_bedrock_does_not_know_is_refused_at_start(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from novakit.s2s.nova.models import MODELS, NOVA_2_SONIC

    unknown = replace(NOVA_2_SONIC, model_id="amazon.nova-9-sonic-v1:0")
    monkeypatch.setitem(MODELS, unknown.model_id, unknown)  # known here, not to Bedrock
    with pytest.raises(s2s.ProviderError) as info:
        await s2s.new("nova", s2s.Config(model=unknown.model_id, extra=emulator_extra(emu))).start()
    # Bedrock answers an invalid model identifier with a ValidationException.
    assert (info.value.code, info.value.retryable) == ("validation", False)
    assert len(emu.records) == 1


async def test_recovery_gives_up_after_its_attempts(emu: Emulator) -> None:
    emu.faults = [FaultPlan(FaultKind.THROTTLE, Trigger.USER_SPEECH)]
    session = await engine(emu, recovery_attempts=3).start()
    emu.faults = [FaultPlan(FaultKind.THROTTLE, Trigger.START, every_stream=True)]
    listener = Listener(session)
    started = time.monotonic()
    with contextlib.suppress(s2s.SessionClosedError):  # it may close while we speak
        await say(session, 0.8)
    await listener.until(lambda: listener.ended, within=20)
    await session.close()
    errors = listener.events(E.ERROR)
    assert len(errors) == 1 and errors[0].error is not None
    error = errors[0].error
    assert (error.code, error.fatal, error.retryable) == ("throttled", True, True)
    assert "3 reconnect attempt" in error.message
    assert len(emu.records) == 1 + 3  # the first stream and three attempts: no storm
    assert time.monotonic() - started < 20
    stats = session.stats  # type: ignore[attr-defined]
    assert stats.failed_recoveries == 1
