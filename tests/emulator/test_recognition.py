"""The emulator's ears: PocketSphinx on speech eSpeak NG makes in the test."""

from __future__ import annotations

import numpy as np
import pytest

from novakit.emulator.answers import SMALL_TALK
from novakit.emulator.matching import Matcher, ToolExamples
from novakit.emulator.recognition import (
    FIRST_PASSES,
    LANGUAGE_MODEL_SECONDS,
    NEIGHBOURS,
    PAD_SECONDS,
    Heard,
    Recognizer,
    asked_for,
    embedded_question,
)
from novakit.emulator.synthesis import Synthesizer

TIME = ToolExamples(
    "get_time",
    {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    ("what time is it in {timezone}",),
    values={"timezone": "timezones"},
)
WEATHER = ToolExamples(
    "weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ("what is the weather in {city}",),
)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(Matcher([TIME, WEATHER]).vocabulary(), SMALL_TALK)


@pytest.fixture(scope="module")
def voice() -> Synthesizer:
    return Synthesizer()


def speech(voice: Synthesizer, text: str, name: str = "matthew") -> bytes:
    return bytes(6400) + voice.speak(text, 16000, name) + bytes(6400)


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("what time is it in Tokyo", "matthew"),
        ("could you tell me what the weather is in London", "tiffany"),
        ("thank you", "amy"),
    ],
)
def test_the_grammar_hears_examples_and_small_talk(
    recognizer: Recognizer, voice: Synthesizer, said: str, name: str
) -> None:
    heard = recognizer.hear(speech(voice, said, name))
    assert heard.by == "grammar"
    expected = {
        "what time is it in Tokyo": "what time is it in tokyo",
        # An embedded question, heard in its own word order (the city is often misheard).
        "could you tell me what the weather is in London": "could you tell me what the weather is",
        "thank you": "thank you",
    }[said]
    assert expected in heard.text


def test_speech_outside_the_grammar_goes_to_the_language_model(
    recognizer: Recognizer, voice: Synthesizer
) -> None:
    heard = recognizer.hear(speech(voice, "I would like to order a pizza"))
    assert heard.by == "language model"
    assert {"order", "pizza"} <= set(heard.text.split())


def test_silence_and_noise_are_heard_as_nothing(recognizer: Recognizer) -> None:
    assert recognizer.hear(b"").text == ""
    noise = np.random.default_rng(1).normal(0, 30, 16000).astype("<i2").tobytes()
    assert recognizer.hear(noise).by in ("", "language model", "grammar")


def test_a_new_recognizer_hears_the_same_audio_the_same_way(voice: Synthesizer) -> None:
    vocabulary = Matcher([WEATHER]).vocabulary()
    pcm = [speech(voice, "what is the weather in Paris"), speech(voice, "hello")]
    first, second = Recognizer(vocabulary, SMALL_TALK), Recognizer(vocabulary, SMALL_TALK)
    assert [first.hear(p) for p in pcm] == [second.hear(p) for p in pcm]


def test_the_grammar_holds_only_words_the_dictionary_knows() -> None:
    odd = ToolExamples(
        "odd",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        ("call {name}", "zzqx {name}"),
        values={"name": ["Alice", "Xqzzyv"]},
    )
    recognizer = Recognizer(Matcher([odd]).vocabulary(), fallback=False)
    assert recognizer.grammar is not None
    assert "call <odd_name>" in recognizer.grammar
    assert "zzqx" not in recognizer.grammar and "xqzzyv" not in recognizer.grammar


