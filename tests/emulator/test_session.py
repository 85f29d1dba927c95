"""One stream without sockets: signed frames in, response bytes out, limits and faults by clock."""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from smithy_aws_event_stream.events import Event

from novakit.emulator.conversation import EngineSettings, Script, ScriptCursor, ScriptTurn, ToolCall
from novakit.emulator.eventstream import ChecksumError, Decoder
from novakit.emulator.faults import FaultKind, FaultPlan, Trigger
from novakit.emulator.grammar import MODELS, NOVA_2_SONIC
from novakit.emulator.record import Outcome, StreamRecord
from novakit.emulator.session import EndAction, SessionLimits, StreamSession
from novakit.emulator.sigv4 import Credentials, verify_request
from novakit.emulator.speech import silence, tone

from .helpers import (
    FrameSigner,
    audio_inputs,
    audio_start,
    closing,
    decode_output,
    event,
    opening,
    prompt_start,
    session_start,
    sign_request,
    text_content,
    tool_result,
    tool_spec,
)

FAST = EngineSettings(endpoint_seconds=0.3)


class Harness:
    def __init__(self, session: StreamSession, signer: FrameSigner) -> None:
        self.session = session
        self.signer = signer
        self.wire = b""

    @property
    def record(self) -> StreamRecord:
        return self.session.record

    async def send(self, *raws: bytes, now: float = 0.0) -> None:
        for raw in raws:
            self.session.receive_data(await self.signer.chunk(raw), now)
        self.wire += self.session.data_to_send()

    async def finish(self, now: float = 0.0) -> None:
        self.session.receive_data(await self.signer.final(), now)
        self.wire += self.session.data_to_send()

    def tick(self, now: float) -> None:
        self.session.tick(now)
        self.wire += self.session.data_to_send()

    def output(self) -> list[tuple[str, Any]]:
        return decode_output(self.wire)


async def harness(
    *,
    faults: tuple[FaultPlan, ...] = (),
    limits: SessionLimits | None = None,
    script: Script | None = None,
    secret: str = "emulator-secret",
) -> Harness:
    date = datetime.datetime.now(datetime.UTC)
    method, path, headers = await sign_request(date=date)
    auth = verify_request(
        method,
        path,
        headers,
        credentials=(Credentials("AKIDEMULATOR", "emulator-secret"),),
        region="us-east-1",
        now=date,
    )
    session = StreamSession(
        model=MODELS[NOVA_2_SONIC],
        auth=auth,
        record=StreamRecord(index=0, model_id=NOVA_2_SONIC),
        now=0.0,
        cursor=ScriptCursor(script or Script()),
        seed="session-test",
        engine_settings=FAST,
        limits=limits or SessionLimits(pace=0),
        faults=list(faults),
    )
    return Harness(session, FrameSigner(auth.seed_signature, secret=secret))


async def test_clean_session() -> None:
    h = await harness()
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)), *closing())
    assert h.session.end_action is None  # waits for the final signed frame
    await h.finish()
    assert h.session.end_action is EndAction.END_STREAM
    assert h.record.outcome is Outcome.COMPLETED
    assert h.record.session_end_received
    assert h.record.input_closed
    names = [name for name, _ in h.output()]
    assert names == h.record.output_names()
    assert names[0] == "completionStart"
    assert names[-1] == "completionEnd"
    assert h.record.input_names()[:4] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
    ]


async def test_output_frames_are_what_the_sdk_decodes() -> None:
    h = await harness()
    await h.send(*opening(), *audio_inputs(tone(0.5) + silence(2.0)))
    source = io.BytesIO(h.wire)
    first = Event.decode(source)
    assert first is not None
    assert first.message.headers == {
        ":message-type": "event",
        ":event-type": "chunk",
        ":content-type": "application/json",
    }
    assert first.message.payload.startswith(b'{"bytes": "')


