"""G.711 mu-law (the telephone network's 8-bit audio) to and from PCM16, as pure functions.

Telephony streams (Twilio Media Streams among them) carry 8 kHz audio as one mu-law byte per
sample. Python's ``audioop`` did this until 3.13 removed it; these functions give the same
bytes as its ``lin2ulaw`` and ``ulaw2lin`` (the ITU-T G.711 / Sun ``g711.c`` algorithm, 14-bit
magnitude with a bias of 33), through lookup tables: 64 KiB for encoding (one entry per PCM16
value), 256 entries for decoding, built once with numpy.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["ulaw_decode", "ulaw_encode"]

_BIAS: Final = 0x21  # on the 14-bit magnitude
_CLIP: Final = 8159  # largest 14-bit magnitude that still fits the top segment with the bias
# Upper bound of each of the 8 segments (exponents), on biased 14-bit magnitudes.
_SEGMENT_ENDS: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _encode_table() -> npt.NDArray[np.uint8]:
    """The mu-law byte of every PCM16 value, indexed by the value's unsigned 16-bit pattern."""
    values = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2  # 14 bits
    negative = values < 0
    magnitude = np.where(negative, -values, values)
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(magnitude, _CLIP) + _BIAS
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude, side="left")
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _decode_table() -> npt.NDArray[np.int16]:
    """The PCM16 value of every mu-law byte."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


_ENCODE: Final = _encode_table()
_DECODE: Final = _decode_table().astype("<i2")


def ulaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """PCM16 little-endian mono to mu-law, one byte per sample. A trailing odd byte (half a
    sample) is not encoded."""
    usable = len(pcm) & ~1
    samples = np.frombuffer(pcm, dtype="<u2", count=usable // 2)
    return bytes(_ENCODE[samples].tobytes())


def ulaw_decode(data: bytes | bytearray | memoryview) -> bytes:
    """mu-law bytes to PCM16 little-endian mono, two bytes per sample."""
    return bytes(_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes())
