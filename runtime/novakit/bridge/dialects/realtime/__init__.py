"""The OpenAI Realtime protocol on the ``realtime`` stage: existing Realtime clients (the
official SDKs, voice frameworks' Realtime services) talk to Nova Sonic by changing their base
URL and key. ``docs/openai-realtime.md`` maps every event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import Dialect
from .codec import KINDS, RealtimeCodec

__all__ = ["REALTIME", "RealtimeCodec"]


def _new_codec(
    *,
    batch_ms: int,
    saved: Mapping[str, Any] | None = None,
    allow_client_instructions: bool = True,
) -> RealtimeCodec:
    return RealtimeCodec(
        batch_ms=batch_ms, saved=saved, allow_client_instructions=allow_client_instructions
    )


REALTIME = Dialect("realtime", "OpenAI Realtime", KINDS, _new_codec)
