"""Nova 2's documented start options over the real SDK: input at 8, 16 or 24 kHz, toolChoice,
and the SYSTEM_SPEECH prompt, each sent as AWS documents it and accepted by the emulator."""

from __future__ import annotations

import json

import pytest

from novakit import audio, s2s
from novakit.emulator import Emulator, Outcome, Script, ScriptTurn, ToolCall

from .conftest import collect_until, of_type, streaming_silence

E = s2s.EventType
pytestmark = pytest.mark.contract

LOOKUP = s2s.ToolDefinition(
    "lookup",
    "Look up a topic in the handbook.",
    {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]},
)


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_speech_at_each_documented_input_rate_is_heard(
    emulator: Emulator, engine_for, rate: int
) -> None:
    emulator.script = Script((ScriptTurn(transcript="hello there", reply="Hello."),))
    engine = engine_for(input_sample_rate=rate)
    async with engine.start() as session:
        pcm = audio.speech_like(1.0, rate) + audio.silence(0.8, rate)
        step = rate * 2 * 32 // 1000  # 32 ms events, as AWS recommends
        for i in range(0, len(pcm), step):
            await session.send_audio(pcm[i : i + step])
        events = await collect_until(session, lambda e: e.type is E.USAGE)  # after TURN_END
    assert [e.text for e in of_type(events, E.TRANSCRIPT)] == ["hello there"]
    assert of_type(events, E.TURN_END)
    await emulator.wait_for_streams(1)
    record = emulator.records[0]
    assert record.outcome is Outcome.COMPLETED
    audio_start = next(
        e.body
        for e in record.input_events
        if e.name == "contentStart" and e.body["type"] == "AUDIO"
    )
    assert audio_start["audioInputConfiguration"]["sampleRateHertz"] == rate
    # The emulator timed the utterance at the declared rate: about the second sent.
    usage = events[-1].usage
    assert usage is not None
    assert 20 <= usage.input_speech_tokens <= 30  # 25 tokens per second


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("any", {"any": {}}),
        (s2s.ToolChoice.tool("lookup"), {"tool": {"name": "lookup"}}),
        ("auto", {"auto": {}}),
    ],
)
async def test_tool_choice_is_sent_and_accepted(
    emulator: Emulator, engine_for, choice: s2s.ToolChoice | str, wire: dict[str, object]
) -> None:
    emulator.script = Script(
        (ScriptTurn(tool=ToolCall("lookup", {"topic": "leave"}), reply="It says {result}."),)
    )
    engine = engine_for(tools=[LOOKUP])
    async with engine.start(tool_choice=choice) as session:
        await session.send_text("how much leave do I get")
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TOOL_CALL)
            call = events[-1].tool_call
            assert call is not None and call.name == "lookup"
            await session.send_tool_result(s2s.ToolResult(call.call_id, [s2s.TextPart("25")]))
            await collect_until(session, lambda e: e.type is E.TURN_END)
    await emulator.wait_for_streams(1)
    record = emulator.records[0]
    assert record.outcome is Outcome.COMPLETED
    prompt = record.input_events[1].body
    assert prompt["toolConfiguration"]["toolChoice"] == wire
    assert json.loads(prompt["toolConfiguration"]["tools"][0]["toolSpec"]["inputSchema"]["json"])


async def test_the_speech_prompt_is_sent_after_the_system_prompt(
    emulator: Emulator, engine_for
) -> None:
    engine = engine_for(
        instructions="Be brief.", extra={"speech_instructions": "Speak slowly and warmly."}
    )
    history = [s2s.Message("user", "Hi."), s2s.Message("assistant", "Hello!")]
    async with engine.start(history=history) as session:
        await session.send_text("and now?")
        async with streaming_silence(session):
            await collect_until(session, lambda e: e.type is E.TURN_END)
    await emulator.wait_for_streams(1)
    record = emulator.records[0]
    assert record.outcome is Outcome.COMPLETED
    roles = [e.body.get("role") for e in record.input_events if e.name == "contentStart"]
    assert roles[:5] == ["SYSTEM", "SYSTEM_SPEECH", "USER", "ASSISTANT", "USER"]
    texts = [e.body["content"] for e in record.input_events if e.name == "textInput"]
    assert texts[:2] == ["Be brief.", "Speak slowly and warmly."]
