"""Several stages on one gateway, as one API Gateway API has: each client protocol of the bridge
has its own stage path, its stage in ``x-stage`` and its own ``@connections``."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import websockets

from novakit.localgw import GatewayConfig

from .conftest import FakeBackend, client, gateway, receive
from .test_management import request

STAGES = ("realtime", "twilio")


def stage_connection_url(management_url: str, stage: str, connection_id: str) -> str:
    return f"{management_url}/{stage}/@connections/{quote(connection_id, safe='')}"


@pytest.mark.parametrize(
    ("path", "stage"),
    [("", "local"), ("local", "local"), ("realtime", "realtime"), ("twilio/", "twilio")],
)
async def test_each_stage_path_puts_its_stage_in_x_stage(
    backend: FakeBackend, path: str, stage: str
) -> None:
    async with gateway(backend, stages=STAGES) as gw, client(gw.url + path) as ws:
        await ws.send('{"type":"ping"}')
        [connect] = await backend.recorder.wait_for("$connect")
        [message] = await backend.recorder.wait_for("$default")
    assert connect.headers["x-stage"] == stage
    assert message.headers["x-stage"] == stage


async def test_a_stage_not_configured_is_forbidden(backend: FakeBackend) -> None:
    async with gateway(backend) as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with client(gw.url + "realtime"):
                pass
    assert refused.value.response.status_code == 403
    assert backend.recorder.received == []


async def test_a_connection_is_reached_through_its_own_stage_only(backend: FakeBackend) -> None:
    async with gateway(backend, stages=STAGES) as gw, client(gw.stage_url("realtime")) as ws:
        [connection_id] = gw.connections
        own = stage_connection_url(gw.management_url, "realtime", connection_id)
        for other in ("local", "twilio"):
            status, headers, _ = await request(
                "POST", stage_connection_url(gw.management_url, other, connection_id), b"{}"
            )
            assert (status, headers["x-amzn-ErrorType"]) == (410, "GoneException")
        status, _, _ = await request("POST", own, b'{"n":1}')
        assert status == 200
        assert await receive(ws) == '{"n":1}'
        template = gw.stage_management_url.replace("{stage}", "realtime")
        assert own.startswith(template + "/@connections/")


async def test_the_model_named_in_the_query_reaches_connect(backend: FakeBackend) -> None:
    url = "realtime?model=gpt-realtime"
    async with gateway(backend, stages=STAGES) as gw, client(gw.url + url):
        [connect] = await backend.recorder.wait_for("$connect")
    assert connect.headers["x-requested-model"] == "gpt-realtime"


@pytest.mark.parametrize(
    ("stage", "headers", "query", "admitted"),
    [
        ("realtime", {"Authorization": "Bearer s3cret"}, "", True),
        ("realtime", {"Authorization": "bearer s3cret"}, "", True),
        ("realtime", {}, "?token=s3cret", True),
        ("realtime", {"Authorization": "Bearer wrong"}, "", False),
        ("realtime", {"Authorization": "Basic s3cret"}, "", False),
        # the query string wins when both are there, as in the stack's authorizer
        ("realtime", {"Authorization": "Bearer s3cret"}, "?token=wrong", False),
        # an empty ?token= is no token: the header is read (as the stack's authorizer does)
        ("realtime", {"Authorization": "Bearer s3cret"}, "?token=", True),
        ("realtime", {}, "?token=", False),
        # the v1 stage takes ?token= only: browsers cannot set headers
        ("local", {"Authorization": "Bearer s3cret"}, "", False),
        ("local", {"Authorization": "Bearer s3cret"}, "?token=", False),
        ("twilio", {"Authorization": "Bearer s3cret"}, "", False),
    ],
)
async def test_bearer_tokens_on_the_stages_that_take_them(
    backend: FakeBackend, stage: str, headers: dict[str, str], query: str, admitted: bool
) -> None:
    async with gateway(backend, stages=STAGES, token="s3cret") as gw:
        url = gw.url + stage + query
        if admitted:
            async with client(url, additional_headers=headers):
                [connect] = await backend.recorder.wait_for("$connect")
            assert connect.headers["x-stage"] == stage
            assert connect.headers["x-principal-id"] == "local-user"
        else:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with client(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            assert backend.recorder.received == []


@pytest.mark.parametrize("stages", [("local",), ("a/b",), ("realtime", "realtime"), ("",)])
def test_stage_names_are_checked(stages: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="stages"):
        GatewayConfig(backends=["http://127.0.0.1:1"], stages=stages)


TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("public_url", "signed_for", "headers", "admitted"),
    [
        # behind a tunnel that terminates TLS: Twilio signed wss://, the tunnel says https
        (None, "wss://{host}/twilio", {"X-Forwarded-Proto": "https"}, True),
        (None, "wss://{host}/twilio", {}, False),
        (None, "ws://{host}/twilio", {}, True),
        ("wss://abc.ngrok.app", "wss://abc.ngrok.app/twilio", {}, True),
        # with the public address set, the handshake's own Host no longer counts
        ("wss://abc.ngrok.app", "ws://{host}/twilio", {}, False),
    ],
)
async def test_the_phone_stage_checks_the_url_twilio_signed(
    backend: FakeBackend,
    public_url: str | None,
    signed_for: str,
    headers: dict[str, str],
    admitted: bool,
) -> None:
    from novakit.call import twilio_signature

    options = {"twilio_auth_token": TWILIO_TOKEN, "twilio_public_url": public_url}
    async with gateway(backend, stages=STAGES, **options) as gw:
        host = gw.url.split("://", 1)[1].split("/", 1)[0]
        signature = twilio_signature(TWILIO_TOKEN, signed_for.format(host=host))
        signed = {**headers, "X-Twilio-Signature": signature}
        url = gw.url + "twilio"
        if admitted:
            async with client(url, additional_headers=signed):
                [connect] = await backend.recorder.wait_for("$connect")
            assert connect.headers["x-stage"] == "twilio"
        else:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with client(url, additional_headers=signed):
                    pass
            assert refused.value.response.status_code == 403
            assert backend.recorder.received == []
