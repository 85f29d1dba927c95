"""What a client protocol provides: a per-connection codec, and how its frames are classified.

A :class:`ConnectionCodec` is pure code owned by one connection's session:

* **in**: :meth:`~ConnectionCodec.parse` turns one client frame (the integration request's body)
  into the :data:`~novakit.bridge.protocol.ClientFrame` values the session acts on (none, one or
  several), or raises :class:`~novakit.bridge.protocol.ProtocolError`;
* **out**: the session reports what happened (model audio, transcripts, assistant text, tool
  progress, turn end with usage, barge-in, errors, session states) and gets back the encoded
  frames to post, in order, each at most 32 KB. v1's codec is
  :class:`~novakit.bridge.batching.OutboundBatcher`, which numbers and batches frames; other
  codecs keep their own protocol's state (response and item ids, formats) the same way.

The ordered sender must recognise some frames without parsing them (audio to drop on barge-in,
pongs and non-fatal errors to shed under pressure, the order number of audio after a clear):
:class:`FrameKinds` holds those tests for a dialect's frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from novakit.s2s.events import ToolCall, Usage

from ..protocol import (
    ClearReason,
    ClientFrame,
    ErrorCode,
    FrameRef,
    ProtocolError,
    SessionState,
    ToolStatus,
)

__all__ = ["ConnectionCodec", "Dialect", "FrameKinds"]


@dataclass(frozen=True, slots=True)
class FrameKinds:
    """Prefix tests on a dialect's encoded server frames (no parsing on the sender's path)."""

    is_audio: Callable[[str], bool]
    #: The frame's order number on its connection (for audio after a barge-in's clear).
    order: Callable[[str], int]
    is_pong: Callable[[str], bool]
    is_nonfatal_error: Callable[[str], bool]
    #: Whether a barge-in's frames go before the non-audio frames still queued (v1: the
    #: client stops playback first) or after them (protocols whose events must stay in order).
    clear_first: bool = True


class ConnectionCodec(Protocol):
    """One connection's client protocol. ``now`` arguments are ``time.monotonic()`` seconds."""

    #: The rate of the model audio given to :meth:`audio` (what the model is asked for).
    sample_rate: int
    batch_ms: int
    #: The rate of the PCM in :class:`~novakit.bridge.protocol.ClientAudio` frames.
    input_sample_rate: int

    # -- in ----------------------------------------------------------------------------------

    def parse(self, body: bytes) -> Sequence[ClientFrame]:
        """The client frame ``body`` as what the session acts on; raises ``ProtocolError``."""
        ...

    # -- out ---------------------------------------------------------------------------------

    def greeting(self, connection_id: str, model: str, voice: str, now: float) -> list[str]:
        """Frames to post as soon as the connection is open, before any client frame (none
        for v1, whose clients speak first)."""
        ...

    def configure(
        self, now: float, *, sample_rate: int | None = None, batch_ms: int | None = None
    ) -> list[str]: ...

    def audio(self, pcm: bytes, now: float) -> list[str]: ...

    def due(self, now: float) -> list[str]: ...

    def next_deadline(self) -> float | None: ...

    def flush(self, now: float) -> list[str]: ...

    def barge_in(self, reason: ClearReason, now: float) -> list[str]: ...

    def transcript(self, text: str, now: float) -> list[str]: ...

    def assistant_text(self, text: str, final: bool, now: float) -> list[str]: ...

    def tool(
        self,
        call_id: str,
        name: str,
        status: ToolStatus,
        now: float,
        *,
        ms: int | None = None,
        error: str | None = None,
        output: str | None = None,
    ) -> list[str]:
        """A deployment tool's outcome (``output``: what it answered, when it succeeded)."""
        ...

    def tool_call(self, call: ToolCall, now: float, *, on_client: bool) -> list[str]:
        """The model called a tool: the deployment's (``on_client=False``: it runs in the
        bridge, then :meth:`tool` reports its outcome) or one the client declared
        (``on_client=True``: the client runs it and answers with a ``ClientToolResult``)."""
        ...

    def usage_update(self, usage: Usage, now: float) -> list[str]:
        """The model's running token totals changed (several times a turn)."""
        ...

    def turn_end(self, now: float, usage: Usage | None = None) -> list[str]:
        """The assistant finished its turn; ``usage``: the running totals, when known."""
        ...

    def error(
        self, code: ErrorCode, message: str, fatal: bool, ref: FrameRef | None, now: float
    ) -> list[str]: ...

    def protocol_error(self, error: ProtocolError, now: float) -> list[str]: ...

    def session(
        self,
        state: SessionState,
        connection_id: str,
        model: str,
        voice: str,
        now: float,
        *,
        reason: str | None = None,
    ) -> list[str]: ...

    def pong(self, id: str | int | None, now: float) -> list[str]: ...

    def heard_fraction(self) -> float | None:
        """After :meth:`barge_in`: the share (0 to 1) of the cut answer's audio the listener
        had heard, when the protocol tells (Twilio echoes marks as audio plays); ``None`` when
        it does not, and the model's own account of what it said stands."""
        ...

    def saved_state(self) -> Mapping[str, Any]:
        """What a new owner's codec needs to go on speaking to this client (JSON-able)."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """A client protocol: its name (kept in the directory record) and a codec per connection."""

    name: str
    #: For people: "OpenAI Realtime".
    title: str
    kinds: FrameKinds
    #: ``new_codec(batch_ms=..., saved=..., allow_client_instructions=...)``: a codec for a new
    #: connection, or one carrying on from ``saved`` (what :meth:`ConnectionCodec.saved_state`
    #: returned on the previous owner); a codec that reports the session's configuration
    #: refuses client instructions itself when the bridge does not take them.
    new_codec: Callable[..., ConnectionCodec]
    #: Closing the connection ends a phone call (Twilio's ``<Connect><Stream>``): the bridge
    #: may offer the model the built-in ``end_call`` tool (:mod:`novakit.bridge.hangup`).
    closing_hangs_up: bool = False
