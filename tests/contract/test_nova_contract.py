"""The Nova provider over the real SDK and wire protocol: turns, tools, barge-in, auth, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from novakit import audio, s2s
from novakit.emulator import (
    Emulator,
    FaultKind,
    FaultPlan,
    Outcome,
    Script,
    ScriptTurn,
    ToolCall,
    Trigger,
)

from .conftest import collect_until, emulator_extra, of_type, send_speech, streaming_silence

E = s2s.EventType
pytestmark = pytest.mark.contract

LOOKUP = s2s.ToolDefinition(
    "lookup",
    "Look up a topic in the handbook.",
    {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]},
)


async def test_spoken_turn(emulator: Emulator, engine_for) -> None:
    emulator.script = Script(
        (ScriptTurn(transcript="what time is it", reply="It is nine. Have a good day."),)
    )
    engine = engine_for(instructions="Be brief.", voice="tiffany")
    async with engine.start() as session:
        await send_speech(session, 1.2)
        sent_at = time.monotonic()
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END)
        answered_in = time.monotonic() - sent_at

    kinds = [e.type for e in events]
    assert of_type(events, E.TRANSCRIPT)[0].text == "what time is it"
    # per sentence: speculative text, its audio, then the final text of what was spoken
    first_spec = kinds.index(E.TEXT_OUTPUT)
    first_audio = kinds.index(E.AUDIO_OUTPUT)
    assert kinds.index(E.TRANSCRIPT) < first_spec < first_audio
    finals = [e.text for e in of_type(events, E.TEXT_OUTPUT) if e.final]
    speculative = [e.text for e in of_type(events, E.TEXT_OUTPUT) if not e.final]
    assert " ".join(finals) == "It is nine. Have a good day."
    assert speculative == finals
    assert kinds[-1] is E.TURN_END
    pcm = b"".join(e.audio for e in of_type(events, E.AUDIO_OUTPUT))
    assert {e.sample_rate for e in of_type(events, E.AUDIO_OUTPUT)} == {24000}
    assert 0.5 < audio.duration(pcm, 24000) < 10
    assert audio.rms_dbfs(pcm) > -40  # real sound, not silence
    assert answered_in < 5.0

    record = emulator.records[0]
    await emulator.wait_for_streams(1)
    names = record.input_names()
    assert names[:6] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
        "contentStart",
    ]
    assert set(names[6:-3]) == {"audioInput"}
    assert names[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert record.outcome is Outcome.COMPLETED
    assert record.session_end_received and record.input_closed
    assert record.input_events[3].body["content"] == "Be brief."
    voice = record.input_events[1].body["audioOutputConfiguration"]["voiceId"]
    assert voice == "tiffany"


async def test_usage_follows_the_turn(emulator: Emulator, engine_for) -> None:
    async with engine_for().start() as session:
        await send_speech(session, 0.8)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.USAGE)
    usage = events[-1].usage
    assert usage is not None
    assert usage.input_speech_tokens > 0 and usage.output_speech_tokens > 0
    assert usage.total_tokens >= usage.input_speech_tokens + usage.output_speech_tokens


async def test_typed_turn(emulator: Emulator, engine_for) -> None:
    emulator.script = Script((ScriptTurn(reply="Paris is the capital of France."),))
    async with engine_for().start() as session:
        await session.send_text("What is the capital of France?")
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END)
    finals = [e.text for e in of_type(events, E.TEXT_OUTPUT) if e.final]
    assert finals == ["Paris is the capital of France."]
    assert of_type(events, E.AUDIO_OUTPUT)
    assert not of_type(events, E.TRANSCRIPT)  # typed input is not transcribed back
    text_starts = [
        e.body
        for e in emulator.records[0].input_events
        if e.name == "contentStart" and e.body.get("interactive") and e.body["type"] == "TEXT"
    ]
    assert [b["role"] for b in text_starts] == ["USER"]


async def test_tool_call_round_trip(emulator: Emulator, engine_for) -> None:
    emulator.script = Script(
        (
            ScriptTurn(
                transcript="how many holidays do I get",
                tool=ToolCall("lookup", {"topic": "holidays"}),
                reply="You get {result}.",
            ),
        )
    )
    async with engine_for(tools=[LOOKUP]).start() as session:
        await send_speech(session, 1.0)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TOOL_CALL)
        call = events[-1].tool_call
        assert call is not None
        assert (call.name, call.arguments) == ("lookup", {"topic": "holidays"})
        assert session.pending_tool_calls == {call.call_id}  # type: ignore[attr-defined]
        await session.send_tool_result(
            s2s.ToolResult(call.call_id, [s2s.TextPart(json.dumps({"days": 25}))])
        )
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END)
        with pytest.raises(ValueError, match="is waiting"):
            await session.send_tool_result(s2s.ToolResult(call.call_id, [s2s.TextPart("again")]))
    final = " ".join(e.text for e in of_type(events, E.TEXT_OUTPUT) if e.final)
    assert final == 'You get {"days": 25}.'
    record = emulator.records[0]
    tool_start = next(
        e.body for e in record.input_events if e.name == "contentStart" and e.body["type"] == "TOOL"
    )
    assert tool_start["toolResultInputConfiguration"]["toolUseId"] == call.call_id
    spec = record.input_events[1].body["toolConfiguration"]["tools"][0]["toolSpec"]
    assert json.loads(spec["inputSchema"]["json"])["required"] == ["topic"]


async def test_barge_in(emulator: Emulator, engine_for) -> None:
    long_reply = " ".join(["This answer goes on for a good long while."] * 6)
    emulator.script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=long_reply),
            ScriptTurn(transcript="stop please", reply="Okay."),
        )
    )
    async with engine_for().start() as session:
        await send_speech(session, 1.0, silence_after=0.5)
        async with streaming_silence(session):
            await collect_until(session, lambda e: e.type is E.AUDIO_OUTPUT)
        await send_speech(session, 0.8)  # the user talks over the assistant
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.INTERRUPTED)
            assert events[-1].reason == "barge_in"
            after = await collect_until(session, lambda e: e.type is E.TURN_END)
    texts = [e.text for e in events + after if e.type is E.TEXT_OUTPUT]
    assert all("interrupted" not in t for t in texts)  # the marker is never speech
    transcripts = [e.text for e in after if e.type is E.TRANSCRIPT]
    assert transcripts == ["stop please"]
    # after INTERRUPTED, no audio of the interrupted turn: the next audio follows the transcript
    kinds = [e.type for e in after]
    assert E.AUDIO_OUTPUT not in kinds[: kinds.index(E.TRANSCRIPT)]
    assert [e.text for e in after if e.type is E.TEXT_OUTPUT and e.final] == ["Okay."]


async def test_client_interrupt_drops_queued_audio(emulator: Emulator, engine_for) -> None:
    emulator.script = Script((ScriptTurn(reply=" ".join(["A long reply to cut short."] * 5)),))
    async with engine_for().start() as session:
        await session.send_text("talk")
        async with streaming_silence(session):
            await collect_until(session, lambda e: e.type is E.AUDIO_OUTPUT)
            await asyncio.sleep(0.3)  # let more audio queue up unread
        await session.interrupt()
        events = await collect_until(session, lambda e: e.type is E.INTERRUPTED, within=5)
        assert not of_type(events, E.AUDIO_OUTPUT)
        assert events[-1].reason == "client"
        await session.send_audio(audio.silence(0.2))  # the session goes on


async def test_bad_signature_is_rejected(emulator: Emulator, engine_for) -> None:
    engine = engine_for(extra={"aws_secret_access_key": "not-the-secret"})
    with pytest.raises(s2s.ProviderError) as info:
        async with engine.start():
            pass
    assert info.value.code == "bad_credentials"
    assert not info.value.retryable
    assert emulator.records[0].outcome is Outcome.REJECTED
    assert emulator.records[0].status == 403


async def test_unknown_access_key_is_rejected(emulator: Emulator, engine_for) -> None:
    engine = engine_for(extra={"aws_access_key_id": "AKIDNOBODY"})
    with pytest.raises(s2s.ProviderError) as info:
        await engine.start()
    assert info.value.code == "bad_credentials"


async def test_access_denied_at_open(emulator: Emulator, engine_for) -> None:
    emulator.faults = [FaultPlan(FaultKind.ACCESS_DENIED)]
    with pytest.raises(s2s.ProviderError) as info:
        await engine_for().start()
    assert (info.value.code, info.value.retryable) == ("access_denied", False)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (FaultKind.THROTTLE, "throttled"),
        (FaultKind.MODEL_STREAM_ERROR, "model_stream_error"),
        (FaultKind.MODEL_TIMEOUT, "model_timeout"),
        (FaultKind.INTERNAL, "internal_error"),
        (FaultKind.UNAVAILABLE, "service_unavailable"),
        (FaultKind.IDLE_CUT, "idle_timeout"),
        (FaultKind.RESET, "stream_ended"),  # the SDK reports RST_STREAM as end of stream
        (FaultKind.DROP, "stream_ended"),  # so is a dropped connection
        (FaultKind.INVALID_EVENT, "bad_event"),
    ],
)
@pytest.mark.parametrize("when", [Trigger.USER_SPEECH, Trigger.ASSISTANT_SPEECH])
async def test_mid_stream_faults_end_in_one_clear_error(
    emulator: Emulator, engine_for, kind: FaultKind, code: str, when: Trigger
) -> None:
    """Each fault surfaces with its code; with recovery off (``recovery_attempts=0``) it ends
    the session. (With recovery on, the default, tests/contract/test_recovery.py.)"""
    emulator.faults = [FaultPlan(kind, when)]
    session = await engine_for(extra={"recovery_attempts": 0}).start()
    try:
        started = time.monotonic()
        # the fault may land while we are still sending
        with contextlib.suppress(s2s.SessionClosedError, s2s.ProviderError):
            await send_speech(session, 1.0, silence_after=1.5)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.ERROR, within=10)
        errors = of_type(events, E.ERROR)
        assert len(errors) == 1
        error = errors[0].error
        assert error is not None
        assert (error.code, error.fatal, error.retryable) == (code, True, True)
        # the session is closed and recv() ends promptly, with no second error
        rest = [e async for e in session.recv()]
        assert not of_type(rest, E.ERROR)
        assert session.closed
        assert time.monotonic() - started < 10
        with pytest.raises(s2s.SessionClosedError, match=code):
            await session.send_audio(audio.silence(0.1))
    finally:
        await session.close()
    record = emulator.records[0]
    await emulator.wait_for_streams(1)
    assert record.fault is kind
    assert len(emulator.records) == 1  # no retry


async def test_close_is_orderly_and_idempotent(emulator: Emulator, engine_for) -> None:
    session = await engine_for().start()
    await session.send_audio(audio.silence(0.3))
    await session.close()
    await session.close()
    assert session.closed
    assert [e async for e in session.recv()] == []
    with pytest.raises(s2s.SessionClosedError):
        await session.send_text("hello")
    await emulator.wait_for_streams(1)
    assert emulator.records[0].outcome is Outcome.COMPLETED


async def test_odd_sized_audio_is_kept_aligned(emulator: Emulator, engine_for) -> None:
    session = await engine_for().start()
    try:
        await session.send_audio(b"\x01\x02\x03")  # one sample and a dangling byte
        await session.send_audio(b"\x04")
        with pytest.raises(TypeError, match="PCM16"):
            await session.send_audio("not bytes")  # type: ignore[arg-type]
    finally:
        await session.close()
    await emulator.wait_for_streams(1)
    contents = [
        e.body["content"] for e in emulator.records[0].input_events if e.name == "audioInput"
    ]
    import base64

    assert b"".join(base64.b64decode(c) for c in contents) == b"\x01\x02\x03\x04"


async def test_text_on_nova_v1_is_refused_and_session_goes_on(
    emulator: Emulator, engine_for
) -> None:
    engine = engine_for(model="amazon.nova-sonic-v1:0", extra={"allow_retired_model": True})
    async with engine.start() as session:
        with pytest.raises(s2s.UnsupportedError):
            await session.send_text("hi")
        await session.send_audio(audio.silence(0.1))
    assert emulator.records[0].model_id == "amazon.nova-sonic-v1:0"


async def test_concurrent_sessions_are_independent(emulator: Emulator, engine_for) -> None:
    emulator.script = Script((ScriptTurn(transcript="hello", reply="Hi there."),))
    engine = engine_for()

    async def one() -> list[str]:
        async with engine.start() as session:
            await send_speech(session, 0.6)
            async with streaming_silence(session):
                events = await collect_until(session, lambda e: e.type is E.TURN_END)
        return [e.text for e in events if e.type is E.TEXT_OUTPUT and e.final]

    results = await asyncio.gather(*(one() for _ in range(5)))
    assert results == [["Hi there."]] * 5
    assert len(emulator.records) == 5


def test_emulator_extra_is_valid() -> None:
    class Fake:
        endpoint = "https://127.0.0.1:1"
        ca_path = __file__

        class config:  # noqa: N801
            region = "us-east-1"

    s2s.new("nova", s2s.Config(extra=emulator_extra(Fake())))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keepalive_after", "step", "expect_audio"),
    [(0.2, None, True), (0.2, 0.032, True), (0.2, 0.25, True), (0, None, False)],
)
async def test_keepalive_streams_silence_while_the_caller_is_idle(
    emulator: Emulator, engine_for, keepalive_after: float, step: float | None, expect_audio: bool
) -> None:
    extra: dict[str, float] = {"keepalive_after": keepalive_after}
    if step is not None:
        extra["keepalive_step"] = step
    engine = engine_for(extra=extra)
    async with engine.start():
        opened = time.monotonic()
        await asyncio.sleep(0.8)
        # on a busy machine the sleep lasts longer, and the keep-alive rightly streams more
        lived = time.monotonic() - opened
    await emulator.wait_for_streams(1)
    import base64

    chunks = [
        base64.b64decode(e.body["content"])
        for e in emulator.records[0].input_events
        if e.name == "audioInput"
    ]
    if expect_audio:
        # ~0.6 s of real-time silence after the 0.2 s grace, in events of one step each
        # (100 ms by default), at real-time pace: never more than a step ahead of the clock.
        seconds = sum(len(c) for c in chunks) / 32000
        piece = step or 0.1
        assert 0.6 - 2 * piece < seconds <= lived - keepalive_after + piece
        assert all(set(c) == {0} for c in chunks)
        # a step longer than 100 ms goes out as events of at most 100 ms, like any audio
        # (a busy loop that wakes late catches up with several steps in one event, within
        # the same bound)
        assert 2 * round(16000 * min(piece, 0.1)) <= max(len(c) for c in chunks) <= 3200
        assert sum(len(c) for c in chunks) % (2 * round(16000 * piece)) == 0
    else:
        assert chunks == []
