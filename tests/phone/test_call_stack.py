"""Phone calls end to end: the Twilio simulator (``novakit call``) → the local gateway's
``twilio`` stage (Twilio's handshake signature checked with the twilio package) → ``novakit
bridge`` → the Bedrock emulator. What the caller hears, what the model was given, and when the
Bedrock stream closed are asserted."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from novakit import audio
from novakit.call import CallOptions, TwilioCaller, place_call, twilio_signature
from novakit.call import main as call_main
from novakit.emulator import Outcome, Script, ScriptTurn
from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm
from novakit.talk import Exit

from ..stack.conftest import Stack, local_stack

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Stack]:
    options = {"stages": ("twilio",), "twilio_auth_token": AUTH_TOKEN}
    async with local_stack(tmp_path, gateway_options=options) as running:
        yield running


def stream_url(stack: Stack) -> str:
    return stack.gateway.stage_url("twilio")


def question(tmp_path: Path, seconds: float = 1.2) -> Path:
    path = tmp_path / "question.wav"
    audio.write_wav(path, audio.speech_like(seconds, 8000) + audio.silence(0.6, 8000), 8000)
    return path


def model_audio(stack: Stack, stream: int = 0) -> bytes:
    record = stack.emulator.records[stream]
    return b"".join(
        base64.b64decode(e.body["content"]) for e in record.output_events if e.name == "audioOutput"
    )


async def test_the_callers_question_is_answered_in_mulaw_for_its_stream(phone, tmp_path):
    phone.emulator.script = Script((ScriptTurn(transcript="hello", reply="Hi! How can I help?"),))
    options = CallOptions(
        stream_url(phone), auth_token=AUTH_TOKEN, wav=question(tmp_path), quiet=1.5, timeout=20
    )
    result = await place_call(options)
    assert result.exit is Exit.OK, result.lines
    caller = result.caller
    assert caller.errors == []  # every message was for this stream and one Twilio knows
    assert caller.media_received >= 1
    (record,) = await phone.emulator.wait_for_streams(1)
    # The session ran at 8 kHz both ways, unresampled.
    [audio_start] = [
        e.body
        for e in record.input_events
        if e.name == "contentStart" and e.body.get("type") == "AUDIO"
    ]
    assert audio_start["audioInputConfiguration"]["sampleRateHertz"] == 8000
    [prompt] = [e.body for e in record.input_events if e.name == "promptStart"]
    assert prompt["audioOutputConfiguration"]["sampleRateHertz"] == 8000
    # What the caller heard is the model's answer, byte for byte through mu-law.
    spoken = model_audio(phone)
    assert spoken and bytes(caller.heard) == ulaw_to_pcm(pcm_to_ulaw(spoken))
    # Every mark came back, once its audio had played.
    assert caller.marks_echoed and caller.marks_echoed[-1].endswith(f":{len(spoken) // 16}")
    assert any("agent: spoke" in line for line in result.lines)


async def test_a_barge_in_clears_twilios_queue(phone, tmp_path):
    long_reply = " ".join(["This answer goes on for a good long while."] * 8)
    phone.emulator.script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=long_reply),
            ScriptTurn(transcript="stop please", reply="Okay."),
        )
    )
    options = CallOptions(
        stream_url(phone),
        auth_token=AUTH_TOKEN,
        wav=question(tmp_path, 1.0),
        barge_in=0.6,
        quiet=1.5,
        timeout=30,
    )
    result = await place_call(options)
    assert result.exit is Exit.OK, result.lines
    caller = result.caller
    assert caller.clears >= 1 and caller.errors == [], result.lines
    assert any("cut off: clear" in line for line in result.lines)
    story = model_audio(phone)
    # The caller heard part of the story and the short answer, far less than the model made.
    assert 0 < len(caller.heard) < len(story)


async def test_a_key_reaches_the_model_as_typed_input(phone, tmp_path):
    phone.emulator.script = Script((ScriptTurn(transcript="menu", reply="Press one for sales."),))
    options = CallOptions(
        stream_url(phone),
        auth_token=AUTH_TOKEN,
        wav=question(tmp_path),
        dtmf="1",
        quiet=1.0,
        timeout=20,
    )
    result = await place_call(options)
    assert result.exit is Exit.OK, result.lines
    (record,) = await phone.emulator.wait_for_streams(1)
    texts = [e.body.get("content") for e in record.input_events if e.name == "textInput"]
    assert "The caller pressed 1 on the phone keypad." in texts
    assert any("pressed 1" in line for line in result.lines)


async def test_stop_closes_the_bedrock_stream_within_a_second(phone):
    phone.emulator.script = Script((ScriptTurn(transcript="hello", reply="Hello there."),))
    caller = TwilioCaller()
    url = stream_url(phone)
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url)}
    said = audio.speech_like(1.0, 8000) + audio.silence(1.0, 8000)
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(caller.connected())
        await ws.send(caller.start())
        for i in range(0, len(said), 320):
            await ws.send(caller.media(said[i : i + 320]))
        async with asyncio.timeout(20):  # the answer's first audio: the model stream is live
            while '"event":"media"' not in await ws.recv():
                pass
        stopped = asyncio.get_running_loop().time()
        await ws.send(caller.stop())
        (record,) = await phone.emulator.wait_for_streams(1)
    assert record.outcome is Outcome.COMPLETED
    assert record.input_names()[-1] == "sessionEnd"
    assert record.input_events[-1].at - stopped < 1.0


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        ("good", None),
        ("missing", 403),
        ("tampered", 403),
        ("other url", 403),
        ("other token", 403),
    ],
)
async def test_only_twilios_signature_opens_the_phone_stage(phone, signature, status):
    url = stream_url(phone)
    good = twilio_signature(AUTH_TOKEN, url)
    headers = {
        "good": {"X-Twilio-Signature": good},
        "missing": {},
        "tampered": {"X-Twilio-Signature": ("A" if good[0] != "A" else "B") + good[1:]},
        "other url": {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, phone.gateway.url)},
        "other token": {"X-Twilio-Signature": twilio_signature("x" + AUTH_TOKEN, url)},
    }[signature]
    if status is None:
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(TwilioCaller().connected())
        return
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers):
            pass
    assert refused.value.response.status_code == status


async def test_the_phone_stage_takes_no_token(phone):
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"{stream_url(phone)}?token={phone.token}"):
            pass


async def test_novakit_call_completes_a_call_with_barge_in_and_a_key(phone, tmp_path):
    """The command as a person runs it: a WAV, a barge-in, a key, what was heard written."""
    long_reply = " ".join(["This answer goes on for a good long while."] * 6)
    phone.emulator.script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=long_reply),
            ScriptTurn(transcript="stop please", reply="Okay."),
            ScriptTurn(transcript="ignored", reply="You pressed one."),
        )
    )
    heard = tmp_path / "heard.wav"
    out = io.StringIO()
    argv = [
        stream_url(phone),
        "--auth-token",
        AUTH_TOKEN,
        "--wav",
        str(question(tmp_path, 1.0)),
        "--out",
        str(heard),
        "--barge-in",
        "0.6",
        "--dtmf",
        "1",
        "--quiet",
        "1.5",
    ]
    code = await asyncio.to_thread(call_main, argv, out)
    lines = out.getvalue().splitlines()
    assert code == 0, lines
    assert any("caller: speaks over the agent" in line for line in lines)
    assert any("(cut off: clear)" in line for line in lines)
    assert any("caller: pressed 1" in line for line in lines)
    assert lines[-1].endswith("caller: hangs up")
    pcm, rate = audio.read_wav(heard)
    assert rate == 8000 and audio.duration(pcm, rate) > 0.5
    (record,) = await phone.emulator.wait_for_streams(1)
    texts = [e.body.get("content") for e in record.input_events if e.name == "textInput"]
    assert "The caller pressed 1 on the phone keypad." in texts


async def test_novakit_call_reports_a_call_the_agent_ends_while_the_caller_speaks(
    phone: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bridge ends the call while the caller is still speaking (a stream parameter naming
    a voice Nova does not have: the model session cannot open). ``novakit call`` ends with a
    documented exit code (4, the call failed) and says why, not with a traceback."""
    out = io.StringIO()
    argv = [
        stream_url(phone),
        "--auth-token",
        AUTH_TOKEN,
        "--wav",
        str(question(tmp_path, seconds=3.0)),
        "--param",
        "voice=alloy",
        "--timeout",
        "20",
    ]
    try:
        code = await asyncio.to_thread(call_main, argv, out)
    except websockets.ConnectionClosed as exc:
        pytest.fail(f"novakit call crashed: {exc!r}; printed {out.getvalue().splitlines()}")
    assert code == 4, out.getvalue()
    lines = out.getvalue().splitlines()
    assert "agent: hangs up before answering" in lines[-1], lines
    assert "the bridge's log says why" in lines[-1], lines


async def test_a_stream_that_drops_without_stop_ends_the_bedrock_stream(phone: Stack) -> None:
    """Twilio's side goes away (network, a crash) without ``stop``: the Bedrock stream still
    ends soon, and nothing starts again for the call."""
    phone.emulator.script = Script((ScriptTurn(transcript="hello", reply="Hello there."),))
    caller = TwilioCaller()
    url = stream_url(phone)
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url)}
    said = audio.speech_like(1.0, 8000) + audio.silence(1.0, 8000)
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(caller.connected())
        await ws.send(caller.start())
        for i in range(0, len(said), 320):
            await ws.send(caller.media(said[i : i + 320]))
        async with asyncio.timeout(20):  # the answer's first audio: the model stream is live
            while '"event":"media"' not in await ws.recv():
                pass
        left = asyncio.get_running_loop().time()
    (record,) = await phone.emulator.wait_for_streams(1, timeout=10)
    assert asyncio.get_running_loop().time() - left < 5.0
    assert record.input_names()[-1] == "sessionEnd"
    assert len(phone.emulator.records) == 1
