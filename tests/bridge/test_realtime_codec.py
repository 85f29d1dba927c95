"""The OpenAI Realtime codec as pure code: client events in, the session's frames out; the
session's output in, Realtime events out, each one checked against the ``openai`` SDK's own
pydantic type for it (no socket, no model)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from novakit import audio, g711
from novakit.bridge.dialects import STAGE_DIALECTS, dialect_for_stage
from novakit.bridge.dialects.realtime import REALTIME, RealtimeCodec
from novakit.bridge.dialects.realtime.codec import KINDS, MAX_APPEND_AUDIO_BYTES
from novakit.bridge.dialects.realtime.config import OPENAI_VOICES, RealtimeError
from novakit.bridge.protocol import (
    MAX_FRAME_BYTES,
    ClientAudio,
    ClientInterrupt,
    ClientRefusal,
    ClientReply,
    ClientStart,
    ClientText,
    ClientToolResult,
    ErrorCode,
    ProtocolError,
)
from novakit.s2s.events import ToolCall, Usage

from ..realtime.events import validated


def codec() -> RealtimeCodec:
    return RealtimeCodec(batch_ms=100, model="gpt-realtime", voice="matthew")


def send(c: RealtimeCodec, event: dict[str, Any]) -> list[Any]:
    return list(c.parse(json.dumps(event).encode()))


def events(frames: list[str]) -> list[dict[str, Any]]:
    """Each frame validated by the SDK's types; returned as JSON."""
    out = []
    for frame in frames:
        assert len(frame.encode()) <= MAX_FRAME_BYTES  # UTF-8 bytes, as API Gateway counts
        data, _ = validated(frame)
        out.append(data)
    return out


def started(c: RealtimeCodec) -> ClientStart:
    """The options the session opens with: at the first frame that needs the model."""
    start, _ = send(c, {"type": "input_audio_buffer.append", "audio": "AAAAAA=="})
    assert isinstance(start, ClientStart)
    return start


def replies(frames: list[Any]) -> list[dict[str, Any]]:
    return events([f for r in frames if isinstance(r, ClientReply) for f in r.frames])


def test_the_realtime_stage_speaks_the_realtime_dialect() -> None:
    assert dialect_for_stage("realtime") is REALTIME
    assert STAGE_DIALECTS["realtime"] is REALTIME


# -- client events ----------------------------------------------------------------------------


def test_session_updates_set_the_options_the_session_opens_with() -> None:
    c = codec()
    [reply] = send(
        c,
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                    },
                    "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
                },
                "tools": [
                    {
                        "type": "function",
                        "name": "check_order",
                        "description": "Where is it?",
                        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
                    }
                ],
                "tool_choice": "required",
            },
        },
    )
    [updated] = replies([reply])  # answered at once: the session opens later
    assert updated["session"]["audio"]["output"]["voice"] == OPENAI_VOICES["alloy"]
    [again] = replies(send(c, {"type": "session.update", "session": {"instructions": "Brief."}}))
    assert again["session"]["instructions"] == "Brief."  # not started yet: still free to change
    start = started(c)
    assert (start.voice, start.instructions) == (OPENAI_VOICES["alloy"], "Brief.")
    assert (start.input_sample_rate, start.output_sample_rate) == (8000, 8000)
    assert [t.name for t in start.client_tools] == ["check_order"]
    assert (start.tool_choice, start.endpointing) == ("any", "HIGH")
    assert c.input_sample_rate == 8000


@pytest.mark.parametrize(
    ("silence_ms", "sensitivity"), [(500, "HIGH"), (1500, "HIGH"), (1600, "MEDIUM"), (5000, "LOW")]
)
def test_server_vad_silence_picks_nova_s_endpointing(silence_ms: int, sensitivity: str) -> None:
    c = codec()
    send(
        c,
        {
            "type": "session.update",
            "session": {
                "audio": {
                    "input": {
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms}
                    }
                }
            },
        },
    )
    assert started(c).endpointing == sensitivity


