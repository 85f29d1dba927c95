"""The @connections client: signed posts a real gateway accepts, retries, Gone, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from aiohttp import web
from botocore.credentials import Credentials

from novakit.bridge.connections import (
    ConnectionGone,
    ConnectionsClient,
    PostError,
    SigV4Signer,
    Unsigned,
)
from novakit.localgw import GatewayConfig, LocalGateway

KEYS = ("AKIDBRIDGETEST", "bridge-secret")


class Accept:
    """A backend that accepts every connection (the gateway needs one to open sockets)."""

    def __init__(self) -> None:
        self.url = ""
        self.ids: list[str] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/ws/connect":
            self.ids.append(request.headers["x-connection-id"])
        return web.Response()

    async def __aenter__(self) -> Accept:
        app = web.Application()
        app.router.add_post("/ws/{route}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def signed_gateway() -> AsyncIterator[tuple[LocalGateway, Accept]]:
    async with Accept() as backend:
        config = GatewayConfig(backends=[backend.url], credentials=KEYS)
        async with LocalGateway(config) as gateway:
            yield gateway, backend


async def test_signed_posts_reach_the_client_in_order(
    signed_gateway: tuple[LocalGateway, Accept],
) -> None:
    gateway, backend = signed_gateway
    signer = SigV4Signer("us-east-1", Credentials(*KEYS))
    async with (
        websockets.connect(gateway.url, open_timeout=5) as ws,
        ConnectionsClient(gateway.management_url, signer) as client,
    ):
        (connection_id,) = backend.ids
        assert connection_id.endswith("=")  # the id needs URL encoding: SigV4 must agree
        for n in range(5):
            latency = await client.post(connection_id, json.dumps({"n": n}).encode())
            assert latency >= 0
        got = [json.loads(await asyncio.wait_for(ws.recv(), 5))["n"] for _ in range(5)]
        assert got == [0, 1, 2, 3, 4]
        details = await client.get(connection_id)
        assert set(details) >= {"ConnectedAt", "Identity", "LastActiveAt"}
        await client.delete(connection_id)
        with pytest.raises(ConnectionGone):
            await client.post(connection_id, b"{}")
        assert (client.stats.posts, client.stats.gone) == (5, 1)


async def test_a_wrong_key_is_forbidden_and_not_retried(
    signed_gateway: tuple[LocalGateway, Accept],
) -> None:
    gateway, backend = signed_gateway
    signer = SigV4Signer("us-east-1", Credentials(KEYS[0], "not-the-secret"))
    async with (
        websockets.connect(gateway.url, open_timeout=5),
        ConnectionsClient(gateway.management_url, signer) as client,
    ):
        with pytest.raises(PostError) as failure:
            await client.post(backend.ids[0], b"{}")
        assert (failure.value.status, failure.value.error_type) == (403, "ForbiddenException")
        assert client.stats.retries == 0


class Flaky:
    """A management API that answers with a scripted list of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        kinds = {
            410: "GoneException",
            413: "PayloadTooLargeException",
            429: "LimitExceededException",
        }
        headers = {"x-amzn-ErrorType": kinds[status]} if status in kinds else {}
        return web.json_response({"message": "scripted"}, status=status, headers=headers)


async def serve(handler: Flaky) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/@connections/{id}", handler.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize(
    ("statuses", "outcome", "calls"),
    [
        ([429, 503, 200], "sent", 3),  # throttled, then unavailable, then through
        ([429, 429, 429, 429, 429], PostError, 4),  # gives up after the attempts
        ([413], PostError, 1),  # a frame too large is not retried
        ([410], ConnectionGone, 1),
    ],
)
async def test_retries_throttling_and_server_errors_only(
    statuses: list[int], outcome: object, calls: int
) -> None:
    flaky = Flaky(statuses)
    runner, url = await serve(flaky)
    try:
        async with ConnectionsClient(url, Unsigned(), attempts=4, backoff_base=0.001) as client:
            if outcome == "sent":
                await client.post("abc=", b"{}")
            else:
                with pytest.raises(outcome):  # type: ignore[call-overload]
                    await client.post("abc=", b"{}")
        assert flaky.calls == calls
    finally:
        await runner.cleanup()


async def test_an_unreachable_gateway_fails_within_the_attempts() -> None:
    async with ConnectionsClient(
        "http://127.0.0.1:9", Unsigned(), attempts=2, backoff_base=0.001, timeout=2
    ) as client:
        with pytest.raises(PostError) as failure:
            await client.post("abc=", b"{}")
    assert failure.value.status == 0
    assert client.stats.retries == 1


# -- the cached-key signer agrees with botocore's SigV4Auth, byte for byte -------------------


def _frozen(moment: float) -> Any:
    """botocore's clock stopped at ``moment`` (epoch seconds)."""
    import datetime
    from unittest import mock

    when = datetime.datetime.fromtimestamp(moment, datetime.UTC).replace(tzinfo=None)
    return mock.patch("botocore.auth.get_current_datetime", return_value=when)


def _botocore_headers(
    credentials: Credentials, method: str, url: str, body: bytes, *, moment: float, region: str
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body)
    with _frozen(moment):
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize(
    "url",
    [
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod/@connections/Ab1CdE2fGh3=",
        "https://ABC123.execute-api.eu-west-1.amazonaws.com:443/dev/@connections/x%3D%3D",
        "http://127.0.0.1:8080/@connections/L0c4lId%2B%2F%3D",
        "http://[::1]:8080/@connections/v6%3D",
        "http://user@LOCALHOST:80/@connections/c%3D",
        "https://example.com/a/./b/../stage//@connections/id~with-safe_chars.",
        "https://abc.execute-api.us-east-1.amazonaws.com/prod/@connections/id?since=1&a=b",
    ],
)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE  token/with+chars=="])
@pytest.mark.parametrize(("method", "body"), [("POST", b'{"type":"audio"}'), ("GET", b"")])
def test_signer_matches_botocore(url: str, token: str | None, method: str, body: bytes) -> None:
    credentials = Credentials(*KEYS, token=token)
    moment = 1_790_000_000.25
    signer = SigV4Signer("eu-west-1", credentials, clock=lambda: moment)
    for _ in range(2):  # the second time from the caches
        with _frozen(moment):  # a URL with a query is signed by botocore itself
            headers = signer.sign(method, url, body)
        assert headers == _botocore_headers(
            credentials, method, url, body, moment=moment, region="eu-west-1"
        )


def test_signer_derives_a_new_key_each_day_and_for_new_credentials() -> None:
    url = "https://abc.execute-api.us-east-1.amazonaws.com/prod/@connections/id%3D"
    clock = [1_790_035_199.0]  # one second before midnight UTC
    credentials = Credentials(*KEYS)
    signer = SigV4Signer("us-east-1", credentials, clock=lambda: clock[0])
    before = signer.sign("POST", url, b"x")
    assert before == _botocore_headers(
        credentials, "POST", url, b"x", moment=clock[0], region="us-east-1"
    )
    clock[0] += 2  # the next day
    after = signer.sign("POST", url, b"x")
    assert after == _botocore_headers(
        credentials, "POST", url, b"x", moment=clock[0], region="us-east-1"
    )
    assert before["X-Amz-Date"][:8] != after["X-Amz-Date"][:8]
    # rotated credentials (botocore refreshes them in place): the key follows the secret
    rotated = Credentials(KEYS[0], "rotated-secret")
    signer._credentials = rotated
    assert signer.sign("POST", url, b"x") == _botocore_headers(
        rotated, "POST", url, b"x", moment=clock[0], region="us-east-1"
    )
