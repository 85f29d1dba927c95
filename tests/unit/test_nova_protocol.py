"""The Nova event grammar as a pure state machine: bytes in, events out, no sockets."""

import base64
import json

import pytest

from novakit.s2s import (
    EventType,
    Message,
    TextPart,
    ToolChoice,
    ToolDefinition,
    ToolResult,
    UnsupportedError,
)
from novakit.s2s.nova.models import NOVA_2_SONIC, NOVA_SONIC_V1
from novakit.s2s.nova.protocol import (
    MalformedEventError,
    NovaProtocol,
    StreamSettings,
    prepare_history,
    split_utf8,
    tool_result_json,
)

LOOKUP = ToolDefinition(
    "lookup", "Find a fact", {"type": "object", "properties": {"q": {"type": "string"}}}
)


def names(events: list[bytes]) -> list[str]:
    return [next(iter(json.loads(e)["event"])) for e in events]


def body(event: bytes) -> dict:
    return next(iter(json.loads(event)["event"].values()))


def out(name: str, **fields) -> bytes:
    return json.dumps({"event": {name: fields}}).encode()


def make(model=NOVA_2_SONIC, **kw) -> NovaProtocol:
    return NovaProtocol(
        StreamSettings(model=model, voice="tiffany", instructions="Be brief.", **kw)
    )


def test_opening_sequence_and_fields():
    p = make(tools=[LOOKUP], endpointing_sensitivity="HIGH", output_sample_rate=16000)
    events = p.opening_events()
    assert names(events) == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
        "contentStart",
    ]
    start = body(events[0])
    assert start["inferenceConfiguration"] == {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}
    assert start["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}
    prompt = body(events[1])
    assert prompt["promptName"] == p.prompt_name
    assert prompt["audioOutputConfiguration"]["sampleRateHertz"] == 16000
    assert prompt["audioOutputConfiguration"]["voiceId"] == "tiffany"
    spec = prompt["toolConfiguration"]["tools"][0]["toolSpec"]
    assert spec["name"] == "lookup"
    assert isinstance(spec["inputSchema"]["json"], str)  # a JSON *string*, as Bedrock wants
    assert json.loads(spec["inputSchema"]["json"])["properties"]["q"] == {"type": "string"}
    system = body(events[2])
    assert (system["role"], system["type"], system["interactive"]) == ("SYSTEM", "TEXT", False)
    assert body(events[3])["content"] == "Be brief."
    audio = body(events[5])
    assert audio["contentName"] == p.audio_content_name
    assert audio["audioInputConfiguration"]["sampleRateHertz"] == 16000
    assert audio["interactive"] is True


def test_no_tool_config_without_tools_and_no_turn_detection_on_v1():
    p = make(model=NOVA_SONIC_V1, endpointing_sensitivity="HIGH")
    session_start, prompt = (body(e) for e in p.opening_events()[:2])
    assert "turnDetectionConfiguration" not in session_start
    assert "toolConfiguration" not in prompt


def test_audio_event_is_valid_json_with_base64():
    p = make()
    p.opening_events()
    pcm = bytes(range(256)) * 4
    event = json.loads(p.audio_event(pcm))["event"]["audioInput"]
    assert event["promptName"] == p.prompt_name
    assert event["contentName"] == p.audio_content_name
    assert base64.b64decode(event["content"]) == pcm


def test_history_is_sent_before_audio_with_roles():
    p = make(history=[Message("user", "Hi"), Message("assistant", "Hello!")])
    events = p.opening_events()
    roles = [body(e).get("role") for e in events if names([e]) == ["contentStart"]]
    assert roles == ["SYSTEM", "USER", "ASSISTANT", "USER"]  # last is the audio content
    assert body(events[-1])["type"] == "AUDIO"


def test_history_policy():
    history = [
        Message("assistant", "Welcome"),  # leading assistant turn dropped
        Message("user", "a"),
        Message("user", "b"),  # merged with the previous user turn
        Message("assistant", " "),  # empty dropped
        Message("assistant", "c"),
    ]
    assert prepare_history(history) == [Message("user", "a b"), Message("assistant", "c")]
    long = [Message("user", "x" * 30000), Message("assistant", "y" * 30000), Message("user", "z")]
    trimmed = prepare_history(long, limit=40 * 1024)
    # oldest dropped first, then the leading assistant turn, so the first is USER again
    assert trimmed == [Message("user", "z")]
    assert sum(len(m.text) for m in trimmed) <= 40 * 1024


def test_split_utf8_respects_byte_limit_and_characters():
    text = "héllo wörld " * 300
    pieces = split_utf8(text, 100)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 100 for p in pieces)
    assert split_utf8("") == [""]
    emoji = "😀" * 300  # 4 bytes each, no spaces
    assert all(len(p.encode()) <= 1024 for p in split_utf8(emoji))
    assert "".join(split_utf8(emoji)) == emoji


