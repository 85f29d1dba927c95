"""Only API Gateway reaches the bridge: an integration request without the stack's secret is
refused (403) before anything else about it is read, and changes nothing.

End to end where the attack is (a WebSocket client → the local gateway → ``novakit bridge`` as
the container runs it → the Bedrock emulator), with an attacker who reaches the bridge's port
directly and knows the victim's connection id (it is in every ``session`` frame and in logs).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from novakit.bridge import auth
from novakit.bridge.app import Bridge
from novakit.bridge.auth import GATEWAY_SECRET_HEADER, RelayAuth
from novakit.bridge.connections import Unsigned
from novakit.bridge.settings import BridgeSettings
from novakit.emulator import Script, ScriptTurn

from ..gateway_auth import GATEWAY_SECRET, gateway_headers
from ..stack.conftest import Client, Stack, connect, kind, local_stack

WRONG_SECRET = "not-the-gateway-secret-0123456789abcdefABC"
# What an attacker in the VPC sends: no secret, a wrong one, the right one's prefix.
FORGERIES: list[dict[str, str]] = [
    {},
    {GATEWAY_SECRET_HEADER: WRONG_SECRET},
    {GATEWAY_SECRET_HEADER: GATEWAY_SECRET[:-1]},
    {GATEWAY_SECRET_HEADER: ""},
]
TURNS = Script(tuple(ScriptTurn(reply=f"Answer {n}.") for n in range(1, 6)))


async def post(base: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + path, data=body, headers=headers) as response,
    ):
        await response.read()
        return response.status


async def health(stack: Stack) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.bridge_url + "/health") as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


def typed(stack: Stack) -> list[str]:
    """Every text the model was given, over every stream, in order."""
    return [
        e.body["content"]
        for record in stack.emulator.records
        for e in record.input_events
        if e.name == "textInput"
    ]


async def say(client: Client, text: str) -> None:
    before = len(client.of_type("turn_end"))
    await client.send({"type": "text", "text": text})
    await client.wait_for(lambda f: len(client.of_type("turn_end")) > before, within=30)


async def started(client: Client) -> str:
    """Start the client's session; its connection id (as the ``session`` frame tells it)."""
    await client.send({"type": "start"})
    ready = await client.wait_for(kind("session"))
    assert ready["state"] == "ready"
    return str(ready["connection_id"])


def text_frame(text: str) -> bytes:
    return json.dumps({"type": "text", "text": text}).encode()


async def test_a_forged_connect_is_refused_and_opens_no_session_and_no_stream(
    tmp_path: Path,
) -> None:
    async with local_stack(tmp_path) as stack:
        stack.emulator.script = TURNS
        for n, forged in enumerate(FORGERIES):
            headers = {**forged, "x-connection-id": f"Forged{n}=", "x-principal-id": "admin"}
            assert await post(stack.bridge_url, "/ws/connect", headers) == 403
            assert await post(stack.bridge_url, "/ws/message", headers, text_frame("hi")) == 403
        assert (await health(stack))["sessions"] == 0
        # A client through the gateway: one session, one stream, and only its own words.
        async with connect(stack) as client:
            await started(client)
            assert (await health(stack))["sessions"] == 1
            await say(client, "hello from the real client")
        assert len(stack.emulator.records) == 1
        assert "hi" not in typed(stack)


async def test_a_forged_frame_cannot_reach_a_live_session_by_its_connection_id(
    tmp_path: Path,
) -> None:
    async with local_stack(tmp_path) as stack, connect(stack) as victim:
        stack.emulator.script = TURNS
        connection_id = await started(victim)
        await say(victim, "first question")
        for forged in FORGERIES:
            headers = {**forged, "x-connection-id": connection_id, "content-type": "text/plain"}
            status = await post(stack.bridge_url, "/ws/message", headers, text_frame("INJECTED"))
            assert status == 403
        await say(victim, "second question")
        said = typed(stack)
        assert "INJECTED" not in said
        assert said.index("first question") < said.index("second question")
        assert not [f for f in victim.frames if "INJECTED" in json.dumps(f)]
        assert len(victim.of_type("turn_end")) == 2
        # The same request with the gateway's secret does reach the session: the refusals
        # above were the secret's doing, not a wrong connection id.
        genuine = gateway_headers(connection_id)
        assert (
            await post(stack.bridge_url, "/ws/message", genuine, text_frame("VIA GATEWAY")) == 200
        )
        await victim.wait_for(lambda f: len(victim.of_type("turn_end")) == 3, within=30)
        assert "VIA GATEWAY" in typed(stack)


