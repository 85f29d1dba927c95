"""$connect, $default and $disconnect as integration requests, as API Gateway sends them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from novakit.localgw import GatewayConfig, LocalGateway
from novakit.localgw.limits import FRAME_LIMIT

from .conftest import (
    WAIT,
    FakeBackend,
    Received,
    Recorder,
    client,
    closed_by_server,
    gateway,
    http,
    receive,
)

ID_SHAPE = re.compile(r"^[A-Za-z0-9]{15}=$")
CONTEXT_HEADERS = {
    "x-connection-id",
    "x-request-id",
    "x-route-key",
    "x-source-ip",
    "x-stage",
    "x-connected-at",
}


def contract_headers(received: Received) -> dict[str, str]:
    return {k: v for k, v in received.headers.items() if k.startswith("x-")}


async def test_every_integration_request_carries_the_gateway_secret_when_configured(
    backend: FakeBackend,
) -> None:
    secret = "local-gateway-secret-0123456789abcdefABCDEF"
    async with gateway(backend, integration_secret=secret) as gw, client(gw.url) as ws:
        await backend.recorder.wait_for("$connect")
        await ws.send('{"type": "ping"}')
        await backend.recorder.wait_for("$default")
        await ws.close(1000, "bye")
        await backend.recorder.wait_for("$disconnect")
    received = backend.recorder.received
    assert [r.route for r in received] == ["$connect", "$default", "$disconnect"]
    assert [r.headers.get("x-gateway-secret") for r in received] == [secret] * 3


async def test_connect_message_disconnect_carry_the_contract_headers(
    backend: FakeBackend,
) -> None:
    before_ms = time.time_ns() // 1_000_000
    async with gateway(backend) as gw, client(gw.url) as ws:
        [connect] = await backend.recorder.wait_for("$connect")
        await ws.send('{"type": "audio", "seq": 1}')
        [message] = await backend.recorder.wait_for("$default")
        await ws.close(1000, "bye")
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    after_ms = time.time_ns() // 1_000_000

    assert (connect.path, message.path, disconnect.path) == (
        "/ws/connect",
        "/ws/message",
        "/ws/disconnect",
    )
    assert (connect.body, message.body, disconnect.body) == (
        b"",
        b'{"type": "audio", "seq": 1}',
        b"",
    )
    assert message.headers["content-type"] == "application/json"

    assert set(contract_headers(connect)) == CONTEXT_HEADERS  # no authorizer, no principal
    assert set(contract_headers(message)) == CONTEXT_HEADERS
    assert set(contract_headers(disconnect)) == CONTEXT_HEADERS | {
        "x-disconnect-status-code",
        "x-disconnect-reason",
    }
    for received, route in (
        (connect, "$connect"),
        (message, "$default"),
        (disconnect, "$disconnect"),
    ):
        assert received.headers["x-route-key"] == route
        assert received.headers["x-source-ip"] == "127.0.0.1"
        assert received.headers["x-stage"] == "local"
        assert received.headers["x-connection-id"] == connect.connection_id
        assert received.headers["x-connected-at"] == connect.headers["x-connected-at"]
        assert ID_SHAPE.match(received.headers["x-request-id"])
    assert ID_SHAPE.match(connect.connection_id)
    assert before_ms <= int(connect.headers["x-connected-at"]) <= after_ms
    request_ids = {r.headers["x-request-id"] for r in (connect, message, disconnect)}
    assert len(request_ids) == 3
    assert disconnect.headers["x-disconnect-status-code"] == "1000"
    assert disconnect.headers["x-disconnect-reason"] == "bye"


async def test_the_stage_path_is_a_websocket_endpoint_too(backend: FakeBackend) -> None:
    async with gateway(backend, stage="dev") as gw, client(gw.url + "dev") as ws:
        await ws.send("{}")
        [message] = await backend.recorder.wait_for("$default")
    assert message.headers["x-stage"] == "dev"


async def assert_nothing_sent_before_a_marker(gw: LocalGateway, ws: ClientConnection) -> None:
    """The next frame the client receives is a marker posted now: nothing was sent before it."""
    [connection_id] = gw.connections
    async with http() as session:
        url = f"{gw.management_url}/@connections/{connection_id}"
        async with session.post(url, data=b'{"marker": true}') as response:
            assert response.status == 200
    assert await receive(ws) == '{"marker": true}'


async def test_the_backend_response_body_is_not_sent_to_the_client(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send('{"n": 1}')
        await ws.send('{"n": 2}')
        # One request at a time: the second is sent only once the first's response was handled.
        await backend.recorder.wait_for("$default", 2)
        await assert_nothing_sent_before_a_marker(gw, ws)


@pytest.mark.parametrize(
    ("backend_status", "handshake_status"), [(403, 403), (401, 401), (500, 502)]
)
async def test_connect_refused_by_the_backend_refuses_the_handshake(
    backend: FakeBackend, backend_status: int, handshake_status: int
) -> None:
    backend.statuses["/ws/connect"] = backend_status
    async with gateway(backend) as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with client(gw.url):
                pass
        assert refused.value.response.status_code == handshake_status
        assert gw.connections == []
        assert gw.stats.rejected_connects == 1
    assert [r.route for r in backend.recorder.received] == ["$connect"]  # no $disconnect


async def test_connect_to_an_unreachable_backend_is_a_502(dead_url: str) -> None:
    async with gateway([dead_url]) as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with client(gw.url):
                pass
    assert refused.value.response.status_code == 502


@pytest.mark.parametrize("query", ["", "?token=wrong", "?token="])
async def test_missing_or_wrong_token_is_a_401_without_calling_the_backend(
    backend: FakeBackend, query: str
) -> None:
    async with gateway(backend, token="s3cret") as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with client(gw.url + query):
                pass
    assert refused.value.response.status_code == 401
    assert backend.recorder.received == []


async def test_the_right_token_admits_with_a_principal_and_is_never_logged(
    backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="novakit.localgw")
    async with gateway(backend, token="s3cret", principal="alice") as gw:
        async with client(gw.url + "?token=s3cret") as ws:
            await ws.send("{}")
            [connect] = await backend.recorder.wait_for("$connect")
            await backend.recorder.wait_for("$default")
        with pytest.raises(websockets.InvalidStatus):
            async with client(gw.url + "?token=s3cretX"):
                pass
        await backend.recorder.wait_for("$disconnect")
    assert connect.headers["x-principal-id"] == "alice"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "s3cret" not in logged
    assert "token=***" in logged
    assert any(getattr(r, "connection_id", None) == connect.connection_id for r in caplog.records)


async def test_frames_are_forwarded_one_at_a_time_in_arrival_order(backend: FakeBackend) -> None:
    inflight = 0
    most_inflight = 0

    async def slow(received: Received) -> int:
        nonlocal inflight, most_inflight
        if received.route == "$default":
            inflight += 1
            most_inflight = max(most_inflight, inflight)
            await asyncio.sleep(0.005)  # room for a second request to overlap, were it sent
            inflight -= 1
        return 200

    backend.responder = slow
    frames = [json.dumps({"seq": n}) for n in range(20)]
    async with gateway(backend) as gw, client(gw.url) as ws:
        for frame in frames:
            await ws.send(frame)
        received = await backend.recorder.wait_for("$default", len(frames))
    assert [r.body.decode() for r in received] == frames
    assert most_inflight == 1


async def test_more_inflight_lets_a_connections_requests_overlap(backend: FakeBackend) -> None:
    all_in = asyncio.Event()
    inflight = 0

    async def hold_until_three(received: Received) -> int:
        nonlocal inflight
        if received.route == "$default":
            inflight += 1
            if inflight == 3:
                all_in.set()
            await all_in.wait()  # only returns if three requests are in flight at once
        return 200

    backend.responder = hold_until_three
    async with gateway(backend, max_inflight_per_connection=3) as gw, client(gw.url) as ws:
        for n in range(3):
            await ws.send(json.dumps({"seq": n}))
        received = await backend.recorder.wait_for("$default", 3)
        async with asyncio.timeout(WAIT):
            await all_in.wait()
    # Requests start in arrival order even when they overlap.
    assert [json.loads(r.body)["seq"] for r in received] == [0, 1, 2]


async def test_requests_are_spread_round_robin_over_backends() -> None:
    recorder = Recorder()
    async with FakeBackend(recorder) as first, FakeBackend(recorder) as second:
        async with gateway([first.url, second.url]) as gw, client(gw.url) as ws:
            for n in range(4):
                await ws.send(json.dumps({"seq": n}))
            await recorder.wait_for("$default", 4)
        await recorder.wait_for("$disconnect")
    # One connection, six requests: they alternate whatever connection owns them.
    assert [r.route for r in recorder.received] == ["$connect"] + ["$default"] * 4 + ["$disconnect"]
    assert [r.backend for r in recorder.received] == [first.url, second.url] * 3


async def test_a_random_spread_is_repeatable_with_its_seed_and_reaches_every_backend() -> None:
    async def run(seed: int) -> list[str]:
        recorder = Recorder()
        async with (
            FakeBackend(recorder) as first,
            FakeBackend(recorder) as second,
            FakeBackend(recorder) as third,
        ):
            urls = [first.url, second.url, third.url]
            async with (
                gateway(urls, spread="random", spread_seed=seed) as gw,
                client(gw.url) as ws,
            ):
                for n in range(30):
                    await ws.send(json.dumps({"seq": n}))
                await recorder.wait_for("$default", 30)
            await recorder.wait_for("$disconnect")
        return [str(urls.index(r.backend)) for r in recorder.received]

    picks = await run(seed=7)
    assert picks == await run(seed=7)
    assert set(picks) == {"0", "1", "2"}
    assert picks != (["0", "1", "2"] * 11)[: len(picks)]  # not in turn


async def test_a_failed_integration_sends_internal_server_error_and_keeps_the_socket(
    backend: FakeBackend,
) -> None:
    async def fail_on_request(received: Received) -> int:
        return 500 if received.body == b'{"fail": true}' else 200

    backend.responder = fail_on_request
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send('{"fail": true}')
        error = json.loads(await receive(ws))
        [connect] = await backend.recorder.wait_for("$connect")
        [failed] = await backend.recorder.wait_for("$default")
        assert error == {
            "message": "Internal server error",
            "connectionId": connect.connection_id,
            "requestId": failed.headers["x-request-id"],
        }
        await ws.send('{"fail": false}')
        await backend.recorder.wait_for("$default", 2)
        assert gw.connections == [connect.connection_id]
        assert gw.stats.integration_errors == 1


async def test_a_4xx_from_the_backend_is_not_reported_to_the_client(backend: FakeBackend) -> None:
    backend.statuses["/ws/message"] = 400
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send("{}")
        await ws.send("{}")
        await backend.recorder.wait_for("$default", 2)
        await assert_nothing_sent_before_a_marker(gw, ws)
        assert gw.stats.integration_errors == 0


async def test_unreachable_and_timed_out_integrations_are_internal_server_errors(
    backend: FakeBackend, dead_url: str
) -> None:
    never = asyncio.Event()

    async def hang_on_default(received: Received) -> int:
        if received.route == "$default":
            await never.wait()
        return 200

    backend.responder = hang_on_default
    # Round-robin: $connect -> backend, frame 1 -> nobody listening, frame 2 -> backend (hangs).
    async with (
        gateway([backend.url, dead_url], integration_timeout=0.3) as gw,
        client(gw.url) as ws,
    ):
        await ws.send('{"n": 1}')
        await ws.send('{"n": 2}')
        first = json.loads(await receive(ws))
        second = json.loads(await receive(ws))
        [hung] = await backend.recorder.wait_for("$default")
        assert first["message"] == second["message"] == "Internal server error"
        assert second["requestId"] == hung.headers["x-request-id"]
        assert first["requestId"] != second["requestId"]
        assert gw.stats.integration_errors == 2
        never.set()


async def test_frame_at_the_limit_passes_one_byte_over_closes_1009(backend: FakeBackend) -> None:
    at_limit = "x" * FRAME_LIMIT
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send(at_limit)
        await ws.send(at_limit + "x")
        close = await closed_by_server(ws)
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert close.code == 1009
    assert [r.body for r in backend.recorder.routes("$default")] == [at_limit.encode()]
    assert disconnect.headers["x-disconnect-status-code"] == "1009"


async def test_the_frame_limit_counts_utf8_bytes(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send("é" * (FRAME_LIMIT // 2 + 1))  # fewer characters than the limit, more bytes
        close = await closed_by_server(ws)
    assert close.code == 1009


async def test_binary_frames_close_1003(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send(b"\x00\x01")
        close = await closed_by_server(ws)
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert close.code == 1003
    assert backend.recorder.routes("$default") == []
    assert disconnect.headers["x-disconnect-status-code"] == "1003"


async def test_an_idle_connection_closes_1001(backend: FakeBackend) -> None:
    async with gateway(backend, idle_seconds=0.3) as gw, client(gw.url) as ws:
        close = await closed_by_server(ws)
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert (close.code, close.reason) == (1001, "Idle timeout")
    assert disconnect.headers["x-disconnect-status-code"] == "1001"
    assert disconnect.headers["x-disconnect-reason"] == "Idle timeout"


async def test_a_connection_past_its_maximum_duration_closes_1001(backend: FakeBackend) -> None:
    async with gateway(backend, max_seconds=0.3) as gw, client(gw.url) as ws:
        close = await closed_by_server(ws)
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert close.code == 1001
    assert disconnect.headers["x-disconnect-reason"] == "Connection duration limit reached"


async def test_a_close_reason_with_control_characters_still_reaches_the_backend(
    backend: FakeBackend,
) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.close(4000, "bye\r\nx-injected: 1")
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert disconnect.headers["x-disconnect-status-code"] == "4000"
    assert disconnect.headers["x-disconnect-reason"] == "bye  x-injected: 1"
    assert "x-injected" not in disconnect.headers


async def test_a_dropped_client_is_an_abnormal_closure(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        await ws.send("{}")
        await backend.recorder.wait_for("$default")
        ws.transport.abort()  # no close frame: the TCP connection just goes
        [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert disconnect.headers["x-disconnect-status-code"] == "1006"


async def test_frames_received_before_a_close_are_forwarded_before_disconnect(
    backend: FakeBackend,
) -> None:
    async with gateway(backend) as gw:
        async with client(gw.url) as ws:
            for n in range(5):
                await ws.send(json.dumps({"seq": n}))
        await backend.recorder.wait_for("$disconnect")
    routes = [r.route for r in backend.recorder.received]
    assert routes == ["$connect"] + ["$default"] * 5 + ["$disconnect"]


async def test_stopping_the_gateway_closes_clients_1001_and_sends_disconnect(
    backend: FakeBackend,
) -> None:
    gw = LocalGateway(GatewayConfig(backends=[backend.url]))
    await gw.start()
    try:
        async with client(gw.url) as ws:
            await backend.recorder.wait_for("$connect")
            await gw.stop()
            close = await closed_by_server(ws)
    finally:
        await gw.stop()  # stopping twice is harmless
    [disconnect] = await backend.recorder.wait_for("$disconnect")
    assert close.code == 1001
    assert disconnect.headers["x-disconnect-status-code"] == "1001"


@pytest.mark.parametrize("path", ["other", "dev/other", "local", "@connections"])
async def test_a_handshake_elsewhere_than_root_or_the_stage_is_a_403_without_the_backend(
    backend: FakeBackend, path: str
) -> None:
    async with gateway(backend, stage="dev") as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with client(gw.url + path):
                pass
        async with client(gw.url + "dev/") as ws:  # the stage, with a slash, is served
            await ws.send("{}")
            await backend.recorder.wait_for("$default")
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body) == {"message": "Forbidden"}
    assert [r.route for r in backend.recorder.received][:1] == ["$connect"]
