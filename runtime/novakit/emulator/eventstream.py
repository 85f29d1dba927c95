"""The AWS event-stream binary format (``application/vnd.amazon.eventstream``), sans I/O.

A message is::

    prelude:  total length (u32) | headers length (u32) | CRC32 of those 8 bytes (u32)
    headers:  repeated  name length (u8) | name (UTF-8) | type (u8) | value
    payload:  bytes
    trailer:  CRC32 of everything before it (u32)

All integers are big-endian. Header value types: 0 true, 1 false, 2 byte, 3 short, 4 int,
5 long, 6 bytes (u16 length), 7 string (u16 length), 8 timestamp (i64 milliseconds since the
epoch), 9 UUID (16 bytes).

This codec is written from the format description rather than borrowed from the SDK, so that the
emulator checks the SDK's codec instead of agreeing with it by construction. Decoded integers come
back as ``Byte``/``Short``/``Long``/``int`` so that a decode/encode round trip is byte-exact (the
chunk signature covers the encoded ``:date`` header, so exactness matters).
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "Byte",
    "ChecksumError",
    "Decoder",
    "EventStreamError",
    "HeaderValue",
    "Long",
    "MalformedMessageError",
    "Message",
    "MessageTooLargeError",
    "Short",
    "decode_message",
    "encode_headers",
    "encode_message",
]

MAX_HEADERS_LENGTH = 128 * 1024
MAX_HEADER_VALUE_LENGTH = 32 * 1024 - 1
MAX_PAYLOAD_LENGTH = 16 * 1024 * 1024
_PRELUDE_LENGTH = 12
_OVERHEAD = _PRELUDE_LENGTH + 4  # prelude + trailing CRC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MILLISECOND = datetime.timedelta(milliseconds=1)

_TYPE_TRUE = 0
_TYPE_FALSE = 1
_TYPE_BYTE = 2
_TYPE_SHORT = 3
_TYPE_INT = 4
_TYPE_LONG = 5
_TYPE_BYTES = 6
_TYPE_STRING = 7
_TYPE_TIMESTAMP = 8
_TYPE_UUID = 9


class Byte(int):
    """An int header encoded as a signed 8-bit value."""


class Short(int):
    """An int header encoded as a signed 16-bit value."""


class Long(int):
    """An int header encoded as a signed 64-bit value (a plain ``int`` is 32-bit)."""


type HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID


class EventStreamError(ValueError):
    """Bytes that are not a valid event-stream message."""


class ChecksumError(EventStreamError):
    """A prelude or message CRC32 does not match the bytes."""


class MessageTooLargeError(EventStreamError):
    """A length field exceeds the format's limits."""


class MalformedMessageError(EventStreamError):
    """Lengths or headers that cannot be parsed."""


@dataclass(frozen=True)
class Message:
    """One event-stream message: typed headers (in wire order) and an opaque payload."""

    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_message(self.headers, self.payload)


