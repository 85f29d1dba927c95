"""The Twilio Media Streams codec: Twilio's documented message shapes in, session commands out;
model audio in, media + mark + clear messages out (novakit.bridge.twilio)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from novakit.audio import speech_like
from novakit.bridge.protocol import (
    ClientAudio,
    ClientEnd,
    ClientStart,
    ClientText,
    ErrorCode,
    ProtocolError,
)
from novakit.bridge.twilio import (
    MarkPlayed,
    Media,
    Start,
    TwilioInbound,
    TwilioOutbound,
    dtmf_text,
    is_mark_message,
    is_media_message,
    parse_twilio_message,
)
from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA0123456789abcdef0123456789abcdef"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"

# The shapes of Twilio's Media Streams documentation (counters are strings there).
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {
            "caller": "+15550100",
            "voice": "tiffany",
            "instructions": "Be brief.",
        },
    },
    "streamSid": STREAM,
}


BAD_SID_START = json.dumps({**START, "start": {**START["start"], "streamSid": "a b"}})


def media(chunk: int, ulaw: bytes, *, track: str = "inbound") -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(20 * (chunk - 1)),
                "payload": base64.b64encode(ulaw).decode(),
            },
            "streamSid": STREAM,
        }
    )


def message(event: str, **fields: object) -> str:
    return json.dumps({"event": event, "sequenceNumber": "9", "streamSid": STREAM, **fields})


def started() -> TwilioInbound:
    inbound = TwilioInbound()
    assert inbound.receive(json.dumps(CONNECTED)) == []
    inbound.receive(json.dumps(START))
    return inbound


# -- inbound -----------------------------------------------------------------------------------


def test_start_opens_the_conversation_at_8khz_both_ways() -> None:
    inbound = TwilioInbound()
    [command] = inbound.receive(json.dumps(START))
    assert command == ClientStart(
        voice="tiffany", instructions="Be brief.", input_sample_rate=8000, output_sample_rate=8000
    )
    assert inbound.stream_sid == STREAM
    assert inbound.start is not None and inbound.start.call_sid == CALL
    assert inbound.start.custom_parameters["caller"] == "+15550100"


def test_media_is_the_callers_audio_decoded_and_numbered_by_chunk() -> None:
    inbound = started()
    pcm = speech_like(0.02, 8000)
    ulaw = pcm_to_ulaw(pcm)
    [audio] = inbound.receive(media(1, ulaw))
    assert audio == ClientAudio(1, ulaw_to_pcm(ulaw))
    assert len(audio.pcm) == 320  # 20 ms at 8 kHz, PCM16
    [second] = inbound.receive(media(2, ulaw))
    assert isinstance(second, ClientAudio) and second.seq == 2


def test_outbound_track_media_is_not_heard() -> None:
    assert started().receive(media(1, b"\xff" * 160, track="outbound")) == []


def test_dtmf_is_typed_input_mark_is_played_stop_ends() -> None:
    inbound = started()
    dtmf = message("dtmf", dtmf={"track": "inbound_track", "digit": "1"})
    assert inbound.receive(dtmf) == [ClientText(dtmf_text("1"))]
    assert "pressed 1" in dtmf_text("1")
    assert inbound.receive(message("mark", mark={"name": "0:500"})) == [MarkPlayed("0:500")]
    stop = message("stop", stop={"accountSid": ACCOUNT, "callSid": CALL})
    assert inbound.receive(stop) == [ClientEnd()]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.BAD_JSON),
        ("[1]", ErrorCode.BAD_FRAME),
        ('{"event": 3}', ErrorCode.BAD_FRAME),
        ('{"event": "hangup"}', ErrorCode.UNKNOWN_TYPE),
        (message("media", media={"chunk": "1", "payload": "not base64!"}), ErrorCode.BAD_AUDIO),
        (message("media", media={"chunk": "1", "payload": ""}), ErrorCode.BAD_AUDIO),
        (message("media", media={"chunk": "x", "payload": "/w=="}), ErrorCode.BAD_FRAME),
        (message("dtmf", dtmf={"digit": "12"}), ErrorCode.BAD_FRAME),
        (message("mark", mark={"name": ""}), ErrorCode.BAD_FRAME),
        (
            json.dumps({**START, "start": {**START["start"], "streamSid": "a b"}}),
            ErrorCode.BAD_FRAME,
        ),
        ("x" * 40000, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_messages_are_refused_with_a_code(text: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_twilio_message(text)
    assert caught.value.code is code
    assert not caught.value.fatal


def test_a_stream_in_another_format_is_refused_for_good() -> None:
    linear = {**START["start"], "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}}
    with pytest.raises(ProtocolError) as caught:
        TwilioInbound().receive(json.dumps({**START, "start": linear}))
    assert caught.value.code is ErrorCode.BAD_SAMPLE_RATE and caught.value.fatal


def test_messages_before_start_or_for_another_stream_are_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        TwilioInbound().receive(media(1, b"\xff" * 160))
    assert caught.value.code is ErrorCode.NOT_STARTED
    other = media(1, b"\xff" * 160).replace(STREAM, "MZ" + "0" * 32)
    with pytest.raises(ProtocolError):
        started().receive(other)
    with pytest.raises(ProtocolError) as again:
        started().receive(json.dumps(START))
    assert again.value.code is ErrorCode.ALREADY_STARTED


def test_counters_as_numbers_are_read_too() -> None:
    numbered = {"chunk": 7, "payload": "/w=="}
    parsed = parse_twilio_message(
        json.dumps({"event": "media", "streamSid": STREAM, "media": numbered})
    )
    assert isinstance(parsed, Media) and parsed.chunk == 7 and parsed.payload == b"\xff"
    assert isinstance(parse_twilio_message(json.dumps(START)), Start)


# -- outbound ----------------------------------------------------------------------------------


def decoded(messages: list[str]) -> list[dict[str, object]]:
    return [json.loads(m) for m in messages]


def test_audio_goes_as_batched_mulaw_media_each_followed_by_a_mark() -> None:
    out = TwilioOutbound(batch_ms=500)
    assert out.bind(STREAM) == []
    pcm = speech_like(1.2, 8000)
    messages = out.audio(pcm, now=0.0)
    shapes = decoded(messages)
    assert [m["event"] for m in shapes] == ["media", "mark", "media", "mark"]
    assert all(m["streamSid"] == STREAM for m in shapes)
    first = base64.b64decode(shapes[0]["media"]["payload"])  # type: ignore[index]
    assert first == pcm_to_ulaw(pcm[:8000])  # 500 ms = 4000 samples = 8000 PCM bytes
    assert [m["mark"]["name"] for m in shapes[1::2]] == ["0:500", "0:1000"]  # type: ignore[index]
    assert is_media_message(messages[0]) and is_mark_message(messages[1])
    assert not is_media_message(messages[1])
    # The last 200 ms wait for more, at most hold_ms.
    assert out.due(0.05) == []
    tail = decoded(out.due(0.1))
    assert len(base64.b64decode(tail[0]["media"]["payload"])) == 1600  # type: ignore[index]
    assert tail[1]["mark"] == {"name": "0:1200"}
    assert out.next_deadline() is None
    assert out.counters.media_messages == 3 and out.counters.mark_messages == 3


def test_audio_before_the_stream_is_known_waits_for_bind() -> None:
    out = TwilioOutbound(batch_ms=100)
    assert out.audio(speech_like(0.25, 8000), 0.0) == []
    assert out.next_deadline() is None
    assert [m["event"] for m in decoded(out.bind(STREAM))] == ["media", "mark"] * 2
    assert len(out.flush(1.0)) == 2


def test_echoed_marks_say_what_the_caller_heard_and_a_clear_keeps_only_that() -> None:
    out = TwilioOutbound(batch_ms=500)
    out.bind(STREAM)
    marks = [json.loads(m)["mark"]["name"] for m in out.audio(bytes(16000), 0.0)[1::2]]
    assert marks == ["0:500", "0:1000"]
    out.mark_played("0:500")
    assert (out.heard_ms, out.sent_ms) == (500, 1000)
    [clear] = decoded(out.barge_in(0.1))
    assert clear == {"event": "clear", "streamSid": STREAM}
    # Twilio echoes the marks it dropped on the clear: they were never played.
    out.mark_played("0:1000")
    assert out.interrupted == (500, 1000)
    assert (out.answer, out.heard_ms, out.sent_ms) == (1, 0, 0)
    # The next answer's marks count again.
    names = [json.loads(m)["mark"]["name"] for m in out.audio(bytes(8000), 0.2)[1::2]]
    assert names == ["1:500"]
    out.mark_played("1:500")
    out.mark_played("someone else's mark")
    assert out.heard_ms == 500


def test_turn_end_flushes_and_starts_a_new_answer() -> None:
    out = TwilioOutbound(batch_ms=500)
    out.bind(STREAM)
    assert out.audio(bytes(800), 0.0) == []
    tail = decoded(out.turn_end(0.01))
    assert [m["event"] for m in tail] == ["media", "mark"]
    assert tail[1]["mark"] == {"name": "0:50"}
    assert out.answer == 1


def test_a_batch_stays_far_under_the_frame_limit() -> None:
    out = TwilioOutbound(batch_ms=2000)
    out.bind(STREAM)
    messages = out.audio(np.zeros(16000, "<i2").tobytes(), 0.0)
    assert max(len(m) for m in messages) < 32768
    with pytest.raises(ValueError):
        TwilioOutbound(batch_ms=5000)


def test_a_resumed_call_takes_its_streams_messages_without_a_start() -> None:
    inbound = TwilioInbound()
    inbound.resume(STREAM, CALL)
    [audio] = inbound.receive(media(40, b"\xff" * 160))
    assert isinstance(audio, ClientAudio) and audio.seq == 40
    with pytest.raises(ProtocolError):
        inbound.receive(media(41, b"\xff" * 160).replace(STREAM, "MZ" + "1" * 32))
