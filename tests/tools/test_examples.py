"""The example tools of tools/, run through the path the bridge uses (discovery, the Lambda
event contract, timeouts), and the voice_tool helper's behaviour on its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from novakit.bridge.tools import LocalContext, ToolRunner, tools_from_folder
from novakit.s2s import ToolCall
from novakit.tools.powertools import Call, ToolError, parse_event, respond, voice_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner() -> ToolRunner:
    return ToolRunner(tools_from_folder(REPO / "tools"))


async def call(runner: ToolRunner, name: str, **arguments: Any) -> tuple[str, Any]:
    outcome = await runner.run(
        ToolCall("use-1", name, arguments), connection_id="c=", principal_id=""
    )
    body = outcome.result.text()
    if outcome.result.is_error:
        return outcome.status, body  # the sentence itself, as the model and the client get it
    return outcome.status, json.loads(body) if body.startswith(("{", "[")) else body


def test_every_example_is_discovered(runner: ToolRunner) -> None:
    names = [d.name for d in runner.definitions]
    assert {"get_time", "lookup", "weather"} <= set(names)


async def test_get_time(runner: ToolRunner) -> None:
    status, answer = await call(runner, "get_time", timezone="Asia/Tokyo")
    assert status == "succeeded"
    assert answer["timezone"] == "Asia/Tokyo" and answer["utc_offset"] == "+0900"
    status, answer = await call(runner, "get_time", timezone="Mars/Olympus")
    assert status == "failed" and "Mars/Olympus" in answer


async def test_invalid_input_is_an_error_result_naming_the_field(runner: ToolRunner) -> None:
    status, answer = await call(runner, "get_time", timezone=7)
    assert status == "failed"
    assert answer.startswith("invalid input (timezone)")
    status, answer = await call(runner, "get_time")
    assert status == "failed" and "timezone" in answer


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how many holidays do I get", "25 days of paid holiday"),
        ("where can I park my car", "level minus 2"),
        ("IT help desk phone", "extension 4357"),
    ],
)
async def test_lookup_finds_the_handbook_passage(
    runner: ToolRunner, query: str, expected: str
) -> None:
    status, answer = await call(runner, "lookup", query=query)
    assert status == "succeeded"
    # a keyword search: the answer is among the passages the model reads, best first
    texts = [p["text"] for p in answer["passages"]]
    assert any(expected in t for t in texts), texts
    assert len(answer["passages"]) <= 3


async def test_lookup_says_when_the_handbook_has_nothing(runner: ToolRunner) -> None:
    status, answer = await call(runner, "lookup", query="quantum chromodynamics")
    assert status == "failed" and "says nothing" in answer


class FakeOpenMeteo:
    """Stands in for the geocoding and forecast APIs; can be slow or broken on demand."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.broken = False

    async def geocode(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        if request.query["name"] == "Atlantis":
            return web.json_response({})
        return web.json_response(
            {
                "results": [
                    {"name": "Paris", "country": "France", "latitude": 48.85, "longitude": 2.35}
                ]
            }
        )

    async def forecast(self, request: web.Request) -> web.Response:
        if self.broken:
            return web.Response(text="<html>oops</html>", content_type="text/html")
        assert request.query["latitude"] == "48.85"
        return web.json_response(
            {
                "current": {"temperature_2m": 18.5, "weather_code": 2, "wind_speed_10m": 12},
                "daily": {
                    "temperature_2m_max": [21],
                    "temperature_2m_min": [11],
                    "precipitation_probability_max": [20],
                },
            }
        )


@pytest.fixture
async def open_meteo(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()
    app = web.Application()
    app.router.add_get("/geo", fake.geocode)
    app.router.add_get("/forecast", fake.forecast)
    server = web.AppRunner(app, access_log=None)
    await server.setup()
    await web.TCPSite(server, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.addresses[0][1]}"
    monkeypatch.setenv("GEOCODING_URL", f"{base}/geo")
    monkeypatch.setenv("FORECAST_URL", f"{base}/forecast")
    yield fake
    await server.cleanup()


async def test_weather_answers_and_fails_politely(
    runner: ToolRunner, open_meteo: FakeOpenMeteo
) -> None:
    status, answer = await call(runner, "weather", city="Paris")
    assert status == "succeeded"
    assert answer == {
        "place": "Paris, France",
        "temperature_c": 18.5,
        "conditions": "partly cloudy",
        "wind_kmh": 12,
        "today_max_c": 21,
        "today_min_c": 11,
        "rain_chance_percent": 20,
    }
    status, answer = await call(runner, "weather", city="Atlantis")
    assert (status, answer) == ("failed", "I couldn't find a place called Atlantis")
    open_meteo.broken = True
    status, answer = await call(runner, "weather", city="Paris")
    assert "couldn't read" in answer


async def test_a_slow_weather_service_is_an_apology_not_a_timeout(
    runner: ToolRunner, open_meteo: FakeOpenMeteo
) -> None:
    open_meteo.delay = 5.0  # past the tool's 3 s HTTP timeout, inside its 8 s Lambda timeout
    status, answer = await call(runner, "weather", city="Paris")
    assert status == "failed"
    assert "isn't answering right now" in answer


def test_voice_tool_answers_bedrock_agents_function_events_in_their_shape() -> None:
    @voice_tool(
        schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    )
    def double(params: dict[str, Any], call: Call) -> dict[str, int]:
        return {"twice": params["n"] * 2}

    event = {
        "messageVersion": "1.0",
        "actionGroup": "maths",
        "function": "double",
        "sessionId": "s-1",
        "parameters": [{"name": "n", "type": "integer", "value": "21"}],
    }
    answer = double(event, LocalContext("double", 3))
    assert answer == {
        "messageVersion": "1.0",
        "response": {
            "actionGroup": "maths",
            "function": "double",
            "functionResponse": {"responseBody": {"TEXT": {"body": '{"twice": 42}'}}},
        },
    }
    event["parameters"] = [{"name": "n", "type": "string", "value": "many"}]
    failed = double(event, LocalContext("double", 3))["response"]["functionResponse"]
    assert failed["responseState"] == "FAILURE"
    assert "invalid input (n)" in failed["responseBody"]["TEXT"]["body"]


def test_unexpected_exceptions_stay_in_the_log() -> None:
    @voice_tool
    def broken(params: dict[str, Any], call: Call) -> Any:
        raise RuntimeError("password=hunter2 leaked in a message")

    event = {"version": "1", "tool": "broken", "toolUseId": "u", "input": {}}
    assert broken(event, LocalContext("broken", 3)) == {
        "error": "the broken tool failed unexpectedly"
    }
    assert broken({"something": "else"}, None)["error"].startswith("the tool could not read")


def test_parse_and_respond_round_trip() -> None:
    event = {
        "version": "1",
        "tool": "t",
        "toolUseId": "u",
        "input": {"a": 1},
        "session": {"connectionId": "c=", "principalId": "p"},
    }
    call, params = parse_event(event)
    assert (call.tool, call.tool_use_id, call.connection_id, call.principal_id) == (
        "t",
        "u",
        "c=",
        "p",
    )
    assert params == {"a": 1}
    assert respond(call, result=[1]) == {"result": [1]}
    assert respond(call, error="no") == {"error": "no"}
    with pytest.raises(ToolError):
        raise ToolError("x")
