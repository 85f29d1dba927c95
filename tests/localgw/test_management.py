"""The @connections management API: send, status, hang up, errors, limits and SigV4."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
from urllib.parse import quote

import pytest
import websockets
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from novakit.localgw import LocalGateway
from novakit.localgw.connection import CLOSE_TIMEOUT
from novakit.localgw.limits import FRAME_LIMIT

from .conftest import (
    FakeBackend,
    Received,
    client,
    closed_by_server,
    gateway,
    http,
    receive,
)

ACCESS_KEY = "AKIDLOCALGATEWAY"
SECRET = "local-gateway-secret"


def connection_url(gw: LocalGateway, connection_id: str) -> str:
    # Percent-encode the id ("=" becomes %3D) as the AWS SDKs do.
    return f"{gw.management_url}/@connections/{quote(connection_id, safe='')}"


async def request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        http() as session,
        session.request(
            method, yarl.URL(url, encoded=True), data=body, headers=headers or {}
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


def error_of(headers: dict[str, str], body: bytes) -> tuple[str, str]:
    return headers["x-amzn-ErrorType"], json.loads(body)["message"]


async def test_post_delivers_each_body_as_one_text_frame_in_order(backend: FakeBackend) -> None:
    bodies = [json.dumps({"seq": n, "text": "héllo"}) for n in range(5)]
    async with gateway(backend) as gw, client(gw.url) as ws:
        [connection_id] = gw.connections
        for body in bodies:
            status, _, _ = await request("POST", connection_url(gw, connection_id), body.encode())
            assert status == 200
        assert [await receive(ws) for _ in bodies] == bodies


async def test_post_accepts_the_stage_path_like_aws(backend: FakeBackend) -> None:
    async with gateway(backend, stage="prod") as gw, client(gw.url) as ws:
        [connection_id] = gw.connections
        url = f"{gw.management_url}/prod/@connections/{quote(connection_id, safe='')}"
        status, _, _ = await request("POST", url, b"{}")
        assert status == 200
        assert await receive(ws) == "{}"


async def test_get_reports_the_connection(backend: FakeBackend) -> None:
    before = datetime.datetime.now(datetime.UTC)
    async with gateway(backend) as gw, client(gw.url, user_agent_header="novakit-test/1") as ws:
        await ws.send("{}")
        await backend.recorder.wait_for("$default")
        [connection_id] = gw.connections
        status, _, body = await request("GET", connection_url(gw, connection_id))
    info = json.loads(body)
    assert status == 200
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "novakit-test/1"}
    connected_at = datetime.datetime.fromisoformat(info["ConnectedAt"])
    last_active_at = datetime.datetime.fromisoformat(info["LastActiveAt"])
    assert info["ConnectedAt"].endswith("Z")
    assert before - datetime.timedelta(seconds=1) <= connected_at <= last_active_at


async def test_delete_closes_the_client_then_the_id_is_gone(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        status, _, _ = await request("DELETE", url)
        assert status == 204
        close = await closed_by_server(ws)
        [disconnect] = await backend.recorder.wait_for("$disconnect")
        assert close.code == 1000
        assert disconnect.connection_id == connection_id
        assert disconnect.headers["x-disconnect-status-code"] == "1000"
        assert gw.connections == []
        for method in ("POST", "GET", "DELETE"):
            status, headers, body = await request(method, url, b"{}" if method == "POST" else b"")
            assert status == 410
            assert error_of(headers, body)[0] == "GoneException"


async def test_an_id_that_never_connected_is_gone(backend: FakeBackend) -> None:
    async with gateway(backend) as gw:
        status, headers, body = await request("POST", connection_url(gw, "AAAAAAAAAAAAAAA="), b"{}")
    assert status == 410
    assert error_of(headers, body)[0] == "GoneException"


async def test_a_client_that_closed_is_gone(backend: FakeBackend) -> None:
    async with gateway(backend) as gw:
        async with client(gw.url):
            [connection_id] = gw.connections
        await backend.recorder.wait_for("$disconnect")
        status, _, _ = await request("POST", connection_url(gw, connection_id), b"{}")
    assert status == 410


async def test_posting_while_connect_is_in_progress_is_gone(backend: FakeBackend) -> None:
    answers: list[int] = []

    async def post_during_connect(received: Received) -> int:
        if received.route == "$connect":
            url = connection_url(gw, received.connection_id)
            answers.append((await request("POST", url, b"{}"))[0])
        return 200

    backend.responder = post_during_connect
    async with gateway(backend) as gw, client(gw.url) as ws:
        [connection_id] = gw.connections
        status, _, _ = await request("POST", connection_url(gw, connection_id), b"{}")
        assert status == 200
        assert await receive(ws) == "{}"
    # As on AWS: the connection exists for @connections only once $connect has accepted it.
    assert answers == [410]


async def test_a_body_over_32_kb_is_413_at_32_kb_it_is_delivered(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url) as ws:
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        status, headers, body = await request("POST", url, b"x" * (FRAME_LIMIT + 1))
        assert status == 413
        assert error_of(headers, body)[0] == "PayloadTooLargeException"
        status, _, _ = await request("POST", url, b"y" * FRAME_LIMIT)
        assert status == 200
        assert await receive(ws) == "y" * FRAME_LIMIT


async def test_a_body_that_is_not_utf8_is_400(backend: FakeBackend) -> None:
    async with gateway(backend) as gw, client(gw.url):
        [connection_id] = gw.connections
        status, headers, body = await request(
            "POST", connection_url(gw, connection_id), b"\xff\xfe"
        )
    assert status == 400
    assert error_of(headers, body)[0] == "BadRequestException"


def small_receive_buffer(port: int) -> socket.socket:
    """A connected client socket with a small kernel receive buffer, so backpressure comes soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_a_client_that_does_not_read_gets_posts_refused_with_429(
    backend: FakeBackend,
) -> None:
    frame = b"z" * 16 * 1024
    async with (
        gateway(backend, outbound_buffer=2 * FRAME_LIMIT) as gw,
        client(gw.url, sock=small_receive_buffer(gw.port), max_queue=1) as ws,
    ):
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        accepted = 0
        for _ in range(2000):  # bound: far more than loopback buffers can hold
            status, headers, body = await request("POST", url, frame)
            if status != 200:
                break
            accepted += 1
        assert status == 429
        assert error_of(headers, body)[0] == "LimitExceededException"
        assert gw.stats.throttled_posts == 1
        # Once the client reads, everything accepted arrives, and posting works again.
        for _ in range(accepted):
            assert await receive(ws) == frame.decode()
        status, _, _ = await request("POST", url, b"{}")
        assert status == 200
        assert await receive(ws) == "{}"


