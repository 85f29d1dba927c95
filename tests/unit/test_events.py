"""Events are one dataclass per kind, with the kind's own fields; callers written for the
single ``Event`` type (``event.type``, the constructors, ``meta``) keep working."""

from __future__ import annotations

import dataclasses

import pytest

from novakit import s2s
from novakit.s2s import EventType

CALL = s2s.ToolCall("id-1", "lookup", {"topic": "leave"})
EVERY_KIND = [
    (s2s.Event.audio_output(b"\x01\x00", 24000), s2s.AudioOutput, EventType.AUDIO_OUTPUT),
    (s2s.Event.text_output("Hi.", final=True), s2s.TextOutput, EventType.TEXT_OUTPUT),
    (s2s.Event.transcript("hello"), s2s.Transcript, EventType.TRANSCRIPT),
    (s2s.Event.tool(CALL), s2s.ToolCallRequest, EventType.TOOL_CALL),
    (s2s.Event.turn_end(), s2s.TurnEnd, EventType.TURN_END),
    (s2s.Event.interrupted("barge_in"), s2s.Interrupted, EventType.INTERRUPTED),
    (s2s.Event.usage_event(s2s.Usage(total_tokens=3)), s2s.UsageUpdate, EventType.USAGE),
    (s2s.Event.reconnected("throttled", 2, 0.5), s2s.Reconnected, EventType.RECONNECTED),
    (s2s.Event.failure("validation", "no", fatal=True), s2s.SessionError, EventType.ERROR),
]


@pytest.mark.parametrize(("event", "cls", "kind"), EVERY_KIND, ids=lambda v: str(v)[:20])
def test_each_kind_is_its_own_class_with_its_type(
    event: s2s.Event, cls: type[s2s.Event], kind: EventType
) -> None:
    assert type(event) is cls and isinstance(event, s2s.Event)
    assert event.type is kind and cls.type is kind
    assert len({type(e) for e, _, _ in EVERY_KIND}) == len(EventType)  # one class per kind


def test_fields_are_those_of_the_kind() -> None:
    audio = s2s.AudioOutput(b"\x01\x00", 16000)
    assert (audio.audio, audio.sample_rate, audio.role) == (b"\x01\x00", 16000, "assistant")
    assert not hasattr(audio, "text") and not hasattr(audio, "tool_call")
    with pytest.raises(dataclasses.FrozenInstanceError):
        audio.audio = b""  # type: ignore[misc]
    said = s2s.Transcript("hello")
    assert (said.text, said.final, said.role) == ("hello", True, "user")
    assert [f.name for f in dataclasses.fields(s2s.Reconnected)] == [
        "reason",
        "attempts",
        "downtime",
    ]
    assert dataclasses.fields(s2s.TurnEnd) == ()


def test_dispatch_by_class_pattern() -> None:
    def describe(event: s2s.Event) -> str:
        match event:
            case s2s.TextOutput(text=text, final=True):
                return f"said {text}"
            case s2s.Interrupted(reason=reason):
                return f"cut ({reason})"
            case s2s.ToolCallRequest(tool_call=call):
                return f"call {call.name}"
        return event.type.value

    assert [describe(e) for e, _, _ in EVERY_KIND] == [
        "audio_output",
        "said Hi.",
        "transcript",
        "call lookup",
        "turn_end",
        "cut (barge_in)",
        "usage",
        "reconnected",
        "error",
    ]


def test_meta_still_offers_the_fields_it_used_to_carry() -> None:
    assert s2s.Interrupted("client").meta == {"reason": "client"}
    assert s2s.Reconnected("throttled", 2, 0.5).meta == {
        "reason": "throttled",
        "attempts": 2,
        "downtime": 0.5,
    }
    assert s2s.TurnEnd().meta == {}
