"""The emulator continues a conversation a stream opens with: its script picks up after the
user turns already in the history (as a model given the conversation would)."""

from __future__ import annotations

from novakit import s2s
from novakit.emulator import Emulator, Script, ScriptTurn

from .conftest import collect_until, send_speech, streaming_silence

E = s2s.EventType
TURNS = Script(
    (
        ScriptTurn(transcript="first question", reply="First answer."),
        ScriptTurn(transcript="second question", reply="Second answer."),
    )
)


async def test_a_stream_with_history_continues_the_script(emulator: Emulator, engine_for) -> None:
    emulator.script = TURNS
    history = [
        s2s.Message("user", "first question"),
        s2s.Message("assistant", "First answer."),
    ]
    async with engine_for().start(history=history) as session:
        await send_speech(session, 0.8)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END)
    assert [e.text for e in events if e.type is E.TRANSCRIPT] == ["second question"]
    assert [e.text for e in events if e.type is E.TEXT_OUTPUT and e.final] == ["Second answer."]


async def test_without_history_the_script_starts_at_its_first_turn(
    emulator: Emulator, engine_for
) -> None:
    emulator.script = TURNS
    async with engine_for().start() as session:
        await send_speech(session, 0.8)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END)
    assert [e.text for e in events if e.type is E.TRANSCRIPT] == ["first question"]
