"""Hostile-input gaps: secret rotation and unreadable tokens at the authorizer, hostile nesting
and unbounded echoes in tools, half-open handshakes at the local gateway, the dev banner."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import types
from pathlib import Path
from typing import Any

import pytest
import websockets

from novakit.dev import DevOptions, RunningStack, _banner
from novakit.localgw import GatewayConfig, LocalGateway
from novakit.tools.contract import result_from_payload
from novakit.tools.powertools import MAX_NESTING, voice_tool
from tests.infra.test_ws_authorizer import authorizer, effect, event, jwt  # noqa: F401
from tests.localgw.conftest import FakeBackend

REPO = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:1:secret:x"

# -- the authorizer --------------------------------------------------------------------------


@pytest.fixture
def secret_mode(authorizer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AUTH_MODE", "secret")
    monkeypatch.setenv("SECRET_ARN", SECRET_ARN)
    now = [1000.0]
    authorizer.clock = lambda: now[0]
    authorizer.now = now
    return authorizer


def allowed(module: Any, token: str) -> bool:
    return effect(module.handler(event(token))) == "Allow"


def test_a_rotated_secret_is_accepted_at_once_and_the_old_one_refused(secret_mode) -> None:
    fake = secret_mode.fake
    assert allowed(secret_mode, "s3cret-token")
    secret_mode.now[0] += 10  # the cache is warm, well inside its lifetime
    fake.secret = "rotated-token"
    assert allowed(secret_mode, "rotated-token")  # a miss reads the secret again
    assert fake.secret_reads == 2
    assert not allowed(secret_mode, "s3cret-token")  # that read dropped the old value


def test_a_flood_of_bad_tokens_reads_the_secret_once_per_interval(secret_mode) -> None:
    fake = secret_mode.fake
    assert allowed(secret_mode, "s3cret-token")
    secret_mode.now[0] += secret_mode.SECRET_REFRESH_SECONDS
    for n in range(1000):
        assert not allowed(secret_mode, f"guess-{n}")
        secret_mode.now[0] += 0.001
    assert fake.secret_reads == 2  # the first guess refreshed; the others waited their turn
    secret_mode.now[0] += secret_mode.SECRET_REFRESH_SECONDS
    assert not allowed(secret_mode, "one-more-guess")
    assert fake.secret_reads == 3


def test_the_old_secret_expires_with_the_cache(secret_mode) -> None:
    fake = secret_mode.fake
    assert allowed(secret_mode, "s3cret-token")
    fake.secret = "rotated-token"
    secret_mode.now[0] += secret_mode.SECRET_CACHE_SECONDS - 1
    assert allowed(secret_mode, "s3cret-token")  # within the cache's lifetime, as documented
    secret_mode.now[0] += 2
    assert not allowed(secret_mode, "s3cret-token")


def test_the_pending_secret_of_a_rotation_is_accepted(secret_mode) -> None:
    secret_mode.fake.pending = "next-token"
    assert allowed(secret_mode, "next-token")
    assert allowed(secret_mode, "s3cret-token")


def test_secrets_manager_failing_is_a_deny_not_an_error(secret_mode, capsys) -> None:
    secret_mode.fake.unavailable = True
    answer = secret_mode.handler(event("s3cret-token"))
    assert effect(answer) == "Deny"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"level": "ERROR", "message": "authorizer failed", "error": "RuntimeError"} in logged
    assert "s3cret-token" not in json.dumps(logged)


@pytest.fixture
def cognito_mode(authorizer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AUTH_MODE", "cognito")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("USER_POOL_ID", "us-east-1_pool")
    monkeypatch.setenv("CLIENT_ID", "client123")
    return authorizer


def _segment(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def test_a_deeply_nested_token_is_denied(cognito_mode) -> None:
    nested = b"[" * 1500 + b"]" * 1500  # about 2 KB of token once encoded
    token = f"{_segment(b'{}')}.{_segment(nested)}.sig"
    assert len(token) < cognito_mode.MAX_TOKEN_CHARS
    assert effect(cognito_mode.handler(event(token))) == "Deny"


def test_an_oversized_or_garbled_token_is_denied_unread(cognito_mode, secret_mode) -> None:
    huge = jwt({"sub": "x" * 20_000})
    for token in (huge, "a.%%%.c", f"a.{_segment(b'\xff\xfe')}.c", "x" * 100_000):
        assert effect(cognito_mode.handler(event(token))) == "Deny"


def test_an_oversized_secret_token_costs_no_secret_read(secret_mode) -> None:
    assert not allowed(secret_mode, "s" * (secret_mode.MAX_TOKEN_CHARS + 1))
    assert secret_mode.fake.secret_reads == 0


# -- tools: hostile nesting and bounded echoes --------------------------------------------------


@voice_tool(schema={"type": "object"})
def echo_tool(params: dict[str, Any], call: Any) -> dict[str, Any]:
    return {"echo": json.dumps(params)}


def agent_event(name: str, kind: str, value: str) -> dict[str, Any]:
    return {
        "messageVersion": "1.0",
        "actionGroup": "tools",
        "function": "echo",
        "sessionId": "s-1",
        "parameters": [{"name": name, "type": kind, "value": value}],
    }


def test_a_deeply_nested_agents_array_is_an_error_naming_the_parameter() -> None:
    answer = echo_tool(agent_event("items", "array", "[" * 100_000 + "]" * 100_000), None)
    body = answer["response"]["functionResponse"]["responseBody"]["TEXT"]["body"]
    assert "'items'" in body and "nested" in body
    # Agents get the error in their own shape; Lambda reports no function error.
    assert answer["messageVersion"] == "1.0"


def test_nesting_just_within_the_limit_is_served() -> None:
    value = "[" * MAX_NESTING + "]" * MAX_NESTING
    answer = echo_tool(agent_event("items", "array", value), None)
    assert "responseState" not in answer["response"]["functionResponse"]
    deeper = "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    refused = echo_tool(agent_event("items", "array", deeper), None)
    assert refused["response"]["functionResponse"]["responseState"] == "FAILURE"


def test_a_deeply_nested_novakit_input_is_an_error_naming_the_parameter() -> None:
    value: Any = "leaf"
    for _ in range(5000):
        value = {"k": [value]}
    answer = echo_tool(
        {"version": "1", "tool": "echo", "toolUseId": "t-1", "input": {"filter": value}}, None
    )
    assert set(answer) == {"error"}
    assert "'filter'" in answer["error"] and f"{MAX_NESTING} levels" in answer["error"]


def test_a_deeply_nested_tool_answer_is_an_error_result_at_the_bridge() -> None:
    result = result_from_payload("call-1", b'{"result":' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    assert result.is_error and result.text() == "the tool's answer was nested too deeply"
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert result_from_payload("call-2", {"result": deep}).is_error


@pytest.fixture(scope="module")
def get_time():
    from novakit.bridge.tools import load_handler

    return load_handler(REPO / "tools" / "get_time" / "handler.py")


def time_event(zone: str) -> dict[str, Any]:
    return {"version": "1", "tool": "get_time", "toolUseId": "t-1", "input": {"timezone": zone}}


def test_get_time_refuses_a_name_longer_than_any_zone_without_echoing_it(get_time) -> None:
    answer = get_time(time_event("Europe/" + "A" * 10_000), None)
    assert "at most 32 characters" in answer["error"]
    assert "AAAA" not in answer["error"] and len(answer["error"]) < 200
    # the longest IANA name is still served
    served = get_time(time_event("America/Argentina/ComodRivadavia"), None)
    assert served["result"]["timezone"] == "America/Argentina/ComodRivadavia"


def test_get_time_echoes_an_unknown_zone_only_within_the_bound(get_time) -> None:
    answer = get_time(time_event("Mars/Olympus_Mons"), None)
    assert "'Mars/Olympus_Mons'" in answer["error"]
    assert len(get_time(time_event("X" * 32), None)["error"]) < 120


# -- the local gateway: half-open handshakes --------------------------------------------------


async def _closed_within(reader: asyncio.StreamReader, bound: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(bound):
        while await reader.read(4096):
            pass  # whatever the gateway says before it closes (nothing, or a 408)
    return time.monotonic() - started


async def test_the_gateway_closes_a_half_sent_handshake() -> None:
    config = GatewayConfig(backends=["http://127.0.0.1:9"], handshake_timeout=0.5)
    async with LocalGateway(config) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            await writer.drain()
            took = await _closed_within(reader, 10.0)
        finally:
            writer.close()
        assert 0.4 <= took < 10.0
        assert gateway.stats.handshake_timeouts == 1


async def test_the_gateway_closes_a_connection_that_sends_nothing() -> None:
    config = GatewayConfig(backends=["http://127.0.0.1:9"], handshake_timeout=0.5)
    async with LocalGateway(config) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            await _closed_within(reader, 10.0)
        finally:
            writer.close()


async def test_a_completed_handshake_outlives_the_handshake_timeout() -> None:
    async with (
        FakeBackend() as backend,
        LocalGateway(GatewayConfig(backends=[backend.url], handshake_timeout=0.3)) as gateway,
    ):
        async with websockets.connect(gateway.url, open_timeout=10) as ws:
            await asyncio.sleep(0.6)  # past the handshake deadline: time must pass here
            pong = await ws.ping()
            async with asyncio.timeout(10):
                await pong
        assert gateway.stats.handshake_timeouts == 0


def test_the_handshake_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="handshake_timeout"):
        GatewayConfig(backends=["http://127.0.0.1:9"], handshake_timeout=0)


# -- the dev banner --------------------------------------------------------------------------


def test_the_dev_banner_masks_the_token() -> None:
    token = "Zq7-very-secret-dev-token"
    out = io.StringIO()
    running = RunningStack("ws://127.0.0.1:8080/", "http://127.0.0.1:9000", None)
    bridge = types.SimpleNamespace(
        settings=types.SimpleNamespace(region="eu-west-1"),
        tools=types.SimpleNamespace(definitions=[]),
    )
    _banner(running, bridge, DevOptions(token=token), None, out)
    text = out.getvalue()
    assert token not in text and "very-secret" not in text
    assert "ws://127.0.0.1:8080/?token=Zq7-…" in text
    assert "--token" in text  # where the full one is


def test_a_short_dev_token_is_not_shown_at_all() -> None:
    out = io.StringIO()
    running = RunningStack("ws://127.0.0.1:8080/", "http://127.0.0.1:9000", None)
    bridge = types.SimpleNamespace(
        settings=types.SimpleNamespace(region="eu-west-1"),
        tools=types.SimpleNamespace(definitions=[]),
    )
    _banner(running, bridge, DevOptions(token="abc123"), None, out)
    assert "?token=…" in out.getvalue() and "abc" not in out.getvalue()
