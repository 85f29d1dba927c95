"""The local stack with its ``realtime`` stage, for clients nobody on this project wrote (the
official ``openai`` SDK, a voice framework's Realtime service): the emulator with its offline
speech (PocketSphinx hears, eSpeak NG speaks, tools are called from their examples), the bridge
in-process with the repository's tools, and the local gateway serving every stage.

The emulator also knows one tool that the deployment does not have, ``check_order``: a client
that declares it in ``session.update`` gets its calls (function-call items) and answers them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from novakit.bridge.app import Bridge, serving
from novakit.bridge.connections import Unsigned
from novakit.bridge.dialects import STAGE_DIALECTS
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig, EngineSettings
from novakit.emulator.matching import ToolExamples
from novakit.emulator.mind import Mind
from novakit.localgw import GatewayConfig, LocalGateway

from ..gateway_auth import GATEWAY_SECRET

REPO = Path(__file__).resolve().parents[2]
TOKEN = "realtime-test-token"
WAIT = 60.0  # seconds: the bound on a spoken turn (recognition and synthesis on a busy CPU)

#: The client-side tool the emulator can call (the client declares it; the bridge has none).
CHECK_ORDER = {
    "type": "function",
    "name": "check_order",
    "description": "Tell where a customer's order is, by its colour.",
    "parameters": {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "blue", "green"]}},
        "required": ["colour"],
    },
}
CHECK_ORDER_EXAMPLES = ToolExamples(
    "check_order",
    CHECK_ORDER["parameters"],  # type: ignore[arg-type]
    examples=("where is my {colour} order",),
    values={"colour": ["red", "blue", "green"]},
)


@dataclass
class RealtimeStack:
    emulator: Emulator
    gateway: LocalGateway
    bridge: Bridge
    mind: Mind

    @property
    def base_url(self) -> str:
        """What a Realtime client is given as its WebSocket base URL (it appends /realtime)."""
        return self.gateway.url.rstrip("/")


@contextlib.asynccontextmanager
async def realtime_stack(*, batch_ms: int = 100) -> AsyncIterator[RealtimeStack]:
    mind = Mind([*Mind.from_tools_dir(REPO / "tools").matcher.tools.values(), CHECK_ORDER_EXAMPLES])
    engine = EngineSettings(mind=mind, endpoint_seconds=0.8, response_latency=0.0)
    gateway_port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        emu = await stack.enter_async_context(Emulator(EmulatorConfig(engine=engine)))
        settings = BridgeSettings(
            connections_url=f"http://127.0.0.1:{gateway_port}/{{stage}}",
            host="127.0.0.1",
            port=0,
            region=emu.config.region,
            drain_seconds=1.0,
            batch_ms=batch_ms,
            gateway_secrets=(GATEWAY_SECRET,),
            allow_client_instructions=True,
            tools_dir=REPO / "tools",
            provider_extra={
                "base_url": emu.endpoint,
                "ca_bundle": str(emu.ca_path),
                "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
                "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
            },
        )
        bridge = Bridge(settings, signer=Unsigned())
        bridge_url = await stack.enter_async_context(serving(bridge))
        gateway = await stack.enter_async_context(
            LocalGateway(
                GatewayConfig(
                    port=gateway_port,
                    backends=[bridge_url],
                    token=TOKEN,
                    integration_secret=GATEWAY_SECRET,
                    stages=tuple(STAGE_DIALECTS),
                )
            )
        )
        yield RealtimeStack(emu, gateway, bridge, mind)
