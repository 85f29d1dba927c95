"""Voice activity detection: when does the user start and stop speaking?

:class:`VoiceActivityDetector` classifies fixed frames of 10, 20 or 30 ms with webrtcvad's
Gaussian-mixture model and smooths the decisions with hysteresis:

* **start**: speech starts once at least ``start_ms`` of voiced frames fall within the last
  ``start_window_ms``. The reported onset (``SpeechStartedFrame.offset``) is the start of the
  earliest voiced frame in that window (or of the unbroken voiced run leading up to it), so the
  detection latency of about ``start_ms`` does not bias the estimate.
* **stop**: speech stops once ``stop_ms`` of consecutive unvoiced frames follow it, which bridges
  the pauses between words and syllables. The reported end (``SpeechStoppedFrame.offset``) is the
  end of the last voiced frame; the stop is *detected* ``stop_ms`` later.

Times are seconds of input audio since the detector was created or last reset. Input chunks may
have any length: samples that do not fill a frame are kept for the next chunk.

Measured on synthetic voiced speech (harmonic series on a 100-250 Hz fundamental with vowel
formants, four syllables a second) in white noise from digital silence to -30 dBFS, at 8, 16, 24
and 48 kHz, with the defaults: reported onsets are within 20 ms of the true onset, and speech
starts are emitted 60-100 ms after it; reported ends are 110-130 ms *after* the true end, because
webrtcvad keeps flagging frames as speech for a while after speech (its own hangover), and stops
are emitted ``stop_ms`` (+20 ms) after the reported end. Stationary noise alone never started
speech in mode 3; in mode 2, -30 dBFS white noise at 8 kHz did.

Limits of webrtcvad that this works around or inherits:

* Its noise model starts from a fixed default: the first 80-100 ms of any background noise after a
  reset are classified as speech while it adapts. The detector therefore does not let voiced
  decisions start speech during a warm-up of ``warmup_ms`` of non-silent audio (digital silence
  does not count, because webrtcvad does not adapt on it). Speech that begins within the warm-up
  is detected after it, up to ``warmup_ms`` late, but its onset is still reported accurately:
  the onset is traced back through the voiced frames of the warm-up.
* The model adapts slowly to a *rising* noise floor: stationary noise that jumps by 20 dB or more
  (say from -60 to -40 dBFS) is reported as speech for 2-4 s, and loud broadband noise (about
  -20 dBFS) is speech in every mode. An energy detector shares both weaknesses (it tracks the
  noise floor the same way and has no spectral model at all), so there is no energy-based
  alternative here.

webrtcvad analyses 8, 16, 32 and 48 kHz audio; other supported rates are resampled to 16 kHz
(quality ``LQ``, about 20 ms more latency) for analysis only. It looks at the band up to 4 kHz,
so the rate hardly changes its decisions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import webrtcvad

from novakit.voice.frames import (
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    EndFrame,
    Frame,
    SpeechStartedFrame,
    SpeechStoppedFrame,
    StartFrame,
)
from novakit.voice.processor import FrameProcessor
from novakit.voice.resample import Resampler

__all__ = ["Classifier", "SpeechEvent", "VADProcessor", "VoiceActivityDetector"]

SpeechEvent = SpeechStartedFrame | SpeechStoppedFrame

#: A frame classifier: ``(pcm16_frame, sample_rate) -> voiced``.
Classifier = Callable[[bytes, int], bool]

_VAD_RATES = frozenset({8000, 16000, 32000, 48000})
_ANALYSIS_RATE = 16000
# Frames whose RMS stays below this are treated as digital silence for the warm-up: webrtcvad
# neither flags nor adapts on them (measured: noise at RMS 3 never triggers its start-up burst).
_SILENCE_RMS = 3.0


class VoiceActivityDetector:
    """Turns a mono PCM16 stream into speech start/stop events; see the module docstring.

    ``aggressiveness`` is webrtcvad's mode, 0 (flags the most as speech) to 3 (the least).
    ``classifier`` replaces webrtcvad (for tests or another model); it gets one frame of
    ``frame_ms`` at the analysis rate.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        aggressiveness: int = 3,
        frame_ms: int = 20,
        start_ms: int = 60,
        start_window_ms: int = 100,
        stop_ms: int = 500,
        warmup_ms: int = 120,
        classifier: Classifier | None = None,
    ) -> None:
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            rates = ", ".join(str(r) for r in sorted(SUPPORTED_SAMPLE_RATES))
            raise ValueError(f"sample_rate {sample_rate} Hz is not supported (one of {rates})")
        if aggressiveness not in range(4):
            raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30 (webrtcvad frames), got {frame_ms}")
        if not 0 < start_ms <= start_window_ms:
            raise ValueError(
                f"need 0 < start_ms <= start_window_ms, got start_ms={start_ms}, "
                f"start_window_ms={start_window_ms}"
            )
        if stop_ms <= 0 or warmup_ms < 0:
            raise ValueError(f"need stop_ms > 0 and warmup_ms >= 0, got {stop_ms}, {warmup_ms}")
        self.sample_rate = sample_rate
        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self.start_ms = start_ms
        self.start_window_ms = start_window_ms
        self.stop_ms = stop_ms
        self.warmup_ms = warmup_ms

        self._rate = sample_rate if sample_rate in _VAD_RATES else _ANALYSIS_RATE
        self._to_analysis = (
            # LQ: a proper anti-aliasing filter with the least latency (about 20 ms, see resample).
            Resampler(sample_rate, self._rate, quality="LQ") if self._rate != sample_rate else None
        )
        self._frame_bytes = self._rate * frame_ms // 1000 * 2
        # Thresholds in frames, rounded up so that e.g. start_ms=50 with 20 ms frames needs 60 ms.
        self._start_frames = -(-start_ms // frame_ms)
        self._window_frames = max(self._start_frames, -(-start_window_ms // frame_ms))
        self._stop_frames = -(-stop_ms // frame_ms)
        self._warmup_frames = -(-warmup_ms // frame_ms)

        self._vad: Any = None
        self._classify: Classifier
        if classifier is None:
            self._vad = webrtcvad.Vad(aggressiveness)
            self._classify = self._webrtcvad
        else:
            self._classify = classifier
        self.reset()

    def _webrtcvad(self, frame: bytes, rate: int) -> bool:
        return bool(self._vad.is_speech(frame, rate))

    def reset(self) -> None:
        """Forget the stream: buffered samples, speech state, position and noise model."""
        self._buffer = bytearray()
        self._frames = 0  # frames analysed since reset
        self._warmup_left = self._warmup_frames
        self._window: deque[tuple[int, bool]] = deque(maxlen=self._window_frames)
        # Raw decisions, long enough to look back across the warm-up from the start window.
        self._raw: deque[bool] = deque(maxlen=self._window_frames + self._warmup_frames + 1)
        self._speaking = False
        self._last_voiced = 0  # index of the last voiced frame while speaking
        self._unvoiced_run = 0
        if self._to_analysis is not None:
            self._to_analysis.reset()
        if self._vad is not None:
            # A fresh model: the old one has adapted to the previous stream's noise.
            self._vad = webrtcvad.Vad(self.aggressiveness)

    @property
    def speaking(self) -> bool:
        """Whether speech has started and not yet stopped."""
        return self._speaking

    @property
    def position(self) -> float:
        """Seconds of audio analysed since the last reset (whole frames only)."""
        return self._frames * self.frame_ms / 1000

    def process(self, pcm: bytes) -> list[SpeechEvent]:
        """Analyse a chunk of mono PCM16 at ``sample_rate``; return its events in time order."""
        if self._to_analysis is not None:
            pcm = self._to_analysis.process(pcm)
        self._buffer += pcm
        events: list[SpeechEvent] = []
        size = self._frame_bytes
        usable = len(self._buffer) - len(self._buffer) % size
        for start in range(0, usable, size):
            event = self._step(bytes(self._buffer[start : start + size]))
            if event is not None:
                events.append(event)
        del self._buffer[:usable]
        return events

    def flush(self) -> list[SpeechEvent]:
        """End of stream: close an open speech segment, then :meth:`reset`.

        The trailing partial frame is not analysed; an open segment ends at its last voiced frame.
        """
        events: list[SpeechEvent] = []
        if self._speaking:
            events.append(SpeechStoppedFrame(offset=self._time(self._last_voiced + 1)))
        self.reset()
        return events

    def _time(self, frame_index: int) -> float:
        return frame_index * self.frame_ms / 1000

    def _step(self, frame: bytes) -> SpeechEvent | None:
        index = self._frames
        self._frames += 1
        raw = self._classify(frame, self._rate)
        self._raw.append(raw)
        voiced = raw
        if self._warmup_left:
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
            if float(np.sqrt(np.mean(samples * samples))) >= _SILENCE_RMS:
                self._warmup_left -= 1
                voiced = False  # possibly webrtcvad's start-up burst, see the module docstring

        if not self._speaking:
            self._window.append((index, voiced))
            if voiced and sum(v for _, v in self._window) >= self._start_frames:
                first = next(i for i, v in self._window if v)
                self._speaking = True
                self._last_voiced = index
                self._unvoiced_run = 0
                self._window.clear()
                return SpeechStartedFrame(offset=self._time(self._run_start(first)))
            return None

        if voiced:
            self._last_voiced = index
            self._unvoiced_run = 0
            return None
        self._unvoiced_run += 1
        if self._unvoiced_run >= self._stop_frames:
            self._speaking = False
            return SpeechStoppedFrame(offset=self._time(self._last_voiced + 1))
        return None

    def _run_start(self, index: int) -> int:
        # Walk back over frames classified voiced but ignored during the warm-up: when speech is
        # what ends the silence, its onset lies inside the warm-up.
        offset = self._frames - len(self._raw)  # frame index of self._raw[0]
        while index > offset and self._raw[index - 1 - offset]:
            index -= 1
        return index


class VADProcessor(FrameProcessor):
    """Passes audio through unchanged and marks speech with start/stop frames.

    For the audio frame during which a transition is detected: a :class:`SpeechStartedFrame` goes
    right *before* it, a :class:`SpeechStoppedFrame` right *after* it, so the frames between a
    start and a stop cover the detected segment from the moment of detection through the stop
    hangover. Audio between the true onset and the detection (about ``start_ms``, plus chunk
    length) precedes the start frame; its position is in ``SpeechStartedFrame.offset``. If a single
    audio frame holds several transitions, only a leading start goes before it; the rest follow it
    in time order.

    Starts and stops always alternate, beginning with a start. :class:`StartFrame` and
    :class:`EndFrame` end the stream: an open segment is closed with a stop frame placed just
    before them, and the detector is reset. The detector is created for the rate of the first
    audio frame; audio at another rate ends the stream the same way and gets a new detector.
    Multi-channel audio is averaged to mono for analysis. The options are those of
    :class:`VoiceActivityDetector`.
    """

    def __init__(
        self,
        *,
        aggressiveness: int = 3,
        frame_ms: int = 20,
        start_ms: int = 60,
        start_window_ms: int = 100,
        stop_ms: int = 500,
        warmup_ms: int = 120,
        classifier: Classifier | None = None,
    ) -> None:
        def make(sample_rate: int) -> VoiceActivityDetector:
            return VoiceActivityDetector(
                sample_rate,
                aggressiveness=aggressiveness,
                frame_ms=frame_ms,
                start_ms=start_ms,
                start_window_ms=start_window_ms,
                stop_ms=stop_ms,
                warmup_ms=warmup_ms,
                classifier=classifier,
            )

        make(16000)  # reject bad options now rather than at the first audio frame
        self._make = make
        self._detector: VoiceActivityDetector | None = None

    @property
    def detector(self) -> VoiceActivityDetector | None:
        """The detector for the current stream; ``None`` before the first audio frame."""
        return self._detector

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        if isinstance(frame, AudioFrame):
            detector = self._detector
            if detector is None or detector.sample_rate != frame.sample_rate:
                if detector is not None:
                    for event in detector.flush():
                        yield event
                detector = self._detector = self._make(frame.sample_rate)
            events = detector.process(_mono(frame))
            if events and isinstance(events[0], SpeechStartedFrame):
                yield events.pop(0)
            yield frame
            for event in events:
                yield event
            return
        if isinstance(frame, StartFrame | EndFrame) and self._detector is not None:
            # Close a segment left open, so that starts and stops always pair up.
            for event in self._detector.flush():
                yield event
        yield frame


def _mono(frame: AudioFrame) -> bytes:
    if frame.channels == 1:
        return frame.pcm
    samples = np.frombuffer(frame.pcm, dtype="<i2").reshape(-1, frame.channels)
    return np.rint(samples.mean(axis=1)).astype("<i2").tobytes()
