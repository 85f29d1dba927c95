"""Frame types: the units that flow through a voice pipeline.

Every frame is an immutable value (a frozen dataclass) derived from :class:`Frame`, so processors
dispatch on type with ``isinstance`` or ``match`` and can pass a frame on without copying it.

Data frames
    :class:`AudioFrame`
        A contiguous run of PCM audio: signed 16-bit little-endian samples, channels interleaved.
        Consecutive audio frames of one stream are contiguous in time; a frame carries no
        timestamp, so a position in the stream is the sum of the durations of the audio frames
        before it.
    :class:`TextFrame`
        Conversation text attributed to a role: what the assistant says (as text, alongside or
        instead of its audio), text typed by the user, or a system instruction. ``final=False``
        marks a provisional version that a later frame with the same role supersedes.
    :class:`TranscriptFrame`
        Speech recognised from the *input* audio (what the user said). ``final=False`` is an
        interim hypothesis that later transcript frames replace; ``final=True`` closes the
        segment, and the next transcript frame starts a new one.
    :class:`ToolCallFrame`
        The model asks for tool ``name`` to be run with ``arguments``; the result is reported back
        under the same ``call_id``.

Control frames
    :class:`StartFrame`
        A stream begins. Processors drop any per-stream state (buffers, detector state).
    :class:`EndFrame`
        The stream ends: no frame of the same stream follows. Processors emit whatever they still
        buffer (for example the resampler's filter tail) *before* passing the end frame on.
    :class:`InterruptFrame`
        The user barged in: whatever the assistant was saying is cancelled. Processors holding
        queued output (audio not yet played, text not yet spoken) drop it.
    :class:`SpeechStartedFrame` / :class:`SpeechStoppedFrame`
        Voice activity detection decided that the user started / stopped speaking. ``offset``,
        when known, is the estimated instant of the onset / end of speech in seconds of input
        audio since the stream started; the frame itself is emitted later than that instant,
        once the detector is confident (see :mod:`novakit.voice.vad`).
    :class:`ErrorFrame`
        A failure reported in-band, for example by a provider, so that downstream processors can
        react (say something, end the call). ``code`` is machine-readable, ``message`` is for
        people. Exceptions raised by processors are not converted into error frames.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "SUPPORTED_SAMPLE_RATES",
    "AudioFrame",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "InterruptFrame",
    "Role",
    "SpeechStartedFrame",
    "SpeechStoppedFrame",
    "StartFrame",
    "TextFrame",
    "ToolCallFrame",
    "TranscriptFrame",
    "TurnEndFrame",
]

#: Sample rates an :class:`AudioFrame` may have: the telephony, speech and media rates that
#: speech-to-speech providers, webrtcvad and sound devices use.
SUPPORTED_SAMPLE_RATES: frozenset[int] = frozenset(
    {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}
)

Role = Literal["user", "assistant", "system"]
_ROLES: tuple[str, ...] = get_args(Role)

_BYTES_PER_SAMPLE = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of every frame type."""


