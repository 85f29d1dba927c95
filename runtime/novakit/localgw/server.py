"""``LocalGateway``: the aiohttp adapter that ties the pieces to one HTTP server.

One port serves three things, as the stages of one API Gateway API do:

* WebSocket handshakes on ``/`` or the stage path ``/{stage}``, and on ``/{name}`` for each of
  ``stages`` (elsewhere: 403): the ``$connect`` integration decides, with ``x-stage`` naming the
  stage the client connected to, then the connection runs until it closes and ``$disconnect``
  follows;
* the ``@connections`` management API (``/@connections/{id}``, and ``/{stage}/@connections/{id}``
  for each stage: a connection is reached through its own stage, elsewhere it is gone, 410);
* static files for plain GETs when ``static_dir`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as socket_module
import time
from http import HTTPStatus
from types import TracebackType
from typing import Self

from aiohttp import web

from ..bridge.dialects.twilio import TWILIO_STAGE
from .auth import bearer_token, token_accepted, twilio_signature_accepted, twilio_stream_url
from .backends import BackendPool
from .config import GatewayConfig
from .connection import CLOSE_TIMEOUT, Connection
from .handshake import HandshakeDeadline
from .ids import new_connection_id, new_request_id
from .integration import (
    ConnectionContext,
    connect_rejection_status,
    connect_request,
    disconnect_request,
    integration_static_headers,
)
from .limits import GOING_AWAY, MESSAGE_LIMIT, Close
from .logs import AccessLogger, log, redact
from .management import ManagementApi
from .metering import GatewayStats
from .static import content_type, resolve_static

__all__ = ["LocalGateway"]

# How long stop() lets open connections close and post $disconnect before cancelling them.
STOP_TIMEOUT = CLOSE_TIMEOUT + 2.0
SOCKET_SEND_BUFFER = 64 * 1024  # bytes of a client's socket send buffer (Linux doubles it)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class LocalGateway:
    """A local API Gateway WebSocket API in front of one or more bridge processes::

    async with LocalGateway(GatewayConfig(backends=["http://127.0.0.1:9000"])) as gw:
        ...  # clients connect to gw.url; the bridge posts to gw.management_url
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.stats = GatewayStats()
        self._backends = BackendPool(
            config.backends,
            timeout=config.integration_timeout,
            static_headers=integration_static_headers(config.integration_secret),
            health_path=config.health_path,
            health_interval=config.health_interval,
            unhealthy_threshold=config.unhealthy_threshold,
            spread=config.spread,
            seed=config.spread_seed,
            keepalive=config.backend_keepalive,
        )
        self._connections: dict[str, Connection] = {}
        # WebSocket path -> the stage a client connecting there reaches.
        self._socket_paths = {"/": config.stage}
        for stage in (config.stage, *config.stages):
            self._socket_paths[f"/{stage}"] = self._socket_paths[f"/{stage}/"] = stage
        self._open_sessions = 0
        self._sessions_done = asyncio.Event()
        self._sessions_done.set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._backends.start()
        management = ManagementApi(
            self._connections.get,
            self.stats,
            credentials=self.config.credentials,
            region=self.config.region,
        )
        app = web.Application()
        for stage in ("", self.config.stage, *self.config.stages):
            path = (
                f"/{stage}/@connections/{{connection_id}}"
                if stage
                else "/@connections/{connection_id}"
            )
            handler = management.for_stage(stage or None)
            for method in ("POST", "GET", "DELETE"):
                app.router.add_route(method, path, handler)
        app.router.add_get("/{path:.*}", self._handle_get)
        self._runner = web.AppRunner(
            app, access_log_class=AccessLogger, access_log=log, shutdown_timeout=1.0
        )
        await self._runner.setup()
        assert self._runner.server is not None
        HandshakeDeadline(self.config.handshake_timeout, self._handshake_expired).install(
            self._runner.server
        )
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        log.info("listening on %s and %s", self.url, self.management_url)

    async def stop(self) -> None:
        for connection in list(self._connections.values()):
            connection.close(GOING_AWAY)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await self._sessions_done.wait()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._backends.close()

    def _handshake_expired(self, peer: object) -> None:
        self.stats.handshake_timeouts += 1
        log.info(
            "closed a connection that sent no complete request within %g s",
            self.config.handshake_timeout,
            extra={"remote": str(peer)},
        )

    # -- what it serves ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway is not started")
        return self._port

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{_url_host(self.config.host)}:{self.port}/"

    def stage_url(self, stage: str) -> str:
        """The WebSocket URL of ``stage`` (one of ``stages``, or the stage itself)."""
        if stage != self.config.stage and stage not in self.config.stages:
            raise ValueError(f"this gateway serves no stage {stage!r}")
        return f"{self.url}{stage}"

    @property
    def management_url(self) -> str:
        """The ``@connections`` base URL of every stage at once (``NOVAKIT_CONNECTIONS_URL``
        for a bridge behind one stage)."""
        return f"http://{_url_host(self.config.host)}:{self.port}"

    @property
    def stage_management_url(self) -> str:
        """The ``@connections`` base URL per stage, as the stack gives it to the bridge:
        ``{stage}`` stands for the connection's stage."""
        return f"{self.management_url}/{{stage}}"

    @property
    def static_url(self) -> str | None:
        return None if self.config.static_root is None else f"{self.management_url}/"

    @property
    def connections(self) -> list[str]:
        """Ids of the connections open now."""
        return list(self._connections)

    # -- handlers ----------------------------------------------------------------------------

    def _principal(self, stage: str) -> str | None:
        """What the authorizer would name: ``twilio`` for a checked phone stream."""
        if stage == TWILIO_STAGE:
            return "twilio" if self.config.twilio_auth_token is not None else None
        return self.config.principal if self.config.token is not None else None

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(
            compress=False,  # API Gateway negotiates no extensions
            max_msg_size=MESSAGE_LIMIT,
            timeout=CLOSE_TIMEOUT,
        )
        if not socket.can_prepare(request).ok:
            return self._static(request)
        stage = self._socket_paths.get(request.path)
        if stage is None:
            # API Gateway answers a handshake elsewhere than its stage with 403 Forbidden, before
            # any integration is called.
            self.stats.rejected_connects += 1
            log.info("handshake refused: no WebSocket route at %s", redact(request.path))
            return web.json_response({"message": "Forbidden"}, status=403)
        if stage == TWILIO_STAGE and self.config.twilio_auth_token is None:
            # No auth token to check Twilio's signature with: open like the rest of a gateway
            # without a token, refused when the gateway requires one (Twilio cannot send it).
            if self.config.token is not None:
                self.stats.rejected_connects += 1
                log.info("handshake refused: the phone stage has no Twilio auth token set")
                return web.json_response({"message": "Unauthorized"}, status=401)
        elif stage == TWILIO_STAGE:
            # Twilio signs the URL it connects to (scheme, host and port as it wrote them).
            url = twilio_stream_url(
                request.path,
                host=request.host,
                secure=request.secure,
                forwarded_proto=request.headers.get("X-Forwarded-Proto"),
                public_url=self.config.twilio_public_url,
            )
            signature = request.headers.get("X-Twilio-Signature")
            if not twilio_signature_accepted(self.config.twilio_auth_token, url, signature):
                self.stats.rejected_connects += 1
                log.info("handshake refused: no valid Twilio signature for %s", request.path)
                return web.json_response({"message": "Forbidden"}, status=403)
        else:
            # An empty ?token= is no token, as in the stack's authorizer: the header is read.
            presented = request.query.get("token") or None
            if presented is None and stage in self.config.bearer_stages:
                presented = bearer_token(request.headers.get("Authorization"))
            if not token_accepted(self.config.token, presented):
                self.stats.rejected_connects += 1
                log.info("handshake refused: no valid token for %s", redact(request.path_qs))
                return web.json_response({"message": "Unauthorized"}, status=401)
        context = ConnectionContext(
            connection_id=new_connection_id(),
            source_ip=request.remote or "",
            user_agent=request.headers.get("User-Agent", ""),
            stage=stage,
            connected_at_ms=time.time_ns() // 1_000_000,
            principal_id=self._principal(stage),
            requested_model=request.query.get("model"),
        )
        extra = {"connection_id": context.connection_id}
        result = await self._backends.send(connect_request(context, new_request_id()))
        rejection = connect_rejection_status(result.status)
        if rejection is not None:
            self.stats.rejected_connects += 1
            log.info(
                "$connect refused by %s: %s",
                result.backend,
                result.error or f"status {result.status}",
                extra=extra,
            )
            phrase = HTTPStatus(rejection).phrase if rejection in HTTPStatus else "Rejected"
            return web.json_response({"message": phrase}, status=rejection)
        await socket.prepare(request)
        await self._serve(context, socket, request)
        return socket

    async def _serve(
        self, context: ConnectionContext, socket: web.WebSocketResponse, request: web.Request
    ) -> None:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            # The kernel would otherwise buffer megabytes for a client that does not read
            # (send buffers grow to tcp_wmem's maximum) before outbound_buffer fills and posts
            # get 429: bound it, so outbound_buffer is what such a client costs.
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket_module.SOL_SOCKET, socket_module.SO_SNDBUF, SOCKET_SEND_BUFFER
                )

        def abort() -> None:
            if transport is not None:
                transport.abort()

        connection = Connection(
            context,
            socket,
            abort,
            backends=self._backends,
            stats=self.stats.opened(context.connection_id),
            gateway_stats=self.stats,
            idle_seconds=self.config.idle_seconds,
            max_seconds=self.config.max_seconds,
            integration_timeout=self.config.integration_timeout,
            max_inflight=self.config.max_inflight_per_connection,
            outbound_buffer=self.config.outbound_buffer,
            on_closing=self._forget,
        )
        self._connections[context.connection_id] = connection
        extra = {"connection_id": context.connection_id}
        log.info("connected from %s", context.source_ip, extra=extra)
        self._open_sessions += 1
        self._sessions_done.clear()
        try:
            await connection.run()
        finally:
            if transport is not None and transport.get_write_buffer_size() > 0:
                # The client never took what was sent, close frame included: like API Gateway
                # (the connection is gone once deleted or timed out), cut it rather than leave
                # a socket that lingers until the client reads.
                abort()
            close = connection.final_close
            self.stats.closed(context.connection_id, close.code)
            log.info("disconnected: %s %s", close.code, close.reason, extra=extra)
            await self._send_disconnect(context, close)
            self._open_sessions -= 1
            if self._open_sessions == 0:
                self._sessions_done.set()

    async def _send_disconnect(self, context: ConnectionContext, close: Close) -> None:
        result = await self._backends.send(disconnect_request(context, new_request_id(), close))
        if result.status is None or result.status >= 300:
            log.warning(
                "$disconnect to %s failed: %s",
                result.backend,
                result.error or f"status {result.status}",
                extra={"connection_id": context.connection_id},
            )

    def _forget(self, connection: Connection) -> None:
        self._connections.pop(connection.id, None)

    def _static(self, request: web.Request) -> web.StreamResponse:
        root = self.config.static_root
        if root is None:
            return web.Response(
                status=426,
                text="This endpoint expects a WebSocket handshake.\n",
                headers={"Upgrade": "websocket"},
            )
        path = resolve_static(root, request.path)
        if path is None:
            return web.Response(status=404, text="Not found\n")
        return web.FileResponse(path, headers={"Content-Type": content_type(path)})
