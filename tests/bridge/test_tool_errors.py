"""A failed tool call, whatever its origin, reaches the model as one ``{"error": sentence}`` and
the client's ``tool`` frame as the plain sentence: through the runner, the bridge session and the
Nova provider's tool result, without sockets."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from novakit import s2s
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import ClientAudio
from novakit.bridge.session import BridgeSession
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tools import BoundTool, Invoker, LambdaInvoker, LocalInvoker, ToolRunner
from novakit.s2s.nova.protocol import tool_result_json
from novakit.tools.contract import ToolEvent
from novakit.tools.powertools import Call, ToolError, voice_tool

from .test_session import FakeConnections, FakeEngine

SHOP_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@voice_tool(schema=SHOP_SCHEMA)
def shops(params: dict[str, Any], call: Call) -> dict[str, Any]:
    raise ToolError(f"we have no shop in {params['city']}")


def answers(answer: Any) -> Callable[[dict[str, Any], Any], Any]:
    return lambda event, context: answer


def raises(event: dict[str, Any], context: Any) -> Any:
    raise LookupError("the shop list is on fire")


class FakeLambda:
    """boto3's ``invoke`` as a function with the given answer and ``FunctionError`` returns."""

    def __init__(self, payload: bytes, function_error: str = "") -> None:
        self.payload = payload
        self.function_error = function_error

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


class BrokenClient:
    """An invoker whose transport fails (botocore raising, say) before any answer."""

    async def invoke(self, event: ToolEvent, budget: float) -> s2s.ToolResult:
        raise ConnectionError("connection reset by peer")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets a handler that overran its timeout finish once the test is over."""
    event = threading.Event()
    yield event
    event.set()


def invoker(origin: str, release: threading.Event) -> tuple[Invoker, float]:
    """The ``shops`` tool failing in the way ``origin`` names, and its timeout."""
    match origin:
        case "error dict":
            return LocalInvoker("shops", answers({"error": "we have no shop in Paris"})), 2.0
        case "ToolError":
            return LocalInvoker("shops", shops), 2.0
        case "raised exception":
            return LocalInvoker("shops", raises), 2.0
        case "not JSON":
            return LocalInvoker("shops", answers({1, 2})), 2.0
        case "Lambda error dict":
            lam = FakeLambda(b'{"error": "we have no shop in Paris"}')
            return LambdaInvoker("arn:aws:lambda:x", lam), 2.0
        case "Lambda FunctionError":
            lam = FakeLambda(b'{"errorMessage": "Task timed out after 3.00 seconds"}', "Unhandled")
            return LambdaInvoker("arn:aws:lambda:x", lam), 2.0
        case "transport failure":
            return BrokenClient(), 2.0
        case "timeout":
            return LocalInvoker("shops", lambda event, context: release.wait(5)), 0.2
    raise AssertionError(origin)


# origin -> (status of the tool frame, the sentence the model and the client both get)
ORIGINS = {
    "error dict": ("failed", "we have no shop in Paris"),
    "ToolError": ("failed", "we have no shop in Paris"),
    "raised exception": ("failed", "the tool failed (Unhandled): the shop list is on fire"),
    "not JSON": ("failed", "the tool's answer was not valid JSON"),
    "Lambda error dict": ("failed", "we have no shop in Paris"),
    "Lambda FunctionError": (
        "failed",
        "the tool failed (Unhandled): Task timed out after 3.00 seconds",
    ),
    "transport failure": ("failed", "the shops tool failed: ConnectionError"),
    "timeout": ("timed_out", "the shops tool did not answer within 0.2 seconds"),
}


def bridge_session(engine: FakeEngine, connections: FakeConnections, runner: ToolRunner) -> Any:
    return BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1"),
        connections=connections,  # type: ignore[arg-type]
        tools=runner,
        metrics=Metrics(),
        on_ended=lambda s: None,
    )


async def wait_for_frame(
    connections: FakeConnections, accept: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async with asyncio.timeout(10), connections.changed:
        while True:
            for frame in map(json.loads, connections.posted):
                if accept(frame):
                    return frame  # type: ignore[no-any-return]
            await connections.changed.wait()


@pytest.mark.parametrize("origin", list(ORIGINS))
async def test_a_tool_error_is_wrapped_once_for_the_model_and_plain_for_the_client(
    origin: str, release: threading.Event
) -> None:
    status, sentence = ORIGINS[origin]
    tool_invoker, timeout = invoker(origin, release)
    definition = s2s.ToolDefinition("shops", "our shops", SHOP_SCHEMA)
    runner = ToolRunner([BoundTool(definition, timeout, tool_invoker)])
    engine, connections = FakeEngine(), FakeConnections()
    session = bridge_session(engine, connections, runner)
    session.receive(ClientAudio(0, bytes(640)))  # opens the model session
    await connections.wait_for("session")
    engine.session.events.put_nowait(
        s2s.Event.tool(s2s.ToolCall("use-1", "shops", {"city": "Paris"}))
    )

    frame = await wait_for_frame(
        connections, lambda f: f["type"] == "tool" and f["status"] != "started"
    )
    assert isinstance(frame.pop("ms"), int)
    del frame["seq"]
    assert frame == {
        "type": "tool",
        "call_id": "use-1",
        "name": "shops",
        "status": status,
        "error": sentence,
    }
    # the result went to the model in the same step as the frame was queued for the client
    (result,) = [item for kind, item in engine.session.sent if kind == "tool"]
    assert (result.call_id, result.is_error) == ("use-1", True)
    # what the Nova provider puts in the toolResult event: the sentence, wrapped once
    assert tool_result_json(result) == json.dumps({"error": sentence})
    session.end("test over")
    assert await session.wait_ended(5)


async def test_an_unknown_tool_is_wrapped_once_too() -> None:
    outcome = await ToolRunner().run(
        s2s.ToolCall("use-2", "nope", {}), connection_id="c=", principal_id=""
    )
    assert outcome.status == "failed"
    assert outcome.result.text() == "there is no tool named 'nope'"
    assert tool_result_json(outcome.result) == '{"error": "there is no tool named \'nope\'"}'
