"""G.711 telephone audio: mu-law (``audio/pcmu``, North America and Japan) and A-law
(``audio/pcma``, elsewhere), one byte per sample at 8 kHz, to and from PCM16 little-endian.

Pure standard library, table driven: decoding looks each byte up, encoding looks each 16-bit
sample up in a 64 K table built once. The segment arithmetic is ITU-T G.711's, as in the
reference implementation that ``audioop`` shipped (``tests/unit/test_g711.py`` compares them).
"""

from __future__ import annotations

import array
import functools
import sys
from typing import Final

__all__ = ["alaw_to_pcm", "pcm_to_alaw", "pcm_to_ulaw", "ulaw_to_pcm"]

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159  # the largest magnitude in 14-bit units
_ULAW_SEGMENT_ENDS: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _ulaw_encode(sample: int) -> int:
    value = sample >> 2  # 14-bit
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_decode(byte: int) -> int:
    value = ~byte & 0xFF
    magnitude = (((value & 0x0F) << 3) + _ULAW_BIAS) << ((value & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if value & 0x80 else magnitude - _ULAW_BIAS


def _alaw_encode(sample: int) -> int:
    value = sample >> 3  # 13-bit
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    segment = _segment(value, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


def _alaw_decode(byte: int) -> int:
    value = byte ^ 0x55
    magnitude = (value & 0x0F) << 4
    segment = (value & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if value & 0x80 else -magnitude


def _decode_table(decode: object) -> tuple[bytes, ...]:
    assert callable(decode)
    return tuple(int(decode(byte)).to_bytes(2, "little", signed=True) for byte in range(256))


def _encode_table(encode: object) -> bytes:
    # Indexed by the sample as an unsigned 16-bit number (0..32767, then -32768..-1).
    assert callable(encode)
    return bytes(encode(n if n < 32768 else n - 65536) for n in range(65536))


_ULAW_TO_PCM: Final = _decode_table(_ulaw_decode)
_ALAW_TO_PCM: Final = _decode_table(_alaw_decode)


@functools.cache
def _pcm_to_ulaw_table() -> bytes:
    return _encode_table(_ulaw_encode)  # built on first use: a 64 K table takes ~50 ms


@functools.cache
def _pcm_to_alaw_table() -> bytes:
    return _encode_table(_alaw_encode)


def _unsigned_samples(pcm: bytes | memoryview) -> array.array[int]:
    values = array.array("H")
    values.frombytes(bytes(pcm[: len(pcm) - len(pcm) % 2]))
    if sys.byteorder == "big":
        values.byteswap()
    return values


def ulaw_to_pcm(data: bytes) -> bytes:
    """mu-law bytes to PCM16 little-endian (twice as long)."""
    table = _ULAW_TO_PCM
    return b"".join([table[byte] for byte in data])


def alaw_to_pcm(data: bytes) -> bytes:
    """A-law bytes to PCM16 little-endian (twice as long)."""
    table = _ALAW_TO_PCM
    return b"".join([table[byte] for byte in data])


def pcm_to_ulaw(pcm: bytes | memoryview) -> bytes:
    """PCM16 little-endian to mu-law (half as long; a lone odd byte is left out)."""
    return bytes(map(_pcm_to_ulaw_table().__getitem__, _unsigned_samples(pcm)))


def pcm_to_alaw(pcm: bytes | memoryview) -> bytes:
    """PCM16 little-endian to A-law (half as long; a lone odd byte is left out)."""
    return bytes(map(_pcm_to_alaw_table().__getitem__, _unsigned_samples(pcm)))