@pytest.mark.parametrize(
    ("session", "param", "code"),
    [
        (
            {"audio": {"output": {"voice": "nobody"}}},
            "session.audio.output.voice",
            "unsupported_value",
        ),
        ({"audio": {"output": {"speed": 1.5}}}, "session.audio.output.speed", "unsupported_value"),
        (
            {"audio": {"input": {"turn_detection": None}}},
            "session.audio.input.turn_detection",
            "unsupported_value",
        ),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "session.audio.input.format.rate",
            "unsupported_value",
        ),
        (
            {"audio": {"input": {"format": {"type": "audio/opus"}}}},
            "session.audio.input.format.type",
            "unsupported_value",
        ),
        ({"output_modalities": ["text"]}, "session.output_modalities", "unsupported_value"),
        (
            {"tools": [{"type": "mcp", "server_label": "x"}]},
            "session.tools[0]",
            "unsupported_value",
        ),
        (
            {"tools": [{"type": "function", "name": "bad name!"}]},
            "session.tools[0]",
            "invalid_value",
        ),
        ({"tool_choice": "none"}, "session.tool_choice", "unsupported_value"),
        (
            {"audio": {"input": {"transcription": {"model": "whisper-1"}}}},
            "session.audio.input.transcription",
            "unsupported_value",
        ),
    ],
)
def test_what_nova_cannot_do_is_refused_field_by_field(
    session: dict[str, Any], param: str, code: str
) -> None:
    c = codec()
    frames = send(c, {"type": "session.update", "event_id": "e1", "session": session})
    reply, refusal = frames
    assert isinstance(reply, ClientReply)  # the rest of the update applies
    assert isinstance(refusal, ClientRefusal)
    assert refusal.error.ref is not None
    assert (refusal.error.ref.param, refusal.error.ref.event_id) == (param, "e1")
    [error] = events(c.protocol_error(refusal.error, 0.0))
    assert error["error"]["code"] == code
    assert error["error"]["param"] == param and error["error"]["event_id"] == "e1"
    assert error["error"]["type"] == "invalid_request_error"


def test_a_later_session_update_confirms_or_refuses_a_change() -> None:
    c = codec()
    send(c, {"type": "session.update", "session": {"instructions": "A"}})
    started(c)
    [same] = send(c, {"type": "session.update", "session": {"instructions": "A"}})
    [updated] = replies([same])
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "A"
    reply, refused = send(c, {"type": "session.update", "session": {"instructions": "B"}})
    assert refused.error.realtime_code == "session_already_started"
    [kept] = replies([reply])
    assert kept["session"]["instructions"] == "A"  # what is in force


def test_audio_is_numbered_in_arrival_order_and_g711_is_decoded() -> None:
    c = codec()
    pcm = audio.speech_like(0.05, 24000)
    first = send(c, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
    assert isinstance(first[0], ClientStart)  # audio first: the session starts with defaults
    assert (first[0].input_sample_rate, first[0].output_sample_rate) == (24000, 24000)
    assert first[1] == ClientAudio(0, pcm)
    [second] = send(
        c, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
    )
    assert second == ClientAudio(1, pcm)
    ulaw = codec()
    send(
        ulaw,
        {
            "type": "session.update",
            "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}},
        },
    )
    data = g711.pcm_to_ulaw(bytes(160) + b"\x00\x10" * 80)
    start, frame = send(
        ulaw, {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
    )
    assert (start.input_sample_rate, start.output_sample_rate) == (8000, 24000)
    assert frame == ClientAudio(0, g711.ulaw_to_pcm(data))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("not base64!", "invalid_audio"),
        ("AAE", "invalid_audio"),
        ("", "invalid_value"),
        ("AA==", "invalid_audio"),
    ],
)
def test_bad_audio_is_refused_with_its_reason(value: str, code: str) -> None:
    with pytest.raises(RealtimeError) as refused:
        send(codec(), {"type": "input_audio_buffer.append", "event_id": "a9", "audio": value})
    assert refused.value.realtime_code == code
    assert refused.value.ref is not None and refused.value.ref.event_id == "a9"


def test_an_event_over_the_frame_limit_is_refused_naming_the_limit() -> None:
    chunk = base64.b64encode(bytes(MAX_APPEND_AUDIO_BYTES + 3000)).decode()
    body = json.dumps({"type": "input_audio_buffer.append", "audio": chunk}).encode()
    with pytest.raises(ProtocolError) as refused:
        codec().parse(body)
    assert refused.value.code is ErrorCode.TOO_LARGE
    assert "32768" in refused.value.message and str(MAX_APPEND_AUDIO_BYTES) in refused.value.message
    largest = base64.b64encode(bytes(MAX_APPEND_AUDIO_BYTES)).decode()
    fits = json.dumps({"type": "input_audio_buffer.append", "event_id": "x" * 32, "audio": largest})
    assert len(fits) <= MAX_FRAME_BYTES


