"""The conversation engine with the offline speech: it hears words, calls tools, speaks."""

from __future__ import annotations

import json

import pytest

from novakit.emulator.conversation import EngineSettings, Script, ScriptTurn
from novakit.emulator.matching import ToolExamples, Vocabulary
from novakit.emulator.mind import Mind
from novakit.emulator.recognition import Recognizer
from novakit.emulator.speech import silence

from .helpers import (
    audio_start,
    prompt_start,
    session_start,
    text_content,
    tool_result,
)
from .test_conversation import Driver, spoken_reply

SHOP = ToolExamples(
    "opening_hours",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ("when is the {city} shop open",),
    values={"city": ["Lyon", "Lille", "Paris"]},
    say="The {city} shop is open {hours}.",
)


def shop_spec() -> dict[str, object]:
    schema = SHOP.input_schema
    return {
        "toolSpec": {
            "name": "opening_hours",
            "description": "Opening hours of our shops",
            "inputSchema": {"json": json.dumps(schema)},
        }
    }


@pytest.fixture(scope="module")
def mind() -> Mind:
    return Mind([SHOP])


def driver(mind: Mind, script: Script | None = None) -> Driver:
    d = Driver(script, settings=EngineSettings(endpoint_seconds=0.5, mind=mind))
    d.send(session_start(), prompt_start(rate=16000, tools=[shop_spec()]), audio_start())
    return d


def question(mind: Mind, text: str) -> bytes:
    return silence(0.3) + mind.speak(text, 16000, "tiffany") + silence(1.0)


ANSWERS = (
    "the <city> shop is open from nine to seven",
    "the <city> shop is open from nine to five",
    "the <city> shop is closed today",
    "sorry that did not work",
)


@pytest.fixture(scope="module")
def answers(mind: Mind) -> Recognizer:
    """A recognizer that knows only a few answers: which one does the audio say?"""
    vocabulary = Vocabulary(
        tuple(tuple(a.split()) for a in ANSWERS), {"city": ("lyon", "lille", "paris")}
    )
    return Recognizer(vocabulary, fallback=False, pronounce=mind.synthesizer.pronounce)


def tool_use(d: Driver) -> tuple[str, str, dict[str, object]]:
    use = next(e for e in d.out if e.name == "toolUse")
    return use.body["toolUseId"], use.body["toolName"], json.loads(use.body["content"])


def test_a_spoken_question_is_transcribed_calls_the_tool_and_the_result_is_spoken(
    mind: Mind, answers: Recognizer
) -> None:
    d = driver(mind)
    d.audio(question(mind, "when is the Lyon shop open"))
    transcript = next(
        e.body["content"] for e in d.out if e.name == "textOutput" and e.body["role"] == "USER"
    )
    # The words said, in order (the pause around them may be heard as a polite "please").
    assert transcript.removeprefix("please ").startswith("when is the lyon shop open")
    tool_use_id, name, arguments = tool_use(d)
    assert (name, arguments) == ("opening_hours", {"city": "Lyon"})
    mark = len(d.out)
    d.send(*tool_result(tool_use_id, json.dumps({"hours": "from nine to seven"})))
    d.audio(silence(4.0))
    assert d.summary(mark) == [
        *spoken_reply("The Lyon shop is open from nine to seven."),
        "usageEvent",
    ]
    # Real speech, at the session's rate, about as long as the sentence takes to say.
    seconds = len(d.audio_bytes(mark)) / 2 / 16000
    assert 1.2 < seconds < 4.0
    # Heard back as a microphone would, with silence after it.
    heard = answers.hear(d.audio_bytes(mark) + silence(0.3)).text
    assert heard.startswith("the lyon shop is open from nine to seven")


def test_a_typed_question_calls_the_same_tool_with_the_same_arguments(mind: Mind) -> None:
    d = driver(mind)
    d.send(
        *text_content("t1", "USER", "Could you tell me when the Lyon shop opens?", interactive=True)
    )
    d.advance(2.0)
    _, name, arguments = tool_use(d)
    assert (name, arguments) == ("opening_hours", {"city": "Lyon"})