async def test_a_forged_sequence_jump_does_not_mute_the_microphone(tmp_path: Path) -> None:
    async with local_stack(tmp_path) as stack, connect(stack) as victim:
        stack.emulator.script = Script(
            (
                ScriptTurn(transcript="one", reply="First."),
                ScriptTurn(transcript="two", reply="Second."),
            )
        )
        connection_id = await started(victim)
        await victim.speak(0.8, pause=0.6)
        await victim.wait_for(kind("turn_end"), within=30)
        jump = json.dumps({"type": "audio", "seq": 2**53, "data": "AAAA"}).encode()
        for forged in FORGERIES:
            headers = {**forged, "x-connection-id": connection_id}
            assert await post(stack.bridge_url, "/ws/message", headers, jump) == 403
        # the victim's next words (seq numbers continuing its own) are still heard
        await victim.speak(0.8, pause=0.6)
        await victim.wait_for(lambda f: len(victim.of_type("turn_end")) == 2, within=30)
        assert [f["text"] for f in victim.of_type("transcript")] == ["one", "two"]
        assert not victim.of_type("error")


async def test_a_forged_disconnect_leaves_the_session_alive(tmp_path: Path) -> None:
    async with local_stack(tmp_path) as stack, connect(stack) as victim:
        stack.emulator.script = TURNS
        connection_id = await started(victim)
        for forged in FORGERIES:
            headers = {**forged, "x-connection-id": connection_id, "x-route-key": "$disconnect"}
            assert await post(stack.bridge_url, "/ws/disconnect", headers) == 403
        assert (await health(stack))["sessions"] == 1
        await say(victim, "are you still there")
        assert [f["state"] for f in victim.of_type("session")] == ["ready"]
        assert not victim.closed.is_set()


async def test_forged_connects_cannot_fill_the_session_slots(tmp_path: Path) -> None:
    async with local_stack(tmp_path, NOVAKIT_MAX_SESSIONS="2") as stack:
        stack.emulator.script = TURNS

        async def forge(n: int) -> int:
            forged = FORGERIES[n % len(FORGERIES)]
            return await post(
                stack.bridge_url, "/ws/connect", {**forged, "x-connection-id": f"F{n}="}
            )

        statuses = await asyncio.gather(*(forge(n) for n in range(200)))
        assert set(statuses) == {403}
        assert (await health(stack))["sessions"] == 0
        async with connect(stack) as first, connect(stack) as second:
            for client in (first, second):
                await started(client)
            await say(first, "I got in")


# -- unit level: the middleware on an aiohttp server, no model behind it ------------------------


async def test_everything_but_the_health_check_needs_the_secret(bridge_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(bridge_url + "/health") as response:
            assert response.status == 200  # the NLB's and ECS's checks carry no secret
        async with http.head(bridge_url + "/health") as response:
            assert response.status == 200
        for method, path in [
            ("POST", "/ws/connect"),
            ("POST", "/ws/message"),
            ("POST", "/ws/disconnect"),
            ("GET", "/ws/message"),
            ("POST", "/health"),
            ("GET", "/anything-else"),
        ]:
            for forged in FORGERIES:
                headers = {**forged, "x-connection-id": "c="}
                async with http.request(method, bridge_url + path, headers=headers) as response:
                    assert response.status == 403, (method, path, forged)
        # with the secret, an unknown path is just unknown
        async with http.get(bridge_url + "/anything-else", headers=gateway_headers("c=")) as r:
            assert r.status == 404


async def test_the_secret_is_compared_in_constant_time_before_anything_else(
    bridge_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    def relay_check(*_args: object) -> str | None:
        raise AssertionError("a request without the gateway's secret got as far as its relay")

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    monkeypatch.setattr(RelayAuth, "verify", relay_check)
    headers = {
        GATEWAY_SECRET_HEADER: WRONG_SECRET,
        "x-connection-id": "c=",
        "x-novakit-relayed": "1",
        "x-novakit-adopt": "http://10.0.0.1:8080",
    }
    assert await post(bridge_url, "/ws/message", headers, b"{}") == 403
    assert compared == [(WRONG_SECRET.encode(), GATEWAY_SECRET.encode())]


def test_a_bridge_without_a_secret_does_not_start_unless_told_it_is_insecure() -> None:
    with pytest.raises(ValueError, match="NOVAKIT_INSECURE_NO_GATEWAY_SECRET"):
        Bridge(BridgeSettings(connections_url="http://127.0.0.1:9"), signer=Unsigned())
    insecure = Bridge(
        BridgeSettings(connections_url="http://127.0.0.1:9", insecure_no_gateway_secret=True),
        signer=Unsigned(),
    )
    assert insecure.gateway_auth.accepts(None)
    # and it cannot sign relays: peers would refuse them
    assert insecure.relay_auth.sign("POST", "/ws/message", {}, b"") == {}
