"""The bridge service: API Gateway's integration endpoints, health, and graceful shutdown.

API Gateway turns every WebSocket event into an HTTP request (HTTP_PROXY through a VPC link):

``POST /ws/connect``     ``$connect``: accept (200) or refuse (503 when full or draining)
``POST /ws/message``     ``$default``: one client frame in the body; answered at once (the work
                         happens in the connection's tasks, never inside the request)
``POST /ws/disconnect``  ``$disconnect``: the client left; close its Bedrock stream
``GET /health``          200 while accepting sessions, 503 while draining (NLB and ECS checks)

The connection id arrives in the ``x-connection-id`` header (the stack's request parameter
mapping); replies go out through ``@connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from aiohttp import web

from .. import s2s
from .connections import ConnectionsClient, RequestSigner, SigV4Signer, Unsigned
from .metrics import Metrics
from .protocol import ErrorCode, ProtocolError, parse_client_frame
from .session import BridgeSession
from .settings import BridgeSettings
from .tools import BoundTool, ToolRunner, tools_from_folder, tools_from_manifest

log = logging.getLogger(__name__)

METRICS_INTERVAL = 60.0


class Bridge:
    """Holds the sessions of one process and answers API Gateway's integration requests."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        engine: s2s.Engine | None = None,
        tools: Sequence[BoundTool] | None = None,
        signer: RequestSigner | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        if tools is None:
            tools = tools_from_manifest(
                settings.tools_manifest,
                region=settings.region,
                default_timeout=settings.tool_timeout,
            )
            if settings.tools_dir is not None:
                tools = [*tools, *tools_from_folder(settings.tools_dir)]
        self.tools = ToolRunner(tools)
        self.engine = engine or s2s.new(
            "nova",
            s2s.Config(
                model=settings.model,
                voice=settings.voice,
                instructions=settings.instructions,
                tools=self.tools.definitions,
                extra={"region": settings.region, **settings.provider_extra},
            ),
        )
        self.metrics = metrics or Metrics()
        self._signer = signer
        self.connections: ConnectionsClient | None = None
        self.sessions: dict[str, BridgeSession] = {}
        self.draining = False
        self._flusher: asyncio.Task[None] | None = None
        self._all_ended = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/ws/connect", self.on_connect)
        app.router.add_post("/ws/message", self.on_message)
        app.router.add_post("/ws/disconnect", self.on_disconnect)
        app.router.add_get("/health", self.on_health)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _startup(self, _app: web.Application) -> None:
        signer = self._signer
        if signer is None:
            try:
                signer = SigV4Signer(self.settings.region)
            except Exception:  # no credentials: only a local gateway accepts this
                log.warning("no AWS credentials: @connections requests go unsigned")
                signer = Unsigned()
        self.connections = ConnectionsClient(
            self.settings.connections_url, signer, attempts=self.settings.post_attempts
        )
        self._flusher = asyncio.create_task(self._flush_metrics(), name="metrics")
        log.info(
            "bridge ready",
            extra={
                "port": self.settings.port,
                "model": self.settings.model,
                "tools": [d.name for d in self.tools.definitions],
                "connections_url": self.settings.connections_url,
            },
        )

    async def _shutdown(self, _app: web.Application) -> None:
        await self.drain(0.0)
        if self._flusher is not None:
            self._flusher.cancel()
        self.metrics.flush()
        if self.connections is not None:
            await self.connections.close()
        await self.engine.close()

    async def drain(self, seconds: float) -> None:
        """Stop taking sessions, warn clients, let them finish for ``seconds``, then end them."""
        if not self.sessions:
            self.draining = True
            return
        self.draining = True
        log.info("draining", extra={"sessions": len(self.sessions), "seconds": seconds})
        for session in list(self.sessions.values()):
            session.draining("this server is shutting down; reconnect to continue")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._all_ended.wait()
        for session in list(self.sessions.values()):
            session.end("server shutting down")
        await asyncio.gather(
            *(s.wait_ended(10.0) for s in list(self.sessions.values())), return_exceptions=True
        )

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            self.metrics.gauge("SessionsActive", len(self.sessions))
            self.metrics.flush()

    # -- integration endpoints -----------------------------------------------------------

    async def on_connect(self, request: web.Request) -> web.Response:
        connection_id = request.headers.get("x-connection-id", "")
        if not connection_id:
            return web.json_response({"message": "x-connection-id header missing"}, status=400)
        if self.draining:
            return web.json_response({"message": "draining"}, status=503)
        if len(self.sessions) >= self.settings.max_sessions:
            log.warning("at capacity: refused a connection", extra={"connection_id": connection_id})
            return web.json_response({"message": "at capacity"}, status=503)
        if connection_id not in self.sessions:
            self._create(connection_id, request.headers.get("x-principal-id", ""), resumed=False)
        return web.json_response({"connectionId": connection_id})

    async def on_message(self, request: web.Request) -> web.Response:
        connection_id = request.headers.get("x-connection-id", "")
        if not connection_id:
            return web.json_response({"message": "x-connection-id header missing"}, status=400)
        session = self.sessions.get(connection_id)
        if session is None:
            # A frame for a connection this process does not hold (it restarted, or the
            # connect went elsewhere): take the connection on with a fresh session.
            if self.draining or len(self.sessions) >= self.settings.max_sessions:
                return web.json_response({"message": "unavailable"}, status=503)
            session = self._create(
                connection_id, request.headers.get("x-principal-id", ""), resumed=True
            )
        body = await request.read()
        try:
            frame = parse_client_frame(body)
        except ProtocolError as error:
            session.reject(error)
        except Exception:  # a parser bug must cost one frame, not the task
            log.exception("frame parser failed", extra={"connection_id": connection_id})
            session.reject(
                ProtocolError(ErrorCode.INTERNAL, "the frame could not be read", fatal=False)
            )
        else:
            session.receive(frame)
        return web.Response(status=200)

    async def on_disconnect(self, request: web.Request) -> web.Response:
        connection_id = request.headers.get("x-connection-id", "")
        session = self.sessions.get(connection_id)
        if session is not None:
            session.end("client disconnected")
        return web.Response(status=200)

    async def on_health(self, _request: web.Request) -> web.Response:
        body = {"status": "draining" if self.draining else "ok", "sessions": len(self.sessions)}
        return web.json_response(body, status=503 if self.draining else 200)

    def _create(self, connection_id: str, principal_id: str, *, resumed: bool) -> BridgeSession:
        assert self.connections is not None, "the application has not started"
        session = BridgeSession(
            connection_id,
            principal_id=principal_id,
            engine=self.engine,
            settings=self.settings,
            connections=self.connections,
            tools=self.tools,
            metrics=self.metrics,
            on_ended=self._ended,
            resumed=resumed,
        )
        self.sessions[connection_id] = session
        self._all_ended.clear()
        self.metrics.gauge("SessionsActive", len(self.sessions))
        return session

    def _ended(self, session: BridgeSession) -> None:
        if self.sessions.get(session.connection_id) is session:
            del self.sessions[session.connection_id]
        if not self.sessions:
            self._all_ended.set()


async def serve(bridge: Bridge, *, ready: asyncio.Event | None = None) -> None:
    """Run ``bridge`` until SIGTERM or SIGINT, then drain and exit."""
    runner = web.AppRunner(
        bridge.application(), handle_signals=False, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, bridge.settings.host, bridge.settings.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    port = runner.addresses[0][1] if runner.addresses else bridge.settings.port
    print(f"novakit bridge listening on http://{bridge.settings.host}:{port}", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        # Keep serving while draining: the sessions still get their clients' frames.
        log.info("stopping: draining sessions")
        await bridge.drain(bridge.settings.drain_seconds)
    finally:
        await runner.cleanup()
