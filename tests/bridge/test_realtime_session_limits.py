"""The bridge on the realtime stage with a stand-in model session (tests/bridge's FakeEngine):
what a long answer in a non-Latin script does to the conversation."""

from __future__ import annotations

import json

from novakit import s2s
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.protocol import MAX_FRAME_BYTES

from .test_session import until
from .test_stages import call, management, running_bridge

SENTENCE = "नमस्ते, यह एक लंबी कहानी का एक वाक्य है जो बार बार दोहराया जाता है। "


async def test_a_long_hindi_answer_ends_with_response_done_not_a_fatal_error() -> None:
    """Observed: the closing events exceed 32 KB, the pump task raises ValueError, and the
    client gets ``server_error``/``internal_error`` "the bridge failed; the conversation is
    ending" instead of ``response.done``; the conversation is over."""
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", MemoryDirectory()) as (bridge, url),
    ):
        assert await call(url, "/ws/connect", "h=", "realtime") == 200
        typed = [
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "एक कहानी सुनाओ"}],
                },
            },
            {"type": "response.create"},
        ]
        for event in typed:
            assert await call(url, "/ws/message", "h=", "realtime", json.dumps(event).encode())
        await until(lambda: bridge.engine.session is not None)
        model = bridge.engine.session
        for _ in range(100):
            model.events.put_nowait(s2s.AudioOutput(b"\x00\x00" * 2400, 24000))
            model.events.put_nowait(s2s.TextOutput(SENTENCE, True))
        model.events.put_nowait(s2s.TurnEnd())
        # the answer closes (response.done), or the conversation fails
        await until(
            lambda: any(p[2]["type"] in ("response.done", "error") for p in api.posts), within=10
        )
        kinds = [p[2]["type"] for p in api.posts]
        errors = [p[2]["error"] for p in api.posts if p[2]["type"] == "error"]
    assert errors == [], errors
    assert "response.done" in kinds
    # each event as it was posted: UTF-8 JSON without spaces
    sizes = [
        len(json.dumps(p[2], ensure_ascii=False, separators=(",", ":")).encode()) for p in api.posts
    ]
    assert max(sizes) <= MAX_FRAME_BYTES


async def test_a_model_event_too_large_for_any_frame_is_a_non_fatal_error() -> None:
    """A client tool called with arguments over 32 KB even as UTF-8: its arguments events cannot
    be sent. The client gets a non-fatal error, and the conversation goes on (the next answer
    reaches it)."""
    tool = {"type": "function", "name": "save_note", "parameters": {"type": "object"}}
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", MemoryDirectory()) as (bridge, url),
    ):
        assert await call(url, "/ws/connect", "h=", "realtime") == 200
        update = {"type": "session.update", "session": {"type": "realtime", "tools": [tool]}}
        audio = {"type": "input_audio_buffer.append", "audio": "AAAAAA=="}
        for event in (update, audio):
            assert await call(url, "/ws/message", "h=", "realtime", json.dumps(event).encode())
        await until(lambda: bridge.engine.session is not None)
        model = bridge.engine.session
        huge = s2s.ToolCall("call_1", "save_note", {"text": "メモ" * 6000})  # 36 KB of UTF-8
        model.events.put_nowait(s2s.ToolCallRequest(huge))
        model.events.put_nowait(s2s.TextOutput("still here", True))
        model.events.put_nowait(s2s.TurnEnd())
        await until(lambda: any(p[2]["type"] == "response.done" for p in api.posts), within=10)
        errors = [p[2]["error"] for p in api.posts if p[2]["type"] == "error"]
        transcripts = [
            p[2]["delta"] for p in api.posts if p[2]["type"].endswith("transcript.delta")
        ]
    assert [e["code"] for e in errors] == ["internal_error"], errors
    assert "could not be sent" in errors[0]["message"]
    assert transcripts == ["still here"]
