"""Deterministic speech-like audio: what the emulator "says", and what tests can "say" to it.

The assistant's voice is a string of syllable-shaped tone bursts (a voiced wave with a few
harmonics under a half-sine envelope), one burst per vowel group of each word, so its duration
follows the words and its energy is what a voice activity detector hears. All audio is 16-bit
signed little-endian mono PCM.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from array import array

__all__ = ["rms", "silence", "synthesize", "tone"]

_TABLE_SIZE = 2048
# One period of a voiced wave: fundamental plus two weaker harmonics, peak-normalised.
_RAW = [
    math.sin(2 * math.pi * i / _TABLE_SIZE)
    + 0.5 * math.sin(4 * math.pi * i / _TABLE_SIZE)
    + 0.25 * math.sin(6 * math.pi * i / _TABLE_SIZE)
    for i in range(_TABLE_SIZE)
]
_PEAK = max(abs(v) for v in _RAW)
_TABLE = [v / _PEAK for v in _RAW]

_AMPLITUDE = 9000
_SYLLABLE_SECONDS = 0.14
_SYLLABLE_GAP_SECONDS = 0.04
_WORD_GAP_SECONDS = 0.06
_SENTENCE_TAIL_SECONDS = 0.2
_WORD_RE = re.compile(r"[\w']+")
_VOWELS_RE = re.compile(r"[aeiouy]+")


def _to_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


@functools.cache
def _burst(rate: int, frequency: float, seconds: float, amplitude: int) -> array[int]:
    """One syllable's samples. The voice has five pitches and one syllable length, so each
    burst is computed once: synthesizing every answer sample by sample cost an emulator
    serving dozens of conversations a third of its CPU. Callers copy, never change, it."""
    out: array[int] = array("h")
    length = int(seconds * rate)
    step = frequency * _TABLE_SIZE / rate
    phase = 0.0
    for i in range(length):
        envelope = math.sin(math.pi * i / length)
        out.append(int(amplitude * envelope * _TABLE[int(phase) % _TABLE_SIZE]))
        phase += step
    return out


def synthesize(text: str, rate: int) -> bytes:
    """Speech-like PCM for ``text`` at ``rate`` Hz; the same text always gives the same bytes."""
    out: array[int] = array("h")
    syllable = 0
    for word in _WORD_RE.findall(text):
        count = max(1, len(_VOWELS_RE.findall(word.lower())))
        for _ in range(count):
            # A small repeating pitch contour, so the voice is not a monotone.
            frequency = 120.0 + 15.0 * (syllable * 7 % 5)
            out.extend(_burst(rate, frequency, _SYLLABLE_SECONDS, _AMPLITUDE))
            out.extend([0] * int(_SYLLABLE_GAP_SECONDS * rate))
            syllable += 1
        out.extend([0] * int(_WORD_GAP_SECONDS * rate))
    out.extend([0] * int(_SENTENCE_TAIL_SECONDS * rate))
    return _to_bytes(out)


def tone(
    seconds: float, rate: int = 16000, frequency: float = 220.0, amplitude: int = 8000
) -> bytes:
    """A steady voiced tone (test input that a VAD hears as speech)."""
    out: array[int] = array("h")
    step = frequency * _TABLE_SIZE / rate
    for i in range(int(seconds * rate)):
        out.append(int(amplitude * _TABLE[int(i * step) % _TABLE_SIZE]))
    return _to_bytes(out)


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(2 * int(seconds * rate))


def rms(pcm: bytes | memoryview) -> float:
    """Root mean square of 16-bit little-endian samples."""
    samples = array("h", bytes(pcm))
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(math.sumprod(samples, samples) / len(samples))
