"""Voice pipelines: frames flowing through chained frame processors.

A pipeline is a :class:`FrameProcessor` (usually a :func:`chain` of them) that turns each input
:class:`Frame` into zero or more output frames, run over a stream with :func:`run`::

    pipeline = chain(ResampleProcessor(16000), VADProcessor())
    async for frame in run(pipeline, microphone_frames()):
        ...

Frame meanings are defined in :mod:`novakit.voice.frames`, chaining semantics in
:mod:`novakit.voice.processor`, resampling in :mod:`novakit.voice.resample` and voice activity
detection in :mod:`novakit.voice.vad`. Needs the ``voice`` extra (numpy, soxr, webrtcvad).
"""

from novakit.voice.frames import (
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptFrame,
    Role,
    SpeechStartedFrame,
    SpeechStoppedFrame,
    StartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptFrame,
    TurnEndFrame,
)
from novakit.voice.processor import Chain, FrameProcessor, ProcessorError, chain, run
from novakit.voice.resample import Quality, ResampleProcessor, Resampler, resample
from novakit.voice.vad import Classifier, SpeechEvent, VADProcessor, VoiceActivityDetector

__all__ = [
    "SUPPORTED_SAMPLE_RATES",
    "AudioFrame",
    "Chain",
    "Classifier",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "FrameProcessor",
    "InterruptFrame",
    "ProcessorError",
    "Quality",
    "ResampleProcessor",
    "Resampler",
    "Role",
    "SpeechEvent",
    "SpeechStartedFrame",
    "SpeechStoppedFrame",
    "StartFrame",
    "TextFrame",
    "ToolCallFrame",
    "TranscriptFrame",
    "TurnEndFrame",
    "VADProcessor",
    "VoiceActivityDetector",
    "chain",
    "resample",
    "run",
]