async def test_frames_may_arrive_in_any_pieces() -> None:
    h = await harness()
    frames = [await h.signer.chunk(raw) for raw in opening()]
    frames += [await h.signer.chunk(raw) for raw in audio_inputs(tone(0.5) + silence(1.5))]
    frames += [await h.signer.chunk(raw) for raw in closing()]
    data = b"".join(frames) + await h.signer.final()
    for offset in range(0, len(data), 7):
        h.session.receive_data(data[offset : offset + 7], 0.0)
    assert h.record.outcome is Outcome.COMPLETED
    assert "audioOutput" in h.record.output_names()


async def test_bad_chunk_signature_ends_the_stream() -> None:
    h = await harness(secret="not-the-secret")
    await h.send(session_start(), prompt_start())
    assert h.output() == [
        (
            "!validationException",
            {
                "message": "chunk: chunk signature mismatch on frame 1 "
                "(altered, reordered or signed with other credentials)"
            },
        )
    ]
    assert h.record.outcome is Outcome.VIOLATION
    assert h.record.input_events == []  # nothing unverified is trusted


async def test_grammar_violation_ends_the_stream_and_later_input_is_ignored() -> None:
    h = await harness()
    await h.send(session_start(), prompt_start(rate=44100), prompt_start())
    ((name, body),) = h.output()
    assert name == "!validationException"
    assert body["message"].startswith("promptStart: audioOutputConfiguration.sampleRateHertz")
    assert h.record.outcome is Outcome.VIOLATION
    assert h.record.input_names() == ["sessionStart", "promptStart"]
    assert h.record.error is not None
    assert h.record.error.error_type == "validationException"


async def test_garbage_input_is_a_violation() -> None:
    h = await harness()
    h.session.receive_data(b"\x00\x00\x00\x10\x00\x00\x00\x00garbage!", 0.0)
    h.wire += h.session.data_to_send()
    ((name, body),) = h.output()
    assert name == "!validationException"
    assert "not a valid event stream" in body["message"]


async def test_wrong_inner_event_type_is_a_violation() -> None:
    h = await harness()
    h.session.receive_data(await h.signer.chunk(session_start(), event_type="audio"), 0.0)
    h.wire += h.session.data_to_send()
    assert h.output() == [
        (
            "!validationException",
            {"message": "chunk: unknown :event-type 'audio' (expected 'chunk')"},
        )
    ]


async def test_stream_lifetime() -> None:
    h = await harness(limits=SessionLimits(stream_seconds=2.0, idle_seconds=60.0, pace=0))
    await h.send(*opening())
    assert h.session.next_wakeup() == 2.0
    h.tick(1.9)
    assert h.session.end_action is None
    h.tick(2.0)
    assert h.output()[-1] == (
        "!modelTimeoutException",
        {"message": "Model has timed out in processing the request"},
    )
    assert h.record.outcome is Outcome.TIMEOUT
    assert h.session.next_wakeup() is None


async def test_idle_cut_counts_from_the_last_audio() -> None:
    h = await harness(limits=SessionLimits(stream_seconds=60.0, idle_seconds=1.0, pace=0))
    await h.send(*opening(), now=0.0)
    await h.send(*audio_inputs(silence(0.1)), now=0.5)
    assert h.session.next_wakeup() == 1.5
    h.tick(1.5)
    name, body = h.output()[-1]
    assert name == "!validationException"
    assert "InternalErrorCode=531" in body["message"]
    assert h.record.outcome is Outcome.TIMEOUT


async def test_fault_at_start_fires_before_any_input() -> None:
    h = await harness(faults=(FaultPlan(FaultKind.THROTTLE),))
    h.wire += h.session.data_to_send()
    assert h.output() == [
        ("!throttlingException", {"message": "Too many requests, please wait before trying again."})
    ]
    assert h.record.outcome is Outcome.FAULT
    assert h.record.fault is FaultKind.THROTTLE


async def test_fault_after_seconds_and_while_the_assistant_speaks() -> None:
    h = await harness(faults=(FaultPlan.parse("internal@5s"),))
    await h.send(*opening())
    assert h.session.next_wakeup() == 5.0
    h.tick(5.0)
    assert h.output()[-1][0] == "!internalServerException"

    h = await harness(faults=(FaultPlan.parse("model_stream_error@assistant"),))
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)))
    names = [name for name, _ in h.output()]
    assert names[-2:] == ["audioOutput", "!modelStreamErrorException"]
    # It fires on the input event during which the first audio went out (32 ms: one or two).
    assert names.count("audioOutput") <= 2


