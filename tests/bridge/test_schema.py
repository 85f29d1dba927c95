"""docs/protocol.schema.json agrees with the code: server frames validate, and the client schema
accepts exactly what ``parse_client_frame`` accepts, bar the checks a schema cannot express."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from novakit.bridge.batching import MIN_FRAME_BYTES, OutboundBatcher
from novakit.bridge.protocol import (
    CLEAR_REASONS,
    INPUT_SAMPLE_RATE,
    INPUT_SAMPLE_RATES,
    MAX_AUDIO_BYTES,
    MAX_BATCH_MS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MIN_BATCH_MS,
    OUTPUT_SAMPLE_RATES,
    SESSION_STATES,
    TOOL_STATUSES,
    ErrorCode,
    FrameRef,
    ProtocolError,
    encode_audio,
    encode_pong,
    parse_client_frame,
)
from novakit.s2s.events import Usage

pytestmark = pytest.mark.timeout(60)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
DEFS: dict[str, Any] = SCHEMA["$defs"]


def validator_for(definition: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$schema": SCHEMA["$schema"], "$defs": DEFS, "$ref": f"#/$defs/{definition}"}
    )


CLIENT = validator_for("clientFrame")
SERVER = validator_for("serverFrame")
ROOT = Draft202012Validator(SCHEMA)


def test_the_schema_is_valid_2020_12_with_a_def_per_frame() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    client = {d["$ref"].rsplit("/", 1)[1] for d in DEFS["clientFrame"]["oneOf"]}
    server = {d["$ref"].rsplit("/", 1)[1] for d in DEFS["serverFrame"]["oneOf"]}
    assert {DEFS[name]["properties"]["type"]["const"] for name in client} == {
        "start",
        "audio",
        "text",
        "interrupt",
        "ping",
        "end",
    }
    assert {DEFS[name]["properties"]["type"]["const"] for name in server} == {
        "session",
        "audio",
        "transcript",
        "text",
        "tool",
        "clear_audio",
        "turn_end",
        "usage",
        "error",
        "pong",
    }
    assert SCHEMA["anyOf"] == [{"$ref": "#/$defs/clientFrame"}, {"$ref": "#/$defs/serverFrame"}]


def test_the_schema_uses_the_protocol_constants() -> None:
    assert set(DEFS["errorCode"]["enum"]) == {code.value for code in ErrorCode}
    session = DEFS["serverSession"]["properties"]
    assert set(session["state"]["enum"]) == SESSION_STATES
    assert set(DEFS["serverTool"]["properties"]["status"]["enum"]) == TOOL_STATUSES
    assert set(DEFS["serverClearAudio"]["properties"]["reason"]["enum"]) == CLEAR_REASONS
    start = DEFS["clientStart"]["properties"]
    assert set(start["output_sample_rate"]["enum"]) == OUTPUT_SAMPLE_RATES
    assert set(session["output_sample_rate"]["enum"]) == OUTPUT_SAMPLE_RATES
    assert set(start["input_sample_rate"]["enum"]) == INPUT_SAMPLE_RATES
    assert set(session["input_sample_rate"]["enum"]) == INPUT_SAMPLE_RATES
    assert start["input_sample_rate"]["default"] == INPUT_SAMPLE_RATE
    assert (start["batch_ms"]["minimum"], start["batch_ms"]["maximum"]) == (
        MIN_BATCH_MS,
        MAX_BATCH_MS,
    )
    assert DEFS["clientText"]["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS
    assert DEFS["seq"]["maximum"] == MAX_SEQ


# -- server frames ---------------------------------------------------------------------------


def conversation_frames() -> list[str]:
    """Every kind of server frame, with and without its optional fields, from the batcher."""
    frames: list[str] = []
    for rate, limit in itertools.product(sorted(OUTPUT_SAMPLE_RATES), (MIN_FRAME_BYTES, 32768)):
        batcher = OutboundBatcher(sample_rate=rate, batch_ms=100, max_frame_bytes=limit)
        for state in sorted(SESSION_STATES):
            frames += batcher.session(state, "cid=", "amazon.nova-2-sonic-v1:0", "matthew", 0.0)  # type: ignore[arg-type]
        frames += batcher.session("draining", "cid=", "m", "v", 0.0, reason="r" * 3000)
        frames += batcher.transcript("what's the weather in Zürich?", 0.1)
        frames += batcher.transcript("long " * 10_000, 0.1)
        frames += batcher.assistant_text("Let me check.", False, 0.2)
        frames += batcher.audio(bytes(range(256)) * 40, 0.2)
        for status in sorted(TOOL_STATUSES):
            frames += batcher.tool("call-1", "weather", status, 0.3)  # type: ignore[arg-type]
        frames += batcher.tool("call-1", "weather", "failed", 0.3, ms=2500, error="e" * 5000)
        frames += batcher.tool("call-1", "weather", "succeeded", 0.3, ms=0)
        frames += batcher.audio(bytes(3000), 0.4)
        frames += batcher.due(1.0)
        frames += batcher.audio(bytes(1000), 1.0)
        frames += batcher.barge_in("barge_in", 1.0)
        frames += batcher.barge_in("client", 1.0)
        frames += batcher.assistant_text("It is sunny. " * 3000, True, 1.1)
        frames += batcher.usage(Usage(10, 2, 300, 40, 352), 1.2)
        frames += batcher.turn_end(1.2)
        for code in ErrorCode:
            frames += batcher.error(code, f"{code} happened", code is ErrorCode.INTERNAL, None, 2)
        frames += batcher.error(ErrorCode.BAD_AUDIO, "odd", False, FrameRef("audio", 3), 2.0)
        frames += batcher.error(ErrorCode.UNKNOWN_TYPE, "?", False, FrameRef("video"), 2.0)
        frames += batcher.error(ErrorCode.BAD_JSON, "?", False, FrameRef(), 2.0)
        frames += batcher.protocol_error(ProtocolError(ErrorCode.OUT_OF_ORDER, "late"), 2.0)
        frames += batcher.pong(None, 3.0) + batcher.pong("id-1", 3.0) + batcher.pong(-7, 3.0)
        frames += batcher.event({"type": "turn_end"}, 3.0)
        frames += batcher.session("ended", "cid=", "m", "v", 4.0, reason="client ended")
    return frames


def test_every_frame_the_batcher_produces_matches_the_server_schema() -> None:
    frames = conversation_frames()
    kinds = set()
    for frame in frames:
        decoded = json.loads(frame)
        errors = [e.message for e in SERVER.iter_errors(decoded)]
        assert not errors, (frame[:200], errors)
        assert ROOT.is_valid(decoded)
        kinds.add(decoded["type"])
    assert len(kinds) == 10
    assert SERVER.is_valid(json.loads(encode_audio(MAX_SEQ, b"\0\0", 8000)))
    assert SERVER.is_valid(json.loads(encode_pong(0, "")))


@pytest.mark.parametrize(
    "change",
    [
        {"seq": -1},
        {"seq": "1"},
        {"extra": 1},
        {"state": "paused"},
        {"v": 2},
        {"output_sample_rate": 22050},
    ],
)
def test_the_server_schema_is_strict(change: dict[str, Any]) -> None:
    [frame] = OutboundBatcher().session("ready", "c", "m", "v", 0.0)
    assert SERVER.is_valid(json.loads(frame))
    assert not SERVER.is_valid({**json.loads(frame), **change})
    missing_seq = json.loads(frame)
    del missing_seq["seq"]
    assert not SERVER.is_valid(missing_seq)


# -- client frames: the schema and the parser agree ------------------------------------------


def parse_code(obj: Any, **options: int) -> ErrorCode | None:
    try:
        parse_client_frame(json.dumps(obj), **options)
    except ProtocolError as error:
        return error.code
    return None


# What a JSON Schema cannot check; each is schema-valid and refused by the parser:
NOT_EXPRESSIBLE: list[tuple[str, dict[str, Any], dict[str, int], ErrorCode]] = [
    (
        "decoded audio must be whole PCM16 samples (even length)",
        {"type": "audio", "seq": 0, "data": "AAAA"},
        {},
        ErrorCode.BAD_AUDIO,
    ),
    (
        "a frame is at most 32768 bytes",
        {"type": "text", "text": "hi", "pad": "x" * 32768},
        {},
        ErrorCode.TOO_LARGE,
    ),
    (
        "decoded audio is at most 32000 bytes (reachable only with a larger frame limit)",
        {"type": "audio", "seq": 0, "data": base64.b64encode(bytes(32002)).decode()},
        {"max_frame_bytes": 65536},
        ErrorCode.BAD_AUDIO,
    ),
    (
        "text is whole characters: a lone surrogate (half an emoji) cannot reach the model",
        {"type": "text", "text": "hi \ud83d"},
        {},
        ErrorCode.BAD_FRAME,
    ),
    (
        "instructions are whole characters",
        {"type": "start", "instructions": "\udc00 be brief"},
        {},
        ErrorCode.BAD_FRAME,
    ),
    (
        "a voice is whole characters",
        {"type": "start", "voice": "x\ud800"},
        {},
        ErrorCode.BAD_FRAME,
    ),
    (
        # Python's re `$` also matches before a final newline; the ECMA-262 regexes JSON Schema
        # specifies do not, so this one is a quirk of the Python validator, not of the schema.
        "no newline after the base64 text",
        {"type": "audio", "seq": 0, "data": "AAAAAA==\n"},
        {},
        ErrorCode.BAD_AUDIO,
    ),
]


@pytest.mark.parametrize(
    ("obj", "options", "code"),
    [case[1:] for case in NOT_EXPRESSIBLE],
    ids=[case[0] for case in NOT_EXPRESSIBLE],
)
def test_checks_the_schema_cannot_express(
    obj: dict[str, Any], options: dict[str, int], code: ErrorCode
) -> None:
    assert CLIENT.is_valid(obj)
    assert parse_code(obj, **options) is code


def is_inexpressible(obj: Any) -> bool:
    """Whether ``obj`` falls under NOT_EXPRESSIBLE (for the generated frames below)."""
    if not isinstance(obj, dict) or obj.get("type") != "audio":
        return False
    data = obj.get("data")
    if not isinstance(data, str):
        return False
    try:
        pcm = binascii.a2b_base64(data, strict_mode=True)
    except ValueError:
        return data.endswith("\n")
    canonical = len(data) == (len(pcm) + 2) // 3 * 4
    return canonical and (len(pcm) % 2 == 1 or len(pcm) > MAX_AUDIO_BYTES)


B64_4 = base64.b64encode(b"\x01\x02\x03\x04").decode()
TABLE: list[tuple[Any, ErrorCode | None]] = [
    ({"type": "start"}, None),
    ({"type": "start", "v": 1, "voice": "amy", "instructions": "x", "batch_ms": 500}, None),
    ({"type": "start", "input_sample_rate": 16000, "output_sample_rate": 16000}, None),
    ({"type": "start", "v": 2}, ErrorCode.UNSUPPORTED_VERSION),
    ({"type": "start", "input_sample_rate": 24000}, None),
    ({"type": "start", "input_sample_rate": 8000}, None),
    ({"type": "start", "input_sample_rate": 44100}, ErrorCode.BAD_SAMPLE_RATE),
    ({"type": "start", "output_sample_rate": 48000}, ErrorCode.BAD_SAMPLE_RATE),
    ({"type": "start", "batch_ms": 10}, ErrorCode.BAD_FRAME),
    ({"type": "start", "voice": 3}, ErrorCode.BAD_FRAME),
    ({"type": "audio", "seq": 0, "data": B64_4}, None),
    ({"type": "audio", "seq": 5, "data": B64_4, "extra": [1]}, None),
    ({"type": "audio", "seq": 0}, ErrorCode.BAD_FRAME),
    ({"type": "audio", "data": B64_4}, ErrorCode.BAD_FRAME),
    ({"type": "audio", "seq": -1, "data": B64_4}, ErrorCode.BAD_FRAME),
    ({"type": "audio", "seq": 0, "data": "AQID BA=="}, ErrorCode.BAD_AUDIO),
    ({"type": "audio", "seq": 0, "data": "AQIDBA"}, ErrorCode.BAD_AUDIO),
    ({"type": "audio", "seq": 0, "data": ""}, ErrorCode.BAD_AUDIO),
    ({"type": "text", "text": "hello"}, None),
    ({"type": "text", "text": ""}, ErrorCode.BAD_FRAME),
    ({"type": "text", "text": "x" * 4001}, ErrorCode.BAD_FRAME),
    ({"type": "text", "text": " \t\n\u3000"}, ErrorCode.BAD_FRAME),
    ({"type": "text", "text": " é "}, None),
    ({"type": "start", "instructions": ""}, ErrorCode.BAD_FRAME),
    ({"type": "start", "instructions": "  \n"}, ErrorCode.BAD_FRAME),
    ({"type": "interrupt"}, None),
    ({"type": "ping"}, None),
    ({"type": "ping", "id": 3}, None),
    ({"type": "ping", "id": "abc"}, None),
    ({"type": "ping", "id": 1.5}, ErrorCode.BAD_FRAME),
    ({"type": "end"}, None),
    ({"type": "pong"}, ErrorCode.UNKNOWN_TYPE),
    ({"type": None}, ErrorCode.BAD_FRAME),
    ({}, ErrorCode.BAD_FRAME),
    ([], ErrorCode.BAD_FRAME),
    ("start", ErrorCode.BAD_FRAME),
]


@pytest.mark.parametrize(("obj", "code"), TABLE)
def test_schema_and_parser_agree_on_a_table(obj: Any, code: ErrorCode | None) -> None:
    assert parse_code(obj) is code
    assert CLIENT.is_valid(obj) is (code is None)


BASES: list[dict[str, Any]] = [
    {
        "type": "start",
        "v": 1,
        "voice": "matthew",
        "instructions": "Be brief.",
        "input_sample_rate": 16000,
        "output_sample_rate": 24000,
        "batch_ms": 100,
    },
    {"type": "audio", "seq": 3, "data": B64_4},
    {"type": "text", "text": "hello"},
    {"type": "interrupt"},
    {"type": "ping", "id": "p"},
    {"type": "end"},
]
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 2, 19, 20, 1000, 1001, 8000, 16000, 16000.0, 22050,
    24000, 44100, MAX_SEQ, MAX_SEQ + 1, -MAX_SEQ, -MAX_SEQ - 1, "", "x", "1", "v" * 64,
    "v" * 65, "x" * 4000, "x" * 4001, [], {}, [B64_4], "AAAA", "AAAAAA==", "AA==", "AAA=",
    "AAA", "AA!A", "AAAA====", "=AAA", "AAAAAA==\n", "start", "audio", "ping", "bogus",
]  # fmt: skip


def mutations() -> list[Any]:
    frames: list[Any] = []
    for base in BASES:
        fields = set(base) | {"type", "v", "seq", "data", "text", "id", "voice", "batch_ms"}
        for name in sorted(fields):
            frames.append({k: v for k, v in base.items() if k != name})
            frames += [{**base, name: value} for value in VALUES]
    return frames


def test_schema_and_parser_agree_on_generated_frames() -> None:
    checked = disagreements = 0
    for obj in mutations():
        schema_ok = CLIENT.is_valid(obj)
        code = parse_code(obj)
        checked += 1
        if is_inexpressible(obj):
            assert schema_ok and code is ErrorCode.BAD_AUDIO, obj
            disagreements += 1
            continue
        assert schema_ok is (code is None), (obj, code)
        if code is None:
            assert ROOT.is_valid(obj)
    assert checked > 1500 and 0 < disagreements < 20


# -- the examples in docs/protocol.md --------------------------------------------------------

DOC_PATH = SCHEMA_PATH.with_name("protocol.md")
_INLINE_FRAME = re.compile(r"`(\{\"type\".*?\})`")


def doc_examples() -> list[tuple[str, str]]:
    """(direction, frame text) of every frame example in the page: exchange lines, lines of
    json code blocks, inline code; the direction comes from the arrow or the section."""
    examples: list[tuple[str, str]] = []
    direction = ""
    in_json = False
    for line in DOC_PATH.read_text().splitlines():
        if line.startswith("### "):
            direction = "client" if "Client →" in line else "server" if "Server →" in line else ""
        if line.startswith("```"):
            in_json = line == "```json"
            continue
        for arrow, side in (("client → ", "client"), ("server ← ", "server")):
            if line.startswith(arrow) and line[len(arrow) :].startswith("{"):
                examples.append((side, line[len(arrow) :]))
        if in_json and line.startswith("{"):
            examples.append((direction, line))
        examples += [(direction, text) for text in _INLINE_FRAME.findall(line)]
    return examples


def test_the_documented_examples_are_valid_frames() -> None:
    examples = doc_examples()
    assert len(examples) > 25
    sides = set()
    for side, text in examples:
        frame = json.loads(text)
        sides.add(side)
        if side == "client":
            assert CLIENT.is_valid(frame), text
            parse_client_frame(text)
        else:
            assert side == "server", text
            errors = [e.message for e in SERVER.iter_errors(frame)]
            assert not errors, (text, errors)
    assert sides == {"client", "server"}
