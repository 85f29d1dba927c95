"""The phone's built-in ``end_call`` tool end to end: the Twilio simulator (``novakit call``) →
local gateway → bridge → Bedrock emulator, whose script makes the model call the tool. What the
model was offered, what the caller heard and echoed, and who closed what are asserted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from novakit import audio
from novakit.bridge.hangup import END_CALL, PLAY_MARGIN_SECONDS
from novakit.call import CallOptions, TwilioCaller, place_call, twilio_signature
from novakit.emulator import Outcome, Script, ScriptTurn, ToolCall
from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm
from novakit.talk import Exit

from ..stack.conftest import Stack, local_stack
from .test_call_stack import AUTH_TOKEN, model_audio, question, stream_url

GOODBYE = "Goodbye, and thanks for calling."


@pytest.fixture
async def hangup_on(tmp_path: Path) -> AsyncIterator[Stack]:
    options = {"stages": ("twilio",), "twilio_auth_token": AUTH_TOKEN}
    async with local_stack(tmp_path, gateway_options=options, NOVAKIT_PHONE_HANGUP="1") as running:
        yield running


@pytest.fixture
async def hangup_off(tmp_path: Path) -> AsyncIterator[Stack]:
    options = {"stages": ("twilio",), "twilio_auth_token": AUTH_TOKEN}
    async with local_stack(tmp_path, gateway_options=options) as running:
        yield running


def offered_tools(record: Any) -> list[str]:
    [prompt] = [e.body for e in record.input_events if e.name == "promptStart"]
    tools = prompt.get("toolConfiguration", {}).get("tools", [])
    return [tool["toolSpec"]["name"] for tool in tools]


def tool_results(record: Any) -> list[dict[str, Any]]:
    return [e.body for e in record.input_events if e.name == "toolResult"]


def say_goodbye(reply: str = GOODBYE) -> ScriptTurn:
    return ScriptTurn(transcript="goodbye", reply=reply, tool=ToolCall(END_CALL.name))


async def test_the_agent_hangs_up_once_the_caller_heard_its_goodbye(hangup_on, tmp_path):
    hangup_on.emulator.script = Script((say_goodbye(),))
    # quiet: the caller would hang up itself only after 4 s of silence; the agent must be first.
    options = CallOptions(
        stream_url(hangup_on), auth_token=AUTH_TOKEN, wav=question(tmp_path), quiet=4, timeout=20
    )
    printed = io.StringIO()
    result = await place_call(options, printed)
    assert result.exit is Exit.OK, result.lines
    assert result.agent_hung_up, result.lines
    assert printed.getvalue().splitlines()[-1].endswith("agent: hangs up")  # as novakit call
    assert "agent: spoke" in result.lines[-2]
    (record,) = await hangup_on.emulator.wait_for_streams(1)
    assert END_CALL.name in offered_tools(record)
    # The tool was answered by the bridge itself (no Lambda), before the goodbye was spoken.
    [answer] = tool_results(record)
    assert "goodbye" in answer["content"]
    # The caller heard the whole goodbye, and echoed every mark, before the line closed.
    caller = result.caller
    goodbye = model_audio(hangup_on)
    assert goodbye and bytes(caller.heard) == ulaw_to_pcm(pcm_to_ulaw(goodbye))
    assert caller.marks_echoed[-1].endswith(f":{len(goodbye) // 16}")
    assert caller.errors == []
    # The bridge ended the Bedrock stream properly: the session's last event is sessionEnd.
    assert record.outcome is Outcome.COMPLETED
    assert record.input_names()[-1] == "sessionEnd"


async def test_with_the_setting_off_the_model_is_not_offered_end_call(hangup_off, tmp_path):
    hangup_off.emulator.script = Script((say_goodbye(),))
    options = CallOptions(
        stream_url(hangup_off), auth_token=AUTH_TOKEN, wav=question(tmp_path), quiet=1.5, timeout=20
    )
    result = await place_call(options)
    assert result.exit is Exit.OK, result.lines
    (record,) = await hangup_off.emulator.wait_for_streams(1)
    assert END_CALL.name not in offered_tools(record)
    assert offered_tools(record)  # the deployment's own tools are still there
    # The model's call of an unknown tool is an error it can speak about; nobody hangs up
    # but the caller.
    [answer] = tool_results(record)
    assert "no tool named 'end_call'" in answer["content"]
    assert not result.agent_hung_up
    assert result.lines[-1].endswith("caller: hangs up")


async def test_a_caller_who_speaks_over_the_goodbye_is_not_hung_up_on(hangup_on, tmp_path):
    long_goodbye = " ".join(["Thanks so much for calling us today, it was a pleasure."] * 5)
    hangup_on.emulator.script = Script(
        (
            say_goodbye(long_goodbye),
            ScriptTurn(transcript="wait, one more thing", reply="Of course, go ahead."),
        )
    )
    options = CallOptions(
        stream_url(hangup_on),
        auth_token=AUTH_TOKEN,
        wav=question(tmp_path, 1.0),
        barge_in=0.6,
        quiet=2.5,
        timeout=30,
    )
    result = await place_call(options)
    assert result.exit is Exit.OK, result.lines
    caller = result.caller
    assert caller.clears >= 1, result.lines
    assert any("(cut off: clear)" in line for line in result.lines)
    # The hang-up was called off: the caller was answered, and hung up when it chose to.
    assert not result.agent_hung_up, result.lines
    assert result.lines[-1].endswith("caller: hangs up")
    spoken = [line for line in result.lines if "agent: spoke" in line]
    assert len(spoken) == 2, result.lines
    (record,) = await hangup_on.emulator.wait_for_streams(1)
    assert record.outcome is Outcome.COMPLETED


async def goodbye_without_playing(stack: Stack, *, echo_marks: bool) -> tuple[float, float]:
    """A caller that asks to hang up, then receives the goodbye without playing it: marks are
    echoed the moment they arrive, or never. Returns (seconds from the last media to the
    close, seconds of goodbye audio received)."""
    caller = TwilioCaller()
    url = stream_url(stack)
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url)}
    said = audio.speech_like(1.0, 8000) + audio.silence(1.0, 8000)
    loop = asyncio.get_running_loop()
    last_media, media_bytes = None, 0
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(caller.connected())
        await ws.send(caller.start())
        for i in range(0, len(said), 320):
            await ws.send(caller.media(said[i : i + 320]))
        async with asyncio.timeout(30):
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in ws:
                    event = json.loads(message)
                    if event["event"] == "media":
                        last_media = loop.time()
                        media_bytes += len(base64.b64decode(event["media"]["payload"]))
                    elif event["event"] == "mark" and echo_marks:
                        await ws.send(message)  # "played" at once
        closed = loop.time()
    assert last_media is not None and ws.close_code == 1000  # the server closed the stream
    return closed - last_media, media_bytes / 8000


async def test_the_hang_up_waits_for_the_marks_and_is_bounded_without_them(hangup_on):
    goodbye = ScriptTurn(transcript="bye", reply=GOODBYE, tool=ToolCall(END_CALL.name))
    hangup_on.emulator.script = Script((goodbye, goodbye))
    # Echoed at once: the call ends as soon as the goodbye's last mark comes back.
    prompt, _ = await goodbye_without_playing(hangup_on, echo_marks=True)
    # Never echoed (a caller whose audio never plays): the bound, goodbye's length + 3 s.
    bounded, seconds = await goodbye_without_playing(hangup_on, echo_marks=False)
    assert prompt < 1.5
    assert PLAY_MARGIN_SECONDS <= bounded <= seconds + PLAY_MARGIN_SECONDS + 1.5
    records = await hangup_on.emulator.wait_for_streams(2)
    assert all(r.input_names()[-1] == "sessionEnd" for r in records)
