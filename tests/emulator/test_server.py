"""The real SDK (aws-sdk-bedrock-runtime over awscrt, TLS + HTTP/2 + SigV4) against the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aws_sdk_bedrock_runtime.models import (
    ModelTimeoutException,
    ThrottlingException,
    ValidationException,
)
from smithy_core.exceptions import CallError

from novakit.emulator import (
    Emulator,
    EmulatorConfig,
    FaultKind,
    FaultPlan,
    Outcome,
    Script,
    ScriptTurn,
)
from novakit.emulator.speech import silence, synthesize, tone

from .helpers import (
    PROMPT,
    SdkStream,
    audio_inputs,
    closing,
    event,
    open_sdk_stream,
    opening,
    session_start,
)

pytestmark = pytest.mark.contract


def summary(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for name, body in events:
        if name == "audioOutput":
            if lines[-1] != "audio*":
                lines.append("audio*")
            continue
        if name == "contentStart":
            line = f"start {body['type']} {body['role']}"
            if body["type"] == "TEXT":
                line += " " + json.loads(body["additionalModelFields"])["generationStage"]
            lines.append(line)
        elif name == "textOutput":
            lines.append(f"text {body['role']}: {body['content']}")
        elif name == "contentEnd":
            lines.append(f"end {body['type']} {body['stopReason']}")
        else:
            lines.append(name)
    return lines


async def speak_and_listen(
    s: SdkStream, pcm: bytes, *, until: str = "usageEvent"
) -> list[tuple[str, dict[str, Any]]]:
    """Send ``pcm`` then silence as 32 ms audioInput events while reading output up to ``until``."""
    received: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.Event()

    async def listen() -> None:
        while (item := await s.receive()) is not None:
            received.append(item)
            if item[0] == until:
                break
        done.set()

    listener = asyncio.create_task(listen())
    for raw in audio_inputs(pcm):
        await s.send(raw)
    # Keep the microphone open (silence) until the turn is over, as a real client does.
    for raw in audio_inputs(silence(8.0)):
        if done.is_set():
            break
        await s.send(raw)
    await asyncio.wait_for(listener, 5)
    return received


async def finish(s: SdkStream) -> list[tuple[str, dict[str, Any]]]:
    for raw in closing():
        await s.send(raw)
    await s.close_input()
    rest = []
    while (item := await s.receive()) is not None:
        rest.append(item)
    await s.close()
    return rest


async def test_a_spoken_turn(emu: Emulator) -> None:
    s = await open_sdk_stream(emu.endpoint, emu.ca_path)
    for raw in opening():
        await s.send(raw)
    turn = await speak_and_listen(s, tone(1.0))
    rest = await finish(s)

    assert summary(turn) == [
        "completionStart",
        "start TEXT USER FINAL",
        "text USER: This is utterance 1, 1.00 seconds long.",
        "end TEXT END_TURN",
        "start TEXT ASSISTANT SPECULATIVE",
        "text ASSISTANT: I heard utterance 1.",
        "end TEXT PARTIAL_TURN",
        "start AUDIO ASSISTANT",
        "audio*",
        "end AUDIO END_TURN",
        "start TEXT ASSISTANT FINAL",
        "text ASSISTANT: I heard utterance 1.",
        "end TEXT END_TURN",
        "usageEvent",
    ]
    assert [name for name, _ in rest] == ["completionEnd"]
    audio = b"".join(base64.b64decode(b["content"]) for n, b in turn if n == "audioOutput")
    assert audio == synthesize("I heard utterance 1.", 24000)

    (record,) = await emu.wait_for_streams(1)
    assert record.outcome is Outcome.COMPLETED
    assert record.session_end_received
    assert record.input_closed
    assert record.access_key_id == "AKIDEMULATOR"
    assert record.output_names() == [name for name, _ in turn + rest]
    names = record.input_names()
    assert names[:6] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
        "contentStart",
    ]
    assert set(names[6:-3]) == {"audioInput"}
    assert names[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]


async def test_a_wrong_secret_key_is_rejected(emu: Emulator) -> None:
    s = await open_sdk_stream(emu.endpoint, emu.ca_path, secret="not-the-secret")
    await s.send(session_start())
    # The SDK raises on await_output; the type is not modeled, so it is a plain CallError.
    with pytest.raises(CallError, match="status: 403.*InvalidSignatureException"):
        await s.receiver()
    await s.close()
    (record,) = await emu.wait_for_streams(1)
    assert record.outcome is Outcome.REJECTED
    assert record.status == 403
    assert record.error is not None
    assert record.error.error_type == "InvalidSignatureException"


async def test_an_unknown_key_and_an_unknown_model(emu: Emulator) -> None:
    s = await open_sdk_stream(emu.endpoint, emu.ca_path, access_key="AKIDSTRANGER")
    with pytest.raises(CallError, match="UnrecognizedClientException"):
        await s.receiver()
    await s.close()
    s = await open_sdk_stream(emu.endpoint, emu.ca_path, model_id="amazon.nova-9-sonic-v1:0")
    with pytest.raises(ValidationException, match="The provided model identifier is invalid."):
        await s.receiver()
    await s.close()
    records = await emu.wait_for_streams(2)
    assert [(r.status, r.model_id) for r in records] == [
        (403, "amazon.nova-2-sonic-v1:0"),
        (400, "amazon.nova-9-sonic-v1:0"),
    ]


async def test_a_fault_mid_turn_then_a_healthy_stream(emu: Emulator) -> None:
    emu.faults = [FaultPlan.parse("throttle@assistant")]
    s = await open_sdk_stream(emu.endpoint, emu.ca_path)
    for raw in opening():
        await s.send(raw)
    with pytest.raises(ThrottlingException, match="Too many requests"):
        await speak_and_listen(s, tone(1.0))
    # After the exception the service has ended its side; the client still closes cleanly.
    await s.close_input()
    await s.close()
    assert emu.faults == []  # a one-shot plan is used up by the stream it was armed for

    s = await open_sdk_stream(emu.endpoint, emu.ca_path)
    for raw in opening():
        await s.send(raw)
    turn = await speak_and_listen(s, tone(1.0))
    rest = await finish(s)
    assert "audioOutput" in [n for n, _ in turn]
    assert [n for n, _ in rest][-1:] == ["completionEnd"]

    first, second = await emu.wait_for_streams(2)
    assert (first.outcome, first.fault) == (Outcome.FAULT, FaultKind.THROTTLE)
    assert "audioOutput" in first.output_names()
    assert second.outcome is Outcome.COMPLETED


async def test_a_grammar_violation_ends_the_stream(emu: Emulator) -> None:
    s = await open_sdk_stream(emu.endpoint, emu.ca_path)
    await s.send(session_start())
    await s.send(event("contentStart", {"promptName": PROMPT, "contentName": "x"}))
    with pytest.raises(ValidationException) as err:
        await s.receive()
    assert err.value.message == "contentStart: no prompt is open (send promptStart first)"
    await s.close_input()
    await s.close()
    (record,) = await emu.wait_for_streams(1)
    assert record.outcome is Outcome.VIOLATION


async def test_the_stream_lifetime_runs_out() -> None:
    config = EmulatorConfig(endpoint_seconds=0.3, pace=0, stream_seconds=0.5)
    async with Emulator(config) as emu:
        s = await open_sdk_stream(emu.endpoint, emu.ca_path)
        for raw in opening():
            await s.send(raw)
        with pytest.raises(ModelTimeoutException, match="Model has timed out"):
            await s.receive()
        await s.close_input()
        await s.close()
        (record,) = await emu.wait_for_streams(1)
        assert record.outcome is Outcome.TIMEOUT


async def test_a_reset_looks_like_a_clean_end_to_the_sdk(emu: Emulator) -> None:
    # A wire fact worth pinning down: awscrt ends the response body without an error on
    # RST_STREAM, so receive() returns None; the SDK's input buffer is then never drained, so
    # a client must not wait on input_stream.close() after that.
    emu.faults = [FaultPlan.parse("reset@start")]
    s = await open_sdk_stream(emu.endpoint, emu.ca_path)
    await s.send(session_start())
    assert await s.receive() is None
    await s.close()
    (record,) = await emu.wait_for_streams(1)
    assert (record.outcome, record.fault) == (Outcome.FAULT, FaultKind.RESET)


async def test_many_streams_at_once_with_large_audio_both_ways() -> None:
    # A long reply at 24 kHz is far more than HTTP/2's initial 64 KB window, and 12 s of input
    # audio per stream is several hundred KB: neither direction may stall or drop data.
    reply = " ".join(["This sentence is here to make the answer long."] * 6)
    config = EmulatorConfig(endpoint_seconds=0.3, pace=0, script=Script((ScriptTurn(reply=reply),)))
    async with Emulator(config) as emu:
        first = await open_sdk_stream(emu.endpoint, emu.ca_path)
        streams = [first]
        streams += [await open_sdk_stream(emu.endpoint, emu.ca_path) for _ in range(2)]
        streams += [  # more streams on the first client's connection
            await open_sdk_stream(emu.endpoint, emu.ca_path, client=first.client) for _ in range(2)
        ]

        async def one(s: SdkStream) -> bytes:
            for raw in opening():
                await s.send(raw)
            turn = await speak_and_listen(s, tone(1.0))
            for raw in audio_inputs(silence(12.0), chunk_bytes=3200):
                await s.send(raw)
            for raw in closing():
                await s.send(raw)
            await s.close_input()
            while await s.receive() is not None:
                pass
            return b"".join(base64.b64decode(b["content"]) for n, b in turn if n == "audioOutput")

        audios = await asyncio.wait_for(asyncio.gather(*(one(s) for s in streams)), 30)
        for s in streams[:3]:
            await s.close()
        expected = b"".join(synthesize(sentence, 24000) for sentence in [reply.split(". ")[0]])
        assert all(audio.startswith(expected) for audio in audios)
        assert len({len(a) for a in audios}) == 1

        records = await emu.wait_for_streams(len(streams))
        assert {r.outcome for r in records} == {Outcome.COMPLETED}
        # every event each stream sent arrived, in order: none lost or stalled in a window
        assert sorted(r.input_names() for r in records) == sorted(s.sent for s in streams)


async def test_a_long_running_emulator_bounds_what_it_remembers() -> None:
    # novakit emulator / novakit dev: the last finished streams, without their audio.
    config = EmulatorConfig(endpoint_seconds=0.3, pace=0, keep_records=2, record_audio=False)
    async with Emulator(config) as emu:
        for n in range(4):
            s = await open_sdk_stream(emu.endpoint, emu.ca_path)
            for raw in opening():
                await s.send(raw)
            turn = await speak_and_listen(s, tone(0.6))
            await finish(s)
            assert "audioOutput" in [name for name, _ in turn]  # audio still flows
            await emu.wait_for_streams(min(n + 1, 2))
        assert [r.index for r in emu.records] == [2, 3]
        for record in emu.records:
            assert record.outcome is Outcome.COMPLETED
            assert "audioInput" not in record.input_names()
            assert "audioOutput" not in record.output_names()
            assert record.input_names()[:2] == ["sessionStart", "promptStart"]
            assert "textOutput" in record.output_names()
        s = await open_sdk_stream(emu.endpoint, emu.ca_path)  # a fifth: the oldest goes
        for raw in opening():
            await s.send(raw)
        await finish(s)
        assert [r.index for r in emu.records] == [3, 4]