def test_long_text_is_split_into_several_text_inputs():
    p = make()
    p.opening_events()
    events = p.text_events("word " * 600)
    assert names(events)[0] == "contentStart" and names(events)[-1] == "contentEnd"
    inputs = [body(e)["content"] for e in events[1:-1]]
    assert len(inputs) == 3
    assert all(len(i.encode()) <= 1024 for i in inputs)
    assert body(events[0])["interactive"] is True
    assert body(events[0])["role"] == "USER"


def test_text_is_nova2_only():
    p = make(model=NOVA_SONIC_V1)
    with pytest.raises(UnsupportedError, match="nova-2-sonic"):
        p.text_events("hello")


def test_closing_sequence():
    p = make()
    p.opening_events()
    events = p.closing_events()
    assert names(events) == ["contentEnd", "promptEnd", "sessionEnd"]
    assert body(events[0])["contentName"] == p.audio_content_name


def _spoken_turn(p: NovaProtocol, reply="Sure.", pcm=b"\x01\x00" * 100) -> list:
    stage = lambda s: json.dumps({"generationStage": s})  # noqa: E731
    evs = []
    for payload in [
        out("completionStart"),
        out(
            "contentStart",
            contentId="u1",
            type="TEXT",
            role="USER",
            additionalModelFields=stage("FINAL"),
        ),
        out("textOutput", contentId="u1", role="USER", content="what time is it"),
        out("contentEnd", contentId="u1", stopReason="END_TURN"),
        out(
            "contentStart",
            contentId="s1",
            type="TEXT",
            role="ASSISTANT",
            additionalModelFields=stage("SPECULATIVE"),
        ),
        out("textOutput", contentId="s1", role="ASSISTANT", content=reply),
        out("contentEnd", contentId="s1", stopReason="PARTIAL_TURN"),
        out("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT"),
        out("audioOutput", contentId="a1", content=base64.b64encode(pcm).decode()),
        out("contentEnd", contentId="a1", stopReason="PARTIAL_TURN"),
        out(
            "contentStart",
            contentId="f1",
            type="TEXT",
            role="ASSISTANT",
            additionalModelFields=stage("FINAL"),
        ),
        out("textOutput", contentId="f1", role="ASSISTANT", content=reply),
        out("contentEnd", contentId="f1", stopReason="END_TURN"),
        out(
            "usageEvent",
            details={
                "total": {
                    "input": {"speechTokens": 12, "textTokens": 3},
                    "output": {"speechTokens": 40, "textTokens": 2},
                }
            },
            totalTokens=57,
        ),
    ]:
        evs += p.receive(payload)
    return evs


def test_spoken_turn_maps_to_events_in_order():
    p = make()
    p.opening_events()
    events = _spoken_turn(p)
    assert [e.type for e in events] == [
        EventType.TRANSCRIPT,
        EventType.TEXT_OUTPUT,
        EventType.AUDIO_OUTPUT,
        EventType.TEXT_OUTPUT,
        EventType.TURN_END,
        EventType.USAGE,
    ]
    assert events[0].text == "what time is it" and events[0].role == "user"
    assert (events[1].text, events[1].final) == ("Sure.", False)
    assert events[2].audio == b"\x01\x00" * 100 and events[2].sample_rate == 24000
    assert (events[3].text, events[3].final) == ("Sure.", True)
    usage = events[5].usage
    assert usage is not None
    assert (usage.input_speech_tokens, usage.output_speech_tokens, usage.total_tokens) == (
        12,
        40,
        57,
    )


