"""Decisions that let a session outlive its Bedrock streams, sans I/O.

- ``AudioRing``: the user's audio since the last transcript (bounded). It is the single source
  of audio sent to Bedrock: each stream records how far it has been sent, so a new stream is
  sent what the old one heard but never turned into a transcript (a rollover's replay, a
  recovery's replay plus what the caller sent during the outage), and nothing twice.
- ``TurnTracker``: where the conversation stands (who owes what, whether the listener is still
  hearing the assistant, tool calls outstanding), which decides when a rollover may switch
  streams and what a failure cut.
- ``RecoveryPolicy``: how long, and how often, to try fresh streams after a recoverable failure.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

INPUT_BYTES_PER_SECOND = 32000  # 16 kHz PCM16 mono, the default input rate


class AudioRing:
    """User audio by absolute byte offset; keeps at most ``max_bytes`` (oldest dropped)."""

    def __init__(self, max_bytes: int, bytes_per_second: int = INPUT_BYTES_PER_SECOND) -> None:
        if max_bytes < 2:
            raise ValueError("an audio ring needs room for one sample")
        self._max = max_bytes - max_bytes % 2
        self.bytes_per_second = bytes_per_second
        self._chunks: deque[bytes] = deque()
        self.start = 0  # offset of the oldest byte kept
        self.end = 0  # offset after the newest byte
        self.dropped = 0  # bytes pushed out by the bound before any stream was sent them

    def append(self, pcm: bytes) -> None:
        if not pcm:
            return
        self._chunks.append(pcm)
        self.end += len(pcm)
        overflow = (self.end - self.start) - self._max
        if overflow > 0:
            self._drop(overflow)

    def read(self, offset: int) -> bytes:
        """Everything kept from ``offset`` on (from the oldest kept byte if that is later)."""
        offset = max(offset, self.start)
        if offset >= self.end:
            return b""
        parts: list[bytes] = []
        position = self.end
        for chunk in reversed(self._chunks):
            position -= len(chunk)
            if position + len(chunk) <= offset:
                break
            parts.append(chunk[max(0, offset - position) :])
        parts.reverse()
        return b"".join(parts)

    def forget_before(self, offset: int) -> None:
        """Drop what lies before ``offset`` (audio a transcript has accounted for)."""
        if offset > self.start:
            self._drop(min(offset, self.end) - self.start, counted=False)

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / self.bytes_per_second

    def _drop(self, count: int, *, counted: bool = True) -> None:
        count -= count % 2  # whole samples only
        if counted:
            self.dropped += count
        self.start += count
        while count > 0 and self._chunks:
            head = self._chunks[0]
            if len(head) <= count:
                self._chunks.popleft()
                count -= len(head)
            else:
                self._chunks[0] = head[count:]
                count = 0


class Phase(StrEnum):
    IDLE = "idle"  # nobody is owed an answer and no assistant audio is playing
    AWAITING = "awaiting"  # the user spoke or typed; the answer has not begun
    SPEAKING = "speaking"  # the answer's audio is arriving
    PLAYING_OUT = "playing_out"  # the answer is complete; the listener is still hearing it


class TurnTracker:
    """Follows the conversation's turns from the events the caller receives and the audio it
    sends. Clocks: ``now`` is wall time; ``input_clock`` counts seconds of user audio sent,
    which is the clock Bedrock hears (a client streams in real time; tests stream faster).

    A listener plays the assistant's audio in real time after it arrives (faster than real
    time), so an answer whose generation ended is still being heard: it has played out once
    as much input audio has gone by since its first chunk as it lasts, or as much wall time,
    whichever comes first. Until then the model still counts as speaking and would recognise a
    barge-in, so a rollover does not switch streams before.
    """

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.input_clock = 0.0
        self.tools_outstanding: set[str] = set()
        self._answer_seconds = 0.0
        self._answer_started_clock = 0.0
        self._answer_started_wall = 0.0

    # -- what happened ---------------------------------------------------------------------

    def input_audio(self, seconds: float) -> None:
        self.input_clock += seconds

    def user_input(self) -> None:
        """A transcript arrived or text was sent: an answer is owed."""
        self.phase = Phase.AWAITING

    def assistant_audio(self, seconds: float, now: float) -> None:
        if self.phase is not Phase.SPEAKING:
            self.phase = Phase.SPEAKING
            self._answer_seconds = 0.0
            self._answer_started_clock = self.input_clock
            self._answer_started_wall = now
        self._answer_seconds += seconds

    def turn_ended(self) -> None:
        self.phase = Phase.PLAYING_OUT if self.phase is Phase.SPEAKING else Phase.IDLE

    def interrupted(self) -> None:
        """Barge-in or a client interrupt: the listener dropped what it had queued."""
        self.phase = Phase.IDLE

    def tool_called(self, call_id: str) -> None:
        self.tools_outstanding.add(call_id)
        if self.phase is Phase.IDLE:
            self.phase = Phase.AWAITING

    def tool_answered(self, call_id: str) -> None:
        self.tools_outstanding.discard(call_id)

    def stream_cut(self) -> bool:
        """The stream carrying the conversation failed. Returns whether an answer was being
        spoken (its audio must be dropped: the next stream gives the answer anew or not at
        all); an answer still owed stays owed."""
        speaking = self.phase is Phase.SPEAKING
        if speaking:
            self.phase = Phase.AWAITING
        return speaking

    def answer_abandoned(self) -> None:
        """A new stream will not answer what was owed (the model cannot be asked again)."""
        if self.phase is Phase.AWAITING and not self.tools_outstanding:
            self.phase = Phase.IDLE

    # -- what it means -----------------------------------------------------------------------

    @property
    def owes_answer(self) -> bool:
        return self.phase in (Phase.AWAITING, Phase.SPEAKING)

    def quiet(self, now: float) -> bool:
        """True at a point where streams can be switched without the listener noticing: no
        answer owed or playing, no tool call outstanding. (The user may be speaking: what the
        old stream heard since the last transcript is replayed to the new one.)"""
        if self.phase is Phase.PLAYING_OUT:
            played = (
                self.input_clock - self._answer_started_clock >= self._answer_seconds
                or now - self._answer_started_wall >= self._answer_seconds
            )
            if played:
                self.phase = Phase.IDLE
        return self.phase is Phase.IDLE and not self.tools_outstanding


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """Fresh streams after a recoverable failure: at most ``attempts`` per outage, within
    ``budget`` seconds of its start, waiting before each a random time in ``[0, b)`` ("full
    jitter") with ``b = min(max_delay, base_delay * 2**(n-1))`` for the n-th attempt, so that
    many sessions cut at once (a throttled account, a service blip) do not retry in step."""

    attempts: int = 5
    budget: float = 30.0
    base_delay: float = 0.25
    max_delay: float = 4.0
    proven_after: float = 30.0  # seconds up after which a replacement stream has proved itself

    def delay(self, attempts_made: int, elapsed: float, rng: random.Random) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempts_made >= self.attempts or elapsed >= self.budget:
            return None
        ceiling = min(self.max_delay, self.base_delay * 2**attempts_made)
        return min(rng.uniform(0.0, ceiling), max(0.0, self.budget - elapsed))

    def continues_outage(self, *, replacement: bool, heard_from: bool, age: float) -> bool:
        """Whether a failed stream continues the outage it was put in place to end: it did
        (a replacement) but Bedrock never sent it anything and it was young. Its attempts then
        count toward the same bound, so that streams refused one after another end in a final
        error instead of a retry storm."""
        return replacement and not heard_from and age < self.proven_after


class StallWatch:
    """Whether the stream carrying the conversation owes an answer and has gone silent.

    An answer is owed from the moment the user's words are transcribed, or a text or a tool
    result is sent, until the model's turn ends, is interrupted, or asks for a tool (then the
    wait is on the caller). A stream that sends nothing at all (no audio, text or usage) for
    ``timeout`` seconds meanwhile is stalled: Bedrock answers within a second or two, and a
    stream that stopped mid-answer without ending would otherwise leave the caller waiting
    forever. A healthy model that chooses not to answer still sends events (its turn's end,
    usage), so silence is the signal, not the absence of speech."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.owed_since: float | None = None

    def expect(self, now: float) -> None:
        """Something the model answers was given to it (or its words were heard) at ``now``."""
        self.owed_since = now

    def settle(self) -> None:
        """Nothing is owed (the turn ended, was cut, or waits on a tool)."""
        self.owed_since = None

    def deadline(self, last_received: float) -> float | None:
        """When the stream counts as stalled if it sends nothing more (None: never)."""
        if self.timeout <= 0 or self.owed_since is None:
            return None
        return max(self.owed_since, last_received) + self.timeout

    def stalled(self, now: float, last_received: float) -> bool:
        deadline = self.deadline(last_received)
        return deadline is not None and now >= deadline


