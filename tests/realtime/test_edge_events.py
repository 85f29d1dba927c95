"""Realtime client events at the edges (stray tool answers, events whose echo is large,
refused options) against the local stack's ``realtime`` stage: each gets its answer or an
error naming it, and the session goes on configured as the client said."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from novakit.bridge.protocol import MAX_FRAME_BYTES

from .conftest import CHECK_ORDER, TOKEN, WAIT, RealtimeStack, realtime_stack
from .events import Events

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def stack() -> AsyncIterator[RealtimeStack]:
    async with realtime_stack() as running:
        yield running


def client(stack: RealtimeStack) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=TOKEN, websocket_base_url=stack.base_url)


async def send_raw(connection: Any, event: dict[str, Any]) -> None:
    """One event as the OpenAI JS SDK writes it (JSON.stringify: UTF-8, nothing escaped)."""
    await connection._connection.send(json.dumps(event, ensure_ascii=False))


async def typed_turn(connection: Any, text: str) -> None:
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await connection.response.create()


async def test_a_large_function_call_output_reaches_the_model(stack: RealtimeStack) -> None:
    """A client tool's answer that fits API Gateway's frame (here ~22 KB of UTF-8: a tool that
    returns text in Japanese) must be given to the model, or refused with a clear error naming
    the limit. Observed: the echo of the item (ASCII-escaped, 6 bytes per character) exceeds
    32 KB, the codec raises ValueError inside parse, the client gets ``internal_error`` "the
    frame could not be read", and the model never gets the result."""
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.session.update(session={"type": "realtime", "tools": [CHECK_ORDER]})
        await events.until("session.updated", WAIT)
        await typed_turn(connection, "where is my red order")
        arguments = await events.until("response.function_call_arguments.done", WAIT)
        await events.until("response.done", WAIT)
        output = json.dumps({"status": "shipped", "note": "発送済み" * 1800}, ensure_ascii=False)
        frame = json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": arguments["call_id"],
                    "output": output,
                },
            },
            ensure_ascii=False,
        ).encode()
        assert len(frame) < MAX_FRAME_BYTES  # within what API Gateway takes
        await send_raw(connection, json.loads(frame))
        first = await _first_of(events, ("conversation.item.done", "error"))
    assert first["type"] == "conversation.item.done", first
    assert first["item"]["type"] == "function_call_output"


async def _first_of(events: Events, kinds: tuple[str, ...]) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            event = await events.next()
            if event["type"] in kinds:
                return event


async def test_a_function_call_output_first_does_not_lose_the_session_config(
    stack: RealtimeStack,
) -> None:
    """A client that sends a function_call_output before any audio or text (an app restoring
    its conversation, or a stray answer) must get an error for it, and its session.update
    (voice, instructions, client tools) must still configure the model. Observed: the tool
    result opens the model session with the defaults (``case _`` in Session.receive marks it
    started), so the later start from session.update is refused with v1's "send start before
    any audio or text" and the voice and tools the client set are silently not used."""
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_stray", "output": "{}"}
        )
        await connection.session.update(
            session={
                "type": "realtime",
                "audio": {"output": {"voice": "alloy"}},
                "tools": [CHECK_ORDER],
            }
        )
        await events.until("session.updated", WAIT)
        await typed_turn(connection, "where is my red order")
        seen = await _first_of(events, ("response.function_call_arguments.done", "response.done"))
    errors = [e["error"] for e in events.of("error")]
    # the stray output may be refused, but not the session's own configuration
    assert not [e for e in errors if e["code"] == "session_already_started"], errors
    # the client's tool was declared to the model, so the model calls it on the client
    assert seen["type"] == "response.function_call_arguments.done", (seen, errors)


async def test_response_cancel_with_nothing_running_is_answered(stack: RealtimeStack) -> None:
    """OpenAI answers a response.cancel with no response in progress with an ``error``
    (``response_cancel_not_active``). Observed: nothing at all (the event is dropped without a
    word), so a client cannot tell it was not acted on."""
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.response.cancel(event_id="cancel_1")
        # a marker: its answer comes after anything the cancel produced
        await connection.input_audio_buffer.clear()
        await events.until("input_audio_buffer.cleared", WAIT)
    errors = [e["error"] for e in events.of("error")]
    assert [e.get("event_id") for e in errors] == ["cancel_1"], events.types()


