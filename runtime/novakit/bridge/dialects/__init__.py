"""Client protocols ("dialects") of the bridge, chosen by the API Gateway stage.

One session core (ordering, batching, barge-in, tools, history, ownership, liveness) serves
every client protocol; what differs is a pure codec per connection: client frames in ->
:data:`~novakit.bridge.protocol.ClientFrame` values the session acts on, session output out ->
the client's frames (each within API Gateway's 32 KB). The stage name arrives with every
integration request (``x-stage``), so one bridge serves every stage of the API.

``STAGE_DIALECTS`` is the registry: a stage named there speaks that dialect; any other stage
speaks protocol v1. The stack deploys one API Gateway stage per entry (beside the v1 stage) and
the local gateway serves one path per entry, so adding a protocol is a codec module and one line
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .base import ConnectionCodec, Dialect, FrameKinds
from .realtime import REALTIME
from .twilio import TWILIO
from .v1 import V1

__all__ = [
    "BEARER_STAGES",
    "DIALECTS",
    "STAGE_DIALECTS",
    "V1",
    "ConnectionCodec",
    "Dialect",
    "FrameKinds",
    "dialect_for_stage",
]

#: stage name -> the dialect its clients speak. Any stage not named here speaks v1.
STAGE_DIALECTS: Final[Mapping[str, Dialect]] = MappingProxyType(
    {
        "realtime": REALTIME,
        "twilio": TWILIO,
    }
)

#: Stages whose clients may present their token as ``Authorization: Bearer ...`` (what the
#: OpenAI SDKs send) as well as ``?token=``; the authorizer and the local gateway honour it.
BEARER_STAGES: Final[tuple[str, ...]] = ("realtime",)

#: Every dialect by name (what a directory record names).
DIALECTS: Final[Mapping[str, Dialect]] = MappingProxyType(
    {d.name: d for d in (V1, *STAGE_DIALECTS.values())}
)


def dialect_for_stage(stage: str | None) -> Dialect:
    """The dialect of the clients of ``stage`` (v1 for the v1 stage, an unknown or no stage)."""
    return STAGE_DIALECTS.get(stage or "", V1)