async def test_a_client_that_does_not_read_costs_about_its_outbound_buffer_then_429(
    backend: FakeBackend,
) -> None:
    """The kernel would buffer megabytes more for such a client (send buffers grow to
    tcp_wmem's maximum); the gateway bounds its socket's so outbound_buffer is what counts."""
    frame = b"z" * 16 * 1024
    async with (
        gateway(backend, outbound_buffer=4 * FRAME_LIMIT) as gw,
        client(gw.url, sock=small_receive_buffer(gw.port), max_queue=1),
    ):
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        accepted = 0
        for _ in range(2000):
            status, _, _ = await request("POST", url, frame)
            if status != 200:
                break
            accepted += 1
        assert status == 429
        # outbound_buffer, plus the socket's send buffer and what the client's kernel holds
        assert accepted * len(frame) <= 4 * FRAME_LIMIT + 1024 * 1024


async def test_deleting_a_client_that_does_not_read_cuts_its_connection(
    backend: FakeBackend,
) -> None:
    frame = b"z" * 16 * 1024
    async with (
        gateway(backend, outbound_buffer=2 * FRAME_LIMIT) as gw,
        client(gw.url, sock=small_receive_buffer(gw.port), max_queue=1) as ws,
    ):
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        for _ in range(2000):  # until its buffers are full: it cannot take the close frame
            status, _, _ = await request("POST", url, frame)
            if status != 200:
                break
        assert status == 429
        status, _, _ = await request("DELETE", url)
        assert status == 204
        # Gone at once for the API, and the socket is cut within the close timeout rather
        # than left open until the client reads: the client learns it when it next sends
        # (it does not read, so it is not told any other way).
        status, _, _ = await request("POST", url, b"{}")
        assert status == 410
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(CLOSE_TIMEOUT + 10):
                while True:
                    await ws.send('{"type":"ping"}')
                    await asyncio.sleep(0.1)  # a client's pace


# -- SigV4 -----------------------------------------------------------------------------------


def signed(
    method: str,
    url: str,
    body: bytes,
    *,
    secret: str = SECRET,
    region: str = "us-east-1",
    payload_hash: str | None = None,
) -> dict[str, str]:
    """Headers for ``url`` signed by botocore's SigV4 signer, as the bridge's SDK would."""
    headers = {"content-type": "application/json"}
    if payload_hash is not None:
        headers["X-Amz-Content-SHA256"] = payload_hash
    aws_request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, secret), "execute-api", region).add_auth(aws_request)
    return dict(aws_request.headers.items())


@pytest.mark.parametrize(
    ("secret", "region", "status"),
    [(SECRET, "us-east-1", 200), ("wrong-secret", "us-east-1", 403), (SECRET, "eu-west-1", 403)],
)
async def test_sigv4_is_required_when_credentials_are_set(
    backend: FakeBackend, secret: str, region: str, status: int
) -> None:
    async with (
        gateway(backend, credentials=(ACCESS_KEY, SECRET), region="us-east-1") as gw,
        client(gw.url) as ws,
    ):
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        headers = signed("POST", url, b'{"signed": true}', secret=secret, region=region)
        answer, response_headers, body = await request("POST", url, b'{"signed": true}', headers)
        assert answer == status
        if status == 200:
            assert await receive(ws) == '{"signed": true}'
        else:
            assert error_of(response_headers, body)[0] == "ForbiddenException"


async def test_sigv4_covers_the_body_and_every_method(backend: FakeBackend) -> None:
    async with (
        gateway(backend, credentials=(ACCESS_KEY, SECRET)) as gw,
        client(gw.url),
    ):
        [connection_id] = gw.connections
        url = connection_url(gw, connection_id)
        status, headers, body = await request("POST", url, b"{}")  # unsigned
        assert (status, error_of(headers, body)[0]) == (403, "ForbiddenException")
        tampered = signed("POST", url, b'{"a": 1}')
        status, _, _ = await request("POST", url, b'{"a": 2}', tampered)
        assert status == 403
        declared_wrong = signed("POST", url, b"{}", payload_hash="0" * 64)
        status, _, _ = await request("POST", url, b"{}", declared_wrong)
        assert status == 403
        unsigned_payload = signed("POST", url, b"{}", payload_hash="UNSIGNED-PAYLOAD")
        status, _, _ = await request("POST", url, b"{}", unsigned_payload)
        assert status == 200
        status, _, _ = await request("GET", url, b"", signed("GET", url, b""))
        assert status == 200
        status, _, _ = await request("DELETE", url, b"", signed("DELETE", url, b""))
        assert status == 204
