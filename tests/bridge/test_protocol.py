"""Client protocol v1: parsing client frames (every error code) and encoding server frames."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from novakit.bridge.protocol import (
    MAX_AUDIO_BYTES,
    MAX_FRAME_BYTES,
    MAX_SEQ,
    ClientAudio,
    ClientEnd,
    ClientFrame,
    ClientInterrupt,
    ClientPing,
    ClientStart,
    ClientText,
    ErrorCode,
    FrameRef,
    ProtocolError,
    encode_assistant_text,
    encode_audio,
    encode_clear_audio,
    encode_error,
    encode_event,
    encode_pong,
    encode_session,
    encode_tool,
    encode_transcript,
    encode_turn_end,
    encode_usage,
    frame_seq,
    is_audio_frame,
    parse_client_frame,
)
from novakit.s2s.events import Usage

pytestmark = pytest.mark.timeout(30)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def refused(text: str | bytes, **options: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(text, **options)
    return caught.value


# -- valid client frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "start"}, ClientStart()),
        (
            {
                "type": "start",
                "v": 1,
                "voice": "tiffany",
                "instructions": "Be brief.",
                "input_sample_rate": 16000,
                "output_sample_rate": 8000,
                "batch_ms": 200,
            },
            ClientStart("tiffany", "Be brief.", 16000, 8000, 200),
        ),
        ({"type": "start", "instructions": " Be brief. "}, ClientStart(instructions=" Be brief. ")),
        ({"type": "start", "input_sample_rate": 8000}, ClientStart(input_sample_rate=8000)),
        ({"type": "start", "input_sample_rate": 24000}, ClientStart(input_sample_rate=24000)),
        ({"type": "start", "batch_ms": 20}, ClientStart(batch_ms=20)),
        ({"type": "start", "batch_ms": 1000}, ClientStart(batch_ms=1000)),
        # JSON has one number type: an integral number is an integer (as in JSON Schema)
        (
            {"type": "start", "v": 1.0, "output_sample_rate": 24000.0},
            ClientStart(output_sample_rate=24000),
        ),
        ({"type": "audio", "seq": 0, "data": b64(b"\x01\x02")}, ClientAudio(0, b"\x01\x02")),
        ({"type": "audio", "seq": 7.0, "data": b64(b"\x01\x02")}, ClientAudio(7, b"\x01\x02")),
        (
            {"type": "audio", "seq": MAX_SEQ, "data": b64(b"ab" * 3)},
            ClientAudio(MAX_SEQ, b"ab" * 3),
        ),
        ({"type": "text", "text": "x"}, ClientText("x")),
        ({"type": "text", "text": "é" * 4000}, ClientText("é" * 4000)),
        ({"type": "interrupt"}, ClientInterrupt()),
        ({"type": "ping"}, ClientPing()),
        ({"type": "ping", "id": "k-1"}, ClientPing("k-1")),
        ({"type": "ping", "id": -5}, ClientPing(-5)),
        ({"type": "ping", "id": ""}, ClientPing("")),
        ({"type": "end"}, ClientEnd()),
    ],
)
def test_valid_frames_parse_to_their_dataclass(
    fields: dict[str, Any], expected: ClientFrame
) -> None:
    assert parse_client_frame(json.dumps(fields)) == expected
    assert parse_client_frame(json.dumps(fields).encode()) == expected


def test_unknown_fields_are_ignored() -> None:
    text = frame(type="audio", seq=3, data=b64(b"\0\0"), future={"x": [1, 2]}, codec="pcm")
    assert parse_client_frame(text) == ClientAudio(3, b"\0\0")
    assert parse_client_frame(frame(type="end", reason="bye")) == ClientEnd()


def test_audio_of_one_second_is_accepted_when_the_frame_limit_allows_it() -> None:
    pcm = bytes(range(256)) * 125  # 32000 bytes = 1 s at 16 kHz
    parsed = parse_client_frame(frame(type="audio", seq=1, data=b64(pcm)), max_frame_bytes=65536)
    assert parsed == ClientAudio(1, pcm)


def test_frame_size_limit_is_inclusive_and_counts_utf8_bytes() -> None:
    base = frame(type="text", text="hi", pad="")
    exact = base.replace('"pad": ""', '"pad": "' + "x" * (MAX_FRAME_BYTES - len(base)) + '"')
    assert len(exact.encode()) == MAX_FRAME_BYTES
    assert parse_client_frame(exact) == ClientText("hi")
    assert parse_client_frame(exact.encode()) == ClientText("hi")
    over = exact.replace('"hi"', '"hi!"')
    assert refused(over).code is ErrorCode.TOO_LARGE
    assert refused(over.encode()).code is ErrorCode.TOO_LARGE
    # 16 000 characters but 32 000+ bytes of UTF-8: too large although short in characters
    wide = json.dumps({"type": "text", "text": "x", "pad": "é" * 16400}, ensure_ascii=False)
    assert len(wide) < MAX_FRAME_BYTES < len(wide.encode())
    assert refused(wide).code is ErrorCode.TOO_LARGE
    narrow = json.dumps({"type": "text", "text": "x", "pad": "é" * 16000}, ensure_ascii=False)
    assert parse_client_frame(narrow) == ClientText("x")


# -- refused client frames -------------------------------------------------------------------

BAD_FRAMES: list[tuple[str, str | bytes, ErrorCode, FrameRef | None, str]] = [
    # (case, frame text, code, ref, a word the message must contain)
    ("not json", "hello", ErrorCode.BAD_JSON, None, "JSON"),
    ("trailing data", '{"type":"end"} {}', ErrorCode.BAD_JSON, None, "JSON"),
    ("NaN", '{"type":"ping","id":NaN}', ErrorCode.BAD_JSON, None, "NaN"),
    ("Infinity", '{"type":"audio","seq":Infinity}', ErrorCode.BAD_JSON, None, "Infinity"),
    ("not utf-8", b'{"type":"text","text":"\xff"}', ErrorCode.BAD_JSON, None, "UTF-8"),
    ("deep nesting", "[" * 30000 + "]" * 30000, ErrorCode.TOO_LARGE, None, "bytes"),
    ("deep nesting in bounds", "[" * 16000 + "]" * 16000, ErrorCode.BAD_JSON, None, "JSON"),
    ("array", "[1, 2]", ErrorCode.BAD_FRAME, None, "object"),
    ("string", '"start"', ErrorCode.BAD_FRAME, None, "object"),
    ("no type", '{"seq": 1}', ErrorCode.BAD_FRAME, None, "type"),
    ("type not a string", '{"type": 1}', ErrorCode.BAD_FRAME, None, "type"),
    ("unknown type", '{"type": "video"}', ErrorCode.UNKNOWN_TYPE, FrameRef("video"), "video"),
    ("type case", '{"type": "Audio"}', ErrorCode.UNKNOWN_TYPE, FrameRef("Audio"), "Audio"),
    ("v 2", '{"type":"start","v":2}', ErrorCode.UNSUPPORTED_VERSION, FrameRef("start"), "2"),
    ("v 0", '{"type":"start","v":0}', ErrorCode.UNSUPPORTED_VERSION, FrameRef("start"), "v1"),
    ("v string", '{"type":"start","v":"1"}', ErrorCode.BAD_FRAME, FrameRef("start"), "'v'"),
    ("v true", '{"type":"start","v":true}', ErrorCode.BAD_FRAME, FrameRef("start"), "'v'"),
    ("voice empty", '{"type":"start","voice":""}', ErrorCode.BAD_FRAME, FrameRef("start"), "voice"),
    (
        "voice null",
        '{"type":"start","voice":null}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "voice",
    ),
    (
        "voice long",
        frame(type="start", voice="v" * 65),
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "voice",
    ),
    (
        "instructions int",
        '{"type":"start","instructions":5}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "instructions",
    ),
    (
        "instructions empty",
        '{"type":"start","instructions":""}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "instructions",
    ),
    (
        "instructions blank",
        '{"type":"start","instructions":" \\n\\t"}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "instructions",
    ),
    (
        "instructions lone surrogate",
        '{"type":"start","instructions":"Be brief \\ud83d"}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "surrogate",
    ),
    (
        "text blank",
        '{"type":"text","text":"   "}',
        ErrorCode.BAD_FRAME,
        FrameRef("text"),
        "whitespace",
    ),
    (
        "text lone surrogate",
        '{"type":"text","text":"\\ud83d"}',
        ErrorCode.BAD_FRAME,
        FrameRef("text"),
        "surrogate",
    ),
    (
        "input rate 11025",
        '{"type":"start","input_sample_rate":11025}',
        ErrorCode.BAD_SAMPLE_RATE,
        FrameRef("start"),
        "8000, 16000 or 24000",
    ),
    (
        "input rate string",
        '{"type":"start","input_sample_rate":"16000"}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "input_sample_rate",
    ),
    (
        "output rate 44100",
        '{"type":"start","output_sample_rate":44100}',
        ErrorCode.BAD_SAMPLE_RATE,
        FrameRef("start"),
        "output_sample_rate",
    ),
    (
        "output rate 1.5",
        '{"type":"start","output_sample_rate":1.5}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "output_sample_rate",
    ),
    (
        "batch 19",
        '{"type":"start","batch_ms":19}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "batch_ms",
    ),
    (
        "batch 1001",
        '{"type":"start","batch_ms":1001}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "batch_ms",
    ),
    (
        "batch null",
        '{"type":"start","batch_ms":null}',
        ErrorCode.BAD_FRAME,
        FrameRef("start"),
        "batch_ms",
    ),
    (
        "audio no seq",
        '{"type":"audio","data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio seq -1",
        '{"type":"audio","seq":-1,"data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio seq bool",
        '{"type":"audio","seq":true,"data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio seq 1.5",
        '{"type":"audio","seq":1.5,"data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio seq string",
        '{"type":"audio","seq":"1","data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio seq 2**53",
        '{"type":"audio","seq":9007199254740992,"data":"AAAA"}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio"),
        "seq",
    ),
    (
        "audio no data",
        '{"type":"audio","seq":4}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio", 4),
        "data",
    ),
    (
        "audio data list",
        '{"type":"audio","seq":4,"data":[0,0]}',
        ErrorCode.BAD_FRAME,
        FrameRef("audio", 4),
        "data",
    ),
    (
        "audio not base64",
        '{"type":"audio","seq":4,"data":"AA!A"}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "base64",
    ),
    (
        "audio no padding",
        '{"type":"audio","seq":4,"data":"AAA"}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "base64",
    ),
    (
        "audio newline",
        '{"type":"audio","seq":4,"data":"AAAA\\nAAAA"}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "base64",
    ),
    (
        "audio non-ascii",
        '{"type":"audio","seq":4,"data":"AAé="}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "base64",
    ),
    (
        "audio excess padding",
        '{"type":"audio","seq":4,"data":"AAAAAAAA="}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "padding",
    ),
    (
        "audio url-safe",
        '{"type":"audio","seq":4,"data":"AA-_"}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "base64",
    ),
    (
        "audio empty",
        '{"type":"audio","seq":4,"data":""}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "even",
    ),
    (
        "audio odd",
        '{"type":"audio","seq":4,"data":"AAAA"}',
        ErrorCode.BAD_AUDIO,
        FrameRef("audio", 4),
        "even",
    ),
    ("text missing", '{"type":"text"}', ErrorCode.BAD_FRAME, FrameRef("text"), "text"),
    ("text empty", '{"type":"text","text":""}', ErrorCode.BAD_FRAME, FrameRef("text"), "text"),
    (
        "text long",
        frame(type="text", text="x" * 4001),
        ErrorCode.BAD_FRAME,
        FrameRef("text"),
        "4000",
    ),
    ("ping id null", '{"type":"ping","id":null}', ErrorCode.BAD_FRAME, FrameRef("ping"), "id"),
    ("ping id float", '{"type":"ping","id":1.5}', ErrorCode.BAD_FRAME, FrameRef("ping"), "id"),
    ("ping id bool", '{"type":"ping","id":false}', ErrorCode.BAD_FRAME, FrameRef("ping"), "id"),
    ("ping id object", '{"type":"ping","id":{}}', ErrorCode.BAD_FRAME, FrameRef("ping"), "id"),
    ("ping id long", frame(type="ping", id="i" * 65), ErrorCode.BAD_FRAME, FrameRef("ping"), "id"),
    (
        "frame too large",
        frame(type="text", text="x", pad="p" * MAX_FRAME_BYTES),
        ErrorCode.TOO_LARGE,
        None,
        "32768",
    ),
]


@pytest.mark.parametrize(
    ("text", "code", "ref", "word"),
    [case[1:] for case in BAD_FRAMES],
    ids=[case[0] for case in BAD_FRAMES],
)
def test_bad_frames_are_refused_with_a_stable_code(
    text: str | bytes, code: ErrorCode, ref: FrameRef | None, word: str
) -> None:
    error = refused(text)
    assert error.code is code
    assert error.ref == ref
    assert word in error.message
    assert error.fatal is (code is ErrorCode.UNSUPPORTED_VERSION)
    if isinstance(text, str) and len(text) < 1000:
        assert refused(text.encode()).code is code


def test_audio_over_the_chunk_bound_is_bad_audio() -> None:
    pcm = bytes(MAX_AUDIO_BYTES + 2)
    error = refused(frame(type="audio", seq=9, data=b64(pcm)), max_frame_bytes=65536)
    assert (error.code, error.ref) == (ErrorCode.BAD_AUDIO, FrameRef("audio", 9))
    small = refused(frame(type="audio", seq=9, data=b64(bytes(8))), max_audio_bytes=6)
    assert small.code is ErrorCode.BAD_AUDIO


def test_unknown_type_message_does_not_echo_a_huge_type() -> None:
    error = refused(frame(type="t" * 5000))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.ref == FrameRef("t" * 64)
    assert len(error.message) < 200


def test_error_codes_are_the_documented_set() -> None:
    assert {code.value for code in ErrorCode} == {
        "bad_json",
        "bad_frame",
        "unknown_type",
        "unsupported_version",
        "too_large",
        "bad_audio",
        "bad_sample_rate",
        "out_of_order",
        "not_started",
        "already_started",
        "rate_limited",
        "session_failed",
        "session_ended",
        "tool_failed",
        "internal",
    }


def test_protocol_error_carries_code_message_ref_and_fatal() -> None:
    error = ProtocolError(ErrorCode.RATE_LIMITED, "slow down", ref=FrameRef("audio", 3))
    assert (error.code, error.message, error.ref, error.fatal) == (
        ErrorCode.RATE_LIMITED,
        "slow down",
        FrameRef("audio", 3),
        False,
    )
    assert str(error) == "rate_limited: slow down"
    assert ProtocolError(ErrorCode.SESSION_FAILED, "x").fatal is True
    assert ProtocolError(ErrorCode.SESSION_FAILED, "x", fatal=False).fatal is False
    assert ProtocolError("internal", "x").code is ErrorCode.INTERNAL  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nope"):
        ProtocolError("nope", "x")  # type: ignore[arg-type]


# -- server frames ---------------------------------------------------------------------------


def all_encoded_frames() -> list[str]:
    usage = Usage(1, 2, 3, 4, 10)
    return [
        encode_session(
            0,
            "ready",
            connection_id="abc=",
            model="amazon.nova-2-sonic-v1:0",
            voice="matthew",
            output_sample_rate=24000,
            batch_ms=100,
        ),
        encode_session(
            1,
            "draining",
            connection_id="abc=",
            model="m",
            voice="v",
            output_sample_rate=8000,
            batch_ms=20,
            reason="deploy",
        ),
        encode_audio(2, b"\x01\x00\x02\x00", 24000),
        encode_transcript(3, "hello"),
        encode_transcript(4, "hel", continues=True),
        encode_assistant_text(5, "Hi, I'm here.", False),
        encode_assistant_text(6, "Hi.", True, continues=True),
        encode_tool(7, "c-1", "lookup", "started"),
        encode_tool(8, "c-1", "lookup", "failed", ms=1500, error="boom"),
        encode_clear_audio(9, "barge_in"),
        encode_turn_end(10),
        encode_usage(11, usage),
        encode_error(12, ErrorCode.BAD_AUDIO, "odd length", False, FrameRef("audio", 5)),
        encode_error(13, ErrorCode.INTERNAL, "bug", True),
        encode_pong(14),
        encode_pong(15, "p1"),
        encode_pong(16, 42),
        encode_event(17, {"type": "turn_end"}),
    ]


def test_server_frames_are_compact_ascii_json_starting_with_type_then_seq() -> None:
    for seq, text in enumerate(all_encoded_frames()):
        assert text.isascii()
        decoded = json.loads(text)
        assert list(decoded)[:2] == ["type", "seq"]
        assert decoded["seq"] == seq == frame_seq(text)
        assert json.dumps(decoded, separators=(",", ":")) == text
        assert is_audio_frame(text) is (decoded["type"] == "audio")


def test_server_frame_contents() -> None:
    session, draining, audio, transcript, piece, spec, final, *_ = map(
        json.loads, all_encoded_frames()
    )
    assert session == {
        "type": "session",
        "seq": 0,
        "v": 1,
        "state": "ready",
        "connection_id": "abc=",
        "model": "amazon.nova-2-sonic-v1:0",
        "voice": "matthew",
        "input_sample_rate": 16000,
        "output_sample_rate": 24000,
        "batch_ms": 100,
    }
    assert draining["reason"] == "deploy"
    assert audio == {"type": "audio", "seq": 2, "data": "AQACAA==", "sample_rate": 24000, "ms": 0}
    assert transcript == {"type": "transcript", "seq": 3, "role": "user", "text": "hello"}
    assert piece["continues"] is True
    assert spec == {
        "type": "text",
        "seq": 5,
        "role": "assistant",
        "text": "Hi, I'm here.",
        "final": False,
    }
    assert final["final"] is True and final["continues"] is True
    tool_failed = json.loads(encode_tool(1, "c", "n", "failed", ms=5, error="e"))
    assert tool_failed == {
        "type": "tool",
        "seq": 1,
        "call_id": "c",
        "name": "n",
        "status": "failed",
        "ms": 5,
        "error": "e",
    }
    error = json.loads(encode_error(3, ErrorCode.BAD_AUDIO, "odd", False, FrameRef("audio", 5)))
    assert error == {
        "type": "error",
        "seq": 3,
        "code": "bad_audio",
        "message": "odd",
        "fatal": False,
        "ref": {"type": "audio", "seq": 5},
    }
    assert json.loads(encode_error(3, ErrorCode.BAD_JSON, "x", False, FrameRef()))["ref"] == {}
    assert json.loads(encode_usage(0, Usage(1, 2, 3, 4, 10))) == {
        "type": "usage",
        "seq": 0,
        "input_speech_tokens": 1,
        "input_text_tokens": 2,
        "output_speech_tokens": 3,
        "output_text_tokens": 4,
        "total_tokens": 10,
    }
    assert json.loads(encode_pong(2, 42)) == {"type": "pong", "seq": 2, "id": 42}
    assert json.loads(encode_clear_audio(4, "client")) == {
        "type": "clear_audio",
        "seq": 4,
        "reason": "client",
    }


@pytest.mark.parametrize(
    ("pcm_bytes", "rate", "ms"),
    [
        (4800, 24000, 100),
        (960, 24000, 20),
        (4801 - 1, 24000, 100),
        (2, 24000, 0),
        (26, 24000, 1),
        (320, 16000, 10),
        (1600, 8000, 100),
        (24512, 24000, 511),
    ],
)
def test_audio_frames_round_trip_with_their_duration(pcm_bytes: int, rate: int, ms: int) -> None:
    pcm = bytes(i % 251 for i in range(pcm_bytes))
    decoded = json.loads(encode_audio(0, pcm, rate))
    assert base64.b64decode(decoded["data"]) == pcm
    assert decoded["ms"] == ms
    assert decoded["sample_rate"] == rate
    assert json.loads(encode_audio(0, memoryview(bytearray(pcm)), rate)) == decoded


def test_non_ascii_text_is_escaped_so_length_is_bytes() -> None:
    text = encode_transcript(0, 'héllo 👋 "quoted"\n')
    assert text.isascii()
    assert len(text) == len(text.encode())
    assert json.loads(text)["text"] == 'héllo 👋 "quoted"\n'


def test_encoders_refuse_values_outside_the_protocol() -> None:
    with pytest.raises(ValueError, match="state"):
        encode_session(
            0,
            "paused",  # type: ignore[arg-type]
            connection_id="c",
            model="m",
            voice="v",
            output_sample_rate=24000,
            batch_ms=100,
        )
    with pytest.raises(ValueError, match="status"):
        encode_tool(0, "c", "n", "done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        encode_clear_audio(0, "user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nope"):
        encode_error(0, "nope", "m", False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq"):
        encode_event(0, {"type": "turn_end", "seq": 3})
    with pytest.raises(ValueError, match="type"):
        encode_event(0, {"kind": "turn_end"})


def test_frame_seq_and_is_audio_frame_read_only_the_prefix() -> None:
    audio = encode_audio(123456, bytes(2000), 24000)
    assert is_audio_frame(audio) and frame_seq(audio) == 123456
    tricky = encode_transcript(7, 'say {"type":"audio","seq":99}')
    assert not is_audio_frame(tricky) and frame_seq(tricky) == 7
    assert frame_seq(encode_clear_audio(MAX_SEQ, "client")) == MAX_SEQ
    with pytest.raises(ValueError, match="seq"):
        frame_seq('{"type":"x"}')
