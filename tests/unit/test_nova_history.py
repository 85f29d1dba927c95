"""The conversation log and the history policy: what a new stream is told, within Nova's limits."""

import pytest

from novakit.s2s import Message, TextPart, ToolResult
from novakit.s2s.events import ToolCall
from novakit.s2s.nova.history import TOOL_SUMMARY_LIMIT, ConversationLog
from novakit.s2s.nova.protocol import HISTORY_LIMIT, prepare_history


def roles_and_texts(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in messages]


def test_the_log_keeps_what_was_said_in_order() -> None:
    log = ConversationLog([Message("user", "earlier"), Message("assistant", "noted")])
    log.user("what time is it")
    log.assistant("It is nine.")
    log.assistant("Have a good day.")  # one FINAL text per sentence
    assert roles_and_texts(prepare_history(log.messages())) == [
        ("user", "earlier"),
        ("assistant", "noted"),
        ("user", "what time is it"),
        ("assistant", "It is nine. Have a good day."),
    ]


def test_a_tool_call_is_a_line_of_assistant_text() -> None:
    log = ConversationLog()
    log.user("how many holidays")
    call = ToolCall("t1", "lookup", {"topic": "holidays"})
    log.tool_called(call)
    assert log.messages()[-1] == Message(
        "assistant", '[tool lookup {"topic": "holidays"} no result yet]'
    )
    log.tool_answered(ToolResult("t1", [TextPart('{"days": 25}')]))
    log.assistant("You get 25 days.")
    assert roles_and_texts(prepare_history(log.messages()))[-1] == (
        "assistant",
        '[tool lookup {"topic": "holidays"} returned {"days": 25}] You get 25 days.',
    )
    log.tool_called(ToolCall("t2", "lookup", {}))
    log.tool_answered(ToolResult("t2", [TextPart("no such topic")], is_error=True))
    assert log.messages()[-1].text == "[tool lookup {} failed: no such topic]"


def test_a_long_tool_result_is_clipped() -> None:
    log = ConversationLog()
    log.tool_called(ToolCall("t1", "dump", {}))
    log.tool_answered(ToolResult("t1", [TextPart("é" * 5000)]))
    text = log.messages()[-1].text
    assert len(text.encode()) <= TOOL_SUMMARY_LIMIT
    assert text.startswith("[tool dump {} returned éé") and text.endswith("…]")


def test_rewinding_takes_back_the_unanswered_question_and_its_partial_answer() -> None:
    log = ConversationLog()
    log.user("first question")
    log.assistant("First answer.")
    log.turn_over()
    log.user("second question")
    log.assistant("The second answer was cut")  # FINAL text before a failure
    assert log.rewind_unanswered() == "second question"
    assert roles_and_texts(log.messages()) == [
        ("user", "first question"),
        ("assistant", "First answer."),
    ]
    assert log.rewind_unanswered() is None  # nothing unanswered any more


def test_rewinding_joins_what_the_user_said_and_keeps_tool_lines() -> None:
    log = ConversationLog()
    log.user("look it up")
    log.tool_called(ToolCall("t1", "lookup", {}))
    log.tool_answered(ToolResult("t1", [TextPart("42")]))
    log.user("and be quick")
    assert log.rewind_unanswered() == "look it up and be quick"
    assert roles_and_texts(log.messages()) == [("assistant", "[tool lookup {} returned 42]")]


def test_a_finished_turn_is_never_rewound() -> None:
    log = ConversationLog()
    log.user("hello")
    log.assistant("Hi.")
    log.turn_over()
    assert log.rewind_unanswered() is None
    assert len(log.messages()) == 2


def test_the_log_forgets_the_oldest_text_past_its_bound() -> None:
    log = ConversationLog(keep_bytes=100)
    for n in range(10):
        log.user(f"question {n} " + "x" * 20)
        log.assistant(f"answer {n} " + "y" * 20)
        log.turn_over()
    texts = [m.text for m in log.messages()]
    assert sum(len(t) for t in texts) <= 100
    assert texts[-1].startswith("answer 9")
    log.user("unanswered")
    assert log.rewind_unanswered() == "unanswered"  # the turn mark moved with the trimming


def test_history_drops_the_oldest_whole_turns_first() -> None:
    turn = 10 * 1024
    messages = []
    for n in range(5):  # 5 exchanges of 2 x 10 KB = 100 KB: only the newest fit
        messages += [Message("user", f"{n}" * turn), Message("assistant", f"{n}" * turn)]
    kept = prepare_history(messages)
    assert sum(len(m.text.encode()) for m in kept) <= HISTORY_LIMIT
    assert kept[0].role == "user"
    assert [m.text[0] for m in kept] == ["3", "3", "4", "4"]  # whole exchanges, newest


def test_history_keeps_the_end_of_an_oversized_newest_turn() -> None:
    words = " ".join(f"w{n}" for n in range(20000))  # ~128 KB of text in one user turn
    kept = prepare_history([Message("assistant", "old"), Message("user", words)])
    assert len(kept) == 1 and kept[0].role == "user"
    assert len(kept[0].text.encode()) <= HISTORY_LIMIT
    assert words.endswith(kept[0].text)
    assert kept[0].text.startswith("w")  # cut at a word


@pytest.mark.parametrize("limit", [10, 11, 12, 13])
def test_history_truncation_never_splits_a_character(limit: int) -> None:
    kept = prepare_history([Message("user", "ééééééééééééé")], limit=limit)
    assert len(kept[0].text.encode()) <= limit
    assert set(kept[0].text) == {"é"}


def test_keep_heard_cuts_the_cut_answer_to_what_the_listener_heard() -> None:
    log = ConversationLog([Message("user", "earlier"), Message("assistant", "noted")])
    log.user("tell me a story")
    log.assistant("Once upon a time there was a fox.")  # 34 characters
    log.assistant("It lived in a wood.")  # 19 characters
    log.turn_over()  # interrupted
    log.keep_heard(0.5)  # 26 of 53 characters heard
    assert roles_and_texts(log.messages())[-2:] == [
        ("user", "tell me a story"),
        ("assistant", "Once upon a time there…"),
    ]
    assert roles_and_texts(log.messages())[:2] == [("user", "earlier"), ("assistant", "noted")]


def test_keep_heard_keeps_tool_lines_and_drops_unheard_words() -> None:
    log = ConversationLog()
    log.user("weather")
    log.tool_called(ToolCall("c1", "weather", {"city": "Paris"}))
    log.assistant("It is sunny in Paris.")
    log.turn_over()
    log.keep_heard(0.0)  # cut before a word was played
    assert [m.text.startswith("[tool weather") for m in log.messages()] == [False, True]
    log.user("and tomorrow")  # the next exchange follows as usual
    log.assistant("Rain.")
    log.turn_over()
    log.keep_heard(1.0)  # heard it all: nothing changes
    assert roles_and_texts(log.messages())[-2:] == [
        ("user", "and tomorrow"),
        ("assistant", "Rain."),
    ]
