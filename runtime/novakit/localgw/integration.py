"""Integration requests as API Gateway's HTTP_PROXY integration sends them to the bridge, sans I/O.

The CDK stack maps the route's context into request headers; this module produces exactly those
requests so the bridge cannot tell the local gateway from the real one:

====================  =======================  ===============================================
route key             request                  body
====================  =======================  ===============================================
``$connect``          ``POST /ws/connect``     empty
``$default``          ``POST /ws/message``     the client's text frame, ``application/json``
``$disconnect``       ``POST /ws/disconnect``  empty
====================  =======================  ===============================================

Every request carries ``x-connection-id``, ``x-request-id``, ``x-route-key``, ``x-source-ip``,
``x-stage`` and ``x-connected-at`` (epoch milliseconds); ``$connect`` adds ``x-principal-id``
when the authorizer accepted the client and ``x-requested-model`` when the handshake's query
string named a ``model``, ``$disconnect`` adds ``x-disconnect-status-code`` and
``x-disconnect-reason``. With a secret configured, every request also carries
``x-gateway-secret`` (``integration_static_headers``), the static header the stack's request
parameters add so that the bridge can tell API Gateway from anyone else in the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from ..bridge.auth import GATEWAY_SECRET_HEADER
from .limits import Close

__all__ = [
    "ConnectionContext",
    "IntegrationRequest",
    "RouteKey",
    "connect_rejection_status",
    "connect_request",
    "disconnect_request",
    "integration_static_headers",
    "internal_server_error_frame",
    "is_integration_failure",
    "message_request",
]


class RouteKey(StrEnum):
    CONNECT = "$connect"
    DEFAULT = "$default"
    DISCONNECT = "$disconnect"


ROUTE_PATHS = {
    RouteKey.CONNECT: "/ws/connect",
    RouteKey.DEFAULT: "/ws/message",
    RouteKey.DISCONNECT: "/ws/disconnect",
}


@dataclass(frozen=True)
class ConnectionContext:
    """What API Gateway knows about a connection from its handshake."""

    connection_id: str
    source_ip: str
    user_agent: str
    stage: str
    connected_at_ms: int
    principal_id: str | None = None  # set when the authorizer accepted the client
    # The handshake's ?model= (OpenAI Realtime clients name a model): passed on $connect as
    # x-requested-model, as the stack maps route.request.querystring.model.
    requested_model: str | None = None


@dataclass(frozen=True)
class IntegrationRequest:
    """One HTTP POST to a backend: path relative to the backend's base URL, headers, body."""

    route_key: RouteKey
    request_id: str
    path: str
    headers: dict[str, str]
    body: bytes


def _context_headers(
    context: ConnectionContext, route_key: RouteKey, request_id: str
) -> dict[str, str]:
    return {
        "x-connection-id": context.connection_id,
        "x-request-id": request_id,
        "x-route-key": route_key.value,
        "x-source-ip": context.source_ip,
        "x-stage": context.stage,
        "x-connected-at": str(context.connected_at_ms),
    }


def integration_static_headers(secret: str | None) -> dict[str, str]:
    """The headers every integration request carries whatever its route (static values)."""
    return {} if secret is None else {GATEWAY_SECRET_HEADER: secret}


def _header_safe(text: str) -> str:
    # A client chooses its close reason; control characters (CR, LF) cannot go in a header.
    return "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)


def connect_request(context: ConnectionContext, request_id: str) -> IntegrationRequest:
    headers = _context_headers(context, RouteKey.CONNECT, request_id)
    if context.principal_id is not None:
        headers["x-principal-id"] = context.principal_id
    if context.requested_model is not None:
        headers["x-requested-model"] = _header_safe(context.requested_model)
    return IntegrationRequest(
        RouteKey.CONNECT, request_id, ROUTE_PATHS[RouteKey.CONNECT], headers, b""
    )


def message_request(
    context: ConnectionContext, request_id: str, frame: bytes
) -> IntegrationRequest:
    headers = _context_headers(context, RouteKey.DEFAULT, request_id)
    # API Gateway passes the frame through as-is; the stack declares it JSON.
    headers["content-type"] = "application/json"
    return IntegrationRequest(
        RouteKey.DEFAULT, request_id, ROUTE_PATHS[RouteKey.DEFAULT], headers, frame
    )


def disconnect_request(
    context: ConnectionContext, request_id: str, close: Close
) -> IntegrationRequest:
    headers = _context_headers(context, RouteKey.DISCONNECT, request_id)
    headers["x-disconnect-status-code"] = str(close.code)
    headers["x-disconnect-reason"] = _header_safe(close.reason)
    return IntegrationRequest(
        RouteKey.DISCONNECT, request_id, ROUTE_PATHS[RouteKey.DISCONNECT], headers, b""
    )


def internal_server_error_frame(connection_id: str, request_id: str) -> str:
    """The text frame API Gateway sends a client when a frame's integration fails."""
    return json.dumps(
        {"message": "Internal server error", "connectionId": connection_id, "requestId": request_id}
    )


def is_integration_failure(status: int | None) -> bool:
    """Whether a ``$default`` outcome makes API Gateway tell the client (no response, or 5xx)."""
    return status is None or status >= 500


def connect_rejection_status(status: int | None) -> int | None:
    """The handshake's HTTP status for a ``$connect`` outcome; ``None`` accepts the client.

    A 2xx accepts; a backend 4xx is passed on; anything else (5xx, other codes, no response)
    becomes 502.
    """
    if status is not None and 200 <= status < 300:
        return None
    if status is not None and 400 <= status < 500:
        return status
    return 502
