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
  and any other exception into a generic one (the details go to the log, not to the caller);
- refuses parameters nested deeper than ``MAX_NESTING`` with an error result naming the
  parameter (a hostile value must not crash the function with ``RecursionError``).

What the user said reaches a tool as its parameters, and what the tool answers goes back to
them: neither belongs in a log at INFO or above. ``summary(value)`` describes a value by its
type, size and a fingerprint, without its content::

    logger.info("lookup", extra={"query": summary(query), "passages": len(passages)})

This module imports only the standard library and Powertools: the stack packages it with each
tool function, without the rest of novakit.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import secrets
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

__all__ = ["Call", "ToolError", "logger", "summary", "voice_tool"]

METRICS_NAMESPACE = "NovakitTools"
NOVAKIT_EVENT_VERSION = "1"
AGENT_EVENT_VERSION = "1.0"
# How deep a parameter's arrays and objects may nest; real tool inputs are a few levels deep.
MAX_NESTING = 32

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
                return _unreadable(event, name, f"the tool could not read its request: {exc}")
            logger.append_keys(
                tool=call.tool, tool_use_id=call.tool_use_id, connection_id=call.connection_id
            )
            metrics.add_dimension("tool", call.tool)
            try:
                answer = _run(func, tracer, input_schema, params, call)
                metrics.add_metric("ToolInvocations", MetricUnit.Count, 1)
                logger.info(
                    "tool answered", extra={"params": summary(params), "answer": summary(answer)}
                )
                return respond(call, result=answer)
            except ToolError as exc:
                # The message often quotes the user ("no forecast for <city>"): not logged.
                logger.info("tool refused", extra={"error": summary(str(exc))})
                metrics.add_metric("ToolFailures", MetricUnit.Count, 1)
                return respond(call, error=str(exc))
            except Exception as exc:
                _log_failure(exc)
                metrics.add_metric("ToolFailures", MetricUnit.Count, 1)
                return respond(call, error=f"the {call.tool} tool failed unexpectedly")
            finally:
                elapsed_ms = (time.monotonic() - started) * 1000
                metrics.add_metric("ToolLatency", MetricUnit.Milliseconds, elapsed_ms)
                metrics.flush_metrics()
                logger.remove_keys(["tool", "tool_use_id", "connection_id"])

        return handler

    return wrap(function) if function is not None else wrap


def _log_failure(exc: Exception) -> None:
    # Where it failed, not what it failed on: an exception's message may hold the parameters
    # (``KeyError: 'Europe/Pariss'``). The whole exception is there at DEBUG.
    stack = traceback.TracebackException.from_exception(exc).stack
    logger.error(
        "tool failed",
        extra={
            "error_type": type(exc).__name__,
            "error": summary(str(exc)),
            "stack": "".join(stack.format()),
        },
    )
    logger.debug("tool failure in full", exc_info=exc)


def summary(value: Any) -> dict[str, Any]:
    """What a log may say about a value the user or the model gave: its type, its size, and a
    fingerprint that is the same for equal values within this process (to tell repeats apart)
    but, being keyed with a random per-process key, cannot be looked up in a list of guesses."""
    described: dict[str, Any] = {"type": type(value).__name__}
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        described["length"] = len(value)
    if value is None or isinstance(value, bool):
        return described
    try:
        data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    except (TypeError, ValueError, RecursionError):
        return described  # not JSON, or nested too deep to fingerprint cheaply
    digest = hashlib.blake2b(data, key=_FINGERPRINT_KEY, digest_size=6)
    described["fingerprint"] = digest.hexdigest()
    return described


_FINGERPRINT_KEY = secrets.token_bytes(16)


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
    if _is_agent_event(event):
        params = {
            str(p.get("name")): _agent_value(p)
            for p in event.get("parameters") or []
            if isinstance(p, Mapping)
        }
        _check_nesting(params)
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
    _check_nesting(given)
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


def _unreadable(event: Any, default_tool: str, message: str) -> dict[str, Any]:
    # An Agents event gets its error in the Agents shape, whatever in it could not be read.
    if isinstance(event, Mapping) and _is_agent_event(event):
        call = Call(
            tool=str(event.get("function") or default_tool),
            tool_use_id="",
            event_format="bedrock_agent",
            raw_event=event,
        )
        return respond(call, error=message)
    return {"error": message}


def _is_agent_event(event: Mapping[str, Any]) -> bool:
    return "messageVersion" in event and "function" in event


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
    except RecursionError:
        raise ValueError(
            f"parameter {str(parameter.get('name'))[:64]!r} is nested too deeply"
        ) from None
    return value


def _check_nesting(params: Mapping[str, Any]) -> None:
    """Refuse a parameter whose arrays and objects nest deeper than ``MAX_NESTING``; walked
    without recursion, so that the check cannot itself overflow the stack."""
    for name, value in params.items():
        pending = [(value, 1)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, Mapping | list | tuple):
                if depth > MAX_NESTING:
                    raise ValueError(
                        f"parameter {name[:64]!r} is nested more than {MAX_NESTING} levels deep"
                    )
                children = item.values() if isinstance(item, Mapping) else item
                pending.extend((child, depth + 1) for child in children)


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
