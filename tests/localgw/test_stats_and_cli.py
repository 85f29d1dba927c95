"""Metering through a live gateway, and the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from novakit.localgw import GatewayConfig
from novakit.localgw.limits import FRAME_LIMIT

from .conftest import WAIT, FakeBackend, client, gateway, receive
from .test_management import connection_url, request

INTEGRATION_SECRET = "cli-gateway-secret-0123456789abcdefABCDEF"


async def test_stats_count_messages_bytes_and_units_per_connection(backend: FakeBackend) -> None:
    async with gateway(backend) as gw:
        async with client(gw.url) as ws:
            [connection_id] = gw.connections
            await ws.send("x" * 100)
            await ws.send("é" * (FRAME_LIMIT // 2))  # 32768 bytes: still one unit
            for body in (b"{}", b"y" * FRAME_LIMIT):
                status, _, _ = await request("POST", connection_url(gw, connection_id), body)
                assert status == 200
                await receive(ws)
            await backend.recorder.wait_for("$default", 2)
        await backend.recorder.wait_for("$disconnect")
        async with client(gw.url) as ws:
            await ws.send("z")
            await backend.recorder.wait_for("$default", 3)
        await backend.recorder.wait_for("$disconnect", 2)

        first = gw.stats.connections[connection_id]
        assert (first.messages_in, first.bytes_in, first.units_in) == (2, 100 + FRAME_LIMIT, 2)
        assert (first.messages_out, first.bytes_out, first.units_out) == (2, 2 + FRAME_LIMIT, 2)
        assert first.close_code == 1000
        totals = gw.stats.totals
        assert (totals.messages_in, totals.messages_out, totals.units) == (3, 2, 5)
        assert len(gw.stats.connections) == 2
        assert gw.stats.connection_minutes > 0


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="backend"):
        GatewayConfig()
    with pytest.raises(ValueError, match="http"):
        GatewayConfig(backends=["localhost:9000"])
    with pytest.raises(ValueError, match="outbound_buffer"):
        GatewayConfig(backends=["http://127.0.0.1:1"], outbound_buffer=FRAME_LIMIT - 1)
    with pytest.raises(ValueError, match="max_inflight"):
        GatewayConfig(backends=["http://127.0.0.1:1"], max_inflight_per_connection=0)


async def test_the_command_serves_until_interrupted(backend: FakeBackend, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hi")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "novakit.localgw",
        "--backend",
        backend.url,
        "--port",
        "0",
        "--static",
        str(tmp_path),
        "--token",
        "cli-s3cret",
        env={**os.environ, "NOVAKIT_GATEWAY_SECRET": INTEGRATION_SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT * 2):
            lines = [(await process.stdout.readline()).decode() for _ in range(4)]
        websocket_url = lines[0].split()[1]
        assert lines[0].startswith("websocket") and websocket_url.endswith("/?token=***")
        assert lines[1].startswith("@connections")
        assert lines[2].startswith("static")
        assert lines[3].startswith("backend") and backend.url in lines[3]
        assert "with x-gateway-secret" in lines[3]
        async with client(websocket_url.replace("***", "cli-s3cret")) as ws:
            await ws.send("{}")
            [message] = await backend.recorder.wait_for("$default")
        # the secret comes from the environment, never the command line, and is never printed
        assert message.headers["x-gateway-secret"] == INTEGRATION_SECRET
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT * 2):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    printed = b"".join(line.encode() for line in lines) + stdout + stderr
    assert b"cli-s3cret" not in printed
    assert INTEGRATION_SECRET.encode() not in printed
