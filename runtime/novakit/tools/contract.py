"""The tool contract: the event a tool receives and the result it returns.

One module, used on both sides: the bridge builds events and reads results; a tool handler (a
Lambda function on AWS, a function called in-process under ``novakit dev``) reads events and
builds results. The event is plain JSON so that any Lambda runtime can serve a tool::

    {"version": "1", "tool": "get_time", "toolUseId": "…", "input": {"timezone": "Asia/Tokyo"},
     "session": {"connectionId": "…", "principalId": "…"}}

A handler answers ``{"result": <any JSON>}`` or ``{"error": "<what the model should hear>"}``.
Anything else a handler returns is still read leniently (JSON without either key counts as the
result), but a payload that is not JSON, is too large, or comes with a Lambda function error
becomes an error result: the model is told the tool failed and the conversation goes on.

An error result's text is the plain sentence (``ToolResult.is_error`` marks it), whatever the
failure: the model provider wraps it once for the model, and the client's ``tool`` frame carries
it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..s2s.config import TextPart, ToolResult

EVENT_VERSION = "1"
# Tool results go back to the model as text; keep them well inside one Bedrock event.
MAX_RESULT_BYTES = 24 * 1024


class ToolEventError(ValueError):
    """An event that does not follow the contract (a handler answers with an error result)."""


@dataclass(frozen=True, slots=True)
class ToolEvent:
    """What a tool receives."""

    tool: str
    tool_use_id: str
    input: Mapping[str, Any]
    connection_id: str = ""
    principal_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": EVENT_VERSION,
            "tool": self.tool,
            "toolUseId": self.tool_use_id,
            "input": dict(self.input),
            "session": {"connectionId": self.connection_id, "principalId": self.principal_id},
        }

    @classmethod
    def from_json(cls, event: Mapping[str, Any]) -> ToolEvent:
        if not isinstance(event, Mapping):
            raise ToolEventError(f"a tool event is a JSON object, got {type(event).__name__}")
        version = event.get("version")
        if version != EVENT_VERSION:
            raise ToolEventError(f"unsupported tool event version {version!r}")
        tool, use_id, args = event.get("tool"), event.get("toolUseId"), event.get("input")
        if not isinstance(tool, str) or not tool:
            raise ToolEventError("tool event: 'tool' must be a non-empty string")
        if not isinstance(use_id, str) or not use_id:
            raise ToolEventError("tool event: 'toolUseId' must be a non-empty string")
        if not isinstance(args, Mapping):
            raise ToolEventError("tool event: 'input' must be a JSON object")
        session = event.get("session") or {}
        if not isinstance(session, Mapping):
            raise ToolEventError("tool event: 'session' must be a JSON object")
        return cls(
            tool=tool,
            tool_use_id=use_id,
            input=args,
            connection_id=str(session.get("connectionId", "")),
            principal_id=str(session.get("principalId", "")),
        )


def success(result: Any) -> dict[str, Any]:
    """What a handler returns when the tool worked."""
    return {"result": result}


def failure(message: str) -> dict[str, Any]:
    """What a handler returns when the tool could not do its job (the model will say so)."""
    return {"error": message}


def result_from_payload(
    call_id: str, payload: bytes | str | Mapping[str, Any] | None, *, function_error: str = ""
) -> ToolResult:
    """Turn what a tool returned into the result the model gets; never raises on bad output."""
    if function_error:
        detail = _lambda_error_message(payload)
        return _error(call_id, f"the tool failed ({function_error}){detail}")
    if isinstance(payload, bytes | str):
        if len(payload) > MAX_RESULT_BYTES:
            return _error(call_id, f"the tool's answer was too large ({len(payload)} bytes)")
        try:
            value = json.loads(payload) if payload else None
        except RecursionError:
            return _error(call_id, "the tool's answer was nested too deeply")
        except ValueError:
            return _error(call_id, "the tool's answer was not valid JSON")
    else:
        value = payload
    if value is None:
        return _error(call_id, "the tool returned nothing")
    if isinstance(value, Mapping) and "error" in value:
        message = value["error"]
        text = message if isinstance(message, str) else json.dumps(message, default=str)
        return _error(call_id, text or "the tool reported an error")
    if isinstance(value, Mapping) and "result" in value:
        value = value["result"]
    try:
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return _error(call_id, "the tool's answer could not be read as JSON")
    if len(text.encode()) > MAX_RESULT_BYTES:
        return _error(call_id, f"the tool's answer was too large ({len(text.encode())} bytes)")
    return ToolResult(call_id, [TextPart(text)])


def error_result(call_id: str, message: str) -> ToolResult:
    """An error result the model can talk about ("the weather service did not answer")."""
    return _error(call_id, message)


def _error(call_id: str, message: str) -> ToolResult:
    # The plain sentence: ``is_error`` already says it is an error, the provider wraps it in the
    # form its model expects (Nova: {"error": ...}) and the client's tool frame shows it as is.
    return ToolResult(call_id, [TextPart(message)], is_error=True)


def _lambda_error_message(payload: bytes | str | Mapping[str, Any] | None) -> str:
    try:
        value = json.loads(payload) if isinstance(payload, bytes | str) else payload
    except (ValueError, RecursionError):
        return ""
    if isinstance(value, Mapping) and isinstance(value.get("errorMessage"), str):
        return ": " + str(value["errorMessage"])[:300]
    return ""
