"""Running the tools the model calls: Lambda functions on AWS, in-process handlers locally.

Tools never run inside a frame's request: the session starts a task per call, bounded by the
tool's timeout, and every outcome (a result, a failure, a timeout, garbage) becomes a tool
result the model can speak about. Both invokers pass the same JSON event (``novakit.tools``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..s2s.config import ToolDefinition, ToolResult
from ..s2s.events import ToolCall
from ..tools.contract import ToolEvent, error_result, result_from_payload

log = logging.getLogger(__name__)


class ToolSetupError(ValueError):
    """The tool manifest or a tool folder cannot be used; the message names the tool."""


class Invoker(Protocol):
    async def invoke(self, event: ToolEvent, budget: float) -> ToolResult:
        """Call the tool; ``budget`` is its timeout in seconds (what Lambda's context tells)."""
        ...


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    result: ToolResult
    status: str  # "succeeded", "failed" or "timed_out"
    seconds: float


@dataclass(frozen=True, slots=True)
class BoundTool:
    definition: ToolDefinition
    timeout: float
    invoker: Invoker


class ToolRunner:
    """The tools of a bridge: their declarations for the model, and how to call each."""

    def __init__(self, tools: Sequence[BoundTool] = ()) -> None:
        self._tools = {tool.definition.name: tool for tool in tools}
        if len(self._tools) != len(tools):
            raise ToolSetupError("two tools have the same name")

    @property
    def definitions(self) -> list[ToolDefinition]:
        return [tool.definition for tool in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    async def run(self, call: ToolCall, *, connection_id: str, principal_id: str) -> ToolOutcome:
        started = time.monotonic()
        tool = self._tools.get(call.name)
        if tool is None:
            result = error_result(call.call_id, f"there is no tool named {call.name!r}")
            return ToolOutcome(result, "failed", 0.0)
        event = ToolEvent(call.name, call.call_id, call.arguments, connection_id, principal_id)
        try:
            async with asyncio.timeout(tool.timeout):
                result = await tool.invoker.invoke(event, tool.timeout)
        except TimeoutError:
            message = f"the {call.name} tool did not answer within {tool.timeout:g} seconds"
            return ToolOutcome(error_result(call.call_id, message), "timed_out", tool.timeout)
        except Exception as exc:
            # In-process tools raise what they raise, arguments quoted perhaps: the type only
            # at WARNING, all of it at DEBUG.
            extra = {"connection_id": connection_id}
            log.warning("tool %s failed: %s", call.name, type(exc).__name__, extra=extra)
            log.debug("tool %s failure in full", call.name, exc_info=exc, extra=extra)
            message = f"the {call.name} tool failed: {type(exc).__name__}"
            result = error_result(call.call_id, message)
        elapsed = time.monotonic() - started
        return ToolOutcome(result, "failed" if result.is_error else "succeeded", elapsed)


# -- invokers -----------------------------------------------------------------------------------


class LambdaInvoker:
    """Calls a Lambda function synchronously (RequestResponse), off the event loop."""

    def __init__(self, function_arn: str, client: Any) -> None:
        self._arn = function_arn
        self._client = client

    async def invoke(self, event: ToolEvent, budget: float) -> ToolResult:
        payload = json.dumps(event.to_json()).encode()
        response = await asyncio.to_thread(
            self._client.invoke,
            FunctionName=self._arn,
            InvocationType="RequestResponse",
            Payload=payload,
        )
        body = response["Payload"].read()
        return result_from_payload(
            event.tool_use_id, body, function_error=response.get("FunctionError", "")
        )


def lambda_client(region: str, read_timeout: float) -> Any:
    """A botocore Lambda client with timeouts bounded by the slowest tool."""
    from botocore.config import Config
    from botocore.session import get_session

    config = Config(
        connect_timeout=3,
        read_timeout=read_timeout,
        retries={"max_attempts": 2},
        max_pool_connections=50,
    )
    return get_session().create_client("lambda", region_name=region, config=config)


class LocalContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, name: str, timeout: float, memory_mb: int = 256) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


Handler = Callable[[dict[str, Any], Any], Any]


class LocalInvoker:
    """Calls a handler function in a worker thread, as Lambda would call it.

    A handler that overruns its timeout is abandoned (its thread runs on; Python cannot stop
    it), exactly as the model sees a Lambda timeout: an error result after the timeout.
    """

    def __init__(self, name: str, handler: Handler, memory_mb: int = 256) -> None:
        self._name = name
        self._handler = handler
        self._memory = memory_mb

    async def invoke(self, event: ToolEvent, budget: float) -> ToolResult:
        context = LocalContext(self._name, budget, self._memory)
        # A round trip through JSON, as Lambda does: handlers get plain JSON, never our objects.
        wire_event = json.loads(json.dumps(event.to_json()))
        try:
            answer = await asyncio.to_thread(self._handler, wire_event, context)
        except Exception as exc:
            error = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            return result_from_payload(event.tool_use_id, error, function_error="Unhandled")
        try:
            body = json.dumps(answer)
        except (TypeError, ValueError):
            return result_from_payload(event.tool_use_id, b"\xff not json")
        return result_from_payload(event.tool_use_id, body)


def load_handler(path: Path, attribute: str = "handler") -> Handler:
    """Import ``handler`` from a tool's ``handler.py`` without putting the folder on sys.path."""
    module_name = f"novakit_tool_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ToolSetupError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ToolSetupError(f"{path}: import failed: {type(exc).__name__}: {exc}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ToolSetupError(f"{path}: defines no callable {attribute!r}")
    return handler  # type: ignore[no-any-return]


def tools_from_manifest(
    manifest: Sequence[Mapping[str, Any]], *, region: str, default_timeout: float
) -> list[BoundTool]:
    """Tools backed by Lambda functions, from the stack's manifest (``NOVAKIT_TOOLS``)."""
    bound: list[BoundTool] = []
    entries = []
    for i, entry in enumerate(manifest):
        name = entry.get("name")
        arn = entry.get("function_arn")
        if not isinstance(name, str) or not isinstance(arn, str) or not arn:
            raise ToolSetupError(f"tool manifest entry {i}: needs 'name' and 'function_arn'")
        timeout = float(entry.get("timeout_s", default_timeout))
        definition = ToolDefinition(
            name,
            str(entry.get("description", "")),
            entry.get("input_schema") or {"type": "object", "properties": {}},
        )
        entries.append((definition, timeout, arn))
    if entries:
        client = lambda_client(region, read_timeout=max(t for _, t, _ in entries) + 2)
        bound = [BoundTool(d, t, LambdaInvoker(arn, client)) for d, t, arn in entries]
    return bound


def tools_from_folder(root: Path) -> list[BoundTool]:
    """Tools of a ``tools/`` folder, run in-process (``novakit dev``)."""
    from ..tools.manifest import discover_tools

    bound = []
    for spec in discover_tools(root):
        # Lambda gives each function its own environment; one process can only offer defaults
        # (a variable already set, by the user or another tool, wins and is reported).
        for key, value in spec.environment.items():
            if os.environ.setdefault(key, value) != value:
                log.warning(
                    "tool %s: %s is already set in the environment; keeping it", spec.name, key
                )
        handler = load_handler(spec.folder / "handler.py")
        definition = ToolDefinition(spec.name, spec.description, spec.input_schema)
        invoker = LocalInvoker(spec.name, handler, spec.memory_mb)
        bound.append(BoundTool(definition, float(spec.timeout_s), invoker))
    return bound
