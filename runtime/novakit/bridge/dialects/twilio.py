"""Twilio Media Streams as a dialect: :mod:`novakit.bridge.twilio`'s codec behind the session
core's :class:`~.base.ConnectionCodec` interface (docs/phone.md).

In: a call's messages become session commands (``start`` opens the conversation at 8 kHz both
ways, ``media`` is numbered audio, a key is typed text, ``stop`` ends it); an echoed ``mark``
is consumed here (what the caller heard). Out: model audio becomes ``media`` + ``mark``
messages and barge-in ``clear``; everything Twilio's protocol has no message for (transcripts,
text, tool progress, usage, errors, session states, pongs) produces nothing: it stays in the
bridge's log, and a message Twilio does not know would fail the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from novakit.s2s.events import ToolCall, Usage

from ..protocol import (
    ClearReason,
    ClientFrame,
    ClientStart,
    ErrorCode,
    FrameRef,
    ProtocolError,
    SessionState,
)
from ..twilio import (
    DEFAULT_BATCH_MS,
    SAMPLE_RATE,
    MarkPlayed,
    Start,
    TwilioInbound,
    TwilioOutbound,
    is_mark_message,
    is_media_message,
)
from .base import Dialect, FrameKinds

__all__ = ["TWILIO", "TWILIO_STAGE", "TwilioCodec"]

#: The API Gateway stage Twilio's media streams connect to.
TWILIO_STAGE = "twilio"


class TwilioCodec:
    """One call: :class:`TwilioInbound` and :class:`TwilioOutbound` of the same stream."""

    def __init__(self, *, saved: Mapping[str, Any] | None = None) -> None:
        self.sample_rate = SAMPLE_RATE  # Nova speaks 8 kHz: never resampled
        self.input_sample_rate = SAMPLE_RATE
        self.inbound = TwilioInbound()
        self.outbound = TwilioOutbound(batch_ms=DEFAULT_BATCH_MS)
        self.batch_ms = self.outbound.batch_ms
        stream_sid = (saved or {}).get("stream_sid")
        if isinstance(stream_sid, str) and stream_sid:
            # A new owner of the call: the stream is the one the previous owner was told of.
            self.inbound.resume(stream_sid, str((saved or {}).get("call_sid", "")))
            self.outbound.bind(stream_sid)

    # -- in ------------------------------------------------------------------------------------

    def parse(self, body: bytes) -> Sequence[ClientFrame]:
        frames: list[ClientFrame] = []
        for command in self.inbound.receive(body):
            if isinstance(command, MarkPlayed):
                self.outbound.mark_played(command.name)
                continue
            if isinstance(command, ClientStart) and self.inbound.stream_sid is not None:
                self.outbound.bind(self.inbound.stream_sid)  # nothing is buffered before start
            frames.append(command)
        return frames

    # -- out -----------------------------------------------------------------------------------

    def greeting(self, connection_id: str, model: str, voice: str, now: float) -> list[str]:
        return []  # Twilio speaks first (connected, start)

    def configure(
        self, now: float, *, sample_rate: int | None = None, batch_ms: int | None = None
    ) -> list[str]:
        if sample_rate not in (None, SAMPLE_RATE):
            raise ValueError(f"a phone stream is {SAMPLE_RATE} Hz, not {sample_rate}")
        return []

    def audio(self, pcm: bytes, now: float) -> list[str]:
        return self.outbound.audio(pcm, now)

    def due(self, now: float) -> list[str]:
        return self.outbound.due(now)

    def next_deadline(self) -> float | None:
        return self.outbound.next_deadline()

    def flush(self, now: float) -> list[str]:
        return self.outbound.flush(now)

    def barge_in(self, reason: ClearReason, now: float) -> list[str]:
        return self.outbound.barge_in(now)

    def usage_update(self, usage: Usage, now: float) -> list[str]:
        return []

    def turn_end(self, now: float, usage: Usage | None = None) -> list[str]:
        return self.outbound.turn_end(now)

    def transcript(self, text: str, now: float) -> list[str]:
        return []

    def assistant_text(self, text: str, final: bool, now: float) -> list[str]:
        return []

    def tool(
        self,
        call_id: str,
        name: str,
        status: Any,
        now: float,
        *,
        ms: int | None = None,
        error: str | None = None,
        output: str | None = None,
    ) -> list[str]:
        return []

    def tool_call(self, call: ToolCall, now: float, *, on_client: bool) -> list[str]:
        return []

    def error(
        self, code: ErrorCode, message: str, fatal: bool, ref: FrameRef | None, now: float
    ) -> list[str]:
        return []

    def protocol_error(self, error: ProtocolError, now: float) -> list[str]:
        return []

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
        return []

    def pong(self, id: str | int | None, now: float) -> list[str]:
        return []

    def played_out(self) -> bool:
        """Twilio has echoed every mark sent: the caller heard all the audio (or it was cleared)."""
        return self.outbound.marks_outstanding == 0

    def heard_fraction(self) -> float | None:
        interrupted = self.outbound.interrupted
        if interrupted is None:
            return None
        heard_ms, generated_ms = interrupted
        return min(1.0, heard_ms / generated_ms) if generated_ms else None

    def saved_state(self) -> Mapping[str, Any]:
        start: Start | None = self.inbound.start
        if start is None:
            return {}
        return {"stream_sid": start.stream_sid, "call_sid": start.call_sid}


def _new_codec(
    *,
    batch_ms: int,
    saved: Mapping[str, Any] | None = None,
    allow_client_instructions: bool = True,  # the session refuses them (ClientStart)
) -> TwilioCodec:
    # Twilio's batching is its own (500 ms media messages, each with a mark): the bridge's
    # batch_ms is protocol v1's.
    return TwilioCodec(saved=saved)


def _never(_frame: str) -> bool:
    return False


TWILIO = Dialect(
    TWILIO_STAGE,
    "Twilio Media Streams",
    FrameKinds(
        # A barge-in drops queued media and the marks behind it (never played, so never echoed).
        is_audio=lambda frame: is_media_message(frame) or is_mark_message(frame),
        # Twilio's messages carry no order number: the stale-audio count stays v1's.
        order=lambda _frame: 0,
        is_pong=_never,
        is_nonfatal_error=_never,
    ),
    _new_codec,
    closing_hangs_up=True,
)
