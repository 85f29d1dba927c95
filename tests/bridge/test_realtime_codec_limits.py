"""The Realtime codec on its own (no sockets): output it must produce within API Gateway's 32 KB
for any input the session can give it, or refuse with a clear, Realtime-shaped error."""

from __future__ import annotations

import json

import pytest

from novakit.bridge.dialects.realtime.codec import RealtimeCodec
from novakit.bridge.protocol import MAX_FRAME_BYTES, ClientReply, ClientToolResult, ProtocolError
from novakit.s2s.events import ToolCall


def codec() -> RealtimeCodec:
    return RealtimeCodec(batch_ms=100)


@pytest.mark.parametrize("text", ["日本語の説明" * 1000, "\x01" * 8000, "é" * 8000])
def test_a_deployment_tools_output_is_shown_within_the_frame_limit(text: str) -> None:
    """A deployment tool's output (what ``Session._run_tool`` hands to ``codec.tool``): cut to
    ``MAX_FRAME_BYTES // 4`` characters, but encoded as ASCII JSON a non-ASCII or control
    character takes 6 bytes, so the item exceeds 32 KB and ``_checked`` raises ValueError.
    ``_run_tool`` does not catch it: the task fails, ``_task_done`` sends a fatal
    ``internal_error`` and ends the conversation, and the model never gets the tool result.
    (Latent: the tool contract's 24 KB cap and its ASCII-escaped JSON keep today's local tools
    from reaching it; any path that hands the codec raw text does.)"""
    frames = codec().tool("call_1", "lookup", "succeeded", 0.0, ms=5, output=text)
    assert frames
    assert max(len(f) for f in frames) <= MAX_FRAME_BYTES


def test_a_client_tool_answer_that_fits_a_frame_is_taken() -> None:
    """A function_call_output as the OpenAI JS SDK sends it (JSON.stringify: UTF-8, not
    escaped), 24 KB, fits the frame; its echo (ASCII-escaped) does not. Observed: ValueError
    from parse (not a ProtocolError), which the app reports as ``internal_error`` "the frame
    could not be read"; the tool result is lost."""
    output = json.dumps({"note": "発送済み" * 2000}, ensure_ascii=False)
    body = json.dumps(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": output},
        },
        ensure_ascii=False,
    ).encode()
    assert len(body) <= MAX_FRAME_BYTES
    c = codec()
    c.tool_call(ToolCall("call_1", "check_order", {}), 0.0, on_client=True)
    frames = c.parse(body)  # either taken, or a ProtocolError naming what is wrong
    assert any(isinstance(f, ClientToolResult) for f in frames)
    replies = [frame for f in frames if isinstance(f, ClientReply) for frame in f.frames]
    assert replies and max(len(f) for f in replies) <= MAX_FRAME_BYTES


def test_an_item_id_too_long_to_echo_is_a_protocol_error() -> None:
    # 30 KB of UTF-8 as a JS client sends it; 90 KB once echoed as ASCII JSON
    body = json.dumps(
        {"type": "conversation.item.truncate", "item_id": "é" * 15000, "audio_end_ms": 0},
        ensure_ascii=False,
    ).encode()
    assert len(body) <= MAX_FRAME_BYTES
    try:
        frames = codec().parse(body)
    except ProtocolError:
        return  # refused with a Realtime error: fine
    replies = [frame for f in frames if isinstance(f, ClientReply) for frame in f.frames]
    assert max(len(f) for f in replies) <= MAX_FRAME_BYTES


def test_a_long_answer_in_hindi_closes_within_the_frame_limit() -> None:
    """Nova speaks Hindi; one answer of ~100 sentences (about 7000 characters, a few minutes of
    speech). The closing events repeat the whole transcript (``conversation.item.done``,
    ``response.output_item.done``, ``response.done``), ASCII-escaped at 6 bytes a character:
    over 32 KB from about 5400 Devanagari characters (French: about 19000). Observed:
    ValueError from ``turn_end``/``flush``, raised in the session's pump task, which ends the
    conversation with a fatal ``internal_error``."""
    from novakit.s2s.events import Usage

    sentence = "नमस्ते, यह एक लंबी कहानी का एक वाक्य है जो बार बार दोहराया जाता है। "
    c = codec()
    frames: list[str] = []
    for _ in range(100):
        frames += c.audio(b"\x00\x00" * 240, 0.0)
        frames += c.assistant_text(sentence, True, 0.0)
    frames += c.turn_end(1.0, Usage())
    frames += c.flush(5.0)
    assert max(len(f) for f in frames) <= MAX_FRAME_BYTES
    assert any(f.startswith('{"type":"response.done"') for f in frames)


def test_a_client_tools_long_arguments_fit_the_frame_limit() -> None:
    """A client tool (say ``save_note``) the model calls with 6000 Japanese characters of
    arguments: the call's events repeat them ASCII-escaped; from about 5000 characters the
    frame exceeds 32 KB and the pump task fails (ValueError), ending the conversation."""
    from novakit.s2s.events import ToolCall

    call = ToolCall("call_1", "save_note", {"text": "日本語のメモ" * 1000})
    frames = codec().tool_call(call, 0.0, on_client=True)
    assert max(len(f) for f in frames) <= MAX_FRAME_BYTES


def test_a_session_update_whose_answer_cannot_fit_is_refused_and_changes_nothing() -> None:
    """Tools that fill the client's frame: ``session.updated`` (the whole configuration) would
    not fit. Refused naming the event and the limit; the tools are not kept in force."""
    from novakit.bridge.dialects.realtime.config import RealtimeError
    from novakit.bridge.protocol import ClientStart

    def update(description: str) -> bytes:
        tool = {
            "type": "function",
            "name": "lookup",
            "description": description,
            "parameters": {"type": "object", "properties": {}},
        }
        event = {"type": "session.update", "event_id": "upd_1", "session": {"tools": [tool]}}
        return json.dumps(event, ensure_ascii=False).encode()

    envelope = len(update(""))
    body = update("説" * ((MAX_FRAME_BYTES - envelope) // 3))
    assert len(body) <= MAX_FRAME_BYTES
    c = codec()
    with pytest.raises(RealtimeError) as refused:
        c.parse(body)
    assert refused.value.ref.event_id == "upd_1"
    assert str(MAX_FRAME_BYTES) in refused.value.message
    start, _ = c.parse(b'{"type":"input_audio_buffer.append","audio":"AAAAAA=="}')
    assert isinstance(start, ClientStart)
    assert not start.client_tools