def _answer(
    p: NovaProtocol,
    sentences: list[str],
    *,
    audio_stop: str,
    text_stop: str,
    completion_end: bool,
    turn: str = "t",
) -> list:
    """An answer as Bedrock may send it: per sentence SPECULATIVE text, AUDIO, FINAL text; the
    last AUDIO and FINAL contents end with the given stop reasons, the others PARTIAL_TURN."""
    stage = lambda s: json.dumps({"generationStage": s})  # noqa: E731
    pcm = base64.b64encode(b"\x01\x00" * 10).decode()
    payloads = [out("completionStart")]
    for i, sentence in enumerate(sentences):
        last = i == len(sentences) - 1
        ids = [f"{turn}-{kind}{i}" for kind in ("s", "a", "f")]
        payloads += [
            out("contentStart", contentId=ids[0], type="TEXT", role="ASSISTANT",
                additionalModelFields=stage("SPECULATIVE")),
            out("textOutput", contentId=ids[0], role="ASSISTANT", content=sentence),
            out("contentEnd", contentId=ids[0], stopReason="PARTIAL_TURN"),
            out("contentStart", contentId=ids[1], type="AUDIO", role="ASSISTANT"),
            out("audioOutput", contentId=ids[1], content=pcm),
            out("contentEnd", contentId=ids[1], stopReason=audio_stop if last else "PARTIAL_TURN"),
            out("contentStart", contentId=ids[2], type="TEXT", role="ASSISTANT",
                additionalModelFields=stage("FINAL")),
            out("textOutput", contentId=ids[2], role="ASSISTANT", content=sentence),
            out("contentEnd", contentId=ids[2], stopReason=text_stop if last else "PARTIAL_TURN"),
        ]  # fmt: skip
    if completion_end:
        payloads.append(out("completionEnd", stopReason="END_TURN"))
    events = []
    for payload in payloads:
        events += p.receive(payload)
    return events


@pytest.mark.parametrize(
    ("audio_stop", "text_stop", "completion_end"),
    [
        ("PARTIAL_TURN", "END_TURN", False),  # the FINAL text ends the turn
        ("END_TURN", "PARTIAL_TURN", False),  # the AUDIO ends it; its FINAL text follows
        ("END_TURN", "END_TURN", False),  # both
        ("PARTIAL_TURN", "PARTIAL_TURN", True),  # completionEnd ends it
        ("END_TURN", "END_TURN", True),  # every signal at once
    ],
)
def test_a_turn_ends_once_whichever_signal_ends_it(audio_stop, text_stop, completion_end):
    p = make()
    p.opening_events()
    for turn in ("one", "two"):
        events = _answer(
            p,
            ["First part.", "Second part."],
            audio_stop=audio_stop,
            text_stop=text_stop,
            completion_end=completion_end,
            turn=turn,
        )
        kinds = [e.type for e in events]
        assert kinds.count(EventType.TURN_END) == 1
        # after the words of everything spoken, and nothing of the turn after it
        assert kinds[-1] is EventType.TURN_END
        finals = [e.text for e in events if e.type is EventType.TEXT_OUTPUT and e.final]
        assert finals == ["First part.", "Second part."]


def test_an_audio_end_turn_waits_for_the_final_text_of_what_it_spoke():
    p = make()
    events = _answer(
        p, ["Only."], audio_stop="END_TURN", text_stop="PARTIAL_TURN", completion_end=False
    )
    kinds = [e.type for e in events]
    assert kinds.index(EventType.TURN_END) == len(kinds) - 1
    assert kinds[-2] is EventType.TEXT_OUTPUT


def test_an_audio_end_turn_without_any_text_ends_the_turn():
    p = make()
    p.receive(out("contentStart", contentId="a", type="AUDIO", role="ASSISTANT"))
    p.receive(out("audioOutput", contentId="a", content="AAA="))
    events = p.receive(out("contentEnd", contentId="a", stopReason="END_TURN"))
    assert [e.type for e in events] == [EventType.TURN_END]
    assert p.receive(out("completionEnd", stopReason="END_TURN")) == []


