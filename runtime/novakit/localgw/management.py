"""The ``@connections`` management API: ``POST`` (send), ``GET`` (status), ``DELETE`` (hang up).

Served at ``{base}/@connections/{connectionId}`` (and under the stage path, as on AWS). Errors
look like API Gateway's: an ``x-amzn-ErrorType`` header and a JSON ``{"message": ...}`` body.
Checks run in this order: body size (413), signature (403), connection (410), then the method's
own (400 for a body that is not UTF-8, 429 when the client's outbound buffer is full).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from .auth import SignatureRejectedError, verify_management_signature
from .connection import Connection, Delivery
from .limits import DELETED, FRAME_LIMIT
from .logs import log
from .metering import GatewayStats

__all__ = ["ManagementApi", "iso8601"]


def iso8601(moment: datetime.datetime) -> str:
    """UTC time with milliseconds and a ``Z``, as API Gateway writes timestamps."""
    utc = moment.astimezone(datetime.UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response(
        {"message": message},
        status=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())},
    )


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class ManagementApi:
    def __init__(
        self,
        lookup: Callable[[str], Connection | None],
        stats: GatewayStats,
        *,
        credentials: tuple[str, str] | None,
        region: str,
    ) -> None:
        self._lookup = lookup
        self._stats = stats
        self._credentials = credentials
        self._region = region

    def for_stage(
        self, stage: str | None
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The handler of ``/{stage}/@connections/{id}``: it reaches the connections of that
        stage only (``None``: the stage-less local path, which reaches every connection)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, stage)

        return handle

    async def handle(self, request: web.Request, stage: str | None = None) -> web.StreamResponse:
        connection_id = request.match_info["connection_id"]
        extra = {"connection_id": connection_id}
        body = await _read_body(request, FRAME_LIMIT)
        if body is None:
            return _error(
                413,
                "PayloadTooLargeException",
                f"Message is larger than the {FRAME_LIMIT}-byte frame limit",
            )
        if self._credentials is not None:
            try:
                verify_management_signature(
                    request.method,
                    request.raw_path,
                    request.headers.items(),
                    body,
                    credentials=self._credentials,
                    region=self._region,
                    now=datetime.datetime.now(datetime.UTC),
                )
            except SignatureRejectedError as exc:
                log.warning("@connections %s refused: %s", request.method, exc, extra=extra)
                return _error(403, "ForbiddenException", str(exc))
        connection = self._lookup(connection_id)
        if connection is not None and stage is not None and connection.context.stage != stage:
            # Another stage's connection: a bridge posting here has the wrong @connections.
            log.warning(
                "@connections %s on stage %s refused: the connection is on %s",
                request.method,
                stage,
                connection.context.stage,
                extra=extra,
            )
            connection = None
        if connection is None:
            return _error(410, "GoneException", f"Connection {connection_id} is gone")
        if request.method == "POST":
            return self._post(connection, body)
        if request.method == "GET":
            return self._get(connection)
        connection.close(DELETED)
        return web.Response(status=204)

    def _post(self, connection: Connection, body: bytes) -> web.Response:
        try:
            frame = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "BadRequestException", "Data must be valid UTF-8 text")
        delivery = connection.post(frame, len(body))
        if delivery is Delivery.GONE:
            return _error(410, "GoneException", f"Connection {connection.id} is gone")
        if delivery is Delivery.BUFFER_FULL:
            self._stats.throttled_posts += 1
            return _error(
                429,
                "LimitExceededException",
                "The client is not reading: its outbound buffer is full",
            )
        return web.Response(status=200)

    def _get(self, connection: Connection) -> web.Response:
        context = connection.context
        return web.json_response(
            {
                "ConnectedAt": iso8601(connection.connected_at),
                "Identity": {"SourceIp": context.source_ip, "UserAgent": context.user_agent},
                "LastActiveAt": iso8601(connection.last_active_at),
            }
        )
