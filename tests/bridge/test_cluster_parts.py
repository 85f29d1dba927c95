"""The parts of scale-out that need no cluster: the task's address and the relay's outcomes."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web

from novakit.bridge.auth import RELAY_SIGNATURE_HEADER
from novakit.bridge.cluster import (
    ADOPT_HEADER,
    RELAYED_HEADER,
    Relay,
    RelayOutcome,
    RouteCache,
    discover_address,
    is_refusal,
)
from novakit.bridge.httpclient import HttpClientError
from novakit.dev import free_port

from ..gateway_auth import gateway_headers, relay_auth


@pytest.fixture
def metadata() -> Iterator[str]:
    """A stand-in for the ECS container metadata endpoint (v4)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "Name": "bridge",
                    "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.17"]}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/container"
    finally:
        server.shutdown()


def test_the_address_comes_from_config_then_ecs_metadata_then_loopback(metadata: str) -> None:
    assert discover_address(8080, {"NOVAKIT_ADVERTISE_URL": "http://bridge-1:9000/"}) == (
        "http://bridge-1:9000"
    )
    assert discover_address(8080, {"ECS_CONTAINER_METADATA_URI_V4": metadata}) == (
        "http://10.0.3.17:8080"
    )
    assert discover_address(8081, {}) == "http://127.0.0.1:8081"


async def test_relay_outcomes() -> None:
    seen: list[dict[str, str]] = []

    async def message(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        match request.headers["x-connection-id"]:
            case "mine=":
                return web.Response()
            case "not-mine=":
                return web.Response(status=409)
            case _:
                await asyncio.sleep(2)
                return web.Response()

    app = web.Application()
    app.router.add_post("/ws/message", message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    owner = f"http://127.0.0.1:{runner.addresses[0][1]}"
    relay = Relay(timeout=0.5, auth=relay_auth())
    try:
        headers = gateway_headers("mine=", **{"x-request-id": "r1", "authorization": "secret"})
        done = await relay.forward(owner, "/ws/message", headers, b"{}")
        assert done.outcome is RelayOutcome.DELIVERED
        assert seen[0][RELAYED_HEADER] == "1"
        assert "authorization" not in {k.lower() for k in seen[0]}  # only the context travels
        assert ADOPT_HEADER not in seen[0]
        # signed, and still carrying API Gateway's proof as it arrived
        assert relay_auth().verify("POST", "/ws/message", seen[0], b"{}") is None
        assert seen[0][RELAY_SIGNATURE_HEADER].startswith("v1=")
        assert seen[0]["x-gateway-secret"] == headers["x-gateway-secret"]
        handed = await relay.forward(
            owner, "/ws/message", headers, b"{}", handed_over_by="http://10.0.3.17:8080"
        )
        assert handed.outcome is RelayOutcome.DELIVERED
        assert seen[1][ADOPT_HEADER] == "http://10.0.3.17:8080"  # who is handing it over
        assert relay_auth().verify("POST", "/ws/message", seen[1], b"{}") is None
        other = {"x-connection-id": "not-mine="}
        assert (await relay.forward(owner, "/ws/message", other, b"{}")).outcome is (
            RelayOutcome.NOT_OWNER
        )
        slow = {"x-connection-id": "slow="}
        assert (await relay.forward(owner, "/ws/message", slow, b"{}")).outcome is (
            RelayOutcome.TIMED_OUT
        )
        gone = "http://127.0.0.1:9"
        assert (await relay.forward(gone, "/ws/message", other, b"{}")).outcome is (
            RelayOutcome.REFUSED
        )
    finally:
        await relay.close()
        await runner.cleanup()


def test_only_a_refused_connection_counts_as_an_owner_gone() -> None:
    # Anything else that fails a connect says nothing about the owner: this task may be out
    # of sockets, a route may be down, or the host may not answer (a stopped task on awsvpc).
    def failed_connect(cause: BaseException) -> HttpClientError:
        try:
            raise HttpClientError("could not connect to 10.0.3.17:8080") from cause
        except HttpClientError as exc:
            return exc

    assert is_refusal(failed_connect(ConnectionRefusedError(errno.ECONNREFUSED, "no")))
    assert is_refusal(failed_connect(OSError(errno.ECONNREFUSED, "refused")))
    assert is_refusal(ConnectionRefusedError(errno.ECONNREFUSED, "no"))
    for code in (errno.EMFILE, errno.EADDRNOTAVAIL, errno.EHOSTUNREACH, errno.ENETUNREACH):
        assert not is_refusal(failed_connect(OSError(code, os.strerror(code))))
    assert not is_refusal(failed_connect(TimeoutError()))  # a host that does not answer
    assert not is_refusal(HttpClientError("connection lost mid-answer"))


async def test_a_relay_to_a_port_nobody_listens_on_is_refused() -> None:
    relay = Relay(2.0, relay_auth())
    try:
        result = await relay.forward(
            f"http://127.0.0.1:{free_port()}", "/ws/message", gateway_headers("gone="), b"{}"
        )
    finally:
        await relay.close()
    assert result.outcome is RelayOutcome.REFUSED


def test_route_cache_keeps_owners_for_a_while_and_a_bounded_number() -> None:
    now = [0.0]
    routes = RouteCache(seconds=10.0, size=2, clock=lambda: now[0])
    routes.remember("a", "http://10.0.0.1:8081")
    routes.remember("b", "http://10.0.0.1:8082")
    assert (routes.get("a"), routes.get("b")) == ("http://10.0.0.1:8081", "http://10.0.0.1:8082")
    routes.remember("c", "http://10.0.0.2:8081")  # over the bound: the oldest goes
    assert (routes.get("a"), len(routes)) == (None, 2)
    routes.forget("b")
    assert routes.get("b") is None
    now[0] = 9.9
    assert routes.get("c") == "http://10.0.0.2:8081"
    now[0] = 10.0  # old routes are read from the directory again
    assert routes.get("c") is None
    assert len(routes) == 0