def test_the_language_model_hears_the_start_of_a_long_utterance_only(
    recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []

    def no_words(decoder: object, audio: bytes) -> str:
        decoded.append(len(audio))
        return ""

    monkeypatch.setattr(recognizer, "_decode", no_words)
    thirty_seconds = bytes(2 * 16000 * 30)
    assert recognizer.hear(thirty_seconds).by == ""
    grammar, language_model = decoded
    assert grammar == 2 * round((PAD_SECONDS + 30) * 16000)  # the grammar hears it all (cheap)
    assert language_model == 2 * round((PAD_SECONDS + LANGUAGE_MODEL_SECONDS) * 16000)


def test_an_utterance_fed_frame_by_frame_is_heard_as_the_recording(voice: Synthesizer) -> None:
    vocabulary = Matcher([WEATHER]).vocabulary()
    pcm = speech(voice, "what is the weather in Paris", "amy")
    live, recorded = Recognizer(vocabulary, SMALL_TALK), Recognizer(vocabulary, SMALL_TALK)
    listening = live.listen()
    for offset in range(0, len(pcm), 640):
        listening.feed(pcm[offset : offset + 640])
    assert listening.finish() == recorded.hear(pcm)


def test_a_whole_phrase_is_known_at_a_pause_and_kept_until_more_audio(
    recognizer: Recognizer, voice: Synthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ends a turn early: at a pause the words so far are a complete phrase."""
    said = voice.speak("what time is it in Tokyo", 16000, "matthew")
    listening = recognizer.listen()
    listening.feed(said[: len(said) // 2])
    assert not listening.complete()  # "what time is..." is not a question yet
    listening.feed(said[len(said) // 2 :] + bytes(2 * 2400))
    assert listening.complete()
    decodes: list[int] = []
    monkeypatch.setattr(recognizer, "_decode", lambda d, audio: decodes.append(len(audio)) or "")
    assert listening.complete()  # the same audio: not decoded again
    assert listening.finish() == Heard("what time is it in tokyo", "grammar")
    assert decodes == []


@pytest.mark.parametrize(
    ("question", "embedded"),
    [
        ("what time is it in <tz>", "what time it is in <tz>"),
        ("what is the weather like in <city>", "what the weather is like in <city>"),
        ("when is the <city> shop open", "when the <city> shop is open"),
        ("is it raining in <city>", None),
        ("tell me about <topic>", None),
    ],
)
def test_questions_are_also_heard_in_the_order_of_an_embedded_question(
    question: str, embedded: str | None
) -> None:
    reordered = embedded_question(tuple(question.split()))
    assert (" ".join(reordered) if reordered else None) == embedded


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("what is the weather in <city>", "the weather in <city>"),
        ("what is the time in <tz>", "the time in <tz>"),
        ("what is the weather like in <city>", None),  # "tell me the weather like in" is not said
        ("what time is it in <tz>", None),
        ("what is <city>", None),
    ],
)
def test_what_a_question_asks_for_is_its_noun_phrase(question: str, asked: str | None) -> None:
    found = asked_for(tuple(question.split()))
    assert (" ".join(found) if found else None) == asked


def test_the_grammar_holds_requests_said_with_an_opener_as_people_say_them() -> None:
    """ "tell me the weather in ..." (what the question asks for, after an opener) and "could
    you tell me about ..." (an opener that ends as the phrase begins), but not the noun phrase
    alone nor the opener said twice over the phrase."""
    lookup = ToolExamples(
        "lookup",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        ("tell me about {query}",),
        values={"query": ["parking", "IT help"]},
    )
    recognizer = Recognizer(Matcher([WEATHER, lookup]).vocabulary(), fallback=False)
    for heard in (
        "tell me the weather in paris",
        "do you know the weather in paris",
        "could you tell me about parking",
        "can you tell me about parking",
        "tell me about parking",
        "tell me about i t help",
        "tell me about it help",
    ):
        assert recognizer._complete_phrase(heard), heard
    for not_heard in (
        "the weather in paris",
        "could you tell me tell me about parking please please",
        "could you about parking",
    ):
        assert not recognizer._complete_phrase(not_heard), not_heard


@pytest.mark.parametrize("name", ["matthew", "amy"])
def test_an_initialism_is_heard_spelled_out(voice: Synthesizer, name: str) -> None:
    """ "IT help" in a tool's values is heard when said "I T help", as people (and eSpeak NG) say
    it; the words before gave the language model's guess when only "it help" was in the
    grammar."""
    lookup = ToolExamples(
        "lookup",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        ("what is the policy on {query}",),
        values={"query": ["parking", "IT help", "holidays"]},
    )
    matcher = Matcher([lookup])
    recognizer = Recognizer(matcher.vocabulary(), fallback=False)
    heard = recognizer.hear(speech(voice, "what is the policy on IT help", name))
    assert heard.text == "what is the policy on i t help"
    found = matcher.match(heard.text)
    assert found is not None and found.arguments == {"query": "IT help"}


def test_the_grammar_holds_embedded_questions_after_an_opener_only() -> None:
    recognizer = Recognizer(Matcher([TIME]).vocabulary(), fallback=False)
    assert recognizer._complete_phrase("could you tell me what time it is in paris")
    assert recognizer._complete_phrase("what time is it in paris")
    assert not recognizer._complete_phrase("what time it is in paris")


def test_phrases_that_end_alike_share_one_copy_of_their_slot_values() -> None:
    """Each slot's values appear once in the search, whatever the number of phrases (and
    openers and embedded orders) before them; the phrases heard stay the same."""
    times = ToolExamples(
        "get_time",
        TIME.input_schema,
        (
            "what time is it in {timezone}",
            "what is the time in {timezone}",
            "{timezone} time",
            "what day is it in {timezone} today",
        ),
        values={"timezone": "timezones"},
    )
    recognizer = Recognizer(Matcher([times, WEATHER]).vocabulary(), SMALL_TALK, fallback=False)
    assert recognizer.grammar is not None
    public = next(line for line in recognizer.grammar.splitlines() if line.startswith("public"))
    # Three endings: "<tz>" (two phrases, each also embedded), "<tz> time", "<tz> today".
    assert public.count("<get_time_timezone>") == 3
    assert public.count("<weather_city>") == 1
    for heard in (
        "what time is it in paris",
        "could you tell me what time it is in paris",
        "what is the time in tokyo please",
        "paris time",
        "please paris time",
        "what day is it in tokyo today",
        "do you know what day it is in tokyo today",
        "what is the weather in london",
        "thank you",
    ):
        assert recognizer._complete_phrase(heard), heard
    for not_heard in (
        "what time it is in paris",
        "what time is it in",
        "what is the time in today",
    ):
        assert not recognizer._complete_phrase(not_heard), not_heard


def test_the_decode_at_a_pause_weighs_the_values_pronounced_like_the_first_pass_heard(
    recognizer: Recognizer,
) -> None:
    narrowed = recognizer._narrowed("what time is it in perth")
    assert narrowed is not None
    rules = {
        line.split(" = ")[0]: line.rstrip(";").split(" = ")[1].split(" | ")
        for line in narrowed.splitlines()
        if line.startswith("<get_time") or line.startswith("<weather")
    }
    for values in rules.values():
        assert len(values) == NEIGHBOURS
        assert values[0] == "perth"  # the value heard first, then the nearest by phones
        assert "paris" in values  # P ER TH / P EH R IH S: the confusion a pause must undo
        assert "tokyo" not in values
    assert recognizer._narrowed("thank you") is None  # no value heard: the whole grammar


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("what time is it in Tokyo", "matthew"),
        ("what is the weather in London", "amy"),
        ("what time is it in Sydney", "tiffany"),
    ],
)
def test_an_utterance_fed_as_it_is_spoken_is_heard_in_two_passes(
    recognizer: Recognizer, voice: Synthesizer, said: str, name: str
) -> None:
    pcm = speech(voice, said, name)
    idle = len(recognizer._idle_first_passes)
    listening = recognizer.listen()
    assert len(recognizer._idle_first_passes) == idle - 1 or idle == 0
    for offset in range(0, len(pcm), 640):
        listening.feed(pcm[offset : offset + 640])
    assert listening.finish() == Heard(" ".join(said.lower().split()), "grammar")
    assert len(recognizer._idle_first_passes) == max(idle, 1)  # the first pass is given back
    cancelled = recognizer.listen()
    cancelled.feed(pcm[: len(pcm) // 2])
    cancelled.cancel()
    assert len(recognizer._idle_first_passes) == max(idle, 1)


CONFUSABLE = [
    ("Dublin", "Delhi"),
    ("Cairo", "Perth"),
    ("Paris", "Perth"),
    ("Berlin", "Dublin"),
    ("Madrid", "Leeds"),
    ("Mumbai", "Dubai"),
    ("Toronto", "Tampa"),
]


@pytest.mark.parametrize("city", sorted({city for pair in CONFUSABLE for city in pair}))
def test_a_spoken_city_is_heard_as_that_city_not_one_pronounced_like_it(
    recognizer: Recognizer, voice: Synthesizer, city: str
) -> None:
    """Pairs the recognizer once confused ("Paris" heard as "Perth", "Dublin" as "Delhi"):
    each of them, said in a question, is heard as itself."""
    heard = recognizer.hear(speech(voice, f"what time is it in {city}"))
    assert heard == Heard(f"what time is it in {city.lower()}", "grammar")


def test_utterances_beyond_the_first_pass_decoders_are_heard_whole_at_the_pause(
    voice: Synthesizer,
) -> None:
    """Each first pass holds an acoustic model: their number is bounded, and an utterance
    heard while all are in use is decoded whole at the pause, with the same words."""
    recognizer = Recognizer(Matcher([TIME]).vocabulary(), SMALL_TALK, fallback=False)
    busy = [recognizer.listen() for _ in range(FIRST_PASSES)]
    assert all(listening._first_pass is not None for listening in busy)
    beyond = recognizer.listen()
    assert beyond._first_pass is None
    beyond.feed(speech(voice, "what time is it in Tokyo"))
    assert beyond.finish() == Heard("what time is it in tokyo", "grammar")
    for listening in busy:
        listening.cancel()
    assert len(recognizer._idle_first_passes) == FIRST_PASSES
    again = recognizer.listen()
    assert again._first_pass is not None
    assert len(recognizer._idle_first_passes) == FIRST_PASSES - 1