def test_an_error_result_is_an_apology_and_other_words_an_honest_reply(mind: Mind) -> None:
    d = driver(mind)
    d.send(*text_content("t1", "USER", "when is the Lille shop open", interactive=True))
    d.advance(1.0)
    tool_use_id, _, _ = tool_use(d)
    d.send(*tool_result(tool_use_id, json.dumps({"error": "we have no shop in Lille"})))
    d.advance(10.0)
    d.send(*text_content("t2", "USER", "order a pizza", interactive=True))
    d.advance(30.0)
    said = [line for line in d.summary() if line.startswith("text ASSISTANT")]
    assert said[0] == "text ASSISTANT: Sorry, that did not work: we have no shop in Lille."
    assert any("novakit emulator" in line for line in said)
    assert any('"order a pizza"' in line for line in said)


def test_a_script_keeps_precedence_over_the_mind(mind: Mind) -> None:
    d = driver(mind, Script((ScriptTurn(reply="Scripted."),)))
    d.audio(question(mind, "when is the Lyon shop open"))
    d.audio(silence(3.0))
    lines = d.summary()
    # Heard, as no transcript is scripted.
    assert any(line.startswith("text USER: when is the lyon shop open") for line in lines)
    assert not any(e.name == "toolUse" for e in d.out)
    assert "text ASSISTANT: Scripted." in lines


def test_real_speech_over_an_answer_interrupts_it(mind: Mind) -> None:
    d = driver(mind)
    long_answer = "repeat that"  # the first reply: "I have not said anything yet."
    d.audio(question(mind, long_answer))
    d.audio(silence(0.3))  # the answer has started playing
    assert d.engine.assistant_speaking
    mark = len(d.out)
    d.audio(question(mind, "thank you"))
    after = d.summary(mark)
    assert 'text ASSISTANT: { "interrupted" : true }' in after
    assert "end TEXT INTERRUPTED" in after
    assert "text USER: thank you" in after
    assert after[-1] == "usageEvent" and "text ASSISTANT: You are welcome." in after


def transcripts(d: Driver) -> list[str]:
    return [e.body["content"] for e in d.out if e.name == "textOutput" and e.body["role"] == "USER"]


def test_a_whole_question_ends_the_turn_without_the_endpointing_pause(mind: Mind) -> None:
    d = Driver(settings=EngineSettings(endpoint_seconds=1.5, mind=mind))
    d.send(session_start(), prompt_start(rate=16000, tools=[shop_spec()]), audio_start())
    d.audio(silence(0.3) + mind.speak("when is the Lyon shop open", 16000, "tiffany"))
    spoken_until = d.engine.audio_position
    waited = 0.0
    while not transcripts(d) and waited < 2.0:
        d.audio(silence(0.02))
        waited += 0.02
    # The turn ended a quarter of a second after the words (plus the fall of the last one),
    # not after the 1.5 s pause.
    assert 0.2 <= d.engine.audio_position - spoken_until <= 0.45
    assert "lyon shop open" in transcripts(d)[0]


def test_a_pause_within_a_question_does_not_end_the_turn(mind: Mind) -> None:
    d = Driver(settings=EngineSettings(endpoint_seconds=1.5, mind=mind))
    d.send(session_start(), prompt_start(rate=16000, tools=[shop_spec()]), audio_start())
    d.audio(silence(0.3) + mind.speak("when is the", 16000, "tiffany") + silence(0.6))
    assert transcripts(d) == []  # "when is the" is not a question yet
    d.audio(mind.speak("Lyon shop open", 16000, "tiffany") + silence(1.6))
    # One turn for the whole question. (Its words are another matter: the grammar has no
    # silence between words, so a long pause within a phrase is often misheard.)
    assert len(transcripts(d)) == 1


def test_without_a_quick_endpoint_the_turn_waits_for_the_pause(mind: Mind) -> None:
    settings = EngineSettings(endpoint_seconds=1.5, mind=mind, quick_endpoint_seconds=None)
    d = Driver(settings=settings)
    d.send(session_start(), prompt_start(rate=16000, tools=[shop_spec()]), audio_start())
    d.audio(silence(0.3) + mind.speak("when is the Lyon shop open", 16000, "tiffany"))
    d.audio(silence(1.2))
    assert transcripts(d) == []
    d.audio(silence(0.5))
    assert len(transcripts(d)) == 1


def test_a_question_in_24_khz_audio_is_heard_too(mind: Mind) -> None:
    # Nova takes 8, 16 or 24 kHz input (24 kHz: OpenAI Realtime clients); the recognizer's
    # model is 16 kHz, so the emulator converts.
    rate = 24000
    pcm = silence(0.3, rate) + mind.speak("when is the Lyon shop open", rate, "tiffany")
    heard = mind.hear(pcm + silence(0.5, rate), rate)
    assert "when is the lyon shop open" in heard.text
