"""A bridge on loopback with the test secret and no model behind it: enough for the checks that
happen before a session is touched."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from novakit.bridge.app import Bridge
from novakit.bridge.connections import Unsigned
from novakit.bridge.settings import BridgeSettings

from ..gateway_auth import GATEWAY_SECRET


@pytest.fixture
async def bridge_url() -> AsyncIterator[str]:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9",
        host="127.0.0.1",
        port=0,
        gateway_secrets=(GATEWAY_SECRET,),
    )
    bridge = Bridge(settings, signer=Unsigned())
    runner = web.AppRunner(bridge.application(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
