"""G.711 mu-law against the standard library's own codec (``audioop``, in Python up to 3.12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from novakit.audio import speech_like
from novakit.voice.g711 import ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")  # removed in 3.13: the fixed points below still run

EVERY_PCM16 = np.arange(-32768, 32768, dtype="<i2").tobytes()


def test_every_pcm16_value_encodes_as_audioop_does() -> None:
    assert ulaw_encode(EVERY_PCM16) == audioop.lin2ulaw(EVERY_PCM16, 2)


def test_every_mulaw_byte_decodes_as_audioop_does() -> None:
    codes = bytes(range(256))
    assert ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)


def test_speech_round_trips_as_audioop_does() -> None:
    pcm = speech_like(0.5, 8000)
    assert ulaw_decode(ulaw_encode(pcm)) == audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)
