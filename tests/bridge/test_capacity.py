"""A full task refuses sessions, new or taken over, and counts each refusal (the
``SessionsRefused`` metric the stack alarms on)."""

from __future__ import annotations

import io
from typing import Any, cast

from novakit import s2s
from novakit.bridge.app import Bridge
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.http import make_request
from novakit.bridge.metrics import Metrics
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port

from ..gateway_auth import GATEWAY_SECRET, gateway_headers

GONE = f"http://127.0.0.1:{free_port()}"  # an owner nobody listens on
SELF = "http://127.0.0.1:1"


def full_bridge(directory: MemoryDirectory) -> Bridge:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9",
        max_sessions=1,
        owner_timeout=0.5,
        relay_timeout=2.0,
        gateway_secrets=(GATEWAY_SECRET,),
    )
    bridge = Bridge(
        settings,
        engine=cast(s2s.Engine, object()),  # never reached: no session is created here
        tools=[],
        metrics=Metrics("test", out=io.StringIO()),
        directory=directory,
    )
    bridge.address = SELF
    bridge.sessions["held"] = cast(Any, object())  # the one session it may hold
    return bridge


def message(connection_id: str) -> Any:
    return make_request(
        "POST", "/ws/message", headers=gateway_headers(connection_id, **{"x-principal-id": "p"})
    )


async def test_a_full_task_does_not_take_a_session_over() -> None:
    directory = MemoryDirectory()
    await directory.claim("conn-1", GONE, principal="p")  # owned by a task that died
    bridge = full_bridge(directory)
    try:
        response = await bridge._adopt_or_relay(
            message("conn-1"), "conn-1", b'{"type":"text","text":"hi"}', handed_over_by=None
        )
    finally:
        await bridge.relay.close()
    assert getattr(response, "status", None) == 503
    record = await directory.get("conn-1")
    assert record is not None and record.owner == GONE  # not claimed by the full task
    assert list(bridge.sessions) == ["held"]
    assert bridge.metrics.snapshot()["counts"] == {"SessionsRefused": 1}


async def test_a_full_task_refuses_a_connect_and_counts_it() -> None:
    bridge = full_bridge(MemoryDirectory())
    request = make_request("POST", "/ws/connect", headers=gateway_headers("conn-2"))
    try:
        response = await bridge.on_connect(request)
    finally:
        await bridge.relay.close()
    assert response.status == 503
    assert bridge.metrics.snapshot()["counts"] == {"SessionsRefused": 1}
