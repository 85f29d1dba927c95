"""The event-stream codec: round trips, agreement with the SDK's codec, corrupt input."""

from __future__ import annotations

import datetime
import io
import struct
import uuid
import zlib

import pytest
from smithy_aws_event_stream import events as sdk

from novakit.emulator.eventstream import (
    MAX_HEADERS_LENGTH,
    Byte,
    ChecksumError,
    Decoder,
    MalformedMessageError,
    Message,
    MessageTooLargeError,
    Short,
    decode_message,
    encode_headers,
    encode_message,
)
from novakit.emulator.eventstream import Long as Long64

WHEN = datetime.datetime(2025, 11, 25, 10, 55, 10, 123000, tzinfo=datetime.UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

ALL_TYPES = {
    "yes": True,
    "no": False,
    "byte": Byte(-7),
    "short": Short(-300),
    "int": 123456,
    "long": Long64(-(2**40)),
    "bytes": b"\x00\xffraw",
    "string": "héllo",
    "timestamp": WHEN,
    "uuid": ID,
}
SDK_TYPES = {
    **ALL_TYPES,
    "byte": sdk.Byte(-7),
    "short": sdk.Short(-300),
    "long": sdk.Long(-(2**40)),
}


def test_round_trip_every_header_type() -> None:
    encoded = encode_message(ALL_TYPES, b"payload")
    message = decode_message(encoded)
    assert message == Message(ALL_TYPES, b"payload")
    # Sizes survive decoding, so re-encoding is byte-exact.
    assert type(message.headers["byte"]) is Byte
    assert type(message.headers["long"]) is Long64
    assert message.encode() == encoded


def test_encoding_matches_the_sdk() -> None:
    ours = encode_message(ALL_TYPES, b'{"bytes":"e30="}')
    theirs = sdk.EventMessage(headers=SDK_TYPES, payload=b'{"bytes":"e30="}').encode()
    assert ours == theirs


def test_sdk_messages_decode_here_and_ours_decode_in_the_sdk() -> None:
    theirs = sdk.EventMessage(headers=SDK_TYPES, payload=b"abc").encode()
    assert decode_message(theirs) == Message(ALL_TYPES, b"abc")

    decoded = sdk.Event.decode(io.BytesIO(encode_message(ALL_TYPES, b"abc")))
    assert decoded is not None
    assert decoded.message.payload == b"abc"
    assert decoded.message.headers == SDK_TYPES


def test_timestamp_header_encoding_is_exact_to_the_millisecond() -> None:
    # The chunk signature hashes the encoded :date header, so it must match the SDK's bytes.
    for millis in (0, 1, 999, 1_764_068_110_123):
        when = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            milliseconds=millis
        )
        encoder = sdk.EventHeaderEncoder()
        encoder.encode_headers({":date": when})
        assert encode_headers({":date": when}) == encoder.get_result()
        assert decode_message(encode_message({":date": when})).headers[":date"] == when


def test_empty_message() -> None:
    encoded = encode_message({})
    assert len(encoded) == 16
    assert decode_message(encoded) == Message({}, b"")


def test_incremental_feed_byte_by_byte_and_in_one_piece() -> None:
    stream = b"".join(encode_message({"n": i}, bytes([i]) * i) for i in range(5))
    decoder = Decoder()
    got: list[Message] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert [m.headers["n"] for m in got] == list(range(5))
    assert decoder.buffered == 0
    assert Decoder().feed(stream) == got


def test_partial_message_is_buffered() -> None:
    encoded = encode_message({"a": "b"}, b"xyz")
    decoder = Decoder()
    assert decoder.feed(encoded[:-1]) == []
    assert decoder.buffered == len(encoded) - 1
    assert decoder.feed(encoded[-1:]) == [Message({"a": "b"}, b"xyz")]


def test_bad_prelude_crc() -> None:
    encoded = bytearray(encode_message({"a": "b"}, b"xyz"))
    encoded[9] ^= 0x01
    with pytest.raises(ChecksumError, match="prelude CRC"):
        Decoder().feed(bytes(encoded))


def test_bad_message_crc_and_the_decoder_stays_failed() -> None:
    encoded = bytearray(encode_message({"a": "b"}, b"xyz"))
    encoded[-6] ^= 0x01  # a payload byte
    decoder = Decoder()
    with pytest.raises(ChecksumError, match="message CRC"):
        decoder.feed(bytes(encoded))
    with pytest.raises(ChecksumError):
        decoder.feed(encode_message({}))


def _prelude(total: int, headers: int) -> bytes:
    head = struct.pack("!II", total, headers)
    return head + struct.pack("!I", zlib.crc32(head))


def test_oversized_message_fails_on_the_prelude() -> None:
    decoder = Decoder(max_message_length=1024)
    with pytest.raises(MessageTooLargeError):
        decoder.feed(_prelude(4096, 0))  # no need to wait for 4 KB that may never come


def test_oversized_headers() -> None:
    with pytest.raises(MessageTooLargeError):
        Decoder().feed(_prelude(MAX_HEADERS_LENGTH + 100, MAX_HEADERS_LENGTH + 1))


def test_lengths_that_do_not_add_up() -> None:
    with pytest.raises(MalformedMessageError, match="smaller than headers"):
        Decoder().feed(_prelude(20, 10))


@pytest.mark.parametrize(
    ("header_bytes", "match"),
    [
        (b"\x01a\x0a", "unknown value type"),
        (b"\x01a\x07\x00\x05ab", "end inside"),
        (b"\x00", "empty header name"),
        (b"\x01a\x00\x01a\x01", "duplicate header"),
        # an i64 of milliseconds reaches far past datetime's year 9999
        (b"\x01t\x08" + struct.pack("!q", 2**62), "timestamp .* out of range"),
        (b"\x01t\x08" + struct.pack("!q", -(2**63)), "timestamp .* out of range"),
    ],
)
def test_malformed_headers(header_bytes: bytes, match: str) -> None:
    total = 16 + len(header_bytes)
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + header_bytes
    with pytest.raises(MalformedMessageError, match=match):
        decode_message(body + struct.pack("!I", zlib.crc32(body)))


def test_header_value_limits_on_encode() -> None:
    with pytest.raises(MessageTooLargeError):
        encode_headers({"big": "x" * 40000})
    with pytest.raises(MalformedMessageError):
        encode_headers({"": "empty name"})
    with pytest.raises(MalformedMessageError, match="timezone"):
        encode_headers({"t": datetime.datetime(2025, 1, 1)})