async def test_fault_while_the_user_speaks_and_after_turns() -> None:
    h = await harness(faults=(FaultPlan.parse("unavailable@user"),))
    await h.send(*opening(), *audio_inputs(tone(1.0)))
    assert [name for name, _ in h.output()] == ["!serviceUnavailableException"]

    h = await harness(faults=(FaultPlan.parse("throttle@1turns"),))
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)))
    names = [name for name, _ in h.output()]
    assert names[-2:] == ["usageEvent", "!throttlingException"]


@pytest.mark.parametrize(("kind", "action"), [("reset", EndAction.RESET), ("drop", EndAction.DROP)])
async def test_transport_faults_set_the_end_action(kind: str, action: EndAction) -> None:
    h = await harness(faults=(FaultPlan.parse(f"{kind}@assistant"),))
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)))
    assert h.session.end_action is action
    assert h.record.outcome is Outcome.FAULT


async def test_invalid_event_fault_sends_an_undecodable_message() -> None:
    h = await harness(faults=(FaultPlan.parse("invalid_event@start"),))
    h.wire += h.session.data_to_send()
    with pytest.raises(ChecksumError):
        Decoder().feed(h.wire)
    assert h.session.end_action is EndAction.END_STREAM


async def test_the_wall_clock_moves_a_typed_answer_while_audio_is_open() -> None:
    # Bedrock answers typed text without waiting for more audio (it used to wait for the
    # client's next audio: 1.17 s to first audio behind the provider's keep-alive).
    h = await harness(limits=SessionLimits(pace=1.0))
    await h.send(session_start(), prompt_start(), audio_start(), now=0.0)
    await h.send(*text_content("t", "USER", "hi", interactive=True), now=1.0)
    assert [name for name, _ in h.output()] == ["completionStart"]
    wake = h.session.next_wakeup()
    assert wake == pytest.approx(1.2)  # the response latency, in wall seconds at pace 1
    h.tick(1.2)
    assert [name for name, _ in h.output()][1:4] == ["contentStart", "textOutput", "contentEnd"]
    h.tick(10.0)
    assert h.output()[-1][0] == "usageEvent"


async def test_a_client_that_stops_streaming_still_gets_the_whole_answer() -> None:
    h = await harness(limits=SessionLimits(pace=0.25, idle_seconds=60.0))
    await h.send(*opening(), now=0.0)
    await h.send(*audio_inputs(tone(0.6) + silence(2.0)), now=0.1)  # then nothing more
    while (wake := h.session.next_wakeup()) is not None and wake < 30.0:
        h.tick(wake)
        if h.output()[-1][0] == "usageEvent":
            break
    names = [name for name, _ in h.output()]
    assert names[-1] == "usageEvent"
    assert "audioOutput" in names
    # Generated faster than real time: 4x the clock, the clock 4x the wall (pace 0.25).
    assert h.session.next_wakeup() == pytest.approx(60.1)  # only the idle cut is left


async def test_pace_zero_answers_typed_text_once_the_audio_content_closes() -> None:
    # The tests' "as fast as the input allows" mode: audio drives the clock while it is open.
    h = await harness(limits=SessionLimits(pace=0))
    await h.send(session_start(), prompt_start(), audio_start())
    await h.send(*text_content("t", "USER", "hi", interactive=True))
    assert [name for name, _ in h.output()] == ["completionStart"]
    await h.send(event("contentEnd", {"promptName": "prompt-1", "contentName": "audio-1"}))
    assert h.output()[-1][0] == "usageEvent"