def test_a_final_text_after_an_audio_end_turn_without_speculative_text_is_the_same_turn():
    p = make()
    stage = json.dumps({"generationStage": "FINAL"})
    for n in range(2):
        p.receive(out("contentStart", contentId=f"a{n}", type="AUDIO", role="ASSISTANT"))
        p.receive(out("audioOutput", contentId=f"a{n}", content="AAA="))
        ended = p.receive(out("contentEnd", contentId=f"a{n}", stopReason="END_TURN"))
        assert [e.type for e in ended] == [EventType.TURN_END]
        p.receive(out("contentStart", contentId=f"f{n}", type="TEXT", role="ASSISTANT",
                      additionalModelFields=stage))  # fmt: skip
        said = p.receive(out("textOutput", contentId=f"f{n}", role="ASSISTANT", content="Hi."))
        assert [(e.type, e.final) for e in said] == [(EventType.TEXT_OUTPUT, True)]
        assert p.receive(out("contentEnd", contentId=f"f{n}", stopReason="END_TURN")) == []


def test_completion_end_interrupted_is_an_interruption_once():
    p = make()
    p.receive(out("contentStart", contentId="a", type="AUDIO", role="ASSISTANT"))
    cut = p.receive(out("contentEnd", contentId="a", stopReason="INTERRUPTED"))
    assert [e.type for e in cut] == [EventType.INTERRUPTED]
    assert p.receive(out("completionEnd", stopReason="INTERRUPTED")) == []
    p2 = make()
    p2.receive(out("contentStart", contentId="a", type="AUDIO", role="ASSISTANT"))
    assert [e.type for e in p2.receive(out("completionEnd", stopReason="INTERRUPTED"))] == [
        EventType.INTERRUPTED
    ]


def test_completion_end_without_a_turn_in_progress_says_nothing():
    p = make()
    p.opening_events()
    _spoken_turn(p)
    assert p.receive(out("completionEnd", stopReason="END_TURN")) == []
    assert make().receive(out("completionEnd", stopReason="END_TURN")) == []


def test_barge_in_marker_is_one_interrupted_event_never_speech():
    p = make()
    p.opening_events()
    p.receive(out("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT"))
    first = p.receive(
        out("audioOutput", contentId="a1", content=base64.b64encode(b"\0\0").decode())
    )
    assert [e.type for e in first] == [EventType.AUDIO_OUTPUT]
    marker = p.receive(
        out("textOutput", contentId="x", role="ASSISTANT", content='{ "interrupted" : true }')
    )
    assert [e.type for e in marker] == [EventType.INTERRUPTED]
    assert marker[0].reason == "barge_in"
    # audio still in flight for the interrupted content is dropped
    assert (
        p.receive(out("audioOutput", contentId="a1", content=base64.b64encode(b"\0\0").decode()))
        == []
    )
    # the stopReason signal for the same turn does not repeat the event, nor does END_TURN follow
    assert p.receive(out("contentEnd", contentId="a1", stopReason="INTERRUPTED")) == []
    p.receive(out("contentStart", contentId="f", type="TEXT", role="ASSISTANT"))
    assert p.receive(out("contentEnd", contentId="f", stopReason="END_TURN")) == []
    # the next turn is normal again
    assert [e.type for e in _spoken_turn(p)][-2:] == [EventType.TURN_END, EventType.USAGE]


def test_stop_reason_interrupted_alone_is_enough():
    p = make()
    p.receive(out("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT"))
    events = p.receive(out("contentEnd", contentId="a1", stopReason="INTERRUPTED"))
    assert [e.type for e in events] == [EventType.INTERRUPTED]


def test_client_interrupt_mutes_the_rest_of_the_turn():
    p = make()
    p.receive(out("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT"))
    p.interrupt()
    assert p.receive(out("audioOutput", contentId="a1", content="AAA=")) == []
    assert (
        p.receive(
            out("textOutput", contentId="a1", role="ASSISTANT", content='{"interrupted": true}')
        )
        == []
    )


