"""The example weather tool (tools/weather, in-process under the bridge as ``novakit dev`` runs
it) asked about a city that does not exist: the model gets the tool's sentence wrapped once and
the client's ``tool`` frame carries the sentence itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from novakit.emulator import Script, ScriptTurn, ToolCall

from .conftest import REPO, connect, kind, local_stack

NOT_FOUND = "I couldn't find a place called Atlantis"


@pytest.fixture
async def geocoding() -> AsyncIterator[str]:
    """Open-Meteo's geocoding API on loopback, knowing no place at all."""

    async def search(request: web.Request) -> web.Response:
        return web.json_response({"generationtime_ms": 0.1})  # no "results": nothing found

    app = web.Application()
    app.router.add_get("/search", search)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_weather_for_an_unknown_city_is_one_error_for_the_model_and_a_sentence_for_the_client(  # noqa: E501
    tmp_path: Path, geocoding: str
) -> None:
    environment = {
        "NOVAKIT_TOOLS_DIR": str(REPO / "tools"),
        "GEOCODING_URL": f"{geocoding}/search",
        "FORECAST_URL": f"{geocoding}/forecast",  # never reached: the city is not found first
    }
    async with local_stack(tmp_path, **environment) as stack:
        stack.emulator.script = Script(
            (
                ScriptTurn(
                    transcript="what's the weather in Atlantis",
                    tool=ToolCall("weather", {"city": "Atlantis"}),
                    reply="Sorry: {result}",
                ),
            )
        )
        async with connect(stack) as client:
            await client.speak(1.0)
            await client.wait_for(kind("turn_end"), within=30)
            tool_frames = [
                {k: v for k, v in f.items() if k not in ("seq", "ms")}
                for f in client.of_type("tool")
            ]
            assert tool_frames == [
                {"type": "tool", "call_id": tool_frames[0]["call_id"], "name": "weather",
                 "status": "started"},
                {"type": "tool", "call_id": tool_frames[0]["call_id"], "name": "weather",
                 "status": "failed", "error": NOT_FOUND},
            ]  # fmt: skip
        (record,) = await stack.emulator.wait_for_streams(1)
    results = [e.body["content"] for e in record.input_events if e.name == "toolResult"]
    assert results == [json.dumps({"error": NOT_FOUND})]
