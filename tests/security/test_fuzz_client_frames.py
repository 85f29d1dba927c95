"""Property-based fuzzing of the bridge's client-frame parser (``parse_client_frame``).

Whatever a client sends (arbitrary bytes, arbitrary JSON, valid frames with one thing wrong,
frames around the size limits) the parser either returns a frame or raises ``ProtocolError``:
any other exception would be a 500 from the integration request instead of an ``error`` frame.
A frame it accepts is one ``docs/protocol.schema.json`` allows, carries the fields it was sent,
and can go to the model: typed text is not blank, and every text field encodes to UTF-8.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from novakit.bridge.protocol import (
    INPUT_SAMPLE_RATE,
    INPUT_SAMPLE_RATES,
    MAX_AUDIO_BYTES,
    MAX_BATCH_MS,
    MAX_FRAME_BYTES,
    MAX_ID_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MAX_VOICE_CHARS,
    MIN_BATCH_MS,
    OUTPUT_SAMPLE_RATES,
    ClientAudio,
    ClientFrame,
    ClientPing,
    ClientStart,
    ClientText,
    ProtocolError,
    parse_client_frame,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "protocol.schema.json").read_text())
CLIENT_FRAME = Draft202012Validator({**SCHEMA, "$ref": "#/$defs/clientFrame"})
FRAME_TYPES = ("start", "audio", "text", "interrupt", "ping", "end")

# -- strategies ---------------------------------------------------------------------------------

#: Any code point, lone surrogates included (JSON's \uD800 escapes decode to them).
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
any_text = st.text(any_char, max_size=80)
#: Strings a careless client or an attacker sends: blank, control characters, surrogates.
awkward_text = st.one_of(
    any_text,
    st.sampled_from(["", " ", "\t\n", "\u00a0", "\u3000", "\ufeff", "\x00", "\ud800", "\udfff"]),
    st.text(st.sampled_from(" \t\r\n\u2028\u00a0\u200b"), min_size=1, max_size=8),
    st.builds(lambda a, s, b: a + s + b, any_text, st.sampled_from(["\ud83d", "\ude00"]), any_text),
)
#: Numbers at and past every bound the protocol has, and JSON's number edge cases.
edge_numbers = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            MAX_SEQ,
            MAX_SEQ + 1,
            -MAX_SEQ,
            -MAX_SEQ - 1,
            2**63,
            -(2**63),
            2**64 + 1,
            10**400,
            INPUT_SAMPLE_RATE,
            8000,
            24000,
            MIN_BATCH_MS - 1,
            MIN_BATCH_MS,
            MAX_BATCH_MS,
            MAX_BATCH_MS + 1,
            16000.0,
            16000.5,
            -0.0,
            1e308,
            1e-320,
            float(MAX_SEQ),
            float(2**53),
        ]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_scalars = st.one_of(st.none(), st.booleans(), edge_numbers, awkward_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(awkward_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def base64_of(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


pcm_chunks = st.binary(min_size=1, max_size=512).map(lambda b: b + b"\0" * (len(b) & 1))

#: Valid frames of every type, as the schema describes them, with text worth sending (not blank).
valid_frames: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("start")},
        optional={
            "v": st.just(1),
            "voice": st.text(min_size=1, max_size=MAX_VOICE_CHARS).filter(str.strip),
            "instructions": st.text(min_size=1, max_size=200).filter(str.strip),
            "input_sample_rate": st.sampled_from(sorted(INPUT_SAMPLE_RATES)),
            "output_sample_rate": st.sampled_from(sorted(OUTPUT_SAMPLE_RATES)),
            "batch_ms": st.integers(MIN_BATCH_MS, MAX_BATCH_MS),
        },
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("audio"),
            "seq": st.integers(0, MAX_SEQ),
            "data": pcm_chunks.map(base64_of),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("text"), "text": st.text(min_size=1, max_size=200).filter(str.strip)}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["interrupt", "end"])}),
    st.fixed_dictionaries(
        {"type": st.just("ping")},
        optional={"id": st.one_of(st.text(max_size=MAX_ID_CHARS), st.integers(-MAX_SEQ, MAX_SEQ))},
    ),
)


#: Each frame type's fields, from the schema (``type`` aside).
SCHEMA_FIELDS: dict[str, list[str]] = {
    kind: sorted(set(SCHEMA["$defs"][f"client{kind.title()}"]["properties"]) - {"type"})
    for kind in FRAME_TYPES
}
#: Values for a field: the wrong type, out of range, awkward strings, nested structures.
hostile_values = st.one_of(awkward_text, edge_numbers, json_values)


@st.composite
def mutated_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame with one or more things wrong: one of its schema fields given a hostile
    value, any known field set, a field missing, an unknown field, or a wrong ``type``."""
    frame = dict(draw(valid_frames))
    own = SCHEMA_FIELDS[frame["type"]] or ["type"]
    every = sorted({field for fields in SCHEMA_FIELDS.values() for field in fields})
    for _ in range(draw(st.integers(1, 3))):
        match draw(st.sampled_from(["own", "own", "any", "delete", "add", "retype"])):
            case "own":
                frame[draw(st.sampled_from(own))] = draw(hostile_values)
            case "any":
                frame[draw(st.sampled_from(every))] = draw(hostile_values)
            case "delete":
                if frame:
                    del frame[draw(st.sampled_from(sorted(frame)))]
            case "add":
                frame[draw(awkward_text)] = draw(json_values)
            case "retype":
                frame["type"] = draw(
                    st.one_of(st.sampled_from(FRAME_TYPES), awkward_text, json_values)
                )
    return frame