def test_typed_text_waits_for_response_create() -> None:
    c = codec()
    created = send(
        c,
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        },
    )
    assert [e["type"] for e in replies(created)] == [
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert not any(isinstance(f, ClientText) for f in created)
    start, text = send(c, {"type": "response.create"})
    assert isinstance(start, ClientStart) and text == ClientText("hello")
    assert send(c, {"type": "response.create"}) == []  # nothing typed: Nova answers by itself


def answer(call_id: str, event_id: str | None = None) -> dict[str, Any]:
    item = {"type": "function_call_output", "call_id": call_id, "output": '{"ok":true}'}
    return {"type": "conversation.item.create", "item": item, "event_id": event_id}


def test_a_function_call_output_answers_the_call() -> None:
    c = codec()
    c.tool_call(ToolCall("call_1", "check_order", {}), 0.0, on_client=True)
    result, reply = send(c, answer("call_1"))
    assert result == ClientToolResult("call_1", '{"ok":true}')
    assert [e["item"]["type"] for e in replies([reply])] == ["function_call_output"] * 2
    with pytest.raises(RealtimeError):  # answered once
        send(c, answer("call_1"))


def test_a_stray_function_call_output_is_refused_and_starts_nothing() -> None:
    """Before any call (an app restoring its conversation), or for a call id the model never
    made: refused with the event's id, not acknowledged, and the session's options are still
    open to session.update."""
    c = codec()
    with pytest.raises(RealtimeError) as refused:
        send(c, answer("call_stray", "fco_1"))
    assert (refused.value.ref.event_id, refused.value.ref.param) == ("fco_1", "item.call_id")
    send(c, {"type": "session.update", "session": {"type": "realtime", "instructions": "Hi."}})
    assert started(c).instructions == "Hi."


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "system", "content": []},
            },
            "unsupported_value",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_audio", "audio": "AAAA"}],
                },
            },
            "unsupported_value",
        ),
        ({"type": "conversation.item.delete", "item_id": "x"}, "unsupported_event"),
        ({"type": "conversation.item.retrieve", "item_id": "x"}, "unsupported_event"),
        ({"type": "transcription_session.update"}, "unknown_event"),
    ],
)
def test_refused_events_say_why(event: dict[str, Any], code: str) -> None:
    c = codec()
    with pytest.raises(RealtimeError) as refused:
        send(c, event)
    assert refused.value.realtime_code == code
    [error] = events(c.protocol_error(refused.value, 0.0))
    assert error["error"]["code"] == code and error["error"]["message"]


def test_cancel_and_clear_interrupt_and_acknowledgements_come_back_at_once() -> None:
    c = codec()
    with pytest.raises(RealtimeError) as idle:  # nothing to cancel: OpenAI's answer
        send(c, {"type": "response.cancel", "event_id": "cancel_0"})
    assert (idle.value.realtime_code, idle.value.ref.event_id) == (
        "response_cancel_not_active",
        "cancel_0",
    )
    running = codec()
    running.audio(b"\x00\x00" * 240, 0.0)  # a response is running
    assert send(running, {"type": "response.cancel"}) == [ClientInterrupt()]
    assert send(c, {"type": "output_audio_buffer.clear"}) == [ClientInterrupt()]
    kinds = [
        replies(send(c, {"type": kind, **fields}))[0]["type"]
        for kind, fields in (
            ("input_audio_buffer.commit", {}),
            ("input_audio_buffer.clear", {}),
            (
                "conversation.item.truncate",
                {"item_id": "i", "content_index": 0, "audio_end_ms": 800},
            ),
        )
    ]
    assert kinds == [
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "conversation.item.truncated",
    ]


# -- server events ----------------------------------------------------------------------------


def a_turn(c: RealtimeCodec, pcm: bytes, now: float = 0.0) -> list[str]:
    frames = c.greeting("conn=", "gpt-realtime", "matthew", now)
    frames += c.session("ready", "conn=", "amazon.nova-2-sonic-v1:0", "matthew", now)
    frames += c.transcript("what time is it in Tokyo", now)
    frames += c.tool_call(
        ToolCall("t1", "get_time", {"timezone": "Asia/Tokyo"}), now, on_client=False
    )
    frames += c.tool("t1", "get_time", "succeeded", now, ms=3, output='{"time":"03:42"}')
    frames += c.assistant_text("It is 03:42 in Tokyo.", False, now)
    frames += c.audio(pcm, now)
    frames += c.assistant_text("It is 03:42 in Tokyo.", True, now)
    frames += c.turn_end(now)
    frames += c.usage_update(Usage(100, 10, 200, 20), now)
    return frames