def test_tool_call_is_announced_on_content_end_and_result_is_checked():
    p = make(tools=[LOOKUP])
    p.opening_events()
    p.receive(out("contentStart", contentId="t1", type="TOOL", role="TOOL"))
    assert (
        p.receive(
            out(
                "toolUse",
                contentId="t1",
                toolName="lookup",
                toolUseId="call-1",
                content='{"q": "tides"}',
            )
        )
        == []
    )
    events = p.receive(out("contentEnd", contentId="t1", type="TOOL", stopReason="TOOL_USE"))
    assert [e.type for e in events] == [EventType.TOOL_CALL]
    call = events[0].tool_call
    assert call is not None
    assert (call.call_id, call.name, call.arguments) == ("call-1", "lookup", {"q": "tides"})
    assert p.pending_tool_calls == {"call-1"}
    sent = p.tool_result_events(ToolResult("call-1", [TextPart('{"high": "6am"}')]))
    assert names(sent) == ["contentStart", "toolResult", "contentEnd"]
    start = body(sent[0])
    assert start["toolResultInputConfiguration"]["toolUseId"] == "call-1"
    assert start["type"] == "TOOL" and start["role"] == "TOOL"
    assert body(sent[1])["content"] == '{"high": "6am"}'
    assert len({body(e)["contentName"] for e in sent}) == 1
    with pytest.raises(ValueError, match="no tool call 'call-1' is waiting"):
        p.tool_result_events(ToolResult("call-1", [TextPart("again")]))


def test_tool_result_json_wrapping():
    assert tool_result_json(ToolResult("c", [TextPart('{"a": 1}')])) == '{"a": 1}'
    assert json.loads(tool_result_json(ToolResult("c", [TextPart("plain")]))) == {"result": "plain"}
    assert json.loads(tool_result_json(ToolResult("c", [TextPart("[1]")]))) == {"result": "[1]"}
    failed = tool_result_json(ToolResult("c", [TextPart("timeout")], is_error=True))
    assert json.loads(failed) == {"error": "timeout"}


def test_malformed_tool_arguments_are_kept_not_dropped():
    p = make(tools=[LOOKUP])
    p.receive(out("toolUse", toolName="lookup", toolUseId="c2", content="not json"))
    (event,) = p.receive(out("contentEnd", type="TOOL", stopReason="TOOL_USE"))
    assert event.tool_call is not None and event.tool_call.arguments == {"_raw": "not json"}


SECRET = "the user's card number is 4111"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{", "not JSON"),
        (b"\xff", "not JSON"),
        (('{"event": {"textOutput": {"content": "' + SECRET).encode(), "not JSON"),
        (b'{"nothing": 1}', "not of the form"),
        (b'{"event": 5}', "not of the form"),
        (b'{"event": {}}', "not of the form"),
        (b'{"event": {"textOutput": {}, "audioOutput": {}}}', "not of the form"),
    ],
)
def test_undecodable_events_are_refused_without_their_content(payload, problem):
    with pytest.raises(MalformedEventError) as info:
        make().receive(payload)
    assert problem in info.value.problem
    assert SECRET not in str(info.value) and "4111" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "fields", "problem"),
    [
        ("textOutput", {"content": ["4111"]}, "content is an array, not a string"),
        ("textOutput", {"content": "x", "role": {"r": "4111"}}, "role is an object"),
        ("contentStart", {"contentId": 4111, "type": "TEXT"}, "contentId is a number"),
        ("contentStart", {"type": "TEXT", "additionalModelFields": "[4111]"}, "not a JSON object"),
        ("contentStart", {"type": "TEXT", "additionalModelFields": "{4111"}, "is not JSON"),
        ("audioOutput", {"content": "***4111"}, "content is not base64"),
        ("audioOutput", {"content": 4111}, "content is a number"),
        ("audioOutput", {"content": "AAAA"}, "not whole 16-bit samples"),
        ("toolUse", {"toolUseId": "c", "toolName": "t", "content": 4111}, "content is a number"),
        ("contentEnd", {"stopReason": ["END_TURN"]}, "stopReason is an array"),
        ("usageEvent", {"details": "4111"}, "details is a string, not an object"),
        ("usageEvent", {"details": {"total": {"input": []}}}, "details.total.input is an array"),
        ("usageEvent", {"totalTokens": "4111"}, "totalTokens is a string, not a count"),
        ("usageEvent", {"totalTokens": -1}, "totalTokens is a number, not a count"),
        ("usageEvent", {"totalTokens": True}, "totalTokens is a boolean"),
    ],
)
def test_wrong_typed_fields_are_refused_by_name_not_value(name, fields, problem):
    with pytest.raises(MalformedEventError) as info:
        make().receive(out(name, **fields))
    assert info.value.name == name
    assert problem in info.value.problem
    assert "4111" not in str(info.value)


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(MalformedEventError, match="textOutput: its body is a string"):
        make().receive(b'{"event": {"textOutput": "4111"}}')


