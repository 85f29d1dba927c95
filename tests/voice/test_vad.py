"""Voice activity detection on synthetic speech, and the hysteresis rules on scripted decisions.

Tolerances, from measurements on this synthetic speech (see novakit.voice.vad): reported onsets
within 100 ms of the truth (measured: 0-20 ms); reported ends no earlier than 20 ms before and
no later than 200 ms after the true end (measured: 110-130 ms late, webrtcvad's own hangover);
events emitted no more than 250 ms after the onset and between ``stop_ms`` and ``stop_ms`` +
200 ms after the true end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from novakit.voice import (
    AudioFrame,
    EndFrame,
    Frame,
    InterruptFrame,
    SpeechStartedFrame,
    SpeechStoppedFrame,
    StartFrame,
    VADProcessor,
    VoiceActivityDetector,
    run,
)

from .synth import Scene, noise, scene, to_pcm

pytestmark = pytest.mark.timeout(20)

STOP_MS = 500
LAYOUT = [("gap", 1.0), ("speech", 6), ("gap", 1.2), ("speech", 3), ("gap", 1.0)]


async def frames_of(*items: Frame) -> AsyncIterator[Frame]:
    for item in items:
        yield item


async def process(processor: VADProcessor, frames: list[Frame]) -> list[Frame]:
    return [f async for f in run(processor, frames_of(*frames))]


def timeline(frames: list[Frame]) -> list[tuple[str, float, float | None]]:
    """(kind, position in seconds of audio before the frame, reported offset) of speech events."""
    events: list[tuple[str, float, float | None]] = []
    position = 0.0
    for frame in frames:
        if isinstance(frame, AudioFrame):
            position += frame.duration
        elif isinstance(frame, SpeechStartedFrame):
            events.append(("start", position, frame.offset))
        elif isinstance(frame, SpeechStoppedFrame):
            events.append(("stop", position, frame.offset))
    return events


def audio_in(frames: list[Frame]) -> list[AudioFrame]:
    return [f for f in frames if isinstance(f, AudioFrame)]


def check_segments(events: list[tuple[str, float, float | None]], truth: Scene) -> None:
    assert [kind for kind, _, _ in events] == ["start", "stop"] * len(truth.segments)
    for (onset, end), started, stopped in zip(
        truth.segments, events[0::2], events[1::2], strict=True
    ):
        _, start_at, start_offset = started
        _, stop_at, stop_offset = stopped
        assert start_offset is not None and stop_offset is not None
        assert abs(start_offset - onset) <= 0.1
        assert onset - 0.04 <= start_at <= onset + 0.25
        assert end - 0.02 <= stop_offset <= end + 0.2
        assert end + STOP_MS / 1000 <= stop_at <= end + STOP_MS / 1000 + 0.2


@pytest.mark.parametrize("noise_rms", [1e-3, 1e-2], ids=["-60dBFS", "-40dBFS"])
@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_speech_segments_are_bracketed_by_start_and_stop(rate: int, noise_rms: float) -> None:
    truth = scene(rate, LAYOUT, noise_rms=noise_rms, seed=rate)
    source = AudioFrame(truth.pcm, rate)
    chunks: list[Frame] = [StartFrame(), *source.split(0.032), EndFrame()]
    out = await process(VADProcessor(stop_ms=STOP_MS), chunks)

    check_segments(timeline(out), truth)
    # Audio passes through untouched and in order, and the stream markers stay at the ends.
    assert audio_in(out) == audio_in(chunks)
    assert all(a is b for a, b in zip(audio_in(out), audio_in(chunks), strict=True))
    assert isinstance(out[0], StartFrame)
    assert isinstance(out[-1], EndFrame)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("noise_rms", [0.0, 1e-4, 1e-3, 1e-2], ids=["zero", "-80", "-60", "-40"])
async def test_silence_and_low_noise_give_no_events(rate: int, noise_rms: float) -> None:
    signal = noise(4.0, rate, noise_rms, seed=rate)
    signal[: rate // 2] = 0.0  # digital silence first, then noise: no start-up burst either
    frames: list[Frame] = list(AudioFrame(to_pcm(signal), rate).split(0.02))
    out = await process(VADProcessor(), [*frames, EndFrame()])
    assert out == [*frames, EndFrame()]


async def test_speech_right_after_digital_silence_keeps_an_accurate_onset() -> None:
    # The warm-up delays this detection, but the onset is traced back to the first voiced frame.
    truth = scene(16000, [("gap", 0.5), ("speech", 4), ("gap", 1.0)], noise_rms=0.0)
    out = await process(VADProcessor(), [*AudioFrame(truth.pcm, 16000).split(0.02), EndFrame()])
    check_segments(timeline(out), truth)


async def test_speech_from_the_first_sample() -> None:
    truth = scene(16000, [("speech", 4), ("gap", 1.0)], noise_rms=1e-3)
    out = await process(VADProcessor(), [*AudioFrame(truth.pcm, 16000).split(0.02), EndFrame()])
    check_segments(timeline(out), truth)


async def test_chunking_does_not_change_the_events() -> None:
    truth = scene(24000, LAYOUT, noise_rms=1e-3, seed=3)

    def events_for(sizes: list[int]) -> list[tuple[str, float | None]]:
        detector = VoiceActivityDetector(24000)
        found: list[tuple[str, float | None]] = []
        position, index = 0, 0
        while position < len(truth.pcm):
            size = sizes[index % len(sizes)]
            found += [
                (type(e).__name__, e.offset)
                for e in detector.process(truth.pcm[position : position + size])
            ]
            position += size
            index += 1
        return found + [(type(e).__name__, e.offset) for e in detector.flush()]

    reference = events_for([len(truth.pcm)])
    assert len(reference) == 4
    assert events_for([960]) == reference  # 20 ms
    assert events_for([1, 333, 4097, 77]) == reference  # splits samples


# Scripted decisions: each VAD frame of 20 ms at 16 kHz is voiced when the script says "1". The
# audio is quiet noise, so warm-up applies to it exactly as to a real stream.
FRAME = 320


def scripted(script: str) -> Iterator[bool]:
    yield from (c == "1" for c in script.replace(" ", ""))


def detector_for(script: str, **options: int) -> tuple[VoiceActivityDetector, bytes]:
    decisions = scripted(script)
    options = {"warmup_ms": 0, **options}
    detector = VoiceActivityDetector(16000, classifier=lambda _f, _r: next(decisions), **options)
    frames = len(script.replace(" ", ""))
    return detector, to_pcm(noise(frames * FRAME / 16000, 16000, 1e-3, seed=1))


def run_script(script: str, **options: int) -> list[tuple[str, float | None, float]]:
    """(event, offset, detector position when it was reported), feeding one frame at a time."""
    detector, pcm = detector_for(script, **options)
    events = []
    for start in range(0, len(pcm), 2 * FRAME):
        for event in detector.process(pcm[start : start + 2 * FRAME]):
            events.append((type(event).__name__, event.offset, detector.position))
    for event in detector.flush():
        events.append((type(event).__name__, event.offset, detector.position))
    return events


def approx(events: list[tuple[str, float | None, float]]) -> list[tuple[str, object, object]]:
    return [(k, pytest.approx(o), pytest.approx(p)) for k, o, p in events]


def test_start_needs_start_ms_voiced_within_the_window() -> None:
    # 60 ms within 100 ms = 3 voiced frames among the last 5.
    assert run_script("0000 11 0000000") == []
    assert run_script("0000 1 000 1 000 1 000") == []  # 3 voiced, but spread over 180 ms
    started = run_script("0000 1 0 1 0 1 0000000000")
    assert started[:1] == approx([("SpeechStartedFrame", 0.08, 0.18)])


def test_stop_after_stop_ms_of_unvoiced_frames_bridging_shorter_pauses() -> None:
    pause = "0" * 24  # 480 ms: shorter than stop_ms, bridged
    silence = "0" * 25  # 500 ms: ends the segment
    events = run_script("00 111 " + pause + " 111 " + silence + " 000")
    assert events == approx(
        [
            ("SpeechStartedFrame", 0.04, 0.10),
            # Ends with the last voiced frame (frame 31); reported 25 frames later.
            ("SpeechStoppedFrame", 0.64, 1.14),
        ]
    )


def test_stop_ms_is_configurable() -> None:
    events = run_script("111" + "0" * 12, stop_ms=200)
    assert events == approx([("SpeechStartedFrame", 0.0, 0.06), ("SpeechStoppedFrame", 0.06, 0.26)])


def test_end_of_stream_closes_an_open_segment_at_its_last_voiced_frame() -> None:
    events = run_script("0 1111 00")
    assert events == approx([("SpeechStartedFrame", 0.02, 0.08), ("SpeechStoppedFrame", 0.1, 0.0)])


def test_warm_up_ignores_the_start_up_burst_but_not_speech() -> None:
    burst = "1111" + "0" * 30
    assert run_script(burst, warmup_ms=120) == []
    # Speech from the first frame: held until the warm-up (6 frames) is over, then traced back.
    events = run_script("1" * 20, warmup_ms=120)
    assert events[:1] == approx([("SpeechStartedFrame", 0.0, 0.18)])


def test_digital_silence_does_not_use_up_the_warm_up() -> None:
    decisions = scripted("0" * 10 + "1111" + "0" * 30)
    detector = VoiceActivityDetector(
        16000, warmup_ms=120, classifier=lambda _f, _r: next(decisions)
    )
    pcm = bytes(10 * 2 * FRAME) + to_pcm(noise(34 * FRAME / 16000, 16000, 1e-3, seed=2))
    assert detector.process(pcm) == []
    assert detector.flush() == []


def test_detector_state_and_reset() -> None:
    detector, pcm = detector_for("1111 0000")
    assert detector.process(pcm[: 2 * FRAME * 4 + 7]) == [SpeechStartedFrame(offset=0.0)]
    assert detector.speaking
    assert detector.position == pytest.approx(0.08)  # the 7 stray bytes wait for more audio
    detector.reset()
    assert not detector.speaking
    assert detector.position == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aggressiveness": 4}, "aggressiveness must be 0, 1, 2 or 3"),
        ({"frame_ms": 25}, "frame_ms must be 10, 20 or 30"),
        ({"start_ms": 200}, "need 0 < start_ms <= start_window_ms"),
        ({"stop_ms": 0}, "need stop_ms > 0"),
    ],
)
def test_invalid_options(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VoiceActivityDetector(16000, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        VADProcessor(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="96000 Hz is not supported"):
        VoiceActivityDetector(96000)


def scripted_processor(script: str, **options: int) -> VADProcessor:
    decisions = scripted(script)
    return VADProcessor(warmup_ms=0, classifier=lambda _f, _r: next(decisions), **options)


def chunk(frames: int, seed: int = 0) -> AudioFrame:
    return AudioFrame(to_pcm(noise(frames * FRAME / 16000, 16000, 1e-3, seed=seed)), 16000)


def kinds(frames: list[Frame]) -> list[str]:
    names = {AudioFrame: "audio", SpeechStartedFrame: "start", SpeechStoppedFrame: "stop"}
    return [names.get(type(f), type(f).__name__) for f in frames]


async def test_start_goes_before_and_stop_after_the_frame_where_they_are_detected() -> None:
    # Five 100 ms chunks; speech is detected in the second, its stop in the fifth.
    processor = scripted_processor("00000 00111 11111 00000 00000", stop_ms=200)
    out = await process(processor, [chunk(5, seed=i) for i in range(5)])
    assert kinds(out) == ["audio", "start", "audio", "audio", "audio", "audio", "stop"]


async def test_one_frame_holding_several_transitions_keeps_them_in_time_order() -> None:
    processor = scripted_processor("111 00000 111 00000 111 0", stop_ms=100)
    out = await process(processor, [chunk(20), EndFrame()])
    assert kinds(out) == ["start", "audio", "stop", "start", "stop", "start", "stop", "EndFrame"]
    offsets = [f.offset for f in out if isinstance(f, SpeechStartedFrame | SpeechStoppedFrame)]
    assert offsets == pytest.approx([0.0, 0.06, 0.16, 0.22, 0.32, 0.38])


async def test_stream_boundaries_close_open_segments() -> None:
    processor = scripted_processor("11111 11111 00000")
    out = await process(
        processor, [chunk(5), InterruptFrame(), StartFrame(), chunk(5), chunk(5), EndFrame()]
    )
    assert kinds(out) == [
        "start",
        "audio",
        "InterruptFrame",
        "stop",
        "StartFrame",
        "start",
        "audio",
        "audio",
        "stop",
        "EndFrame",
    ]


async def test_a_new_rate_starts_a_new_detector() -> None:
    processor = scripted_processor("11111" + "11111")
    first = chunk(5)
    second = AudioFrame(to_pcm(noise(0.1, 8000, 1e-3, seed=1)), 8000)
    out = await process(processor, [first, second])
    assert kinds(out) == ["start", "audio", "stop", "start", "audio"]
    assert processor.detector is not None
    assert processor.detector.sample_rate == 8000


async def test_stereo_is_analysed_as_mono() -> None:
    truth = scene(16000, [("gap", 0.5), ("speech", 4), ("gap", 1.0)], noise_rms=1e-3)
    mono = np.frombuffer(truth.pcm, dtype="<i2")
    stereo = AudioFrame(np.column_stack([mono, mono]).tobytes(), 16000, channels=2)
    out = await process(VADProcessor(), [*stereo.split(0.02), EndFrame()])
    check_segments(timeline(out), truth)
