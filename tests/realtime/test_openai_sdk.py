"""The official ``openai`` Python SDK, unchanged but for its base URL and key, against the local
stack's ``realtime`` stage: a typed turn that runs a deployment tool, a spoken turn (24 kHz PCM),
a function the client declares and answers, a barge-in. Every event the SDK receives is checked
against the SDK's own type for it (tests/realtime/events.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from novakit import audio, g711
from novakit.bridge.protocol import MAX_FRAME_BYTES

from .conftest import CHECK_ORDER, TOKEN, WAIT, RealtimeStack, realtime_stack
from .events import Events

pytestmark = pytest.mark.timeout(240)

CHUNK_MS = 100  # client audio per input_audio_buffer.append


@pytest.fixture
async def stack() -> AsyncIterator[RealtimeStack]:
    async with realtime_stack() as running:
        yield running


def client(stack: RealtimeStack, key: str = TOKEN) -> AsyncOpenAI:
    # What a user changes to move an existing Realtime client over: the base URL and the key.
    return AsyncOpenAI(api_key=key, websocket_base_url=stack.base_url)


def speech(stack: RealtimeStack, text: str, rate: int = 24000) -> bytes:
    """``text`` spoken (eSpeak NG), with silence after it for the end of the turn."""
    return (
        audio.silence(0.3, rate)
        + stack.mind.speak(text, rate, "tiffany")
        + audio.silence(1.5, rate)
    )


async def send_audio(connection: Any, pcm: bytes, rate: int = 24000) -> None:
    step = rate * 2 * CHUNK_MS // 1000
    for offset in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[offset : offset + step]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        await asyncio.sleep(0)  # let the events already received be read meanwhile


async def ask(connection: Any, text: str) -> None:
    """A typed turn: the user's text as a conversation item, then a response asked for."""
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await connection.response.create()


def audio_of(events: Events, response_id: str) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in events.of("response.output_audio.delta")
        if e["response_id"] == response_id
    )


def all_within_the_frame_limit(events: Events) -> bool:
    return max(events.sizes) <= MAX_FRAME_BYTES


async def test_connect_gets_session_created_naming_the_model(stack: RealtimeStack) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        created = await events.next()
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["model"] == "gpt-realtime"  # the model the client named, reported back
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["output_modalities"] == ["audio"]


async def test_a_wrong_key_fails_the_handshake(stack: RealtimeStack) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with client(stack, key="not-the-token").realtime.connect(model="gpt-realtime"):
            pass
    assert refused.value.response.status_code == 401


async def test_a_typed_turn_runs_a_deployment_tool_and_answers_in_speech(
    stack: RealtimeStack,
) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.session.update(
            session={
                "type": "realtime",
                "instructions": "Answer briefly.",
                "audio": {"output": {"voice": "alloy"}},
            }
        )
        await events.until("session.updated", WAIT)
        await ask(connection, "what time is it in Tokyo")
        done = await events.until("response.done", WAIT)
    response = done["response"]
    assert response["status"] == "completed"
    call, message = response["output"]
    # the deployment's own tool ran in the bridge; the client sees it as a completed call
    assert (call["type"], call["name"], call["status"]) == (
        "function_call",
        "get_time",
        "completed",
    )
    assert json.loads(call["arguments"]) == {"timezone": "Asia/Tokyo"}
    (output,) = [
        e["item"]
        for e in events.of("conversation.item.done")
        if e["item"]["type"] == "function_call_output"
    ]
    assert output["call_id"] == call["call_id"]
    assert json.loads(output["output"])["timezone"] == "Asia/Tokyo"
    transcript = message["content"][0]["transcript"]
    assert transcript.startswith("It is ") and transcript.endswith("in Asia/Tokyo.")
    spoken = audio_of(events, response["id"])
    assert audio.duration(spoken, 24000) > 1.0
    assert response["usage"]["output_token_details"]["audio_tokens"] > 0
    assert response["usage"]["total_tokens"] == (
        response["usage"]["input_tokens"] + response["usage"]["output_tokens"]
    )
    # the voice the client asked for (an OpenAI name) is mapped to a Nova voice
    (updated,) = events.of("session.updated")
    assert updated["session"]["audio"]["output"]["voice"] == "tiffany"
    # the order a Realtime client expects within the response
    kinds = events.types()
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta")
    assert kinds.index("response.output_audio.done") < kinds.index("response.done")
    assert all_within_the_frame_limit(events)