def test_a_refused_event_leaves_the_turn_readable():
    p = make()
    p.receive(out("contentStart", contentId="f", type="TEXT", role="ASSISTANT"))
    with pytest.raises(MalformedEventError):
        p.receive(out("textOutput", contentId="f", content=5))
    (text,) = p.receive(out("textOutput", contentId="f", content="Hello."))
    assert text.text == "Hello."
    (end,) = p.receive(out("contentEnd", contentId="f", stopReason="END_TURN"))
    assert end.type is EventType.TURN_END


def test_unknown_events_are_ignored():
    assert make().receive(out("somethingNew", a=1)) == []


@pytest.mark.parametrize(
    "payload",
    [
        b'{"event": {"textOutput": null}}',
        b'{"event": {"contentEnd": [1]}}',
        b'{"event": {"toolUse": "x"}}',
        b'{"event": {"usageEvent": {"totalTokens": null}}}',
        b'{"event": {"usageEvent": {"details": {"total": {"input": {"speechTokens": "many"}}}}}}',
        b'{"event": {"usageEvent": {"details": [1]}}}',
        b'{"event": {"usageEvent": {"totalTokens": 1e400}}}',
    ],
)
def test_events_found_by_fuzzing_are_refused_events_not_crashes(payload):
    # the stream's receive loop logs and skips a MalformedEventError; anything else ends it
    with pytest.raises(MalformedEventError):
        make().receive(payload)


def test_an_unknown_event_is_ignored_whatever_its_body():
    assert make().receive(b'{"event": {"somethingNew": 5}}') == []


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice("auto"), {"auto": {}}),
        (ToolChoice("any"), {"any": {}}),
        (ToolChoice.tool("lookup"), {"tool": {"name": "lookup"}}),
    ],
)
def test_tool_choice_is_sent_in_the_documented_shape(choice, wire):
    prompt = body(make(tools=[LOOKUP], tool_choice=choice).setup_events()[1])
    assert prompt["toolConfiguration"]["toolChoice"] == wire
    assert "toolChoice" not in body(make(tools=[LOOKUP]).setup_events()[1])["toolConfiguration"]


def test_the_speech_prompt_follows_the_system_prompt_on_nova_2():
    events = make(speech_instructions="Speak slowly.", history=[Message("user", "hi")])
    events = events.opening_events()
    starts = [body(e) for e in events if names([e]) == ["contentStart"]]
    assert [(s["type"], s.get("role")) for s in starts] == [
        ("TEXT", "SYSTEM"),
        ("TEXT", "SYSTEM_SPEECH"),
        ("TEXT", "USER"),
        ("AUDIO", "USER"),
    ]
    assert starts[1]["interactive"] is False
    assert "Speak slowly." in [body(e).get("content") for e in events]
    # not on v1, which has no speech prompt
    v1 = make(NOVA_SONIC_V1, speech_instructions="Speak slowly.").opening_events()
    assert "SYSTEM_SPEECH" not in b"".join(v1).decode()


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_the_audio_content_declares_the_input_rate(rate):
    events = make(input_sample_rate=rate).opening_events()
    config = body(events[-1])["audioInputConfiguration"]
    assert config["sampleRateHertz"] == rate