def caller_silent(now: float, last_input: float, limit: float) -> bool:
    """Whether the caller has sent nothing (audio, text, tool result) for ``limit`` seconds;
    never with ``limit`` 0 (no bound)."""
    return limit > 0 and now - last_input >= limit


#: The level above which audio counts as speech: about -36 dBFS, the emulator's voice-activity
#: threshold; a quiet room's microphone sits well below it.
VOICED_RMS = 500.0
#: How much of the end of the caller's audio is looked at: longer than the dip between two
#: syllables, shorter than the pause a client streams after a sentence.
SPEECH_TAIL_SECONDS = 0.25
_WINDOW_SECONDS = 0.02


def _window_energies(values: np.ndarray, bytes_per_second: int) -> tuple[np.ndarray, int]:
    """The summed squares of each whole 20 ms window of ``values``, and the window's length."""
    window = max(1, round(_WINDOW_SECONDS * bytes_per_second / 2))
    whole = len(values) // window * window
    squares = np.square(values[:whole].astype(np.int64))
    return squares.reshape(-1, window).sum(axis=1), window


def ends_in_speech(chunks: Iterable[bytes], bytes_per_second: int) -> bool:
    """Whether the last ``SPEECH_TAIL_SECONDS`` of the caller's audio (its latest ``chunks``
    of PCM16 little-endian, oldest first) hold speech: some 20 ms of it above ``VOICED_RMS``."""
    tail_bytes = round(SPEECH_TAIL_SECONDS * bytes_per_second) & ~1
    tail = b"".join(chunks)[-tail_bytes:]
    energy, window = _window_energies(
        np.frombuffer(tail[len(tail) % 2 :], dtype="<i2"), bytes_per_second
    )
    return bool((energy >= VOICED_RMS * VOICED_RMS * window).any())