def test_a_turn_becomes_a_realtime_response_the_sdk_parses() -> None:
    c = codec()
    pcm = bytes(range(256)) * 600  # 3.2 s at 24 kHz: several deltas
    sent = events(a_turn(c, pcm))
    kinds = [e["type"] for e in sent]
    assert kinds[0] == "session.created"
    assert "session.updated" not in kinds  # it answers session.update, sent or not
    assert (
        kinds.index("input_audio_buffer.speech_started")
        < kinds.index("conversation.item.input_audio_transcription.completed")
        < kinds.index("response.created")
    )
    deltas = [e for e in sent if e["type"] == "response.output_audio.delta"]
    assert len(deltas) > 1
    assert b"".join(base64.b64decode(d["delta"]) for d in deltas) == pcm  # every byte, in order
    [done] = [e for e in sent if e["type"] == "response.done"]
    assert kinds[-1] == "response.done"  # it waited for the turn's usage
    response = done["response"]
    assert response["status"] == "completed"
    assert [i["type"] for i in response["output"]] == ["function_call", "message"]
    assert response["output"][1]["content"][0]["transcript"] == "It is 03:42 in Tokyo."
    assert response["usage"] == {
        "total_tokens": 330,
        "input_tokens": 110,
        "output_tokens": 220,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 100, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 20, "audio_tokens": 200},
    }
    outputs = [
        e["item"]
        for e in sent
        if e["type"] == "conversation.item.done" and e["item"]["type"] == "function_call_output"
    ]
    assert [o["output"] for o in outputs] == ['{"time":"03:42"}']
    orders = [KINDS.order(f) for f in a_turn(codec(), pcm)]
    assert orders == sorted(orders) == list(range(len(orders)))


def test_usage_counts_per_response_and_a_late_usage_does_not_hold_response_done() -> None:
    c = codec()
    a_turn(c, bytes(4800))
    frames = c.transcript("again", 10.0) + c.audio(bytes(4800), 10.0) + c.turn_end(10.0)
    assert "response.done" not in [e["type"] for e in events(frames)]
    assert c.next_deadline() is not None
    late = events(c.due(10.0 + 1.0))
    [done] = [e for e in late if e["type"] == "response.done"]
    assert done["response"]["status"] == "completed"
    frames = c.transcript("once more", 20.0) + c.audio(bytes(4800), 20.0) + c.turn_end(20.0)
    frames += c.usage_update(Usage(150, 10, 300, 20), 20.1)
    [done] = [e for e in events(frames) if e["type"] == "response.done"]
    # the second and third turns' tokens (the second's response went without its usage)
    assert done["response"]["usage"]["input_token_details"]["audio_tokens"] == 50
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] == 100


def test_a_barge_in_cancels_the_response_after_speech_started() -> None:
    c = codec()
    frames = c.transcript("tell me a story", 0.0) + c.audio(bytes(48000), 0.0)
    created = next(e for e in events(frames) if e["type"] == "response.created")
    response_id = created["response"]["id"]
    c.audio(bytes(1000), 0.0)  # buffered, not yet framed: dropped by the barge-in
    cleared = events(c.barge_in("barge_in", 0.5))
    assert cleared[0]["type"] == "input_audio_buffer.speech_started"
    done = cleared[-1]
    assert done["type"] == "response.done" and done["response"]["id"] == response_id
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert not any(e["type"] == "response.output_audio.delta" for e in cleared)
    # the user's next words belong to the item speech_started announced
    heard = events(c.transcript("what time is it", 1.0))
    assert [e for e in heard if e["type"] == "input_audio_buffer.speech_started"] == []
    assert heard[0]["item_id"] == cleared[0]["item_id"]
    client = codec()
    client.transcript("x", 0.0)
    client.audio(bytes(4800), 0.0)
    cancelled = events(client.barge_in("client", 0.1))
    assert "input_audio_buffer.speech_started" not in [e["type"] for e in cancelled]
    assert cancelled[-1]["response"]["status_details"]["reason"] == "client_cancelled"


