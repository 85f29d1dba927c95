"""A turn ends exactly once whichever of the orders a server uses to end it: the last FINAL
text END_TURN, the last AUDIO END_TURN (its FINAL text PARTIAL_TURN), completionEnd, or an
interruption. Each order is an emulator mode (``EngineSettings.turn_end``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from novakit import s2s
from novakit.emulator import Emulator, EmulatorConfig, EngineSettings, Script, ScriptTurn

from .conftest import collect_until, emulator_extra, of_type, send_speech, streaming_silence

E = s2s.EventType
pytestmark = pytest.mark.contract

MODES = ("text", "audio", "completion", "both")
LONG = " ".join(["This answer goes on for a good long while."] * 6)


@pytest.fixture(params=MODES)
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        endpoint_seconds=0.4, pace=0, engine=EngineSettings(turn_end=request.param)
    )
    async with Emulator(config) as emulator:
        yield emulator


def engine(emu: Emulator) -> s2s.Engine:
    return s2s.new("nova", s2s.Config(extra=emulator_extra(emu)))


def assistant_stops(emu: Emulator) -> list[str]:
    """The stop reasons the emulator ended ASSISTANT contents and completions with."""
    roles: dict[str, str] = {}
    stops = []
    for event in emu.records[0].output_events:
        if event.name == "contentStart":
            roles[event.body["contentId"]] = event.body["role"]
        elif event.name == "contentEnd" and roles[event.body["contentId"]] == "ASSISTANT":
            stops.append(f"{event.body['type']} {event.body['stopReason']}")
        elif event.name == "completionEnd":
            stops.append(f"completion {event.body['stopReason']}")
    return stops


async def test_each_answer_ends_once_after_its_words(emu: Emulator) -> None:
    emu.script = Script(
        (
            ScriptTurn(reply="First answer. It has two sentences."),
            ScriptTurn(reply="Second answer."),
        )
    )
    turns = []
    async with engine(emu).start() as session:
        async with streaming_silence(session):
            for question in ("one", "two"):
                await session.send_text(question)
                turns.append(await collect_until(session, lambda e: e.type is E.TURN_END))
        # Whatever comes after the second answer (a session-wide completionEnd at the close)
        # ends no turn again.
        await session.close()
        rest = [event async for event in session.recv()]
    assert E.TURN_END not in [e.type for e in rest]
    assert E.INTERRUPTED not in [e.type for e in rest]
    finals = [[e.text for e in of_type(t, E.TEXT_OUTPUT) if e.final] for t in turns]
    assert finals == [["First answer.", "It has two sentences."], ["Second answer."]]
    for events in turns:
        assert len(of_type(events, E.TURN_END)) == 1
        assert of_type(events, E.AUDIO_OUTPUT)
    # The emulator did end the turns the way the mode says.
    stops = assistant_stops(emu)
    mode = emu.config.engine.turn_end
    assert ("TEXT END_TURN" in stops) == (mode in ("text", "both"))
    assert ("AUDIO END_TURN" in stops) == (mode in ("audio", "both"))
    assert stops.count("completion END_TURN") == (2 if mode == "completion" else 1)


async def test_a_cut_answer_ends_once_interrupted(emu: Emulator) -> None:
    emu.script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=LONG),
            ScriptTurn(transcript="stop please", reply="Okay."),
        )
    )
    async with engine(emu).start() as session:
        await send_speech(session, 1.0, silence_after=0.5)
        async with streaming_silence(session):
            await collect_until(session, lambda e: e.type is E.AUDIO_OUTPUT)
        await send_speech(session, 0.8)  # the user talks over the assistant
        async with streaming_silence(session):
            cut = await collect_until(session, lambda e: e.type is E.INTERRUPTED)
            after = await collect_until(session, lambda e: e.type is E.TURN_END)
    assert not of_type(cut, E.TURN_END)
    assert [e.type for e in after].count(E.INTERRUPTED) == 0
    assert [e.type for e in after].count(E.TURN_END) == 1
    assert [e.text for e in of_type(after, E.TRANSCRIPT)] == ["stop please"]
    assert [e.text for e in of_type(after, E.TEXT_OUTPUT) if e.final] == ["Okay."]
    if emu.config.engine.turn_end == "completion":
        assert "completion INTERRUPTED" in assistant_stops(emu)
