"""Outbound batching: model output to numbered client frames, as few and as large as allowed.

API Gateway meters messages in 32 KB units and throttles ``@connections`` posts per account, so
the number of frames per second is the cost and capacity lever. Nova Sonic generates audio faster
than real time, so :class:`OutboundBatcher` batches by audio *duration* (``batch_ms`` of audio per
frame), not by wall time; only the tail of a turn waits on the clock (:meth:`due`).

The batcher is pure: the service calls it with model output and the current time and posts the
returned frames in order, through one ordered sender per connection. Every method returns
``list[str]``: encoded frames numbered with consecutive ``seq`` from 0. On barge-in the sender
drops the audio frames it has not posted yet; :func:`novakit.bridge.protocol.is_audio_frame`
classifies a queued frame with a prefix test, no parsing.

Guarantees:

* every frame is at most ``max_frame_bytes`` bytes (frames are ASCII, so ``len`` is the size);
* audio frames cut the PCM at sample boundaries and reassemble byte-exact, in order (a lone odd
  byte waits for the other half of its sample);
* a non-audio frame is preceded by every audio byte buffered before it (order is preserved);
* a transcript or text too long for one frame is split over consecutive frames (all but the last
  carry ``"continues": true``); error messages, tool errors and session reasons are truncated to
  :data:`MAX_MESSAGE_CHARS` characters and to what fits.

One batcher serves a connection for its whole life: when a ``start`` frame picks another output
rate or ``batch_ms``, :meth:`OutboundBatcher.configure` switches without restarting ``seq``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from novakit.s2s.events import Usage

from .protocol import (
    INPUT_SAMPLE_RATE,
    MAX_BATCH_MS,
    MAX_FRAME_BYTES,
    MIN_BATCH_MS,
    OUTPUT_SAMPLE_RATES,
    ClearReason,
    ErrorCode,
    FrameRef,
    ProtocolError,
    SessionState,
    ToolStatus,
    audio_frame_overhead,
    encode_assistant_text,
    encode_audio,
    encode_clear_audio,
    encode_error,
    encode_event,
    encode_pong,
    encode_session,
    encode_tool,
    encode_transcript,
    encode_turn_end,
    encode_usage,
)

__all__ = ["MAX_MESSAGE_CHARS", "MIN_FRAME_BYTES", "BatcherCounters", "OutboundBatcher"]

#: Error messages, tool errors and session reasons are for people: longer ones are cut.
MAX_MESSAGE_CHARS: Final = 1000
#: The smallest frame limit accepted: room for every fixed-size frame and a useful audio frame.
MIN_FRAME_BYTES: Final = 1024
_ELLIPSIS: Final = "…"


@dataclass(slots=True)
class BatcherCounters:
    """Running totals for cost benchmarks. Every frame is at most 32 KB, so ``frames`` is also
    the number of metered API Gateway messages."""

    frames: int = 0
    audio_frames: int = 0
    #: Bytes of every frame returned (what is posted).
    frame_bytes: int = 0
    #: PCM carried by audio frames, in bytes and in milliseconds of audio.
    audio_bytes: int = 0
    audio_ms: float = 0.0
    #: PCM dropped before it was framed (barge-in, or a lone odd byte at a rate change).
    dropped_bytes: int = 0
    dropped_ms: float = 0.0
    #: Transcript or text frames that had to be split, messages that had to be cut.
    split_texts: int = 0
    truncated_messages: int = 0


class OutboundBatcher:
    """Numbers and batches the frames of one connection (one instance per connection).

    ``sample_rate`` is the output rate of the model audio given to :meth:`audio`; ``batch_ms``
    the audio duration per frame; ``max_frame_bytes`` the bound on every encoded frame
    (``MIN_FRAME_BYTES`` to 32768). ``now`` arguments are seconds on any monotonic clock.
    """

    __slots__ = (
        "_arrivals",
        "_batch_seconds",
        "_buf",
        "_consumed",
        "_seq",
        "batch_ms",
        "counters",
        "frame_pcm_bytes",
        "input_sample_rate",
        "max_frame_bytes",
        "sample_rate",
    )

    def __init__(
        self,
        *,
        sample_rate: int = 24000,
        batch_ms: int = 100,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if not MIN_FRAME_BYTES <= max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(
                f"max_frame_bytes must be from {MIN_FRAME_BYTES} to {MAX_FRAME_BYTES}"
                f" (API Gateway's frame limit), not {max_frame_bytes}"
            )
        self.max_frame_bytes = max_frame_bytes
        # The client's microphone rate: reported in session frames (the batcher frames output).
        self.input_sample_rate = INPUT_SAMPLE_RATE
        self.sample_rate = 0
        self.batch_ms = 0
        self.frame_pcm_bytes = 0
        self._batch_seconds = 0.0
        self._set_audio_options(sample_rate, batch_ms)
        self._buf = bytearray()
        # Absolute stream offset of _buf[0], and (absolute end offset, arrival time) of each
        # chunk still (partly) buffered: the first entry dates the oldest buffered byte.
        self._consumed = 0
        self._arrivals: deque[tuple[int, float]] = deque()
        self._seq = 0
        self.counters = BatcherCounters()

    def _set_audio_options(self, sample_rate: int, batch_ms: int) -> None:
        _check_audio_options(sample_rate, batch_ms)
        self.sample_rate = sample_rate
        self.batch_ms = batch_ms
        self._batch_seconds = batch_ms / 1000
        # PCM per frame: batch_ms of audio, unless its base64 (4 chars per 3 bytes) and the
        # envelope would exceed the frame limit; whole samples either way.
        batch_bytes = (sample_rate * 2 * batch_ms // 1000) & ~1
        fitting_bytes = ((self.max_frame_bytes - self._audio_overhead(sample_rate)) // 4 * 3) & ~1
        self.frame_pcm_bytes = min(batch_bytes, fitting_bytes)

    # A protocol other than v1 frames audio its own way (OpenAI Realtime's output_audio.delta):
    # these two are what it overrides; batching, cutting and numbering stay as they are.

    def _audio_overhead(self, sample_rate: int) -> int:
        """Characters of an audio frame besides its base64 data, at most."""
        return audio_frame_overhead(sample_rate)

    def _audio_frame(self, seq: int, pcm: memoryview, sample_rate: int) -> str:
        """One audio frame numbered ``seq`` carrying ``pcm`` (PCM16 at ``sample_rate``)."""
        return encode_audio(seq, pcm, sample_rate)

    def configure(
        self, now: float, *, sample_rate: int | None = None, batch_ms: int | None = None
    ) -> list[str]:
        """Change the audio rate or batch duration mid-connection (the client's ``start`` frame
        chose them) without restarting ``seq``. Returns the audio buffered so far, framed at the
        old rate: post it first. Use this rather than a new batcher, whose ``seq`` would
        start again at 0 on a connection that already had frames."""
        new_rate = self.sample_rate if sample_rate is None else sample_rate
        new_batch_ms = self.batch_ms if batch_ms is None else batch_ms
        _check_audio_options(new_rate, new_batch_ms)  # before anything changes
        frames = self._take_audio(whole_frames_only=False)
        if new_rate != self.sample_rate:
            self._drop_buffer()  # at most a lone odd byte, meaningless at the new rate
        self._set_audio_options(new_rate, new_batch_ms)
        return frames

    def _drop_buffer(self) -> None:
        dropped = len(self._buf)
        if dropped:
            self.counters.dropped_bytes += dropped
            self.counters.dropped_ms += dropped * 500 / self.sample_rate
            self._consumed += dropped
            self._buf.clear()
        self._arrivals.clear()

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next frame will carry."""
        return self._seq

    @property
    def buffered_bytes(self) -> int:
        """PCM bytes held for the next audio frame."""
        return len(self._buf)

    # -- audio -----------------------------------------------------------------------------

    def audio(self, pcm: bytes, now: float) -> list[str]:
        """Append model audio (PCM16 LE mono at ``sample_rate``); return the full frames due."""
        if not pcm:
            return []
        self._buf += pcm
        self._arrivals.append((self._consumed + len(self._buf), now))
        if len(self._buf) < self.frame_pcm_bytes:
            return []
        return self._take_audio(whole_frames_only=True)

    def due(self, now: float) -> list[str]:
        """Flush partial audio whose oldest byte has waited ``batch_ms``; call at
        :meth:`next_deadline` so the tail of a turn is not held back."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return self._take_audio(whole_frames_only=False)

    def next_deadline(self) -> float | None:
        """When :meth:`due` will have something to flush, or ``None`` while no audio waits."""
        if len(self._buf) < 2:  # a lone odd byte waits for its sample's other half
            return None
        return self._arrivals[0][1] + self._batch_seconds

    def flush(self, now: float) -> list[str]:
        """Frame every buffered sample now (for example before closing)."""
        return self._take_audio(whole_frames_only=False)

    def barge_in(self, reason: ClearReason, now: float) -> list[str]:
        """Drop buffered audio and return ``[clear_audio]``.

        The sender must also drop the audio frames it has queued but not posted; the client drops
        its playback and ignores audio frames with a lower ``seq`` than the clear.
        """
        frame = encode_clear_audio(self._seq, reason)  # validates reason before any change
        self._drop_buffer()
        self._seq += 1
        self._count_events(frame)
        return [frame]

    def _take_audio(self, *, whole_frames_only: bool) -> list[str]:
        buf = self._buf
        step = self.frame_pcm_bytes
        size = len(buf)
        end = size - size % step if whole_frames_only else size & ~1
        if end == 0:
            return []
        frames: list[str] = []
        seq = self._seq
        rate = self.sample_rate
        frame_bytes = 0
        with memoryview(buf) as view:
            for offset in range(0, end, step):
                with view[offset : min(offset + step, end)] as part:
                    frame = self._audio_frame(seq, part, rate)
                frames.append(frame)
                frame_bytes += len(frame)
                seq += 1
        del buf[:end]  # O(1) at the front of a bytearray
        self._consumed += end
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= self._consumed:
            arrivals.popleft()
        counters = self.counters
        counters.frames += len(frames)
        counters.audio_frames += len(frames)
        counters.frame_bytes += frame_bytes
        counters.audio_bytes += end
        counters.audio_ms += end * 500 / rate
        self._seq = seq
        return frames

    # -- events ----------------------------------------------------------------------------

    def event(self, fields: Mapping[str, Any], now: float) -> list[str]:
        """Any non-audio frame from its fields (``type`` included, ``seq`` assigned here), after
        the buffered audio. Prefer the typed methods below; this one does not split or cut."""
        kind = fields.get("type")
        if kind in ("audio", "clear_audio"):
            raise ValueError(f"{kind} frames come from audio() and barge_in(), not event()")

        def build(seq: int) -> list[str]:
            return [self._checked(encode_event(seq, fields))]

        return self._emit(build)

    def transcript(self, text: str, now: float) -> list[str]:
        """The user's words (split over several frames if they do not fit one)."""
        return self._emit(
            lambda seq: self._split(
                lambda i, piece, more: encode_transcript(seq + i, piece, continues=more), text
            )
        )

    def assistant_text(self, text: str, final: bool, now: float) -> list[str]:
        """What the assistant says; ``final=False`` is speculative text sent before its audio."""
        return self._emit(
            lambda seq: self._split(
                lambda i, piece, more: encode_assistant_text(seq + i, piece, final, continues=more),
                text,
            )
        )

    def tool(
        self,
        call_id: str,
        name: str,
        status: ToolStatus,
        now: float,
        *,
        ms: int | None = None,
        error: str | None = None,
    ) -> list[str]:
        """Progress of a tool call (``ms``: how long it ran; ``error``: why it failed)."""
        if error is None:
            return self._emit(
                lambda seq: [self._checked(encode_tool(seq, call_id, name, status, ms=ms))]
            )
        return self._emit(
            lambda seq: [
                self._cut(
                    lambda text: encode_tool(seq, call_id, name, status, ms=ms, error=text), error
                )
            ]
        )

    def turn_end(self, now: float) -> list[str]:
        """The assistant finished its turn (flushes the tail of its audio first)."""
        return self._emit(lambda seq: [encode_turn_end(seq)])

    def usage(self, usage: Usage, now: float) -> list[str]:
        """Running token totals."""
        return self._emit(lambda seq: [encode_usage(seq, usage)])

    def error(
        self, code: ErrorCode, message: str, fatal: bool, ref: FrameRef | None, now: float
    ) -> list[str]:
        """An error frame (``ref``: the client frame it is about)."""
        return self._emit(
            lambda seq: [self._cut(lambda text: encode_error(seq, code, text, fatal, ref), message)]
        )

    def protocol_error(self, error: ProtocolError, now: float) -> list[str]:
        """The error frame for a refused client frame (or an error raised by the service)."""
        return self.error(error.code, error.message, error.fatal, error.ref, now)

    def session(
        self,
        state: SessionState,
        connection_id: str,
        model: str,
        voice: str,
        now: float,
        *,
        reason: str | None = None,
    ) -> list[str]:
        """The session state, with the options in force (this batcher's rate and batch_ms)."""

        def encode(seq: int, text: str | None) -> str:
            return encode_session(
                seq,
                state,
                connection_id=connection_id,
                model=model,
                voice=voice,
                input_sample_rate=self.input_sample_rate,
                output_sample_rate=self.sample_rate,
                batch_ms=self.batch_ms,
                reason=text,
            )

        if reason is None:
            return self._emit(lambda seq: [self._checked(encode(seq, None))])
        return self._emit(lambda seq: [self._cut(lambda text: encode(seq, text), reason)])

    def pong(self, id: str | int | None, now: float) -> list[str]:
        """The answer to a ping, echoing its ``id``."""
        return self._emit(lambda seq: [self._checked(encode_pong(seq, id))])

    def _emit(self, build: Callable[[int], list[str]]) -> list[str]:
        # Encode the event first, numbered after the audio still to flush: if it cannot be
        # encoded (ValueError), nothing has changed and no audio is lost.
        even = len(self._buf) & ~1
        first_seq = self._seq + -(-even // self.frame_pcm_bytes)
        events = build(first_seq)
        frames = self._take_audio(whole_frames_only=False)
        self._seq += len(events)
        self._count_events(*events)
        frames += events
        return frames

    def _count_events(self, *frames: str) -> None:
        counters = self.counters
        counters.frames += len(frames)
        for frame in frames:
            counters.frame_bytes += self._size(frame)

    def _size(self, frame: str) -> int:
        """The frame's size on the wire, in bytes: v1 frames are ASCII, so their length."""
        return len(frame)

    def _checked(self, frame: str) -> str:
        size = self._size(frame)
        if size > self.max_frame_bytes:
            raise ValueError(
                f"a {size}-byte frame exceeds max_frame_bytes={self.max_frame_bytes}:"
                " its fixed fields are too long"
            )
        return frame

    def _split(self, encode: Callable[[int, str, bool], str], text: str) -> list[str]:
        """Frames for ``text``: one if it fits, else consecutive pieces that each fit (split at
        a space when one is near the cut) and concatenate back to ``text``."""
        limit = self.max_frame_bytes
        frame = encode(0, text, False)
        if len(frame) <= limit:
            return [frame]
        self.counters.split_texts += 1
        frames: list[str] = []
        rest = text
        while len(frame) > limit:
            size = _longest_prefix(encode, len(frames), rest, limit)
            if size == 0:
                raise ValueError(
                    f"max_frame_bytes={limit} leaves no room for text: fixed fields too long"
                )
            space = rest.rfind(" ", size // 2, size)
            if space > 0:
                size = space + 1
            frames.append(encode(len(frames), rest[:size], True))
            rest = rest[size:]
            frame = encode(len(frames), rest, False)
        frames.append(frame)
        return frames

    def _cut(self, encode: Callable[[str], str], text: str) -> str:
        """The frame with ``text`` cut (with an ellipsis) to MAX_MESSAGE_CHARS and to the limit."""
        limit = self.max_frame_bytes
        cut = len(text) > MAX_MESSAGE_CHARS
        if cut:
            text = text[: MAX_MESSAGE_CHARS - 1] + _ELLIPSIS
        frame = encode(text)
        if self._size(frame) > limit:
            cut = True
            size = _longest(
                lambda k: self._size(encode(text[:k] + _ELLIPSIS)) <= limit, len(text) - 1
            )
            frame = self._checked(encode(text[:size] + _ELLIPSIS))
        if cut:
            self.counters.truncated_messages += 1
        return frame


def _check_audio_options(sample_rate: int, batch_ms: int) -> None:
    if sample_rate not in OUTPUT_SAMPLE_RATES:
        raise ValueError(f"sample_rate must be 8000, 16000 or 24000, not {sample_rate}")
    if not MIN_BATCH_MS <= batch_ms <= MAX_BATCH_MS:
        raise ValueError(f"batch_ms must be from {MIN_BATCH_MS} to {MAX_BATCH_MS}, not {batch_ms}")


def _longest_prefix(
    encode: Callable[[int, str, bool], str], index: int, text: str, limit: int
) -> int:
    """The longest prefix of ``text`` whose continued piece ``index`` fits ``limit``."""
    return _longest(lambda k: len(encode(index, text[:k], True)) <= limit, len(text) - 1)


def _longest(fits: Callable[[int], bool], high: int) -> int:
    """The largest ``k`` in ``0..high`` with ``fits(k)``, for a monotone ``fits`` (0 if none)."""
    low = 0
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low
