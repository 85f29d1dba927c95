"""The pure rules: ids, frame limits, the connection clock, metering, requests, redaction."""

from __future__ import annotations

import json
import re

import pytest

from novakit.localgw.auth import token_accepted
from novakit.localgw.ids import new_connection_id, new_request_id
from novakit.localgw.integration import (
    ConnectionContext,
    connect_rejection_status,
    connect_request,
    disconnect_request,
    internal_server_error_frame,
    is_integration_failure,
    message_request,
)
from novakit.localgw.limits import (
    DURATION_LIMIT,
    FRAME_LIMIT,
    IDLE_TIMEOUT,
    Close,
    ConnectionClock,
    check_text_frame,
    client_close,
)
from novakit.localgw.logs import redact
from novakit.localgw.metering import GatewayStats, message_units

CONTEXT = ConnectionContext(
    connection_id="L0SM9cOFvHcCIhw=",
    source_ip="203.0.113.7",
    user_agent="ua",
    stage="local",
    connected_at_ms=1_700_000_000_123,
)


def test_ids_look_like_api_gateways_and_do_not_repeat() -> None:
    ids = {new_connection_id() for _ in range(1000)} | {new_request_id() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9]{15}=", i) for i in ids)


@pytest.mark.parametrize(
    ("size", "code"), [(0, None), (FRAME_LIMIT, None), (FRAME_LIMIT + 1, 1009)]
)
def test_text_frame_limit(size: int, code: int | None) -> None:
    close = check_text_frame(size)
    assert (close.code if close else None) == code


def test_a_close_without_status_reads_as_1005() -> None:
    assert client_close(None, "").code == 1005
    assert client_close(0, "").code == 1005
    assert client_close(4000, "app") == Close(4000, "app")


def test_idle_deadline_moves_with_frames_and_duration_caps_it() -> None:
    clock = ConnectionClock(100.0, idle_seconds=10, max_seconds=25)
    assert clock.deadline() == 110.0
    assert clock.expired(109.9) is None
    assert clock.expired(110.0) == IDLE_TIMEOUT
    clock.frame_received(108.0)
    assert clock.deadline() == 118.0
    assert clock.expired(117.0) is None
    clock.frame_received(117.0)
    assert clock.deadline() == 125.0  # the duration limit comes first now
    assert clock.expired(125.0) == DURATION_LIMIT


@pytest.mark.parametrize(
    ("size", "units"),
    [(0, 1), (1, 1), (FRAME_LIMIT, 1), (FRAME_LIMIT + 1, 2), (4 * FRAME_LIMIT, 4), (100_000, 4)],
)
def test_messages_are_metered_in_32_kb_units(size: int, units: int) -> None:
    assert message_units(size) == units


def test_stats_total_connections_and_minutes_on_an_injected_clock() -> None:
    now = [0.0]
    stats = GatewayStats(clock=lambda: now[0])
    first = stats.opened("a")
    first.record_in(100)
    first.record_out(FRAME_LIMIT + 1)
    now[0] = 30.0
    second = stats.opened("b")
    second.record_in(FRAME_LIMIT)
    now[0] = 90.0
    stats.closed("a", 1000)
    now[0] = 150.0
    totals = stats.totals
    assert (totals.messages_in, totals.messages_out) == (2, 1)
    assert (totals.bytes_in, totals.bytes_out) == (100 + FRAME_LIMIT, FRAME_LIMIT + 1)
    assert (totals.units_in, totals.units_out, totals.units) == (2, 2, 4)
    assert stats.connection_minutes == pytest.approx((90 + 120) / 60)
    assert stats.billed_connection_minutes == 2 + 2
    snapshot = json.loads(json.dumps(stats.snapshot()))
    assert snapshot["totals"]["units"] == 4
    assert snapshot["connections"]["a"]["close_code"] == 1000
    assert snapshot["connections"]["b"]["seconds"] == 120.0


def test_integration_requests_are_built_from_the_context() -> None:
    principal = ConnectionContext(**{**CONTEXT.__dict__, "principal_id": "local-user"})
    connect = connect_request(principal, "req1")
    assert connect.path == "/ws/connect"
    assert connect.body == b""
    assert connect.headers == {
        "x-connection-id": "L0SM9cOFvHcCIhw=",
        "x-request-id": "req1",
        "x-route-key": "$connect",
        "x-source-ip": "203.0.113.7",
        "x-stage": "local",
        "x-connected-at": "1700000000123",
        "x-principal-id": "local-user",
    }
    message = message_request(CONTEXT, "req2", b'{"a":1}')
    assert (message.path, message.body) == ("/ws/message", b'{"a":1}')
    assert message.headers["content-type"] == "application/json"
    assert "x-principal-id" not in message.headers
    disconnect = disconnect_request(CONTEXT, "req3", Close(1001, "Idle timeout"))
    assert disconnect.path == "/ws/disconnect"
    assert disconnect.headers["x-disconnect-status-code"] == "1001"
    assert disconnect.headers["x-disconnect-reason"] == "Idle timeout"
    injected = disconnect_request(CONTEXT, "req4", Close(4000, "bye\r\nx-evil: 1"))
    assert injected.headers["x-disconnect-reason"] == "bye  x-evil: 1"


def test_outcomes_of_integrations() -> None:
    assert [connect_rejection_status(s) for s in (200, 204, 401, 403, 404, 500, 302, None)] == [
        None,
        None,
        401,
        403,
        404,
        502,
        502,
        502,
    ]
    assert [is_integration_failure(s) for s in (200, 400, 500, 503, None)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert json.loads(internal_server_error_frame("c=", "r=")) == {
        "message": "Internal server error",
        "connectionId": "c=",
        "requestId": "r=",
    }


def test_tokens_are_compared_exactly() -> None:
    assert token_accepted(None, None)
    assert token_accepted("t", "t")
    assert not token_accepted("t", None)
    assert not token_accepted("t", "T")
    assert not token_accepted("t", "")


def test_secrets_in_urls_are_redacted() -> None:
    assert redact("/?token=abc") == "/?token=***"
    assert redact("/local?x=1&token=abc&y=2") == "/local?x=1&token=***&y=2"
    assert redact("/?X-Amz-Signature=abcd&a=b") == "/?X-Amz-Signature=***&a=b"
    assert redact("/?tokens=keep") == "/?tokens=keep"
