"""Nova's input grammar: valid sessions are accepted, each rule's violation is named."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from novakit.emulator.grammar import (
    MODELS,
    NOVA_2_SONIC,
    NOVA_SONIC,
    ContentKind,
    InputGrammar,
    ViolationError,
    parse_event,
)

from .helpers import (
    AUDIO,
    PROMPT,
    SYSTEM,
    audio_inputs,
    audio_start,
    closing,
    content_end,
    event,
    opening,
    prompt_start,
    session_start,
    text_content,
    tool_result,
    tool_spec,
)


def feed(events: list[bytes], model: str = NOVA_2_SONIC, tools: tuple[str, ...] = ()) -> None:
    grammar = InputGrammar(MODELS[model])
    for tool_use_id in tools:
        grammar.expect_tool_result(tool_use_id)
    for raw in events:
        grammar.accept(parse_event(raw))


def violation(events: list[bytes], model: str = NOVA_2_SONIC, **kw: Any) -> ViolationError:
    with pytest.raises(ViolationError) as err:
        feed(events, model, **kw)
    assert err.value.exception_type == "validationException"
    return err.value


def with_prompt(**kw: Any) -> list[bytes]:
    return [session_start(), prompt_start(**kw)]


def content_start(name: str, **fields: Any) -> bytes:
    return event("contentStart", {"promptName": PROMPT, "contentName": name, **fields})


def audio_config(**changes: Any) -> dict[str, Any]:
    return {
        "mediaType": "audio/lpcm",
        "sampleRateHertz": 16000,
        "sampleSizeBits": 16,
        "channelCount": 1,
        "audioType": "SPEECH",
        "encoding": "base64",
        **changes,
    }


# -- accepted sessions -----------------------------------------------------------------------


def test_a_full_session_is_accepted() -> None:
    history = [
        *text_content("h1", "USER", "What did I ask?"),
        *text_content("h2", "ASSISTANT", "About the weather."),
    ]
    grammar = InputGrammar(MODELS[NOVA_2_SONIC])
    events = [
        session_start("HIGH"),
        prompt_start(tools=[tool_spec()]),
        *text_content(SYSTEM, "SYSTEM", "Be brief."),
        *history,
        audio_start(),
        *audio_inputs(bytes(4096)),
        *tool_result("tool-1", '{"temp": 21}'),
        *audio_inputs(bytes(1024)),
        *text_content("typed", "USER", "hello", interactive=True),
        *closing(),
    ]
    kinds = []
    for raw in events:
        ev = parse_event(raw)
        if ev.name == "contentStart" and "toolResultInputConfiguration" in ev.body:
            grammar.expect_tool_result("tool-1")
        accepted = grammar.accept(ev)
        if ev.name == "contentStart" and accepted.content:
            kinds.append(accepted.content.kind)
    assert kinds == [
        ContentKind.SYSTEM,
        ContentKind.HISTORY,
        ContentKind.HISTORY,
        ContentKind.AUDIO,
        ContentKind.TOOL,
        ContentKind.USER_TEXT,
    ]
    assert grammar.session_ended


def test_audio_input_is_decoded_once() -> None:
    (raw,) = list(audio_inputs(b"\x01\x02\x03\x04"))
    assert parse_event(raw).audio == b"\x01\x02\x03\x04"


def test_nova_1_session_without_nova_2_features() -> None:
    feed([session_start(), prompt_start(voice="greta"), audio_start(), *closing()], NOVA_SONIC)


# -- violations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [prompt_start()], "promptStart: sessionStart must come first", id="prompt-first"
        ),
        pytest.param(
            [session_start(), session_start()],
            "sessionStart: the session has already started",
            id="two-sessions",
        ),
        pytest.param(
            [session_start("SOMETIMES")],
            "sessionStart: turnDetectionConfiguration.endpointingSensitivity must be one of "
            'HIGH, MEDIUM, LOW (got "SOMETIMES")',
            id="sensitivity",
        ),
        pytest.param(
            [event("sessionStart", {"inferenceConfiguration": {"topP": 2}})],
            "sessionStart: inferenceConfiguration.topP must be in [0, 1]",
            id="topP",
        ),
        pytest.param(
            [session_start(), prompt_start(rate=44100)],
            "promptStart: audioOutputConfiguration.sampleRateHertz must be one of 8000, 16000, "
            "24000 (got 44100)",
            id="output-rate",
        ),
        pytest.param(
            [session_start(), prompt_start(voice="hal")],
            "promptStart: audioOutputConfiguration.voiceId 'hal' is not a voice of "
            "amazon.nova-2-sonic-v1:0",
            id="voice",
        ),
        pytest.param(
            [session_start(), event("promptStart", {"promptName": PROMPT})],
            "promptStart: audioOutputConfiguration is required",
            id="no-audio-output",
        ),
        pytest.param(
            [*with_prompt(), prompt_start()],
            f"promptStart: prompt '{PROMPT}' is already open",
            id="two-prompts",
        ),
        pytest.param(
            [
                session_start(),
                prompt_start(tools=[{"toolSpec": {**tool_spec()["toolSpec"], "inputSchema": {}}}]),
            ],
            "promptStart: toolConfiguration.tools[0].toolSpec.inputSchema.json is required",
            id="tool-schema-missing",
        ),
        pytest.param(
            [
                session_start(),
                prompt_start(
                    tools=[
                        {
                            "toolSpec": {
                                **tool_spec()["toolSpec"],
                                "inputSchema": {"json": ["type", "object"]},
                            }
                        }
                    ]
                ),
            ],
            "promptStart: toolSpec.inputSchema.json has the wrong type",
            id="tool-schema-neither-string-nor-object",
        ),
        pytest.param(
            [
                session_start(),
                prompt_start(
                    tools=[{"toolSpec": {**tool_spec()["toolSpec"], "inputSchema": {"json": "[]"}}}]
                ),
            ],
            "inputSchema.json must encode a JSON object",
            id="tool-schema-array",
        ),
        pytest.param(
            [session_start(), prompt_start(tools=[tool_spec(), tool_spec()])],
            "promptStart: toolConfiguration.tools[1].toolSpec.name 'getWeather' is declared twice",
            id="tool-twice",
        ),
        pytest.param(
            [
                *with_prompt(),
                event(
                    "contentStart",
                    {"promptName": "other", "contentName": "c", "type": "AUDIO"},
                ),
            ],
            f"contentStart: promptName 'other' does not match the open prompt '{PROMPT}'",
            id="prompt-name",
        ),
        pytest.param(
            [*with_prompt(), audio_start(), content_end(), audio_start()],
            f"contentStart: contentName '{AUDIO}' was already used in this prompt",
            id="content-name-reused",
        ),
        pytest.param(
            [*with_prompt(), content_start("c", type="VIDEO", interactive=True, role="USER")],
            'contentStart: type must be one of TEXT, AUDIO, TOOL (got "VIDEO")',
            id="content-type",
        ),
        pytest.param(
            [*with_prompt(), content_start("c", type="TEXT", interactive=False, role="SYSTEM")],
            "contentStart: textInputConfiguration.mediaType is required",
            id="text-config",
        ),
        pytest.param(
            [*with_prompt(), audio_start(), *text_content("s", "SYSTEM", "late")],
            "contentStart: the SYSTEM prompt must come first and only once",
            id="system-late",
        ),
        pytest.param(
            [*with_prompt(), audio_start(), *text_content("h", "USER", "late history")],
            "contentStart: history must come before audio or live text",
            id="history-after-audio",
        ),
        pytest.param(
            [
                *with_prompt(),
                audio_start(),
                *text_content("h", "ASSISTANT", "live assistant", interactive=True),
            ],
            "contentStart: live TEXT input must have role USER",
            id="assistant-live-text",
        ),
        pytest.param(
            [*with_prompt(), *text_content("s", "SYSTEM_SPEECH", "speech first")],
            "contentStart: a SYSTEM_SPEECH prompt must follow the SYSTEM prompt, before history",
            id="speech-prompt-first",
        ),
        pytest.param(
            [*with_prompt(), *text_content("s", "TOOL", "text as a tool")],
            "contentStart: role TOOL is not valid for TEXT",
            id="text-role",
        ),
        pytest.param(
            [*with_prompt(), *text_content("h", "ASSISTANT", "I start")],
            "contentStart: the first history content must have role USER",
            id="history-assistant-first",
        ),
        pytest.param(
            [*with_prompt(), *text_content("h", "USER", "x" * 1025)],
            "textInput: content of a history textInput is 1025 bytes; the limit is 1024",
            id="history-text-size",
        ),
        pytest.param(
            [
                *with_prompt(),
                *[
                    raw
                    for i in range(41)
                    for raw in text_content(
                        f"h{i}", "USER" if i % 2 == 0 else "ASSISTANT", "y" * 1000
                    )
                ],
            ],
            "textInput: history totals 41000 bytes; the limit is 40960",
            id="history-total-size",
        ),
        pytest.param(
            [
                *with_prompt(),
                content_start(
                    AUDIO,
                    type="AUDIO",
                    interactive=True,
                    role="USER",
                    audioInputConfiguration=audio_config(sampleRateHertz=44100),
                ),
            ],
            "contentStart: audioInputConfiguration.sampleRateHertz must be one of 8000, 16000, "
            "24000 (got 44100)",
            id="input-rate",
        ),
        pytest.param(
            [
                *with_prompt(),
                content_start(
                    AUDIO,
                    type="AUDIO",
                    interactive=True,
                    role="USER",
                    audioInputConfiguration=audio_config(channelCount=2),
                ),
            ],
            "contentStart: audioInputConfiguration.channelCount must be one of 1 (got 2)",
            id="input-channels",
        ),
        pytest.param(
            [
                *with_prompt(),
                content_start(
                    AUDIO,
                    type="AUDIO",
                    interactive=True,
                    role="ASSISTANT",
                    audioInputConfiguration=audio_config(),
                ),
            ],
            "contentStart: AUDIO content must have role USER and interactive true",
            id="audio-role",
        ),
        pytest.param(
            [*with_prompt(), audio_start("a1"), audio_start("a2")],
            "contentStart: an AUDIO content is already open",
            id="two-audio",
        ),
        pytest.param(
            [*with_prompt(), audio_start(), *tool_result("nobody-asked", "{}")],
            "contentStart: toolResultInputConfiguration.toolUseId 'nobody-asked' is not a "
            "pending tool use",
            id="unknown-tool-use",
        ),
        pytest.param(
            [*with_prompt(), event("textInput", {"promptName": PROMPT, "contentName": "nope"})],
            "textInput: contentName 'nope' is not an open content",
            id="text-to-unknown",
        ),
        pytest.param(
            [
                *with_prompt(),
                audio_start(),
                event("textInput", {"promptName": PROMPT, "contentName": AUDIO, "content": "x"}),
            ],
            f"textInput: contentName '{AUDIO}' is of type AUDIO, not TEXT",
            id="text-to-audio",
        ),
        pytest.param(
            [
                *with_prompt(),
                audio_start(),
                event("audioInput", {"promptName": PROMPT, "contentName": AUDIO, "content": "!!"}),
            ],
            "audioInput: content is not valid base64",
            id="bad-base64",
        ),
        pytest.param(
            [
                *with_prompt(),
                audio_start(),
                event(
                    "audioInput",
                    {
                        "promptName": PROMPT,
                        "contentName": AUDIO,
                        "content": base64.b64encode(b"abc").decode(),
                    },
                ),
            ],
            "audioInput: content must hold whole 16-bit samples",
            id="odd-bytes",
        ),
        pytest.param(
            [
                *with_prompt(),
                content_start(
                    "s",
                    type="TEXT",
                    interactive=False,
                    role="SYSTEM",
                    textInputConfiguration={"mediaType": "text/plain"},
                ),
                content_end("s"),
            ],
            "contentEnd: TEXT content 's' has no textInput",
            id="empty-text",
        ),
        pytest.param(
            [*with_prompt(), audio_start(), event("promptEnd", {"promptName": PROMPT})],
            f"promptEnd: content '{AUDIO}' is still open (send contentEnd first)",
            id="prompt-end-with-open-content",
        ),
        pytest.param(
            [*with_prompt(), event("sessionEnd")],
            f"sessionEnd: prompt '{PROMPT}' is still open (send promptEnd first)",
            id="session-end-with-open-prompt",
        ),
        pytest.param(
            [session_start(), event("sessionEnd"), session_start()],
            "sessionStart: no events may follow sessionEnd",
            id="after-session-end",
        ),
        pytest.param(
            [session_start(), event("promptEnd", {"promptName": PROMPT})],
            "promptEnd: no prompt is open",
            id="prompt-end-without-prompt",
        ),
        pytest.param([event("inputAudio", {})], "inputAudio: unknown event type", id="unknown"),
        pytest.param([b"{not json"], "event: malformed JSON", id="malformed-json"),
        pytest.param(
            [json.dumps({"event": {"sessionStart": {}, "sessionEnd": {}}}).encode()],
            "event: expected exactly one event",
            id="two-events-in-one",
        ),
        pytest.param(
            [json.dumps({"sessionStart": {}}).encode()],
            'event: the chunk must be a JSON object {"event": {...}}',
            id="no-event-wrapper",
        ),
        pytest.param(
            [json.dumps({"event": {"sessionStart": []}}).encode()],
            "sessionStart: the event body must be a JSON object",
            id="body-not-object",
        ),
    ],
)
def test_violations(events: list[bytes], expected: str) -> None:
    assert expected in violation(events).message


def test_nova_1_rejects_nova_2_features() -> None:
    err = violation([session_start("HIGH")], NOVA_SONIC)
    assert err.message == (
        "sessionStart: turnDetectionConfiguration is not supported by amazon.nova-sonic-v1:0"
    )
    err = violation(
        [
            session_start(),
            prompt_start(),
            audio_start(),
            *text_content("t", "USER", "hi", interactive=True),
        ],
        NOVA_SONIC,
    )
    assert err.message == (
        "contentStart: interactive TEXT input is not supported by amazon.nova-sonic-v1:0"
    )
    err = violation([session_start(), prompt_start(voice="olivia")], NOVA_SONIC)
    assert "voiceId 'olivia' is not a voice of amazon.nova-sonic-v1:0" in err.message


def test_tool_results_one_per_tool_use() -> None:
    first = tool_result("t1", "{}", name="r1")
    second = tool_result("t1", "{}", name="r2")
    err = violation([*with_prompt(), audio_start(), *first, *second], tools=("t1",))
    assert err.message == (
        "contentStart: toolResultInputConfiguration.toolUseId 't1' has already been answered"
    )


def test_tool_result_content_rules() -> None:
    start, result, end = tool_result("t1", "{}")
    err = violation([*with_prompt(), audio_start(), start, end], tools=("t1",))
    assert err.message == "contentEnd: TOOL content 'tool-result-1' has no toolResult"
    err = violation([*with_prompt(), audio_start(), start, result, result], tools=("t1",))
    assert err.message == "toolResult: a TOOL content carries exactly one toolResult"


def test_tool_result_must_not_be_interleaved_with_audio() -> None:
    start, result, end = tool_result("t1", "{}")
    err = violation(
        [*with_prompt(), audio_start(), start, *audio_inputs(bytes(64)), result, end],
        tools=("t1",),
    )
    assert err.message == (
        "audioInput: content 'tool-result-1' is open; its events must not be interleaved "
        "with others"
    )


def test_history_is_the_text_before_audio_whatever_its_interactive_flag() -> None:
    # The chat-history page sends history with interactive true, the input-events page with
    # false: before the audio content opens, USER/ASSISTANT text is history either way.
    grammar = InputGrammar(MODELS[NOVA_2_SONIC])
    kinds = []
    for raw in [
        session_start(),
        prompt_start(),
        *text_content(SYSTEM, "SYSTEM", "Be brief.", interactive=True),
        *text_content("h1", "USER", "typed before audio", interactive=True),
        *text_content("h2", "ASSISTANT", "answer", interactive=True),
        *text_content("h3", "USER", "more", interactive=False),
        audio_start(),
        *text_content("t", "USER", "live", interactive=True),
    ]:
        accepted = grammar.accept(parse_event(raw))
        if accepted.event.name == "contentStart" and accepted.content is not None:
            kinds.append(accepted.content.kind)
    assert kinds == [
        ContentKind.SYSTEM,
        ContentKind.HISTORY,
        ContentKind.HISTORY,
        ContentKind.HISTORY,
        ContentKind.AUDIO,
        ContentKind.USER_TEXT,
    ]


def test_documented_forms_are_accepted() -> None:
    schema_object = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {"toolSpec": {**tool_spec()["toolSpec"], "inputSchema": {"json": schema_object}}}
    feed(
        [
            session_start("LOW"),
            prompt_start(tools=[tool]),
            *text_content(SYSTEM, "SYSTEM", "Be brief.", interactive=True),
            *text_content("speech", "SYSTEM_SPEECH", "Write Hindi in Latin script."),
            *text_content("h1", "USER", "hello", interactive=True),
            content_start(
                AUDIO,
                type="AUDIO",
                interactive=True,
                role="USER",
                audioInputConfiguration=audio_config(sampleRateHertz=24000),
            ),
            *audio_inputs(bytes(960), name=AUDIO),
            *closing(),
        ]
    )
    feed([session_start(), prompt_start(tools=[]), *text_content(SYSTEM, "SYSTEM", "x")])


@pytest.mark.parametrize(
    ("events", "detail"),
    [
        pytest.param(
            [
                event(
                    "sessionStart",
                    {
                        "inferenceConfiguration": {"maxTokens": 1024},
                        "endpointingSensitivity": "HIGH",
                    },
                )
            ],
            "sessionStart: unknown field sessionStart.endpointingSensitivity",
            id="flat-endpointing",
        ),
        pytest.param(
            [event("sessionStart", {"inferenceConfiguration": {"maxTokens": 1, "topK": 5}})],
            "sessionStart: unknown field sessionStart.inferenceConfiguration.topK",
            id="inference-key",
        ),
        pytest.param(
            [session_start(), event("promptStart", {"promptName": PROMPT, "voice": "matthew"})],
            "promptStart: unknown field promptStart.voice",
            id="prompt-key",
        ),
    ],
)
def test_unknown_fields_are_refused_in_bedrocks_words(events: list[bytes], detail: str) -> None:
    err = violation(events)
    assert err.message.startswith("Invalid input request, please fix your input and try again.")
    assert detail in err.message


def test_a_nova_1_prompt_without_audio_is_refused() -> None:
    events = [
        session_start(),
        prompt_start(),
        *text_content(SYSTEM, "SYSTEM", "Be brief."),
        event("promptEnd", {"promptName": PROMPT}),
    ]
    err = violation(events, NOVA_SONIC)
    assert err.message.startswith("Invalid input request")
    assert "promptEnd: a prompt to amazon.nova-sonic-v1:0 must carry an AUDIO content" in (
        err.message
    )
    feed(events)  # Nova 2 takes text-only prompts


def test_every_opening_is_valid() -> None:
    feed([*opening(), *audio_inputs(bytes(2048)), *closing()])


def prompt_with_choice(choice: Any, tools: tuple[str, ...] = ("getWeather",)) -> bytes:
    body = json.loads(prompt_start(tools=[tool_spec(t) for t in tools]))["event"]["promptStart"]
    body["toolConfiguration"]["toolChoice"] = choice
    return event("promptStart", body)


@pytest.mark.parametrize(
    "choice", [{"auto": {}}, {"any": {}}, {"tool": {"name": "getWeather"}}], ids=str
)
def test_each_documented_tool_choice_is_accepted(choice: dict[str, Any]) -> None:
    feed([session_start(), prompt_with_choice(choice), audio_start(), *closing()])


@pytest.mark.parametrize(
    ("choice", "tools", "detail"),
    [
        ({}, ("getWeather",), "toolChoice must have exactly one of auto, any or tool"),
        ({"auto": {}, "any": {}}, ("getWeather",), "exactly one of auto, any or tool"),
        ({"required": {}}, ("getWeather",), "exactly one of auto, any or tool"),
        ({"auto": True}, ("getWeather",), "toolChoice.auto must be an object"),
        ({"any": {"x": 1}}, ("getWeather",), "toolChoice.any takes no fields"),
        ({"any": {}}, (), "toolChoice.any needs at least one tool"),
        ({"tool": {}}, ("getWeather",), "toolChoice.tool.name is required"),
        ({"tool": {"name": "other"}}, ("getWeather",), "'other' is not a declared tool"),
    ],
    ids=str,
)
def test_a_malformed_tool_choice_is_refused(
    choice: dict[str, Any], tools: tuple[str, ...], detail: str
) -> None:
    err = violation([session_start(), prompt_with_choice(choice, tools)])
    assert detail in err.message
