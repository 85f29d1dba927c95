"""Resampling: accuracy on pure tones, streaming equals one-shot, the pipeline processor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from novakit.voice import (
    AudioFrame,
    EndFrame,
    Frame,
    ResampleProcessor,
    Resampler,
    StartFrame,
    TextFrame,
    resample,
    run,
)

from .synth import Float, from_pcm, sine, to_pcm

pytestmark = pytest.mark.timeout(20)


# Chunk sizes in samples, all odd; every third chunk also carries half a sample more.
CHUNK_SAMPLES = (1, 37, 101, 333, 4001, 7, 1999)


def chunks(pcm: bytes) -> Iterator[bytes]:
    position = 0
    for index in range(len(pcm)):
        size = 2 * CHUNK_SAMPLES[index % len(CHUNK_SAMPLES)] + (1 if index % 3 == 0 else 0)
        yield pcm[position : position + size]
        position += size
        if position >= len(pcm):
            return


def stream(resampler: Resampler, pcm: bytes) -> bytes:
    return b"".join(resampler.process(c) for c in chunks(pcm)) + resampler.flush()


def dominant_frequency(signal: Float, rate: int) -> float:
    # Hann window, then parabolic interpolation of the log magnitude around the peak bin.
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return float((k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(signal))


RATE_PAIRS = [(8000, 16000), (16000, 24000), (24000, 16000), (48000, 16000)]


@pytest.mark.parametrize("freq", [440.0, 3000.0])
@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_streamed_sine_keeps_length_frequency_amplitude_and_phase(
    in_rate: int, out_rate: int, freq: float
) -> None:
    pcm = to_pcm(sine(freq, 1.0, in_rate, amplitude=0.5))
    out = from_pcm(stream(Resampler(in_rate, out_rate), pcm))

    assert abs(len(out) - out_rate) <= 2  # 1 s in, 1 s out

    # Skip 10 ms at each end, where the tone starts and stops abruptly and the filter rings.
    steady = slice(out_rate // 100, len(out) - out_rate // 100)
    peak = np.sqrt(2 * np.mean(out[steady] ** 2))
    assert peak == pytest.approx(0.5, rel=0.02)
    assert dominant_frequency(out, out_rate) == pytest.approx(freq, rel=0.01)

    # Against the ideal tone sampled at the output rate: the output is time-aligned with the
    # input (no delay) and the error is near the 16-bit quantisation floor (measured 88-92 dB).
    ideal = sine(freq, len(out) / out_rate, out_rate, amplitude=0.5)
    error = out[steady] - ideal[steady]
    snr_db = 10 * np.log10(np.mean(ideal[steady] ** 2) / np.mean(error**2))
    assert snr_db > 80


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (16000, 8000), (24000, 44100)])
def test_chunked_output_equals_one_shot(in_rate: int, out_rate: int) -> None:
    pcm = to_pcm(sine(440, 0.5, in_rate) + sine(2500, 0.5, in_rate, amplitude=0.2))
    one_shot = np.frombuffer(resample(pcm, in_rate, out_rate), dtype="<i2").astype(int)
    streamed = np.frombuffer(stream(Resampler(in_rate, out_rate), pcm), dtype="<i2").astype(int)
    assert len(streamed) == len(one_shot) == round(len(pcm) // 2 * out_rate / in_rate)
    assert np.max(np.abs(streamed - one_shot)) <= 1


def test_downsampling_removes_tones_above_the_new_nyquist_frequency() -> None:
    pcm = to_pcm(sine(10000, 0.5, 48000, amplitude=0.5))
    out = from_pcm(resample(pcm, 48000, 16000))[160:-160]  # skip the edges, where it starts
    assert np.max(np.abs(out)) < 0.5 * 10 ** (-80 / 20)  # at least 80 dB down


def test_resampler_is_reusable_after_flush_and_reset() -> None:
    pcm = to_pcm(sine(440, 0.2, 16000))
    resampler = Resampler(16000, 24000)
    first = stream(resampler, pcm)
    assert stream(resampler, pcm) == first
    resampler.process(pcm[:1001])  # leaves a split sample and filter state behind
    resampler.reset()
    assert stream(resampler, pcm) == first


def test_early_output_is_held_back_by_the_filter_delay() -> None:
    resampler = Resampler(16000, 24000)
    out = resampler.process(to_pcm(sine(440, 0.01, 16000)))
    assert len(out) < 240 * 2  # 10 ms in, less than 10 ms out
    assert resampler.delay > 0


def test_equal_rates_pass_audio_through() -> None:
    pcm = to_pcm(sine(440, 0.1, 16000))
    resampler = Resampler(16000, 16000)
    assert b"".join(resampler.process(c) for c in chunks(pcm)) + resampler.flush() == pcm
    assert resample(pcm, 16000, 16000) == pcm


def test_stereo_channels_are_resampled_independently() -> None:
    left, right = sine(440, 0.5, 16000), sine(1000, 0.5, 16000, amplitude=0.25)
    pcm = to_pcm(np.column_stack([left, right]).ravel())
    out = from_pcm(stream(Resampler(16000, 48000, channels=2), pcm)).reshape(-1, 2)
    assert len(out) == 24000
    assert dominant_frequency(out[:, 0], 48000) == pytest.approx(440, rel=0.001)
    assert dominant_frequency(out[:, 1], 48000) == pytest.approx(1000, rel=0.001)
    assert np.max(np.abs(out[:, 1])) == pytest.approx(0.25, rel=0.02)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="in_rate 44000 Hz is not supported"):
        Resampler(44000, 16000)
    with pytest.raises(ValueError, match="out_rate 1000 Hz is not supported"):
        resample(b"", 16000, 1000)
    with pytest.raises(ValueError, match="not a whole number of 2-channel"):
        resample(b"\x00" * 6, 16000, 8000, channels=2)


async def frames_of(*items: Frame) -> AsyncIterator[Frame]:
    for item in items:
        yield item


async def test_processor_converts_audio_and_flushes_before_the_end_frame() -> None:
    source = AudioFrame(to_pcm(sine(440, 0.5, 24000)), 24000)
    note = TextFrame("hello", "assistant")
    inputs: list[Frame] = [StartFrame(), *source.split(0.02)[:10], note, *source.split(0.02)[10:]]
    out = [f async for f in run(ResampleProcessor(16000), frames_of(*inputs, EndFrame()))]

    assert isinstance(out[0], StartFrame)
    assert isinstance(out[-1], EndFrame)
    assert out.count(note) == 1
    audio = [f for f in out if isinstance(f, AudioFrame)]
    assert all(f.sample_rate == 16000 and f.num_samples > 0 for f in audio)
    assert b"".join(f.pcm for f in audio) == resample(source.pcm, 24000, 16000)
    # The text frame stays between the audio produced from the frames around it, give or take
    # the audio libsoxr holds back (up to 37 ms at HQ).
    before_note = sum(f.duration for f in out[: out.index(note)] if isinstance(f, AudioFrame))
    assert 0.2 - 0.04 < before_note <= 0.2


async def test_processor_leaves_audio_at_the_target_rate_alone() -> None:
    frame = AudioFrame(to_pcm(sine(440, 0.02, 16000)), 16000)
    out = [f async for f in run(ResampleProcessor(16000), frames_of(frame, EndFrame()))]
    assert out[0] is frame
    assert out[1:] == [EndFrame()]


async def test_processor_flushes_the_old_stream_when_the_rate_changes() -> None:
    low = AudioFrame(to_pcm(sine(440, 0.1, 8000)), 8000)
    high = AudioFrame(to_pcm(sine(440, 0.1, 48000)), 48000)
    out = [f async for f in run(ResampleProcessor(16000), frames_of(low, high, EndFrame()))]
    audio = b"".join(f.pcm for f in out if isinstance(f, AudioFrame))
    assert audio == resample(low.pcm, 8000, 16000) + resample(high.pcm, 48000, 16000)


async def test_start_frame_discards_an_unfinished_stream() -> None:
    frame = AudioFrame(to_pcm(sine(440, 0.1, 24000)), 24000)
    processor = ResampleProcessor(16000)
    out = [f async for f in run(processor, frames_of(frame, StartFrame(), frame, EndFrame()))]
    after_start = out[out.index(StartFrame()) :]
    audio = b"".join(f.pcm for f in after_start if isinstance(f, AudioFrame))
    assert audio == resample(frame.pcm, 24000, 16000)