async def test_truncate_echoes_a_long_item_id_or_refuses_it_naming_the_limit(
    stack: RealtimeStack,
) -> None:
    """A truncate is echoed whole when the echo fits (30 KB of UTF-8 item id); one whose echo
    cannot fit (the event fills the frame; its echo adds ``content_index``) is refused naming
    the event and the limit, not reported as an internal error of the bridge."""

    def truncate(event_id: str, item_id: str) -> dict[str, Any]:
        return {
            "type": "conversation.item.truncate",
            "event_id": event_id,
            "item_id": item_id,
            "audio_end_ms": 0,
        }

    fits = "é" * 15000  # 30 KB of UTF-8 (90 KB once ASCII-escaped)
    envelope = len(json.dumps(truncate("trunc_2", ""), ensure_ascii=False).encode())
    fills = "é" * ((MAX_FRAME_BYTES - envelope) // 2)
    assert len(json.dumps(truncate("trunc_2", fills), ensure_ascii=False).encode()) <= (
        MAX_FRAME_BYTES
    )
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await send_raw(connection, truncate("trunc_1", fits))
        echoed = await _first_of(events, ("conversation.item.truncated", "error"))
        await send_raw(connection, truncate("trunc_2", fills))
        refused = await _first_of(events, ("conversation.item.truncated", "error"))
    assert echoed["type"] == "conversation.item.truncated", echoed["type"]
    assert echoed["item_id"] == fits
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "invalid_value", refused
    assert refused["error"]["event_id"] == "trunc_2"
    assert str(MAX_FRAME_BYTES) in refused["error"]["message"]


async def test_session_updated_does_not_claim_instructions_the_bridge_will_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bridge that does not let clients set instructions (the default, and ``novakit dev``'s):
    ``session.updated`` is documented as "the configuration in force". Observed: it echoes the
    client's instructions as if taken; the refusal comes later, when the model session opens,
    as an error with no ``event_id`` and no ``param``, so the client cannot tie it to its
    session.update."""
    from novakit.bridge.settings import BridgeSettings

    from . import conftest as realtime_conftest

    def settings(**options: Any) -> BridgeSettings:
        return BridgeSettings(**{**options, "allow_client_instructions": False})

    monkeypatch.setattr(realtime_conftest, "BridgeSettings", settings)
    async with (
        realtime_stack() as stack,
        client(stack).realtime.connect(model="gpt-realtime") as connection,
    ):
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.session.update(
            session={"type": "realtime", "instructions": "Be brief."}, event_id="upd_1"
        )
        updated = await events.until("session.updated", WAIT)
        await typed_turn(connection, "what time is it in Tokyo")
        await events.until("response.done", WAIT)
    errors = [e["error"] for e in events.of("error")]
    assert errors, "the refusal of the instructions"
    # the refusal names the event and field it refuses
    assert (errors[0]["event_id"], errors[0]["param"]) == ("upd_1", "session.instructions"), errors
    # and session.updated does not report instructions that are not in force
    assert updated["session"]["instructions"] != "Be brief.", updated["session"]["instructions"]


async def test_a_function_call_output_for_an_unknown_call_is_refused_not_acknowledged(
    stack: RealtimeStack,
) -> None:
    """An answer to a call id the model never made: the client must get an error naming its
    event, and no ``conversation.item.added`` claiming the item joined the conversation.
    Observed: ``conversation.item.added`` and ``.done`` at once (the codec acknowledges before
    the session checks the id), then, from the feeding worker, an error "the model refused
    it: no call of a client tool is waiting..." without ``event_id``."""
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await typed_turn(connection, "what time is it in Tokyo")
        await events.until("response.done", WAIT)
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
            event_id="fco_1",
        )
        error = await events.until("error", WAIT)
    added = [
        e for e in events.of("conversation.item.added") if e["item"].get("call_id") == "call_nope"
    ]
    assert error["error"]["event_id"] == "fco_1", error
    assert added == [], added


async def test_after_a_stray_function_call_output_the_model_still_hears_24_khz(
    stack: RealtimeStack,
) -> None:
    """Same cause as above, the audible consequence: the model session opened by the stray
    tool answer takes the engine's default input rate (16 kHz), while the client keeps sending
    the 24 kHz PCM its session says; the model hears the speech slowed down."""
    import base64

    from novakit import audio

    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_stray", "output": "{}"}
        )
        pcm = (
            audio.silence(0.3, 24000)
            + stack.mind.speak("what time is it in Tokyo", 24000, "tiffany")
            + audio.silence(1.5, 24000)
        )
        step = 24000 * 2 // 10
        for offset in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[offset : offset + step]).decode()
            await connection.input_audio_buffer.append(audio=chunk)
        await events.until("response.done", WAIT)
    (record,) = stack.emulator.records[:1]
    rates = [
        e.body.get("audioInputConfiguration", {}).get("sampleRateHertz")
        for e in record.input_events
        if e.name == "contentStart" and e.body.get("type") == "AUDIO"
    ]
    assert rates and set(rates) == {24000}, rates


async def test_a_session_update_with_japanese_tool_descriptions_is_answered(
    stack: RealtimeStack,
) -> None:
    """A Japanese app declares its tools with Japanese descriptions (10 tools, ~19 KB of UTF-8
    as the JS SDK sends it). ``session.updated`` echoes them ASCII-escaped (6 bytes a
    character): over 32 KB, ``_checked`` raises ValueError inside parse. Observed: no
    ``session.updated``, an ``internal_error`` "the frame could not be read" instead; yet the
    configuration was stored before the reply failed, so the tools are in force unannounced."""
    tools = [
        {
            "type": "function",
            "name": f"tool_{n}",
            "description": "注文の状況を色で調べて、配送の予定日を答えます。" * 24,
            "parameters": {"type": "object", "properties": {}},
        }
        for n in range(10)
    ]
    event = {
        "type": "session.update",
        "event_id": "upd_ja",
        "session": {"type": "realtime", "tools": tools},
    }
    assert len(json.dumps(event, ensure_ascii=False).encode()) < MAX_FRAME_BYTES
    async with client(stack).realtime.connect(model="gpt-realtime") as connection:
        events = Events(connection)
        await events.until("session.created", WAIT)
        await send_raw(connection, event)
        answer = await _first_of(events, ("session.updated", "error"))
    assert answer["type"] == "session.updated", answer
