"""Matching utterances to tool examples: phrasings people use, arguments valid for the schema."""

from __future__ import annotations

import pytest

from novakit.emulator.matching import (
    Matcher,
    ToolExamples,
    edit_distance,
    normalize,
    spoken_forms,
)

SHOP = ToolExamples(
    "opening_hours",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ("when is the {city} shop open", "what are the opening hours in {city}"),
)
TIME = ToolExamples(
    "get_time",
    {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    ("what time is it in {timezone}",),
    values={"timezone": "timezones"},
)
ORDER = ToolExamples(
    "order",
    {
        "type": "object",
        "properties": {
            "size": {"type": "string", "enum": ["Small", "Large"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
        },
        "required": ["size", "count"],
    },
    ("order {count} {size} coffees",),
)
LOOKUP = ToolExamples(
    "lookup",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 2}},
        "required": ["query"],
    },
    ("what does the handbook say about {query}",),
)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher([SHOP, TIME, ORDER, LOOKUP])


@pytest.mark.parametrize(
    "said",
    [
        "when is the Lyon shop open",
        "When is the Lyon shop open?",
        "could you tell me when the Lyon shop opens",
        "hi, when is the shop in Lyon open please",
        "the Lyon shop, when is it open",
        "what are the opening hours in Lyon today",
    ],
)
def test_phrasings_of_an_example_call_the_tool(matcher: Matcher, said: str) -> None:
    found = matcher.match(said)
    assert found is not None
    assert (found.tool, found.arguments) == ("opening_hours", {"city": "Lyon"})


def test_a_kit_list_maps_what_is_said_to_the_tool_value(matcher: Matcher) -> None:
    found = matcher.match("what's the time in New York")
    assert found is not None
    assert found.arguments == {"timezone": "America/New_York"}
    lyon = matcher.match("what time is it in Lyon")
    assert lyon is not None and lyon.arguments == {"timezone": "Europe/Paris"}


def test_enum_and_number_slots_are_converted_for_the_schema(matcher: Matcher) -> None:
    found = matcher.match("please order three large coffees")
    assert found is not None
    assert found.arguments == {"count": 3, "size": "Large"}
    typed = matcher.match("order 2 small coffees")
    assert typed is not None and typed.arguments == {"count": 2, "size": "Small"}


def test_values_outside_the_schema_never_make_a_call(matcher: Matcher) -> None:
    assert matcher.match("order twelve large coffees") is None  # maximum 9
    assert matcher.match("order three medium coffees") is None  # not in the enum


def test_a_free_slot_takes_the_words_the_example_does_not_explain(matcher: Matcher) -> None:
    found = matcher.match("could you tell me what the handbook says about bike parking")
    assert found is not None
    assert found.arguments == {"query": "bike parking"}


@pytest.mark.parametrize(
    "said",
    [
        "I would like a pizza",
        "what is the weather in Lyon",  # no weather tool here
        "when is it open",  # no city
        "tell me a joke",
        "",
    ],
)
def test_other_requests_match_nothing(matcher: Matcher, said: str) -> None:
    assert matcher.match(said) is None


def test_only_the_tools_a_conversation_declared_are_called(matcher: Matcher) -> None:
    assert matcher.match("when is the Lyon shop open", tools=["get_time"]) is None


def test_the_vocabulary_has_the_phrases_and_the_slot_values(matcher: Matcher) -> None:
    vocabulary = matcher.vocabulary()
    assert ("when", "is", "the", "<opening_hours_city>", "shop", "open") in vocabulary.phrases
    assert "lyon" in vocabulary.rules["opening_hours_city"]
    assert "new york" in vocabulary.rules["get_time_timezone"]
    # A free-text slot is left to the language model.
    assert not any("about" in phrase for phrase in vocabulary.phrases)


@pytest.mark.parametrize(
    ("value", "forms"),
    [
        ("IT help", ["it help", "i t help"]),
        ("USA", ["usa", "u s a"]),
        ("HR policy", ["hr policy", "h r policy"]),
        ("Paris", ["paris"]),
        ("NEW YORK", ["new york"]),  # capitals throughout: words, not initialisms
        ("it help", ["it help"]),
        ("  ", []),
    ],
)
def test_a_value_is_said_as_words_and_an_initialism_also_letter_by_letter(
    value: str, forms: list[str]
) -> None:
    assert spoken_forms(value) == forms


def test_an_initialism_said_either_way_gives_the_value_as_listed() -> None:
    support = ToolExamples(
        "support",
        {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]},
        ("call the {team} desk",),
        values={"team": ["IT", "HR", "front"]},
    )
    matcher = Matcher([support])
    for said, team in (
        ("call the i t desk", "IT"),
        ("call the it desk", "IT"),
        ("call the h r desk", "HR"),
    ):
        found = matcher.match(said)
        assert found is not None and found.arguments == {"team": team}, said


def test_normalize_spells_out_contractions() -> None:
    assert normalize("What's the time, please?") == "what is the time please"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("P EH R IH S", "P ER TH", 4),
        ("D AH B L IH N", "D EH L IY", 4),
        ("K AY R OW", "K AY R OW", 0),
        ("", "T OW K IY OW", 5),
    ],
)
def test_edit_distance_counts_the_edits_between_two_sequences(
    a: str, b: str, distance: int
) -> None:
    assert edit_distance(a.split(), b.split()) == distance
    assert edit_distance(b.split(), a.split()) == distance
