"""Tool calls: every outcome (answer, error, raise, garbage, timeout, unknown tool) becomes a
result the model can speak about, through Lambda and in-process alike."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from novakit.bridge.tools import (
    BoundTool,
    LambdaInvoker,
    LocalInvoker,
    ToolRunner,
    ToolSetupError,
    load_handler,
    tools_from_folder,
)
from novakit.s2s import ToolCall, ToolDefinition
from novakit.tools.contract import (
    MAX_RESULT_BYTES,
    ToolEvent,
    ToolEventError,
    result_from_payload,
)

REPO = Path(__file__).resolve().parents[2]


def tool(name: str, handler: Any, timeout: float = 2.0) -> BoundTool:
    return BoundTool(ToolDefinition(name, f"the {name} tool"), timeout, LocalInvoker(name, handler))


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall("use-1", name, arguments)


async def run(runner: ToolRunner, name: str, **arguments: Any) -> tuple[str, str, bool]:
    outcome = await runner.run(call(name, **arguments), connection_id="c=", principal_id="p")
    return outcome.status, outcome.result.text(), outcome.result.is_error


async def test_a_handler_gets_the_contract_event_and_its_answer_is_the_result() -> None:
    seen: list[tuple[dict[str, Any], Any]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        seen.append((event, context))
        return {"result": {"sum": event["input"]["a"] + event["input"]["b"]}}

    runner = ToolRunner([tool("add", handler)])
    assert await run(runner, "add", a=2, b=3) == ("succeeded", '{"sum":5}', False)
    event, context = seen[0]
    assert event == {
        "version": "1",
        "tool": "add",
        "toolUseId": "use-1",
        "input": {"a": 2, "b": 3},
        "session": {"connectionId": "c=", "principalId": "p"},
    }
    assert context.function_name == "add"
    assert 0 < context.get_remaining_time_in_millis() <= 2000


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"error": "no such city"}, "no such city"),
        ({1, 2}, "not valid JSON"),
        (None, "the tool returned nothing"),
        ({"result": "x" * (MAX_RESULT_BYTES + 1)}, "too large"),
    ],
)
async def test_broken_answers_become_error_results(answer: Any, expected: str) -> None:
    runner = ToolRunner([tool("t", lambda event, context: answer)])
    status, text, is_error = await run(runner, "t")
    assert (status, is_error) == ("failed", True)
    assert expected in text


async def test_a_raising_handler_is_an_unhandled_error_with_its_message() -> None:
    def handler(event: dict[str, Any], context: Any) -> Any:
        raise KeyError("city")

    status, text, _ = await run(ToolRunner([tool("t", handler)]), "t")
    assert status == "failed"
    assert text == "the tool failed (Unhandled): 'city'"


async def test_a_slow_handler_times_out_without_blocking_the_loop() -> None:
    release = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> Any:
        release.wait(5)
        return {"result": "late"}

    runner = ToolRunner([tool("slow", handler, timeout=0.2)])
    try:
        status, text, _ = await run(runner, "slow")
    finally:
        release.set()
    assert status == "timed_out"
    assert "did not answer within 0.2 seconds" in text


async def test_an_unknown_tool_is_an_error_result() -> None:
    status, text, _ = await run(ToolRunner([]), "nope")
    assert status == "failed" and "no tool named 'nope'" in text


class FakeLambda:
    def __init__(self, payload: bytes, function_error: str | None = None) -> None:
        self.payload = payload
        self.function_error = function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


async def test_lambda_invocation_and_its_function_errors() -> None:
    ok = FakeLambda(b'{"result": {"temp": 21}}')
    runner = ToolRunner(
        [BoundTool(ToolDefinition("w", "weather"), 2.0, LambdaInvoker("arn:aws:lambda:x", ok))]
    )
    assert await run(runner, "w", city="Paris") == ("succeeded", '{"temp":21}', False)
    (request,) = ok.calls
    assert request["FunctionName"] == "arn:aws:lambda:x"
    assert request["InvocationType"] == "RequestResponse"
    assert json.loads(request["Payload"])["input"] == {"city": "Paris"}

    crashed = FakeLambda(b'{"errorMessage": "Task timed out after 3.00 seconds"}', "Unhandled")
    runner = ToolRunner(
        [BoundTool(ToolDefinition("w", "weather"), 2.0, LambdaInvoker("arn", crashed))]
    )
    status, text, _ = await run(runner, "w")
    assert status == "failed"
    assert text == "the tool failed (Unhandled): Task timed out after 3.00 seconds"


def test_tool_events_are_validated_both_ways() -> None:
    event = ToolEvent("t", "id-1", {"x": 1}, "c=", "p")
    assert ToolEvent.from_json(event.to_json()) == event
    for broken in (
        {"version": "2"},
        {"version": "1", "tool": "", "toolUseId": "i", "input": {}},
        {"version": "1", "tool": "t", "toolUseId": "i", "input": []},
        [],
    ):
        with pytest.raises(ToolEventError):
            ToolEvent.from_json(broken)  # type: ignore[arg-type]


def test_lenient_results() -> None:
    assert result_from_payload("i", b'{"answer": 42}').text() == '{"answer":42}'
    assert result_from_payload("i", b'"plain text"').text() == "plain text"
    assert result_from_payload("i", {"result": [1, 2]}).text() == "[1,2]"


def test_tool_folders_load_and_bad_handlers_name_their_file(tmp_path: Path) -> None:
    bound = tools_from_folder(REPO / "tests" / "stack" / "tools")
    assert [t.definition.name for t in bound] == ["lookup", "slow", "strict"]
    assert [t.timeout for t in bound] == [5.0, 1.0, 5.0]
    broken = tmp_path / "handler.py"
    broken.write_text("raise ImportError('missing dependency')\n")
    with pytest.raises(ToolSetupError, match=r"handler.py: import failed: ImportError"):
        load_handler(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ToolSetupError, match="defines no callable 'handler'"):
        load_handler(empty)
