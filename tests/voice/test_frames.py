"""Frame types: validation, derived quantities, immutability."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from novakit.voice import (
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptFrame,
    SpeechStartedFrame,
    SpeechStoppedFrame,
    StartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptFrame,
)

pytestmark = pytest.mark.timeout(20)


def test_every_frame_type_is_a_frame() -> None:
    frames = [
        AudioFrame(b"", 16000),
        TextFrame("hi", "assistant"),
        TranscriptFrame("hi"),
        ToolCallFrame("c1", "lookup", {"q": 1}),
        ErrorFrame("throttled", "slow down"),
        StartFrame(),
        EndFrame(),
        InterruptFrame(),
        SpeechStartedFrame(),
        SpeechStoppedFrame(),
    ]
    assert all(isinstance(f, Frame) for f in frames)
    assert len({type(f) for f in frames}) == len(frames)


@pytest.mark.parametrize(
    ("pcm", "rate", "channels", "error", "message"),
    [
        (b"\x00" * 3, 16000, 1, ValueError, "has 3 bytes, an odd number"),
        (b"\x00" * 6, 16000, 2, ValueError, "not a whole number of 2-channel sample frames"),
        (b"\x00" * 4, 44000, 1, ValueError, "44000 Hz is not supported"),
        (b"\x00" * 4, 16000, 0, ValueError, "channels must be at least 1"),
        ("abcd", 16000, 1, TypeError, "pcm must be bytes, not str"),
        (b"\x00" * 4, 16000.0, 1, TypeError, "sample_rate must be an int, not float"),
        (b"\x00" * 4, True, 1, TypeError, "sample_rate must be an int, not bool"),
    ],
)
def test_audio_frame_rejects_malformed_audio(
    pcm: object, rate: object, channels: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AudioFrame(pcm, rate, channels)  # type: ignore[arg-type]


def test_unsupported_rate_message_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="8000, 11025, 12000, 16000, 22050, 24000"):
        AudioFrame(b"", 96000)


@pytest.mark.parametrize("rate", sorted(SUPPORTED_SAMPLE_RATES))
def test_duration_of_one_second_at_every_rate(rate: int) -> None:
    frame = AudioFrame(b"\x00\x00" * rate, rate)
    assert frame.num_samples == rate
    assert frame.duration == 1.0


def test_duration_counts_samples_per_channel() -> None:
    stereo = AudioFrame(b"\x00" * 640, 16000, channels=2)  # 160 stereo samples
    assert stereo.num_samples == 160
    assert stereo.duration == pytest.approx(0.010)
    assert AudioFrame(b"", 24000).duration == 0.0


def test_mutable_buffers_are_copied_to_bytes() -> None:
    buffer = bytearray(b"\x01\x00\x02\x00")
    frame = AudioFrame(buffer, 8000)  # type: ignore[arg-type]
    buffer[0] = 0x7F
    assert frame.pcm == b"\x01\x00\x02\x00"
    assert type(frame.pcm) is bytes
    assert AudioFrame(memoryview(b"\x03\x00"), 8000).pcm == b"\x03\x00"  # type: ignore[arg-type]


def test_silence_and_split() -> None:
    silence = AudioFrame.silence(0.1, 16000, channels=2)
    assert silence.pcm == bytes(1600 * 2 * 2)
    assert silence.duration == pytest.approx(0.1)
    parts = silence.split(0.03)
    assert [p.num_samples for p in parts] == [480, 480, 480, 160]
    assert b"".join(p.pcm for p in parts) == silence.pcm
    assert all(p.channels == 2 and p.sample_rate == 16000 for p in parts)
    assert AudioFrame(b"", 16000).split(0.02) == []
    with pytest.raises(ValueError, match="duration must be positive"):
        silence.split(0)
    with pytest.raises(ValueError, match="must not be negative"):
        AudioFrame.silence(-1, 16000)


def test_frames_are_immutable_and_compare_by_value() -> None:
    frame = AudioFrame(b"\x00\x00", 16000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.sample_rate = 8000  # type: ignore[misc]
    assert frame == AudioFrame(b"\x00\x00", 16000)
    assert frame != AudioFrame(b"\x00\x00", 8000)
    assert TextFrame("a", "user") == TextFrame("a", "user", final=True)
    assert hash(SpeechStartedFrame(offset=1.0)) == hash(SpeechStartedFrame(offset=1.0))


def test_audio_repr_is_a_summary_not_the_samples() -> None:
    frame = AudioFrame(bytes(640), 16000)
    assert repr(frame) == "AudioFrame(640 bytes, 16000 Hz, 1 ch, 20.0 ms)"


def test_text_frame_role_is_checked() -> None:
    assert TextFrame("hello", "assistant", final=False).final is False
    with pytest.raises(ValueError, match="role must be one of user, assistant, system, got 'bot'"):
        TextFrame("hello", "bot")  # type: ignore[arg-type]


def test_tool_call_arguments_are_a_private_plain_dict() -> None:
    arguments: dict[str, Any] = {"city": "Lyon", "days": [1, 2]}
    frame = ToolCallFrame("call-1", "weather", arguments)
    arguments["days"].append(3)
    arguments["city"] = "Paris"
    assert frame.arguments == {"city": "Lyon", "days": [1, 2]}
    assert json.loads(json.dumps(frame.arguments)) == {"city": "Lyon", "days": [1, 2]}
    assert ToolCallFrame("call-2", "ping").arguments == {}


def test_speech_frames_offset_defaults_to_unknown() -> None:
    assert SpeechStartedFrame().offset is None
    assert SpeechStoppedFrame(offset=2.5).offset == 2.5
