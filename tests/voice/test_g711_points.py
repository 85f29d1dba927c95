"""G.711 mu-law fixed points and error bounds (no reference codec needed)."""

from __future__ import annotations

import numpy as np

from novakit.audio import speech_like
from novakit.voice.g711 import ulaw_decode, ulaw_encode


def test_known_codes() -> None:
    # Silence is 0xFF; full scale is 0x80 (positive) and 0x00 (negative): ITU-T G.711.
    pcm = np.array([0, 32767, -32768], dtype="<i2").tobytes()
    assert ulaw_encode(pcm) == bytes([0xFF, 0x80, 0x00])
    assert np.frombuffer(ulaw_decode(b"\xff\x80\x00"), "<i2").tolist() == [0, 32124, -32124]


def test_one_byte_per_sample_and_half_samples_left_out() -> None:
    assert len(ulaw_encode(bytes(320))) == 160
    assert len(ulaw_encode(bytes(321))) == 160
    assert len(ulaw_decode(bytes(160))) == 320


def test_round_trip_error_is_within_the_segment_step() -> None:
    values = np.frombuffer(speech_like(1.0, 8000), "<i2").astype(np.int32)
    back = np.frombuffer(ulaw_decode(ulaw_encode(values.astype("<i2").tobytes())), "<i2")
    error = np.abs(back - values)
    # mu-law's step doubles per segment: half a step of the segment a value falls in, at most.
    assert np.all(error <= np.maximum(16, np.abs(values) // 16))
    snr = 10 * np.log10(np.sum(values**2) / np.sum(error.astype(np.float64) ** 2))
    assert snr > 30  # G.711's ~38 dB on speech-level signals
