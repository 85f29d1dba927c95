"""Write a tool as a plain function; this turns it into a Lambda handler.

    from novakit.tools.powertools import ToolError, voice_tool

    @voice_tool
    def handler(params: dict, call: Call) -> dict:
        if params["city"] not in FORECASTS:
            raise ToolError(f"I have no forecast for {params['city']}")
        return {"forecast": FORECASTS[params["city"]]}

What ``voice_tool`` does around the function, with Powertools for AWS Lambda:

- reads the event: the novakit tool event (what the bridge sends), or the Bedrock Agents
  *function* event (``messageVersion``, ``actionGroup``, ``function``, ``parameters``), so the
  same function also serves an Agents action group, and answers in the shape it was asked in;
- validates the input against the ``input_schema`` of the ``tool.json`` beside the handler
  (Powertools' validation utility); invalid input is an error result naming the field;
- logs with Powertools' Logger (Lambda context, tool name, tool use id, connection id), counts
  invocations, failures and latency with Powertools' Metrics (EMF, namespace ``NovakitTools``),
  and traces with Powertools' Tracer when the X-Ray SDK is present;
- turns ``ToolError`` into an error result with its message (the model says it to the user)
  and any other exception into a generic one (the details go to the log, not to the caller).

This module imports only the standard library and Powertools: the stack packages it with each
tool function, without the rest of novakit.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

__all__ = ["Call", "ToolError", "logger", "voice_tool"]

METRICS_NAMESPACE = "NovakitTools"
NOVAKIT_EVENT_VERSION = "1"
AGENT_EVENT_VERSION = "1.0"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "novakit-tool"))


class ToolError(Exception):
    """Raise with what the user should hear when the tool cannot do its job."""


@dataclass(frozen=True)
class Call:
    """Who asked and how: passed to the tool function beside its parameters."""

    tool: str
    tool_use_id: str
    connection_id: str = ""
    principal_id: str = ""
    event_format: str = "novakit"  # or "bedrock_agent"
    context: Any = None  # the Lambda context
    raw_event: Mapping[str, Any] = field(default_factory=dict)

    def remaining_seconds(self) -> float:
        """Time left before Lambda (or the local runner) gives up on this call."""
        if self.context is None or not hasattr(self.context, "get_remaining_time_in_millis"):
            return float("inf")
        return float(self.context.get_remaining_time_in_millis()) / 1000


ToolFunction = Callable[[dict[str, Any], Call], Any]


def voice_tool(
    function: ToolFunction | None = None, *, schema: Mapping[str, Any] | None = None
) -> Any:
    """Make ``function(params, call)`` a Lambda handler ``(event, context)`` (module docstring).

    ``schema``: the input schema, when there is no ``tool.json`` beside the handler.
    """

    def wrap(func: ToolFunction) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
        manifest = _manifest_beside(func)
        name = str(manifest.get("name") or func.__module__)
        input_schema = dict(schema or manifest.get("input_schema") or {"type": "object"})
        metrics = Metrics(namespace=METRICS_NAMESPACE, service=name)
        tracer = _tracer(name)

        @functools.wraps(func)
        def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
            started = time.monotonic()
            try:
                call, params = parse_event(event, context, default_tool=name)
            except ValueError as exc:
                logger.warning("unreadable tool event: %s", exc)
                return {"error": f"the tool could not read its request: {exc}"}
            logger.append_keys(
                tool=call.tool, tool_use_id=call.tool_use_id, connection_id=call.connection_id
            )
            metrics.add_dimension("tool", call.tool)
            try:
                answer = _run(func, tracer, input_schema, params, call)
                metrics.add_metric("ToolInvocations", MetricUnit.Count, 1)
                return respond(call, result=answer)
            except ToolError as exc:
                logger.info("tool refused: %s", exc)
                metrics.add_metric("ToolFailures", MetricUnit.Count, 1)
                return respond(call, error=str(exc))
            except Exception:
                logger.exception("tool failed")
                metrics.add_metric("ToolFailures", MetricUnit.Count, 1)
                return respond(call, error=f"the {call.tool} tool failed unexpectedly")
            finally:
                elapsed_ms = (time.monotonic() - started) * 1000
                metrics.add_metric("ToolLatency", MetricUnit.Milliseconds, elapsed_ms)
                metrics.flush_metrics()
                logger.remove_keys(["tool", "tool_use_id", "connection_id"])

        return handler

    return wrap(function) if function is not None else wrap


def _run(
    func: ToolFunction, tracer: Any, schema: Mapping[str, Any], params: dict[str, Any], call: Call
) -> Any:
    try:
        validate(event=params, schema=dict(schema))
    except SchemaValidationError as exc:
        where = ".".join(str(p) for p in (exc.path or [])[1:]) or "input"
        raise ToolError(f"invalid input ({where}): {exc.validation_message}") from exc
    if tracer is None:
        return func(params, call)
    with tracer.provider.in_subsegment(f"## {call.tool}"):
        return func(params, call)


def parse_event(
    event: Mapping[str, Any], context: Any = None, *, default_tool: str = ""
) -> tuple[Call, dict[str, Any]]:
    """The call and its parameters, from a novakit or a Bedrock Agents function event."""
    if not isinstance(event, Mapping):
        raise ValueError(f"the event is a {type(event).__name__}, not a JSON object")
    if "messageVersion" in event and "function" in event:
        params = {
            str(p.get("name")): _agent_value(p)
            for p in event.get("parameters") or []
            if isinstance(p, Mapping)
        }
        call = Call(
            tool=str(event.get("function") or default_tool),
            tool_use_id=str(event.get("sessionId", "")),
            connection_id=str(event.get("sessionId", "")),
            event_format="bedrock_agent",
            context=context,
            raw_event=event,
        )
        return call, params
    if event.get("version") != NOVAKIT_EVENT_VERSION:
        raise ValueError("neither a novakit tool event (version 1) nor a Bedrock Agents event")
    given = event.get("input")
    if not isinstance(given, dict):
        raise ValueError("'input' must be a JSON object")
    session = event.get("session")
    if not isinstance(session, Mapping):
        session = {}
    call = Call(
        tool=str(event.get("tool") or default_tool),
        tool_use_id=str(event.get("toolUseId", "")),
        connection_id=str(session.get("connectionId", "")),
        principal_id=str(session.get("principalId", "")),
        context=context,
        raw_event=event,
    )
    return call, given


def respond(call: Call, *, result: Any = None, error: str | None = None) -> dict[str, Any]:
    """The answer in the shape the caller asked in."""
    if call.event_format != "bedrock_agent":
        return {"error": error} if error is not None else {"result": result}
    body = (
        error
        if error is not None
        else (result if isinstance(result, str) else json.dumps(result, default=str))
    )
    function_response: dict[str, Any] = {"responseBody": {"TEXT": {"body": body}}}
    if error is not None:
        function_response["responseState"] = "FAILURE"
    return {
        "messageVersion": AGENT_EVENT_VERSION,
        "response": {
            "actionGroup": call.raw_event.get("actionGroup", ""),
            "function": call.tool,
            "functionResponse": function_response,
        },
    }


def _agent_value(parameter: Mapping[str, Any]) -> Any:
    # Agents send every value as a string with a declared type.
    value, kind = parameter.get("value"), str(parameter.get("type", "string")).lower()
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return value.strip().lower() == "true"
        if kind == "array":
            return json.loads(value)
    except ValueError:
        return value
    return value


def _manifest_beside(func: Callable[..., Any]) -> dict[str, Any]:
    source = inspect.getsourcefile(func)
    if source is None:
        return {}
    path = Path(source).with_name("tool.json")
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _tracer(name: str) -> Any:
    # Tracing needs the X-Ray SDK (in the Powertools layer); without it, tools run untraced.
    import importlib.util

    if importlib.util.find_spec("aws_xray_sdk") is None:
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=name)