def test_a_client_tool_call_ends_the_response_for_the_client_to_answer() -> None:
    c = codec()
    frames = c.transcript("where is my red order", 0.0)
    frames += c.tool_call(ToolCall("call_9", "check_order", {"colour": "red"}), 0.0, on_client=True)
    sent = events(frames)
    [arguments] = [e for e in sent if e["type"] == "response.function_call_arguments.done"]
    assert (arguments["call_id"], json.loads(arguments["arguments"])) == (
        "call_9",
        {"colour": "red"},
    )
    assert sent[-1]["type"] == "response.done"
    assert [i["status"] for i in sent[-1]["response"]["output"]] == ["completed"]


def test_g711_output_is_encoded_and_errors_and_states_are_realtime_events() -> None:
    c = codec()
    send(
        c,
        {
            "type": "session.update",
            "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}},
        },
    )
    c.configure(0.0, sample_rate=8000)
    pcm = bytes(range(200)) * 16
    sent = events(c.transcript("hi", 0.0) + c.audio(pcm, 0.0) + c.flush(0.0))
    deltas = b"".join(
        base64.b64decode(e["delta"]) for e in sent if e["type"] == "response.output_audio.delta"
    )
    assert deltas == g711.pcm_to_ulaw(pcm)
    [draining] = events(c.session("draining", "c", "m", "v", 0.0, reason="a deployment"))
    assert draining["type"] == "error" and "a deployment" in draining["error"]["message"]
    [failed] = events(c.error(ErrorCode.SESSION_FAILED, "x" * 5000, True, None, 0.0))
    assert failed["error"]["type"] == "server_error" and len(failed["error"]["message"]) <= 1000
    assert c.pong("k", 0.0) == []


def test_a_new_owner_goes_on_with_the_agreed_configuration() -> None:
    c = codec()
    send(
        c,
        {
            "type": "session.update",
            "session": {
                "audio": {
                    "input": {"format": {"type": "audio/pcma"}},
                    "output": {"voice": "amy", "format": {"type": "audio/pcma"}},
                }
            },
        },
    )
    saved = json.loads(json.dumps(c.saved_state()))
    resumed = REALTIME.new_codec(batch_ms=100, saved=saved)
    assert resumed.sample_rate == 8000
    assert events(resumed.session("resumed", "c", "m", "v", 0.0)) == []
    # it does not start the session again: audio goes straight to the model, and an update
    # is compared with what is in force
    [audio_frame] = send(resumed, {"type": "input_audio_buffer.append", "audio": "1dU="})
    assert audio_frame == ClientAudio(0, g711.alaw_to_pcm(b"\xd5\xd5"))
    reply, refused = send(
        resumed, {"type": "session.update", "session": {"audio": {"output": {"voice": "tina"}}}}
    )
    assert refused.error.realtime_code == "session_already_started"
    [updated] = replies([reply])
    assert updated["session"]["audio"]["output"] == {
        "format": {"type": "audio/pcma"},
        "voice": "amy",
        "speed": 1.0,
    }


def test_a_deployment_tool_shows_as_items_that_no_client_runs() -> None:
    c = codec()
    frames = c.transcript("what time is it in Tokyo", 0.0)
    frames += c.tool_call(
        ToolCall("t7", "get_time", {"timezone": "Asia/Tokyo"}), 0.0, on_client=False
    )
    kinds = [e["type"] for e in events(frames)]
    # clients run a function on its arguments events: a deployment tool has none
    assert "response.function_call_arguments.done" not in kinds
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[-2:] == ["response.output_item.done", "conversation.item.done"]
    # a client that answers it anyway is acknowledged; the model is not told twice
    [reply] = send(
        c,
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "t7", "output": "{}"},
        },
    )
    assert isinstance(reply, ClientReply)
    with pytest.raises(RealtimeError):  # a call id never made is refused
        send(c, answer("other"))


def test_instructions_a_bridge_does_not_take_are_refused_at_the_session_update() -> None:
    """session.updated reports the configuration in force: client instructions a bridge does
    not take are refused with the update's event_id and param, not echoed as if kept."""
    c = RealtimeCodec(batch_ms=100, allow_client_instructions=False)
    update = {
        "type": "realtime",
        "instructions": "Be brief.",
        "audio": {"output": {"voice": "alloy"}},
    }
    reply, refusal = send(c, {"type": "session.update", "event_id": "upd_1", "session": update})
    [updated] = replies([reply])
    assert updated["session"]["instructions"] == ""
    assert (refusal.error.ref.event_id, refusal.error.ref.param) == (
        "upd_1",
        "session.instructions",
    )
    assert started(c).instructions is None