def _crc(data: bytes, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def _timestamp_millis(value: datetime.datetime) -> int:
    if value.tzinfo is None:
        raise MalformedMessageError("timestamp headers need a timezone-aware datetime")
    # Integer arithmetic (not float timestamps) so decode -> encode is exact.
    return (value - _EPOCH) // _MILLISECOND


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    if not 0 < len(raw_name) <= 255:
        raise MalformedMessageError(f"header name {name!r} must be 1-255 bytes")
    head = struct.pack("!B", len(raw_name)) + raw_name
    # bool before int (bool is an int subclass); sized ints before plain int.
    match value:
        case bool():
            return head + struct.pack("!B", _TYPE_TRUE if value else _TYPE_FALSE)
        case Byte():
            return head + struct.pack("!Bb", _TYPE_BYTE, value)
        case Short():
            return head + struct.pack("!Bh", _TYPE_SHORT, value)
        case Long():
            return head + struct.pack("!Bq", _TYPE_LONG, value)
        case int():
            return head + struct.pack("!Bi", _TYPE_INT, value)
        case bytes():
            if len(value) > MAX_HEADER_VALUE_LENGTH:
                raise MessageTooLargeError(f"header {name!r}: value of {len(value)} bytes")
            return head + struct.pack("!BH", _TYPE_BYTES, len(value)) + value
        case str():
            raw = value.encode("utf-8")
            if len(raw) > MAX_HEADER_VALUE_LENGTH:
                raise MessageTooLargeError(f"header {name!r}: value of {len(raw)} bytes")
            return head + struct.pack("!BH", _TYPE_STRING, len(raw)) + raw
        case datetime.datetime():
            return head + struct.pack("!Bq", _TYPE_TIMESTAMP, _timestamp_millis(value))
        case uuid.UUID():
            return head + struct.pack("!B", _TYPE_UUID) + value.bytes
    raise MalformedMessageError(f"header {name!r}: unsupported value type {type(value).__name__}")


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """Encode headers in mapping order (the order is part of what a chunk signature covers)."""
    encoded = b"".join(_encode_header(name, value) for name, value in headers.items())
    if len(encoded) > MAX_HEADERS_LENGTH:
        raise MessageTooLargeError(f"headers of {len(encoded)} bytes exceed {MAX_HEADERS_LENGTH}")
    return encoded


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    encoded_headers = encode_headers(headers)
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise MessageTooLargeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    total = _OVERHEAD + len(encoded_headers) + len(payload)
    prelude = struct.pack("!II", total, len(encoded_headers))
    prelude += struct.pack("!I", _crc(prelude))
    body = prelude + encoded_headers + payload
    return body + struct.pack("!I", _crc(body))


class _HeaderReader:
    """Reads typed header values from the headers section, with bounds checks."""

    _FIXED: ClassVar[dict[int, tuple[str, int, type[int]]]] = {
        _TYPE_BYTE: ("!b", 1, Byte),
        _TYPE_SHORT: ("!h", 2, Short),
        _TYPE_INT: ("!i", 4, int),
        _TYPE_LONG: ("!q", 8, Long),
    }

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def more(self) -> bool:
        return self._pos < len(self._data)

    def take(self, n: int, what: str) -> bytes:
        if self._pos + n > len(self._data):
            raise MalformedMessageError(f"headers end inside {what}")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def name(self) -> str:
        length = self.take(1, "a header name length")[0]
        if length == 0:
            raise MalformedMessageError("empty header name")
        try:
            return self.take(length, "a header name").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessageError("header name is not UTF-8") from exc

    def value(self, name: str) -> HeaderValue:
        kind = self.take(1, f"header {name!r} type")[0]
        if kind in (_TYPE_TRUE, _TYPE_FALSE):
            return kind == _TYPE_TRUE
        if kind in self._FIXED:
            fmt, size, sized = self._FIXED[kind]
            return sized(int(struct.unpack(fmt, self.take(size, name))[0]))
        if kind in (_TYPE_BYTES, _TYPE_STRING):
            (length,) = struct.unpack("!H", self.take(2, name))
            if length > MAX_HEADER_VALUE_LENGTH:
                raise MessageTooLargeError(f"header {name!r}: value of {length} bytes")
            raw = self.take(length, name)
            if kind == _TYPE_BYTES:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedMessageError(f"header {name!r} is not UTF-8") from exc
        if kind == _TYPE_TIMESTAMP:
            millis = int(struct.unpack("!q", self.take(8, name))[0])
            try:
                return _EPOCH + millis * _MILLISECOND
            except OverflowError:  # the wire allows ±292 million years; datetime stops at 9999
                raise MalformedMessageError(
                    f"header {name!r}: timestamp {millis} ms is out of range"
                ) from None
        if kind == _TYPE_UUID:
            return uuid.UUID(bytes=self.take(16, name))
        raise MalformedMessageError(f"header {name!r}: unknown value type {kind}")


def _decode_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    reader = _HeaderReader(data)
    while reader.more:
        name = reader.name()
        value = reader.value(name)
        if name in headers:
            raise MalformedMessageError(f"duplicate header {name!r}")
        headers[name] = value
    return headers


def _check_prelude(prelude: bytes, max_message_length: int) -> tuple[int, int]:
    total, headers_length, prelude_crc = struct.unpack("!III", prelude)
    if prelude_crc != _crc(prelude[:8]):
        raise ChecksumError(
            f"prelude CRC mismatch: message says 0x{prelude_crc:08x}, "
            f"bytes give 0x{_crc(prelude[:8]):08x}"
        )
    if headers_length > MAX_HEADERS_LENGTH:
        raise MessageTooLargeError(f"headers length {headers_length} exceeds {MAX_HEADERS_LENGTH}")
    if total < _OVERHEAD + headers_length:
        raise MalformedMessageError(
            f"total length {total} is smaller than headers ({headers_length}) plus framing"
        )
    payload_length = total - _OVERHEAD - headers_length
    if payload_length > MAX_PAYLOAD_LENGTH or total > max_message_length:
        raise MessageTooLargeError(
            f"message of {total} bytes exceeds the limit ({max_message_length} bytes)"
        )
    return total, headers_length


def _parse_message(data: bytes, headers_length: int) -> Message:
    body, (message_crc,) = data[:-4], struct.unpack("!I", data[-4:])
    if message_crc != _crc(body):
        raise ChecksumError(
            f"message CRC mismatch: message says 0x{message_crc:08x}, bytes give 0x{_crc(body):08x}"
        )
    headers_end = _PRELUDE_LENGTH + headers_length
    headers = _decode_headers(body[_PRELUDE_LENGTH:headers_end])
    return Message(headers=headers, payload=body[headers_end:])


def decode_message(data: bytes) -> Message:
    """Decode exactly one complete message."""
    if len(data) < _OVERHEAD:
        raise MalformedMessageError(f"{len(data)} bytes are too short for a message")
    total, headers_length = _check_prelude(
        data[:_PRELUDE_LENGTH], _OVERHEAD + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH
    )
    if total != len(data):
        raise MalformedMessageError(f"message says {total} bytes, got {len(data)}")
    return _parse_message(data, headers_length)


class Decoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back complete messages.

    After an error the decoder stays failed (every later ``feed`` raises again): once framing is
    lost there is no safe place to resynchronise, and a server must end the stream.
    """

    def __init__(
        self, max_message_length: int = _OVERHEAD + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH
    ):
        self._buffer = bytearray()
        self._max_message_length = max_message_length
        self._error: EventStreamError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[Message] = []
        try:
            while len(self._buffer) >= _PRELUDE_LENGTH:
                # The prelude is checked as soon as it arrives, so an oversized or corrupt length
                # fails fast instead of making us wait for (and buffer) megabytes that never come.
                total, headers_length = _check_prelude(
                    bytes(self._buffer[:_PRELUDE_LENGTH]), self._max_message_length
                )
                if len(self._buffer) < total:
                    break
                messages.append(_parse_message(bytes(self._buffer[:total]), headers_length))
                del self._buffer[:total]
        except EventStreamError as exc:
            self._error = exc
            raise
        return messages
