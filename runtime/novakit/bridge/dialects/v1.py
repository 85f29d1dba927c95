"""Protocol v1 (docs/protocol.md) as a dialect: ``protocol.parse_client_frame`` in,
``batching.OutboundBatcher`` out. Frames and order are exactly v1's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from novakit.s2s.events import ToolCall, Usage

from ..batching import OutboundBatcher
from ..protocol import (
    ClientFrame,
    ToolStatus,
    frame_seq,
    is_audio_frame,
    is_nonfatal_error_frame,
    is_pong_frame,
    parse_client_frame,
)
from .base import Dialect, FrameKinds

__all__ = ["V1", "V1Codec"]


class V1Codec(OutboundBatcher):
    """v1's codec: the batcher, plus parsing and the steps every dialect has."""

    __slots__ = ()

    def parse(self, body: bytes) -> Sequence[ClientFrame]:
        return (parse_client_frame(body),)

    def greeting(self, connection_id: str, model: str, voice: str, now: float) -> list[str]:
        return []  # a v1 client speaks first; its first frame opens the session

    def tool_call(self, call: ToolCall, now: float, *, on_client: bool) -> list[str]:
        return self.tool(call.call_id, call.name, "started", now)

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
        # v1's tool frames show progress only: the output is the model's to tell.
        return super().tool(call_id, name, status, now, ms=ms, error=error)

    def usage_update(self, usage: Usage, now: float) -> list[str]:
        return []  # v1 sends the totals once per turn, with turn_end

    def turn_end(self, now: float, usage: Usage | None = None) -> list[str]:
        frames = super().turn_end(now)
        if usage is not None:
            frames += self.usage(usage, now)
        return frames

    def heard_fraction(self) -> float | None:
        return None  # a v1 client does not say what it has played

    def saved_state(self) -> Mapping[str, Any]:
        return {}  # the session's options say everything a v1 client agreed to


def _new_codec(
    *,
    batch_ms: int,
    saved: Mapping[str, Any] | None = None,
    allow_client_instructions: bool = True,  # the session refuses them (ClientStart)
) -> V1Codec:
    return V1Codec(batch_ms=batch_ms)


V1 = Dialect(
    "v1",
    "protocol v1",
    FrameKinds(
        is_audio=is_audio_frame,
        order=frame_seq,
        is_pong=is_pong_frame,
        is_nonfatal_error=is_nonfatal_error_frame,
    ),
    _new_codec,
)
