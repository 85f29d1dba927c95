"""PCM16 helpers shared by the CLI, demos, tests and benchmarks: WAV files, levels, and a
deterministic speech-like signal (voiced harmonics at syllable rate) for places where a real
recording is not at hand. Pure standard library."""

from __future__ import annotations

import array
import math
import sys
import wave
from pathlib import Path

BYTES_PER_SAMPLE = 2


def samples(pcm: bytes) -> array.array[int]:
    """PCM16 little-endian bytes as an array of ints."""
    values = array.array("h")
    values.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        values.byteswap()
    return values


def to_pcm(values: array.array[int]) -> bytes:
    if sys.byteorder == "big":
        values = array.array("h", values)
        values.byteswap()
    return values.tobytes()


def duration(pcm: bytes, rate: int) -> float:
    """Seconds of mono PCM16 audio."""
    return len(pcm) / (BYTES_PER_SAMPLE * rate)


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(BYTES_PER_SAMPLE * round(seconds * rate))


def rms_dbfs(pcm: bytes) -> float:
    """Level relative to full scale; -inf for digital silence."""
    values = samples(pcm)
    if not values:
        return -math.inf
    mean_square = sum(v * v for v in values) / len(values)
    return -math.inf if mean_square == 0 else 10 * math.log10(mean_square / 32768**2)


def speech_like(
    seconds: float, rate: int = 16000, *, pitch: float = 130.0, level: float = 0.3
) -> bytes:
    """A voiced, syllable-shaped signal: harmonics of ``pitch`` with a gentle formant tilt,
    amplitude-modulated at ~4 syllables per second. Deterministic; heard as speech by energy
    and WebRTC voice-activity detectors."""
    n = round(seconds * rate)
    harmonics = [(k, 1.0 / k) for k in range(1, 12) if k * pitch < rate / 2]
    norm = sum(a for _, a in harmonics)
    out = array.array("h", bytes(2 * n))
    two_pi = 2 * math.pi
    for i in range(n):
        t = i / rate
        syllable = 0.55 - 0.45 * math.cos(two_pi * 4.0 * t)  # 4 Hz, never fully silent
        vibrato = pitch * (1 + 0.03 * math.sin(two_pi * 5.0 * t))
        phase = two_pi * vibrato * t
        value = sum(a * math.sin(k * phase) for k, a in harmonics) / norm
        out[i] = int(32767 * level * syllable * value)
    return to_pcm(out)


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """(mono PCM16, sample rate) from a 16-bit WAV file; stereo is averaged to mono."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != BYTES_PER_SAMPLE:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit WAV; 16-bit PCM is needed")
        channels, rate = wav.getnchannels(), wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if channels == 1:
        return pcm, rate
    values = samples(pcm)
    mono = array.array(
        "h",
        (sum(values[i : i + channels]) // channels for i in range(0, len(values), channels)),
    )
    return to_pcm(mono), rate


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Write mono PCM16 as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(rate)
        wav.writeframes(pcm)