async def test_a_spoken_turn_in_24_khz_pcm(stack: RealtimeStack) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await send_audio(connection, speech(stack, "what time is it in Tokyo"))
        heard = await events.until("conversation.item.input_audio_transcription.completed", WAIT)
        done = await events.until("response.done", WAIT)
    # the question's words (the recognizer may hear a polite word around them)
    assert "what time is it in tokyo" in heard["transcript"].lower()
    kinds = events.types()
    assert (
        kinds.index("input_audio_buffer.speech_started")
        < kinds.index("input_audio_buffer.speech_stopped")
        < kinds.index("input_audio_buffer.committed")
    )
    (user_item,) = [
        e["item"] for e in events.of("conversation.item.done") if e["item"].get("role") == "user"
    ]
    assert user_item["id"] == heard["item_id"]
    assert user_item["content"][0]["transcript"] == heard["transcript"]
    response = done["response"]
    assert response["status"] == "completed"
    message = [i for i in response["output"] if i["type"] == "message"][-1]
    assert message["content"][0]["transcript"].endswith("in Asia/Tokyo.")
    assert audio.duration(audio_of(events, response["id"]), 24000) > 1.0
    assert response["usage"]["input_token_details"]["audio_tokens"] > 0
    assert all_within_the_frame_limit(events)


async def test_a_function_the_client_declares_is_called_on_the_client(
    stack: RealtimeStack,
) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.session.update(session={"type": "realtime", "tools": [CHECK_ORDER]})
        updated = await events.until("session.updated", WAIT)
        assert [t["name"] for t in updated["session"]["tools"]] == ["check_order"]
        await ask(connection, "where is my red order")
        arguments = await events.until("response.function_call_arguments.done", WAIT)
        first = await events.until("response.done", WAIT)
        await connection.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": arguments["call_id"],
                "output": json.dumps({"status": "shipped on Monday"}),
            }
        )
        await connection.response.create()
        second = await events.until(
            "response.done", WAIT, lambda e: e["response"]["id"] != first["response"]["id"]
        )
    assert arguments["name"] == "check_order"
    assert json.loads(arguments["arguments"]) == {"colour": "red"}
    # the response ends with the call, as Realtime's do, so the client runs it
    assert first["response"]["status"] == "completed"
    assert [i["type"] for i in first["response"]["output"]] == ["function_call"]
    # the model was given the client's answer and spoke about it
    message = [i for i in second["response"]["output"] if i["type"] == "message"][-1]
    assert "shipped on Monday" in message["content"][0]["transcript"]
    assert audio.duration(audio_of(events, second["response"]["id"]), 24000) > 0.5


async def test_a_barge_in_cancels_the_response_and_the_next_one_answers(
    stack: RealtimeStack,
) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await ask(connection, "tell me about annual leave")
        first_audio = await events.until("response.output_audio.delta", WAIT)
        # the user speaks over the answer
        talking = asyncio.create_task(
            send_audio(connection, speech(stack, "what time is it in Tokyo"))
        )
        cancelled = await events.until("response.done", WAIT)
        await talking
        answered = await events.until("response.done", WAIT)
    assert cancelled["response"]["id"] == first_audio["response_id"]
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "turn_detected",
    }
    kinds = events.types()
    cut = kinds.index("response.done")
    assert "input_audio_buffer.speech_started" in kinds[:cut]
    # no audio of the interrupted response after its cancellation
    late = [
        e
        for e in events.received[cut:]
        if e["type"] == "response.output_audio.delta"
        and e["response_id"] == first_audio["response_id"]
    ]
    assert late == []
    assert answered["response"]["status"] == "completed"
    message = [i for i in answered["response"]["output"] if i["type"] == "message"][-1]
    assert message["content"][0]["transcript"].endswith("in Asia/Tokyo.")


async def test_telephone_audio_both_ways_in_g711_mu_law(stack: RealtimeStack) -> None:
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        pcmu = {"type": "audio/pcmu"}
        await connection.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"format": pcmu}, "output": {"format": pcmu}},
            }
        )
        updated = await events.until("session.updated", WAIT)
        # half a second of quiet line, as a phone sends between words: taken, no error
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(g711.pcm_to_ulaw(audio.silence(0.5, 8000))).decode()
        )
        await ask(connection, "what time is it in Tokyo")
        done = await events.until("response.done", WAIT)
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert events.of("error") == []
    message = [i for i in done["response"]["output"] if i["type"] == "message"][-1]
    spoken = audio_of(events, done["response"]["id"])  # one byte a sample at 8 kHz
    pcm = g711.ulaw_to_pcm(spoken)
    assert audio.duration(pcm, 8000) > 1.0
    # speech, not silence or noise: eSpeak's voice at a level a phone carries
    assert audio.rms_dbfs(pcm) > -40
    assert message["content"][0]["transcript"].endswith("in Asia/Tokyo.")
