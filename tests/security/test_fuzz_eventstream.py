"""Property-based fuzzing of the event-stream decoders.

The emulator's codec (``novakit.emulator.eventstream``) decodes the client's signed event stream:
it must round-trip anything it encodes, decode a stream the same way however the bytes are split,
and answer bytes that are not a valid stream (random, bit-flipped, with wrong lengths or CRCs,
truncated) only with ``EventStreamError``, without buffering past its declared message limit.

On the provider side the kit leaves the binary framing to the Bedrock SDK and decodes each
event's JSON itself (``NovaProtocol.receive``): whatever that JSON is, the answer is a list of
events or a ``MalformedEventError`` (which the stream logs and skips).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import struct
import zlib
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from novakit.emulator.eventstream import (
    Byte,
    Decoder,
    EventStreamError,
    HeaderValue,
    Long,
    MalformedMessageError,
    Message,
    Short,
    decode_message,
    encode_message,
)
from novakit.emulator.grammar import ViolationError
from novakit.emulator.session import unwrap_chunk
from novakit.s2s.events import Event
from novakit.s2s.nova.models import NOVA_2_SONIC
from novakit.s2s.nova.protocol import MalformedEventError, NovaProtocol, StreamSettings

PRELUDE = 12
#: A small limit, so that "never buffers past the limit" is tested at a size the fuzzer reaches.
LIMIT = 2048
UTC = datetime.UTC

# -- strategies ---------------------------------------------------------------------------------

header_names = st.text(min_size=1, max_size=24).filter(lambda n: len(n.encode()) <= 255)
#: Timestamps the format can carry: milliseconds, within what a datetime holds.
timestamps = st.integers(-62135596800000, 253402300799999).map(
    lambda ms: datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(milliseconds=ms)
)
header_values: st.SearchStrategy[HeaderValue] = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Byte),
    st.integers(-(2**15), 2**15 - 1).map(Short),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Long),
    st.binary(max_size=64),
    st.text(max_size=64),
    timestamps,
    st.uuids(),
)
headers = st.dictionaries(header_names, header_values, max_size=6)
messages = st.builds(Message, headers, st.binary(max_size=256))


def encoded(message: Message) -> bytes:
    return encode_message(message.headers, message.payload)


def same_message(a: Message, b: Message) -> bool:
    """Equal headers (names, order, values and their wire types) and payload."""
    typed = [(n, type(v), v) for n, v in a.headers.items()]
    return typed == [(n, type(v), v) for n, v in b.headers.items()] and a.payload == b.payload


def with_crcs(data: bytearray) -> bytes:
    """``data`` with both CRCs recomputed: a mutation that reaches the header parser."""
    if len(data) >= PRELUDE:
        data[8:12] = struct.pack("!I", zlib.crc32(bytes(data[:8])))
    if len(data) >= PRELUDE + 4:
        data[-4:] = struct.pack("!I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid messages, then one or more of: flipped bits, a rewritten length (with or without a
    matching prelude CRC), a rewritten CRC, bytes cut off or added, a header byte changed with
    both CRCs fixed up."""
    data = bytearray(b"".join(encoded(m) for m in draw(st.lists(messages, min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        match draw(st.sampled_from(["flip", "length", "crc", "truncate", "append", "header"])):
            case "flip" if data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "length" if len(data) >= PRELUDE:
                field = draw(st.sampled_from([0, 4]))
                value = draw(
                    st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 64), st.just(2**32 - 1))
                )
                data[field : field + 4] = struct.pack("!I", value)
                if draw(st.booleans()):
                    data[8:12] = struct.pack("!I", zlib.crc32(bytes(data[:8])))
            case "crc" if len(data) >= PRELUDE + 4:
                where = draw(st.sampled_from([8, len(data) - 4]))
                data[where : where + 4] = struct.pack("!I", draw(st.integers(0, 2**32 - 1)))
            case "truncate":
                del data[at:]
            case "append":
                data += draw(st.binary(min_size=1, max_size=32))
            case "header" if len(data) > PRELUDE + 4:
                spot = draw(st.integers(PRELUDE, len(data) - 5))
                data[spot] = draw(st.integers(0, 255))
                data = bytearray(with_crcs(data))
    return bytes(data)


#: Value sizes of the fixed-width header types (byte, short, int, long, timestamp, UUID).
FIXED_SIZES = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


@st.composite
def raw_header_sections(draw: st.DrawFn) -> bytes:
    """A headers section written byte by byte: any name bytes, any type byte, any value bytes
    (of the right size or not), declared string lengths that lie, headers cut short."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        # mostly well-formed names and known types, so that parsing gets past them
        rare = draw(st.integers(0, 9)) == 0
        name = draw(
            st.binary(max_size=8) if rare else st.text(min_size=1, max_size=8).map(str.encode)
        )
        kind = draw(st.integers(0, 255) if draw(st.integers(0, 9)) == 0 else st.integers(0, 9))
        if kind in (6, 7):
            value = draw(st.binary(max_size=24))
            declared = draw(st.one_of(st.just(len(value)), st.integers(0, 0xFFFF)))
            value = struct.pack("!H", declared) + value
        elif kind not in FIXED_SIZES:
            value = b""  # true, false, and the unknown types have no value bytes
        else:
            size = FIXED_SIZES[kind]
            value = draw(
                st.one_of(
                    st.binary(min_size=size, max_size=size),
                    # integers reach the extremes of the range that raw bytes rarely do
                    st.integers(-(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1).map(
                        lambda v, n=size: v.to_bytes(n, "big", signed=True)
                    ),
                )
            )
        part = bytes([len(name)]) + name + bytes([kind]) + value
        if draw(st.integers(0, 9)) == 0:
            part = part[: draw(st.integers(0, len(part)))]
        parts.append(part)
    return b"".join(parts)


def framed(header_section: bytes, payload: bytes) -> bytes:
    """A message around raw header bytes, with correct lengths and CRCs."""
    total = PRELUDE + len(header_section) + len(payload) + 4
    return with_crcs(bytearray(struct.pack("!II", total, len(header_section)) + bytes(4)
                               + header_section + payload + bytes(4)))  # fmt: skip


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_all(decoder: Decoder, pieces: list[bytes], limit: int) -> list[Message]:
    """Feed every piece; the decoder's buffer never holds more than one message's worth."""
    out: list[Message] = []
    for piece in pieces:
        out += decoder.feed(piece)
        assert decoder.buffered < max(limit, PRELUDE), (decoder.buffered, limit)
    return out


# -- the codec's properties ---------------------------------------------------------------------


@given(messages)
def test_encode_then_decode_is_the_identity(message: Message) -> None:
    data = encoded(message)
    decoded = decode_message(data)
    assert same_message(decoded, message)
    assert encoded(decoded) == data  # byte-exact: the chunk signature covers these bytes


@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(0, 4096), max_size=12))
def test_any_split_of_a_valid_stream_decodes_to_the_same_messages(
    sent: list[Message], cuts: list[int]
) -> None:
    stream = b"".join(encoded(m) for m in sent)
    got = feed_all(Decoder(), chunked(stream, cuts), limit=len(stream))
    assert len(got) == len(sent)
    assert all(same_message(a, b) for a, b in zip(got, sent, strict=True))


@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=8))
@example(
    b"\x00\x00\x00\x10\x00\x00\x00\x00" + struct.pack("!I", zlib.crc32(b"\0\0\0\x10\0\0\0\0")), []
)
def test_arbitrary_bytes_decode_or_raise_only_event_stream_errors(
    data: bytes, cuts: list[int]
) -> None:
    with contextlib.suppress(EventStreamError):
        decode_message(data)
    decoder = Decoder(max_message_length=LIMIT)
    try:
        feed_all(decoder, chunked(data, cuts), LIMIT)
    except EventStreamError as first:
        # a failed decoder stays failed: framing is lost
        try:
            decoder.feed(b"")
        except EventStreamError as again:
            assert again is first
        else:
            raise AssertionError("a failed decoder accepted more input") from first


@given(mutated_streams(), st.lists(st.integers(0, 4096), max_size=8))
@example(  # a timestamp header far past the year 9999, CRCs correct
    with_crcs(
        bytearray(
            encode_message({"t": datetime.datetime(9999, 12, 31, tzinfo=UTC)}).replace(
                struct.pack("!q", 253402214400000), struct.pack("!q", 2**62)
            )
        )
    ),
    [],
)
@example(  # a prelude claiming 4 GB, with a correct prelude CRC
    with_crcs(bytearray(b"\xff\xff\xff\xff\x00\x00\x00\x00" + bytes(8))), [3]
)
@example(  # one byte over the limit, and more than the limit arriving: refused, not buffered
    with_crcs(bytearray(struct.pack("!II", LIMIT + 1, 0) + bytes(LIMIT + 100))), [100, 1000]
)
def test_mutated_streams_raise_only_event_stream_errors_within_the_limit(
    data: bytes, cuts: list[int]
) -> None:
    with contextlib.suppress(EventStreamError):
        decode_message(data)
    try:
        for message in feed_all(Decoder(max_message_length=LIMIT), chunked(data, cuts), LIMIT):
            # whatever decoded encodes again, to bytes that decode to the same message
            assert same_message(decode_message(encoded(message)), message)
    except EventStreamError:
        pass


@given(raw_header_sections(), st.binary(max_size=64))
@example(b"\x01t\x08" + struct.pack("!q", 2**62), b"")  # far past datetime's year 9999
def test_any_header_bytes_in_a_well_framed_message_decode_exactly_or_raise(
    header_section: bytes, payload: bytes
) -> None:
    data = framed(header_section, payload)
    try:
        message = decode_message(data)
    except EventStreamError:
        return
    # what decodes encodes back to the same bytes: the chunk signature is over these bytes
    assert encoded(message) == data


@given(messages, st.integers(0, 10_000))
def test_a_truncated_message_is_never_a_message(message: Message, keep: int) -> None:
    data = encoded(message)
    cut = data[: keep % len(data)]
    try:
        decode_message(cut)
    except MalformedMessageError:
        pass
    else:
        raise AssertionError(f"decoded {len(cut)} of {len(data)} bytes as a message")
    decoder = Decoder()
    assert decoder.feed(cut) == []
    assert decoder.buffered == len(cut)  # waiting for the rest, nothing more


@given(st.binary(max_size=512))
def test_arbitrary_chunk_payloads_are_bytes_or_a_violation(payload: bytes) -> None:
    with contextlib.suppress(ViolationError):
        unwrap_chunk(payload)


@given(st.binary(max_size=256), st.sampled_from(["event", "exception", 7]), st.text(max_size=8))
def test_chunks_with_any_inner_payload_are_bytes_or_a_violation(
    inner: bytes, message_type: Any, event_type: str
) -> None:
    chunk = encode_message({":message-type": message_type, ":event-type": event_type}, inner)
    with contextlib.suppress(ViolationError):
        unwrap_chunk(chunk)


# -- the provider's decoding of Bedrock's output events ------------------------------------------

OUTPUT_EVENTS = [
    "completionStart",
    "contentStart",
    "textOutput",
    "audioOutput",
    "toolUse",
    "contentEnd",
    "usageEvent",
    "completionEnd",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["ASSISTANT", "USER", "TOOL", "AUDIO", "TEXT", "END_TURN", "INTERRUPTED",
                     "TOOL_USE", "c1", '{"interrupted": true}', '{"generationStage":"SPECULATIVE"}',
                     "AAAA"]),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    ["contentId", "role", "type", "content", "stopReason", "toolUseId",
                     "toolName", "details", "total", "input", "output", "speechTokens",
                     "textTokens", "totalTokens", "additionalModelFields"]
                ),
                st.text(max_size=8),
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=16,
)  # fmt: skip
#: One well-formed body of each output event Bedrock sends, to be mutated.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "completionStart": {"sessionId": "s1", "promptName": "p1", "completionId": "x1"},
    "contentStart": {
        "contentId": "c1",
        "type": "TEXT",
        "role": "ASSISTANT",
        "additionalModelFields": '{"generationStage":"SPECULATIVE"}',
    },
    "textOutput": {"contentId": "c1", "role": "ASSISTANT", "content": "Hello there."},
    "audioOutput": {"contentId": "a1", "content": "AAAA"},
    "toolUse": {"toolUseId": "t1", "toolName": "lookup", "content": '{"topic": "parking"}'},
    "contentEnd": {"contentId": "c1", "stopReason": "END_TURN", "type": "TEXT"},
    "usageEvent": {
        "totalTokens": 10,
        "details": {
            "total": {
                "input": {"speechTokens": 1, "textTokens": 2},
                "output": {"speechTokens": 3, "textTokens": 4},
            }
        },
    },
    "completionEnd": {"stopReason": "END_TURN"},
}


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _paths(inner, (*prefix, key))
    return paths


@st.composite
def mutated_output_events(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed output event with values replaced or removed anywhere in its body."""
    name = draw(st.sampled_from(sorted(VALID_BODIES)))
    body: Any = json.loads(json.dumps(VALID_BODIES[name]))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            body = draw(json_values)
            continue
        parent = body
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        else:
            del parent[path[-1]]
    return {"event": {name: body}}


output_events = st.one_of(
    mutated_output_events(),
    st.builds(
        lambda name, body: {"event": {name: body}},
        st.one_of(st.sampled_from(OUTPUT_EVENTS), st.text(max_size=12)),
        json_values,
    ),
)
well_formed_events = st.sampled_from(sorted(VALID_BODIES)).map(
    lambda name: {"event": {name: VALID_BODIES[name]}}
)


def nova_protocol() -> NovaProtocol:
    return NovaProtocol(StreamSettings(NOVA_2_SONIC, "matthew", "Be brief."))


def receive_or_refuse(protocol: NovaProtocol, payload: bytes) -> list[Event]:
    try:
        return protocol.receive(payload)
    except MalformedEventError:
        return []


def as_payload(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=256),
            output_events.map(as_payload),
            well_formed_events.map(as_payload),
        ),
        min_size=1,
        max_size=8,
    )
)
@example([b'{"event":{"usageEvent":{"totalTokens":null}}}'])
@example([b'{"event":{"textOutput":null}}'])
def test_any_output_event_payload_is_events_or_a_provider_error(payloads: list[bytes]) -> None:
    protocol = nova_protocol()
    for payload in payloads:  # one stream: state carries from event to event
        events = receive_or_refuse(protocol, payload)
        assert all(isinstance(e, Event) for e in events)