def render(value: Any, ascii_only: bool) -> str:
    """JSON text as a client would send it (``allow_nan`` off: no client library writes NaN)."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=False)


# -- the properties -----------------------------------------------------------------------------


def parse_or_refuse(text: str | bytes, **limits: int) -> ClientFrame | None:
    """The frame, or None when it was refused with a ``ProtocolError`` (anything else raises)."""
    try:
        return parse_client_frame(text, **limits)
    except ProtocolError as exc:
        assert exc.message and exc.code.value, exc
        return None


def as_json_text(text: str | bytes) -> str:
    return text.decode() if isinstance(text, bytes) else text


def check_accepted(frame: ClientFrame, sent: str | bytes) -> None:
    """What every accepted frame must satisfy (the module docstring)."""
    obj = json.loads(as_json_text(sent))
    errors = [e.message for e in CLIENT_FRAME.iter_errors(obj)]
    assert not errors, f"accepted a frame the schema refuses: {errors}"
    assert obj["type"] == frame.TYPE
    match frame:
        case ClientText(text=text):
            assert text == obj["text"]
            assert text.strip(), f"accepted blank text {text!r}: the model refuses it"
            assert_utf8(text, "text")
        case ClientStart():
            for name in ("voice", "instructions"):
                value = getattr(frame, name)
                assert value == obj.get(name)
                if value is not None:
                    assert_utf8(value, name)
        case ClientAudio(seq=seq, pcm=pcm):
            assert seq == obj["seq"] and base64_of(pcm) == obj["data"]
            assert pcm and len(pcm) % 2 == 0 and len(pcm) <= MAX_AUDIO_BYTES
        case ClientPing(id=ping_id):
            assert ping_id == obj.get("id")


def assert_utf8(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        pytest.fail(f"accepted {name} {value!r} that cannot be encoded for the model: {exc}")


@given(st.binary(max_size=2048))
@example(b"\xff\xfe{}")
@example(b'{"type":"text","text":"\xed\xa0\x80"}')  # a UTF-8-encoded surrogate: not UTF-8
def test_arbitrary_bytes_are_a_frame_or_a_protocol_error(data: bytes) -> None:
    frame = parse_or_refuse(data)
    if frame is not None:
        check_accepted(frame, data)


@given(json_values, st.booleans(), st.booleans())
def test_arbitrary_json_is_a_frame_or_a_protocol_error(
    value: Any, ascii_only: bool, as_bytes: bool
) -> None:
    text = render(value, ascii_only)
    sent: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    frame = parse_or_refuse(sent)
    if frame is not None:
        check_accepted(frame, sent)


@given(mutated_frames(), st.booleans())
@example({"type": "text", "text": " "}, False)
@example({"type": "text", "text": "\r"}, False)
@example({"type": "start", "instructions": "\ud800"}, False)
@example({"type": "text", "text": "\ud800"}, True)
@example({"type": "start", "instructions": "be brief \udfff"}, True)
@example({"type": "ping", "id": 1e300}, False)
@example({"type": "start", "v": True}, False)
@example({"type": "audio", "seq": 0, "data": "AAAA=="}, False)
def test_mutated_frames_are_refused_cleanly_or_accepted_only_when_sendable(
    frame: dict[str, Any], ascii_only: bool
) -> None:
    text = render(frame, ascii_only)
    accepted = parse_or_refuse(text)
    if accepted is not None:
        check_accepted(accepted, text)


@given(valid_frames, st.booleans())
def test_valid_frames_are_accepted_as_sent(frame: dict[str, Any], ascii_only: bool) -> None:
    text = render(frame, ascii_only)
    accepted = parse_or_refuse(text)
    assert accepted is not None, f"refused a valid frame {text[:200]}"
    check_accepted(accepted, text)


@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a":', '[{"type":"text","x":']))
def test_deep_nesting_is_bad_json_or_a_frame_never_a_crash(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '[{"type":"text","x":': "}]"}[opener]
    text = '{"type":"ping","id":1,"x":' + opener * depth + "1" + closer * depth + "}"
    frame = parse_or_refuse(text)
    if frame is not None:  # shallow enough for the decoder: a ping with an ignored field
        assert frame == ClientPing(1)


@st.composite
def frames_near_the_size_limit(draw: st.DrawFn) -> tuple[str, int]:
    """A valid frame padded (through an ignored field, or its own text) to within a few bytes of
    the frame limit, in ASCII or in multi-byte characters; and the limit."""
    limit = draw(st.sampled_from([MAX_FRAME_BYTES, 4096, 64]))
    frame = draw(valid_frames)
    pad_char = draw(st.sampled_from(["a", "é", "€", "😀", "\\u00e9"]))
    base = render({**frame, "pad": ""}, ascii_only=False)
    target = limit + draw(st.integers(-8, 8))
    room = max(0, target - len(base.encode("utf-8", "surrogatepass")))
    if pad_char == "\\u00e9":  # escaped in the JSON text: 6 bytes each
        pad = pad_char * (room // 6)
        text = base[:-3] + pad + '"}'
    else:
        pad = pad_char * (room // len(pad_char.encode()))
        text = render({**frame, "pad": pad}, ascii_only=False)
    return text, limit


@given(frames_near_the_size_limit(), st.booleans())
def test_frames_around_the_size_limit_are_measured_in_utf8_bytes(
    case: tuple[str, int], as_bytes: bool
) -> None:
    text, limit = case
    size = len(text.encode("utf-8", "surrogatepass"))
    sent: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        frame = parse_client_frame(sent, max_frame_bytes=limit)
    except ProtocolError as exc:
        if size > limit:
            assert exc.code == "too_large", exc
        return
    assert size <= limit, f"accepted {size} bytes over a {limit}-byte limit"
    check_accepted(frame, sent)


@given(
    st.integers(MAX_AUDIO_BYTES - 6, MAX_AUDIO_BYTES + 6),
    st.integers(0, 3),
)
def test_audio_around_the_pcm_limit(pcm_bytes: int, extra_padding: int) -> None:
    data = base64_of(b"\1" * pcm_bytes) + "=" * extra_padding
    text = render({"type": "audio", "seq": 7, "data": data}, ascii_only=True)
    # a bridge run with a larger frame limit: only the PCM limit binds
    frame = parse_or_refuse(text, max_frame_bytes=4 * MAX_FRAME_BYTES)
    if frame is None:
        return
    check_accepted(frame, text)
    assert extra_padding == 0 and pcm_bytes <= MAX_AUDIO_BYTES and pcm_bytes % 2 == 0


@given(st.integers(MAX_TEXT_CHARS - 3, MAX_TEXT_CHARS + 3), st.sampled_from(["a", "é", "😀"]))
def test_text_around_its_length_limit_counts_characters(length: int, char: str) -> None:
    text = render({"type": "text", "text": char * length}, ascii_only=False)
    frame = parse_or_refuse(text)
    assert len(text.encode()) < MAX_FRAME_BYTES  # the text limit binds, not the frame's
    assert (frame is not None) == (length <= MAX_TEXT_CHARS)
    if frame is not None:
        check_accepted(frame, text)