async def test_tool_round_trip_through_the_session() -> None:
    script = Script((ScriptTurn(reply="Done: {result}", tool=ToolCall("getWeather", {})),))
    h = await harness(script=script)
    await h.send(session_start(), prompt_start(tools=[tool_spec()]), audio_start())
    await h.send(*audio_inputs(tone(1.0) + silence(2.0)))
    tool_use = next(body for name, body in h.output() if name == "toolUse")
    await h.send(*tool_result(tool_use["toolUseId"], "ok"), *audio_inputs(silence(2.0)))
    texts = [body["content"] for name, body in h.output() if name == "textOutput"]
    assert texts[-1] == "Done: ok"
    assert h.session.end_action is None


async def test_input_closed_without_session_end() -> None:
    h = await harness()
    await h.send(session_start())
    await h.finish()
    assert h.record.outcome is Outcome.INPUT_CLOSED
    assert h.record.input_closed

    h = await harness()
    await h.send(session_start())
    h.session.input_ended(0.0)
    assert h.record.outcome is Outcome.INPUT_CLOSED
    assert not h.record.input_closed


async def test_abort_records_why() -> None:
    h = await harness()
    await h.send(session_start())
    h.session.abort(Outcome.CLIENT_RESET)
    assert h.record.outcome is Outcome.CLIENT_RESET
    await h.send(event("sessionEnd"))
    assert h.record.input_names() == ["sessionStart"]


def raw_documents(data: bytes) -> list[bytes]:
    """The event documents of the response's chunks, undecoded (a fault may make them bad)."""
    import base64
    import json

    from novakit.emulator.eventstream import Decoder

    return [
        base64.b64decode(json.loads(message.payload)["bytes"])
        for message in Decoder().feed(data)
        if message.headers[":message-type"] == "event"
    ]


@pytest.mark.parametrize(
    "kind", [FaultKind.BAD_JSON, FaultKind.UNKNOWN_EVENT, FaultKind.WRONG_TYPE]
)
async def test_content_faults_send_bad_events_in_good_frames_and_the_stream_goes_on(
    kind: FaultKind,
) -> None:
    import json

    from novakit.emulator.faults import CONTENT_FAULTS, CORRUPT_MARKER

    h = await harness(faults=(FaultPlan(kind, Trigger.ASSISTANT_SPEECH),))
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)), *closing())
    await h.finish()
    documents = raw_documents(h.wire)  # every frame decodes: framing and CRC are intact
    injected = [d for d in documents if d in CONTENT_FAULTS[kind]]
    assert injected == list(CONTENT_FAULTS[kind])
    assert any(CORRUPT_MARKER.encode() in d for d in injected)
    # Mid-answer: after the first audio, and the answer still ends.
    first_audio = next(i for i, d in enumerate(documents) if b'"audioOutput"' in d)
    assert documents.index(injected[0]) > first_audio
    assert h.record.fault is kind and h.record.outcome is Outcome.COMPLETED
    assert "completionEnd" in h.record.output_names()
    if kind is FaultKind.BAD_JSON:
        for document in injected:
            with pytest.raises(ValueError):
                json.loads(document)
    else:
        for document in injected:
            assert isinstance(json.loads(document)["event"], dict)


async def test_a_stall_sends_nothing_more_and_never_ends_the_stream() -> None:
    h = await harness(
        faults=(FaultPlan(FaultKind.STALL, Trigger.ASSISTANT_SPEECH),),
        limits=SessionLimits(stream_seconds=5.0, idle_seconds=1.0, pace=0),
    )
    await h.send(*opening(), *audio_inputs(tone(1.0) + silence(3.0)))
    sent = len(h.output())
    assert "audioOutput" in [name for name, _ in h.output()]  # stalled mid-answer
    await h.send(*audio_inputs(tone(1.0) + silence(3.0)), now=1.0)  # input is still read
    assert h.session.next_wakeup() is None
    h.tick(100.0)  # no limit fires
    await h.send(*closing(), now=100.0)
    await h.finish(now=100.0)
    h.session.input_ended(100.0)
    assert len(h.output()) == sent
    assert h.session.end_action is None and h.record.outcome is None
    assert h.record.fault is FaultKind.STALL and h.record.input_closed
    h.session.abort(Outcome.CLIENT_RESET)  # the client gives up on it
    assert h.record.outcome is Outcome.CLIENT_RESET