#: Quiet audio streamed in one go that shows the caller keeps its microphone open: longer than
#: a pause a push-to-talk user holds the button through.
OPEN_MIC_QUIET_SECONDS = 2.0


class OpenMicrophone:
    """Whether the caller streams an open microphone: it has sent ``OPEN_MIC_QUIET_SECONDS``
    of quiet audio in one go (a pause or an answer streamed, not a stop). Such a caller's audio
    stopping is a stall (the network, a busy machine) and its backlog is on the way; a caller
    that only types, or sends audio only while it speaks (push-to-talk), never shows it.

    Looks at the audio only until it knows: nothing per chunk once the microphone is open."""

    __slots__ = ("_quiet", "_samples_needed", "_window", "open")

    def __init__(self, bytes_per_second: int) -> None:
        self._window = max(1, round(_WINDOW_SECONDS * bytes_per_second / 2))
        self._samples_needed = round(OPEN_MIC_QUIET_SECONDS * bytes_per_second / 2)
        self._quiet = 0  # samples of quiet audio in a row, up to the latest chunk
        self.open = False

    def feed(self, pcm: bytes) -> None:
        if self.open or len(pcm) < 2:
            return
        values = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int64)
        # 20 ms windows (the last one may be shorter, as may a whole chunk of 10 ms)
        starts = np.arange(0, len(values), self._window)
        energy = np.add.reduceat(np.square(values), starts)
        lengths = np.diff(np.append(starts, len(values)))
        voiced = np.flatnonzero(energy >= VOICED_RMS * VOICED_RMS * lengths)
        if len(voiced):
            self._quiet = len(values) - int(starts[voiced[-1]] + lengths[voiced[-1]])
        else:
            self._quiet += len(values)
        self.open = self._quiet >= self._samples_needed


class CallerAudio:
    """What the keep-alive knows of the caller's audio: its latest chunks that hold
    ``SPEECH_TAIL_SECONDS`` (by reference: the fewest, whatever their size), whether it streams
    an open microphone, and whether its latest input was audio (not a text or a tool result)."""

    __slots__ = ("_held", "_tail_bytes", "latest_input_is_audio", "microphone", "tail")

    def __init__(self, bytes_per_second: int) -> None:
        self.tail: deque[bytes] = deque()
        self._held = 0
        self._tail_bytes = round(SPEECH_TAIL_SECONDS * bytes_per_second)
        self.microphone = OpenMicrophone(bytes_per_second)
        self.latest_input_is_audio = False

    @property
    def heard(self) -> bool:
        return self._held > 0

    def push(self, pcm: bytes) -> None:
        self.tail.append(pcm)
        self._held += len(pcm)
        while self._held - len(self.tail[0]) >= self._tail_bytes:
            self._held -= len(self.tail.popleft())
        self.microphone.feed(pcm)
        self.latest_input_is_audio = True

    @property
    def streaming(self) -> bool:
        """An open microphone whose latest input is audio: a gap now is a stall. A text or a
        tool result after the audio is answered now, and its silence must not wait."""
        return self.microphone.open and self.latest_input_is_audio


def keepalive_wait(
    after: float,
    after_speech: float,
    recent_audio: Iterable[bytes],
    bytes_per_second: int,
    *,
    after_stall: float = 0.0,
    open_microphone: bool = False,
) -> float:
    """Seconds without caller audio before the keep-alive streams silence. Longer when the
    gap is a stall rather than a caller gone quiet, since its audio is still on the way and
    silence put in the gap would end the user's turn early (halfway through a sentence):
    ``after_stall`` for a caller that streams an open microphone, ``after_speech`` for one whose
    audio stopped mid-speech."""
    wait = after
    if open_microphone:
        wait = max(wait, after_stall)
    if after_speech > wait and ends_in_speech(recent_audio, bytes_per_second):
        wait = after_speech
    return wait
