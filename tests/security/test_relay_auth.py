"""Only peers relay: a relayed request is honoured only when a task holding the stack's relay key
signed it just now, over what the receiver acts on; and a hand-over is honoured only when the
session directory says the named task handed the session over, never because a header says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from novakit.bridge.auth import (
    ADOPT_HEADER,
    GATEWAY_SECRET_HEADER,
    RELAY_SIGNATURE_HEADER,
    RELAY_TIMESTAMP_HEADER,
    RelayAuth,
    relay_key,
)
from novakit.bridge.cluster import RELAYED_HEADER

from ..cluster.conftest import cluster
from ..cluster.test_cluster import TURNS, converse, converse_more
from ..gateway_auth import GATEWAY_SECRET, gateway_headers, relay_auth, signed
from ..stack.conftest import connect

NOW = 1_800_000_000.0
OTHER_SECRET = "another-stacks-gateway-secret-0123456789ab"
PATH = "/ws/message"
BODY = json.dumps({"type": "text", "text": "hello"}).encode()


def at(moment: float) -> RelayAuth:
    return relay_auth(clock=lambda: moment)


def relayed(connection_id: str = "conn=", **extra: str) -> dict[str, str]:
    return gateway_headers(
        connection_id, **{RELAYED_HEADER: "1", "x-route-key": "$default", **extra}
    )


def test_a_signed_relay_verifies_and_any_change_to_what_it_covers_breaks_it() -> None:
    headers = {**relayed(**{ADOPT_HEADER: "http://10.0.1.5:8080"})}
    sent = {**headers, **at(NOW).sign("POST", PATH, headers, BODY)}
    assert at(NOW).verify("POST", PATH, sent, BODY) is None
    assert at(NOW).verify("POST", PATH, sent, b'{"type":"text","text":"swapped"}') == (
        "bad relay signature"
    )
    for name, value in [
        ("x-connection-id", "victim="),
        (ADOPT_HEADER, "http://10.0.9.9:8080"),
        ("x-principal-id", "admin"),
        ("x-stage", "other"),
    ]:
        assert at(NOW).verify("POST", PATH, {**sent, name: value}, BODY) == "bad relay signature"
    assert at(NOW).verify("POST", "/ws/disconnect", sent, BODY) == "bad relay signature"
    assert at(NOW).verify("PUT", PATH, sent, BODY) == "bad relay signature"
    without_adopt = {k: v for k, v in sent.items() if k != ADOPT_HEADER}
    assert at(NOW).verify("POST", PATH, without_adopt, BODY) == "bad relay signature"


def test_unsigned_malformed_and_foreign_relays_are_refused() -> None:
    headers = relayed()
    assert at(NOW).verify("POST", PATH, headers, BODY) == "unsigned relay"
    sent = {**headers, **at(NOW).sign("POST", PATH, headers, BODY)}
    no_timestamp = {k: v for k, v in sent.items() if k != RELAY_TIMESTAMP_HEADER}
    assert at(NOW).verify("POST", PATH, no_timestamp, BODY) == "unsigned relay"
    for timestamp in ("-5", "1.5e9", "99999999999999999", "now"):
        forged = {**sent, RELAY_TIMESTAMP_HEADER: timestamp}
        assert at(NOW).verify("POST", PATH, forged, BODY) == "malformed relay timestamp"
    for signature in ("", "v1=", "v1=" + "0" * 64, "v2=" + sent[RELAY_SIGNATURE_HEADER][3:]):
        forged = {**sent, RELAY_SIGNATURE_HEADER: signature}
        assert at(NOW).verify("POST", PATH, forged, BODY) in (
            "unsigned relay",
            "bad relay signature",
        )
    # another stack's key, and the gateway secret used as the key (the header value is not it)
    foreign = RelayAuth.from_secrets((OTHER_SECRET,), clock=lambda: NOW)
    forged = {**headers, **foreign.sign("POST", PATH, headers, BODY)}
    assert at(NOW).verify("POST", PATH, forged, BODY) == "bad relay signature"
    raw = RelayAuth((GATEWAY_SECRET.encode(),), clock=lambda: NOW)
    forged = {**headers, **raw.sign("POST", PATH, headers, BODY)}
    assert at(NOW).verify("POST", PATH, forged, BODY) == "bad relay signature"
    assert relay_key(GATEWAY_SECRET) != GATEWAY_SECRET.encode()


def test_stale_and_future_timestamps_are_refused() -> None:
    headers = relayed()
    sent = {**headers, **at(NOW).sign("POST", PATH, headers, BODY)}
    assert at(NOW + 29).verify("POST", PATH, sent, BODY) is None
    assert at(NOW - 29).verify("POST", PATH, sent, BODY) is None
    assert at(NOW + 31).verify("POST", PATH, sent, BODY) == "stale relay timestamp"
    assert at(NOW - 31).verify("POST", PATH, sent, BODY) == "relay timestamp in the future"
    strict = RelayAuth.from_secrets((GATEWAY_SECRET,), window=5, clock=lambda: NOW + 6)
    assert strict.verify("POST", PATH, sent, BODY) == "stale relay timestamp"


def test_tasks_half_way_through_a_rotation_verify_each_other() -> None:
    old, new = GATEWAY_SECRET, OTHER_SECRET
    before = RelayAuth.from_secrets((old,), clock=lambda: NOW)
    during = RelayAuth.from_secrets((new, old), clock=lambda: NOW)
    after = RelayAuth.from_secrets((new,), clock=lambda: NOW)
    headers = relayed()
    for signer, verifier in [(during, before), (before, during), (during, after), (after, during)]:
        sent = {**headers, **signer.sign("POST", PATH, headers, BODY)}
        assert verifier.verify("POST", PATH, sent, BODY) is None
    sent = {**headers, **before.sign("POST", PATH, headers, BODY)}
    assert after.verify("POST", PATH, sent, BODY) == "bad relay signature"  # retired


async def post(url: str, headers: dict[str, str], body: bytes, path: str = PATH) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + path, data=body, headers=headers) as response,
    ):
        await response.read()
        return response.status


async def test_the_bridge_refuses_relays_it_cannot_verify(bridge_url: str) -> None:
    headers = relayed("unknown=")
    good = signed(PATH, headers, BODY)
    stale = signed(PATH, headers, BODY, clock=lambda: NOW)
    future = signed(PATH, headers, BODY, clock=lambda: 4_000_000_000.0)
    foreign = signed(PATH, headers, BODY, secret=OTHER_SECRET)
    forgeries = [
        headers,  # not signed
        {**good, RELAY_SIGNATURE_HEADER: "v1=" + "f" * 64},
        stale,
        future,
        foreign,
        {**good, "x-connection-id": "victim="},
        {**good, ADOPT_HEADER: "http://10.0.0.1:8080"},
        {GATEWAY_SECRET_HEADER: GATEWAY_SECRET, "x-connection-id": "c=", ADOPT_HEADER: "x"},
    ]
    for forged in forgeries:
        assert await post(bridge_url, forged, BODY) == 403
    assert await post(bridge_url, good, b'{"type":"text","text":"swapped"}') == 403
    disconnect = relayed("unknown=", **{"x-route-key": "$disconnect"})
    assert await post(bridge_url, disconnect, b"", "/ws/disconnect") == 403
    # A relay the bridge can verify is acted on: this task does not hold the session (409).
    assert await post(bridge_url, good, BODY) == 409
    assert (
        await post(bridge_url, signed("/ws/disconnect", disconnect, b""), b"", "/ws/disconnect")
        == 409
    )


async def test_a_signed_adopt_without_a_hand_over_marker_leaves_the_session_with_its_owner(
    tmp_path: Path,
) -> None:
    # A peer's key signs the request, and it names the live owner as the task handing the session
    # over; but the owner never released it, so the directory has no hand-over marker.
    async with cluster(tmp_path, size=2) as running:
        running.emulator.script = TURNS
        async with connect(running.url) as client:
            await converse(client, 1)
            connection_id = client.frames[0]["connection_id"]
            owner = (await running.directory.get(connection_id)).owner
            other = next(b for b in running.bridges if b.url != owner)
            headers = relayed(connection_id, **{ADOPT_HEADER: owner})
            frame = json.dumps({"type": "ping", "id": "forged-adopt"}).encode()
            assert await post(other.url, signed(PATH, headers, frame), frame) == 200
            record = await running.directory.get(connection_id)
            assert (record.owner, record.handed_over_by) == (owner, "")
            # the frame went to the owner, which still holds the conversation
            pong = await client.wait_for(lambda f: f.get("type") == "pong", within=10)
            assert pong["id"] == "forged-adopt"
            await converse_more(client)
            assert [f["state"] for f in client.of_type("session")] == ["ready"]
            assert (await running.directory.get(connection_id)).owner == owner
        streams = running.emulator.records
        assert len(streams) == 1, "a second task opened a model stream for the session"