@dataclass(frozen=True, slots=True, repr=False)
class AudioFrame(Frame):
    """PCM16 little-endian audio, channels interleaved.

    Raises ``TypeError`` or ``ValueError`` when ``pcm`` is not whole samples for ``channels``
    channels or ``sample_rate`` is not in :data:`SUPPORTED_SAMPLE_RATES`. An empty frame is valid.
    """

    pcm: bytes
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        pcm: object = self.pcm
        if isinstance(pcm, bytearray | memoryview):
            # Keep the frame immutable even when built from a mutable buffer.
            object.__setattr__(self, "pcm", bytes(pcm))
        elif not isinstance(pcm, bytes):
            raise TypeError(f"AudioFrame.pcm must be bytes, not {type(pcm).__name__}")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            raise TypeError(
                f"AudioFrame.sample_rate must be an int, not {type(self.sample_rate).__name__}"
            )
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            rates = ", ".join(str(r) for r in sorted(SUPPORTED_SAMPLE_RATES))
            raise ValueError(
                f"AudioFrame.sample_rate {self.sample_rate} Hz is not supported (one of {rates})"
            )
        if isinstance(self.channels, bool) or not isinstance(self.channels, int):
            raise TypeError(
                f"AudioFrame.channels must be an int, not {type(self.channels).__name__}"
            )
        if self.channels < 1:
            raise ValueError(f"AudioFrame.channels must be at least 1, got {self.channels}")
        size = len(self.pcm)
        if size % _BYTES_PER_SAMPLE:
            raise ValueError(
                f"AudioFrame.pcm has {size} bytes, an odd number: PCM16 needs 2 bytes per sample"
            )
        block = _BYTES_PER_SAMPLE * self.channels
        if size % block:
            raise ValueError(
                f"AudioFrame.pcm has {size} bytes, not a whole number of {self.channels}-channel "
                f"sample frames ({block} bytes each)"
            )

    @property
    def num_samples(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (_BYTES_PER_SAMPLE * self.channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    @classmethod
    def silence(cls, duration: float, sample_rate: int, channels: int = 1) -> AudioFrame:
        """Digital silence lasting ``duration`` seconds (rounded to whole samples)."""
        if duration < 0:
            raise ValueError(f"duration must not be negative, got {duration}")
        samples = round(duration * sample_rate)
        return cls(bytes(samples * _BYTES_PER_SAMPLE * channels), sample_rate, channels)

    def split(self, duration: float) -> list[AudioFrame]:
        """Cut into consecutive frames of ``duration`` seconds; the last one may be shorter.

        ``duration`` is rounded to whole samples (at least one). An empty frame gives ``[]``.
        """
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        step = max(1, round(duration * self.sample_rate)) * _BYTES_PER_SAMPLE * self.channels
        return [
            AudioFrame(self.pcm[i : i + step], self.sample_rate, self.channels)
            for i in range(0, len(self.pcm), step)
        ]

    def __repr__(self) -> str:
        # The default repr would print every PCM byte, which buries error messages and logs.
        return (
            f"AudioFrame({len(self.pcm)} bytes, {self.sample_rate} Hz, "
            f"{self.channels} ch, {self.duration * 1000:.1f} ms)"
        )


@dataclass(frozen=True, slots=True)
class TextFrame(Frame):
    """Conversation text spoken or written by ``role``; see the module docstring."""

    text: str
    role: Role
    final: bool = True

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            roles = ", ".join(_ROLES)
            raise ValueError(f"TextFrame.role must be one of {roles}, got {self.role!r}")


@dataclass(frozen=True, slots=True)
class TranscriptFrame(Frame):
    """Recognised input speech; ``final=False`` is an interim hypothesis."""

    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class ToolCallFrame(Frame):
    """A request to run tool ``name``.

    ``arguments`` is a deep copy of what was passed in, kept as a plain ``dict`` so it can go
    straight to ``json.dumps`` or ``**kwargs``; treat it as read-only.
    """

    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", copy.deepcopy(dict(self.arguments)))


@dataclass(frozen=True, slots=True)
class ErrorFrame(Frame):
    """An in-band error report: machine-readable ``code``, human-readable ``message``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class StartFrame(Frame):
    """A stream begins."""


@dataclass(frozen=True, slots=True)
class EndFrame(Frame):
    """The stream ends; processors flush what they buffer before passing it on."""


@dataclass(frozen=True, slots=True)
class InterruptFrame(Frame):
    """The user barged in; queued assistant output is dropped."""


@dataclass(frozen=True, slots=True)
class TurnEndFrame(Frame):
    """The assistant finished its turn (it was not interrupted)."""


@dataclass(frozen=True, slots=True)
class SpeechStartedFrame(Frame):
    """The user started speaking; ``offset`` is the estimated onset in seconds, if known."""

    offset: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechStoppedFrame(Frame):
    """The user stopped speaking; ``offset`` is the estimated end in seconds, if known."""

    offset: float | None = None
