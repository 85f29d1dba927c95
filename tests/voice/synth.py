"""Deterministic test signals: sines, noise and speech-like audio, as PCM16."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float64]

# F1-F3 of a few vowels (Hz), roughly those of an adult male speaker.
_VOWELS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (530, 1840, 2480),
    (570, 840, 2410),
    (300, 870, 2240),
    (660, 1720, 2410),
)
_FORMANT_GAINS = (1.0, 0.5, 0.25)
SYLLABLE_PERIOD = 0.25  # 4 syllables per second, a typical speaking rate
VOICED_PART = 0.18  # seconds of each syllable that are voiced; the rest is a gap
_RAMP = 0.015


def to_pcm(signal: Float) -> bytes:
    """Float samples in [-1, 1] to PCM16 little-endian."""
    return np.clip(np.rint(signal * 32767), -32768, 32767).astype("<i2").tobytes()


def from_pcm(pcm: bytes) -> Float:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32767


def sine(freq: float, duration: float, rate: int, amplitude: float = 0.5) -> Float:
    t = np.arange(round(duration * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def noise(duration: float, rate: int, rms: float, seed: int) -> Float:
    """White Gaussian noise; ``rms`` is relative to full scale (1e-3 is -60 dBFS)."""
    return np.random.default_rng(seed).normal(0.0, rms, round(duration * rate))


def speech_like(syllables: int, rate: int, *, seed: int = 0, f0: float = 140.0) -> Float:
    """Voiced speech-like audio: syllables of vowels separated by short gaps.

    Each syllable is a harmonic series on a wandering fundamental (``f0`` +-25 %, within
    100-250 Hz), shaped by the formant envelope of a vowel, with 1/k spectral tilt like a glottal
    source, and a raised-cosine amplitude envelope at 4 syllables per second. The result starts at
    the first sample of the first syllable and ends at the last sample of the last one, so its
    length is the true extent of speech; its peak is 0.5 (-6 dBFS).
    """
    rng = np.random.default_rng(seed)
    length = round(((syllables - 1) * SYLLABLE_PERIOD + VOICED_PART) * rate)
    t = np.arange(length) / rate
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    pitch *= 1 + 0.05 * np.sin(2 * np.pi * 5.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    top = min(5000.0, 0.45 * rate)
    out = np.zeros(length)
    ramp = round(_RAMP * rate)
    voiced = round(VOICED_PART * rate)
    shape = np.ones(voiced)
    shape[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    shape[voiced - ramp :] = shape[:ramp][::-1]
    for s in range(syllables):
        a = round(s * SYLLABLE_PERIOD * rate)
        b = a + voiced
        formants = _VOWELS[rng.integers(len(_VOWELS))]
        segment = np.zeros(voiced)
        for k in range(1, int(top // (0.75 * f0)) + 1):
            freq = k * pitch[a:b]
            gain = sum(
                g / (1 + ((freq - fc) / (50 + 0.06 * fc)) ** 2)
                for fc, g in zip(formants, _FORMANT_GAINS, strict=True)
            )
            gain = np.where(freq < top, gain / k**0.5, 0.0)
            segment += gain * np.sin(k * phase[a:b])
        out[a:b] = segment * shape * rng.uniform(0.6, 1.0)
    peak = float(np.max(np.abs(out)))
    return 0.5 * out / peak


@dataclass(frozen=True)
class Scene:
    pcm: bytes
    rate: int
    segments: list[tuple[float, float]]  # true (start, end) of each speech segment, seconds


def scene(rate: int, layout: list[tuple[str, float]], *, noise_rms: float, seed: int = 0) -> Scene:
    """Noise with speech segments inserted: ``layout`` items are ("gap", seconds) or
    ("speech", syllables)."""
    parts: list[Float] = []
    segments: list[tuple[float, float]] = []
    position = 0
    for index, (kind, amount) in enumerate(layout):
        if kind == "gap":
            part = np.zeros(round(amount * rate))
        else:
            part = speech_like(int(amount), rate, seed=seed + index)
            segments.append((position / rate, (position + len(part)) / rate))
        parts.append(part)
        position += len(part)
    signal = np.concatenate(parts) + noise(position / rate, rate, noise_rms, seed)
    return Scene(to_pcm(signal), rate, segments)
