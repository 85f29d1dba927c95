"""What the emulator says: results read out, apologies, small talk and honest replies."""

from __future__ import annotations

import json

from novakit.emulator.answers import honest_reply, read_result, small_talk


def test_a_say_template_takes_result_and_argument_fields() -> None:
    content = json.dumps({"hours": "9 am to 7 pm"})
    sentence = read_result(
        content,
        tool="opening_hours",
        arguments={"city": "Lyon"},
        say="The {city} shop is open {hours}.",
    )
    assert sentence == "The Lyon shop is open 9 am to 7 pm."


def test_without_a_template_every_field_is_read_out() -> None:
    content = json.dumps({"city": "Lyon", "hours": "9 am to 7 pm", "days": ["Monday", "Friday"]})
    assert read_result(content, tool="opening_hours", arguments={}) == (
        "The opening hours tool says: city Lyon, hours 9 am to 7 pm, days Monday and Friday."
    )


def test_a_template_with_a_missing_field_falls_back_to_the_read_out() -> None:
    sentence = read_result('{"a": 1}', tool="t", arguments={}, say="It is {missing}.")
    assert sentence == "The t tool says: a 1."


def test_an_error_result_is_an_apology_with_its_message() -> None:
    # The bridge wraps the tool's error JSON once more: both layers are read through.
    inner = json.dumps({"error": "we have no shop in Nantes"})
    content = json.dumps({"error": inner})
    sentence = read_result(content, tool="opening_hours", arguments={"city": "Nantes"})
    assert sentence == "Sorry, that did not work: we have no shop in Nantes."


def test_a_long_result_is_cut_at_a_word() -> None:
    sentence = read_result(json.dumps({"text": "word " * 200}), tool="t", arguments={})
    assert len(sentence) < 360 and sentence.endswith("....")


def test_small_talk_and_repeat() -> None:
    assert small_talk("Thank you!", last_reply=None, hint=None) == "You are welcome."
    assert small_talk("repeat that", last_reply="It is noon.", hint=None) == "It is noon."
    greeting = small_talk("hello", last_reply=None, hint="what time is it in tokyo")
    assert greeting is not None and "novakit emulator" in greeting and "tokyo" in greeting
    assert small_talk("what time is it", last_reply=None, hint=None) is None


def test_the_honest_reply_names_the_emulator_and_repeats_what_it_heard() -> None:
    reply = honest_reply("I'd like a pizza", hint=None)
    assert "novakit emulator" in reply and '"i would like a pizza"' in reply
    assert "did not catch" in honest_reply("", hint=None)
