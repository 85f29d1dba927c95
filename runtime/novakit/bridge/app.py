"""The bridge service: API Gateway's integration endpoints, health, and graceful shutdown.

API Gateway turns every WebSocket event into an HTTP request (HTTP_PROXY through a VPC link):

``POST /ws/connect``     ``$connect``: accept (200) or refuse (503 when full or draining)
``POST /ws/message``     ``$default``: one client frame in the body; answered at once (the work
                         happens in the connection's tasks, never inside the request)
``POST /ws/disconnect``  ``$disconnect``: the client left; close its Bedrock stream
``GET /health``          200 while accepting sessions, 503 while draining (NLB and ECS checks)

The connection id arrives in the ``x-connection-id`` header (the stack's request parameter
mapping); replies go out through ``@connections``.

Every request but ``GET /health`` must prove it comes from API Gateway (``x-gateway-secret``,
checked before anything else is read) and, when it carries ``x-novakit-*`` headers, that a peer
task signed it (see ``auth``); otherwise it is answered 403 and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp

from .. import s2s
from ..signals import stop_event
from . import protection
from .auth import GATEWAY_SECRET_HEADER, RELAY_HEADER_PREFIX, GatewayAuth, RelayAuth
from .cluster import (
    ADOPT_HEADER,
    RELAYED_HEADER,
    Relay,
    RelayOutcome,
    RouteCache,
    discover_address,
)
from .connections import (
    ConnectionsClient,
    RequestSigner,
    SigV4Signer,
    Unsigned,
)
from .dialects import dialect_for_stage
from .directory import Directory, DynamoDirectory, MemoryDirectory, SessionRecord
from .ended import EndedConnections
from .hangup import END_CALL
from .http import (
    MAX_BODY,
    NOT_FOUND,
    OK,
    TOO_LARGE,
    HttpServer,
    Request,
    Response,
    json_response,
)
from .lease import SessionLease
from .metrics import Metrics
from .processes import listening_sockets, sessions_of, sibling_addresses
from .protocol import ErrorCode, ProtocolError
from .session import BridgeSession
from .settings import PREFIX, BridgeSettings
from .tenure import Heartbeat, Tenure
from .tools import BoundTool, ToolRunner, ToolSetupError, tools_from_folder, tools_from_manifest

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
# The API Gateway stage of the request (the stack maps context.stage into it): it chooses the
# client protocol and the @connections a reply goes to.
STAGE_HEADER = "x-stage"
# The model a client named when it connected (?model=, mapped by the stack on $connect).
REQUESTED_MODEL_HEADER = "x-requested-model"
MAX_MODEL_CHARS = 128
# At most one warning per interval about refused requests: a flood of forged requests must not
# become a flood of log lines.
REFUSAL_LOG_SECONDS = 10.0
# Sessions fencing themselves at once after this task's heartbeat lapsed (each one write).
CONFIRMS_AT_ONCE = 8


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
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        # Refuses to build a bridge that nobody decided may go unguarded.
        self.gateway_auth = GatewayAuth(
            settings.gateway_secrets, insecure=settings.insecure_no_gateway_secret
        )
        self.relay_auth = RelayAuth.from_secrets(
            settings.gateway_secrets, settings.relay_window_seconds
        )
        self._refused = 0
        self._refusal_logged = -REFUSAL_LOG_SECONDS
        if tools is None:
            tools = tools_from_manifest(
                settings.tools_manifest,
                region=settings.region,
                default_timeout=settings.tool_timeout,
            )
            if settings.tools_dir is not None:
                tools = [*tools, *tools_from_folder(settings.tools_dir)]
        self.tools = ToolRunner(tools)
        if settings.phone_hangup and any(d.name == END_CALL.name for d in self.tools.definitions):
            raise ToolSetupError(
                f"a tool is named {END_CALL.name!r}, the name of the phone's built-in hang-up"
                f" tool ({PREFIX}PHONE_HANGUP=1): rename the tool"
            )
        self.engine = engine or s2s.new(
            "nova",
            s2s.Config(
                model=settings.model,
                voice=settings.voice,
                instructions=settings.instructions,
                tools=self.tools.definitions,
                extra={
                    "region": settings.region,
                    **({"allow_retired_model": True} if settings.allow_retired_model else {}),
                    **settings.provider_extra,
                },
            ),
        )
        self.metrics = metrics or Metrics(settings.metrics_service)
        self._signer = signer
        self.connections: ConnectionsClient | None = None
        self.sessions: dict[str, BridgeSession] = {}
        # Connections whose conversation is over: their frames are refused, never adopted.
        self.ended = EndedConnections()
        self._hang_ups: set[asyncio.Task[bool]] = set()
        self._confirming: set[asyncio.Task[bool]] = set()
        self._confirm_slots = asyncio.Semaphore(CONFIRMS_AT_ONCE)
        self.draining = False
        self._flusher: asyncio.Task[None] | None = None
        self._all_ended = asyncio.Event()
        self.directory: Directory = directory or (
            DynamoDirectory(settings.directory_table, settings.region)
            if settings.directory_table
            else MemoryDirectory()
        )
        self.relay = Relay(settings.relay_timeout, self.relay_auth)
        # Where frames of sessions held elsewhere went lately: most skip the directory read.
        self.routes = RouteCache()
        # Where other tasks reach this one; serve() fixes it once the port is bound.
        self.address = settings.advertise_url or ""
        # The other processes of this task (processes.py): they stop when this one does, so
        # they are never given its sessions.
        self.siblings: frozenset[str] = frozenset()
        self._siblings_http: aiohttp.ClientSession | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._next_peer = 0
        self._heartbeat: asyncio.Task[None] | None = None
        # Set at startup, once the address is known: the heartbeat renews this task's tenure,
        # which tells its sessions when they must fence themselves (lease.py).
        self.heartbeat: Heartbeat | None = None
        self._protection: asyncio.Task[None] | None = None
        self._last_request = 0.0
        # Every integration endpoint takes POST; /health GET and HEAD.
        self._routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/ws/connect": self.on_connect,
            "/ws/message": self.on_message,
            "/ws/disconnect": self.on_disconnect,
        }

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Make ready to take requests (before the server listens)."""
        if self.gateway_auth.insecure:
            log.warning(
                "NOVAKIT_INSECURE_NO_GATEWAY_SECRET: this bridge accepts integration requests "
                "from anyone who reaches its port, and cannot relay to peers"
            )
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
        if not self.address:
            self.address = discover_address(self.settings.private_port or self.settings.port)
        self.siblings = sibling_addresses(self.address, self.settings)
        self.heartbeat = Heartbeat(
            self.directory,
            self.address,
            Tenure(self.settings.owner_timeout),
            on_lapse=self._after_lapse,
        )
        self._heartbeat = asyncio.create_task(
            self.heartbeat.run(self.settings.heartbeat_seconds), name="heartbeat"
        )
        if not self.settings.process_index:  # a lone process, or the first of a task's
            self._protection = protection.start(self._protection_status)
        log.info(
            "bridge ready",
            extra={
                "port": self.settings.port,
                "model": self.settings.model,
                "tools": [d.name for d in self.tools.definitions],
                "connections_url": self.settings.connections_url,
                "address": self.address,
                "directory": self.settings.directory_table or "memory",
            },
        )

    async def stop(self) -> None:
        """End every session and release what the bridge holds (after the server stopped
        listening, before it closes its connections)."""
        await self.drain(0.0)
        await asyncio.gather(*self._hang_ups, return_exceptions=True)
        await protection.stop(self._protection)
        if self._siblings_http is not None:
            await self._siblings_http.close()
        for task in (self._flusher, self._heartbeat):
            if task is not None:
                task.cancel()
        await self.relay.close()
        await self.directory.close()
        self.metrics.flush()
        if self.connections is not None:
            await self.connections.close()
        await self.engine.close()

    async def _protection_status(self) -> tuple[int, bool]:
        """Scale-in protection is the task's: with several processes the first one asks for it,
        counting its siblings' sessions too (one idle process must not clear it under the
        others' conversations)."""
        sessions = len(self.sessions)
        if self.siblings:
            if self._siblings_http is None:
                self._siblings_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
            sessions += await sessions_of(self._siblings_http, self.siblings)
        return sessions, self.draining

    async def drain(self, seconds: float) -> None:
        """Stop taking sessions. With other tasks alive, hand every session over to them (the
        clients hear at most a short gap); alone, warn clients, let them finish for
        ``seconds``, then end them."""
        if not self.sessions:
            self.draining = True
            return
        self.draining = True
        peers = self._outside(await self._live_peers())
        if peers:
            log.info(
                "handing sessions over", extra={"sessions": len(self.sessions), "peers": len(peers)}
            )
            for session in list(self.sessions.values()):
                session.end("this task is stopping", hand_over=True)
            await asyncio.gather(
                *(s.wait_ended(10.0) for s in list(self.sessions.values())),
                return_exceptions=True,
            )
            await self._linger(seconds)
            return
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

    async def _linger(self, seconds: float) -> None:
        """Keep passing frames to peers until the load balancer stops sending them here (no
        request for a second), for at most ``seconds``: what arrives now is not lost."""
        deadline = time.monotonic() + seconds
        # Polls for the *absence* of requests, which no event can signal.
        while time.monotonic() < deadline and time.monotonic() - self._last_request < 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def _live_peers(self) -> list[str]:
        try:
            return await self.directory.peers(self.settings.owner_timeout)
        except Exception as exc:  # the directory is unreachable: behave as a lone task
            log.warning("could not list peers: %r", exc)
            return []

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics_seconds)
            self.metrics.gauge("SessionsActive", len(self.sessions))
            self.metrics.flush()

    # -- who may call ---------------------------------------------------------------------

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """The HTTP server's handler: an answer now, or a coroutine when the request must wait
        (a directory read, a relay, a new session). A frame for a session this task holds is
        handed over here, without a task of its own.

        API Gateway's secret first, before any other header is read; then, for a request with
        relay headers, the peer's signature. Health checks (NLB, ECS) carry neither."""
        path = request.path
        if path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return self.on_health(request)
        headers = request.headers
        if not self.gateway_auth.accepts(headers.get(GATEWAY_SECRET_HEADER)):
            return self._refuse(request, "no valid gateway secret")
        if request.too_large:
            return TOO_LARGE
        if any(name.startswith(RELAY_HEADER_PREFIX) for name in headers):  # lower-case names
            problem = self.relay_auth.verify(request.method, path, headers, request.body)
            if problem is not None:
                return self._refuse(request, problem)
            request.verified_relay = True
        handler = self._routes.get(path)
        if handler is None:
            return _NOT_GET if path == HEALTH_PATH else NOT_FOUND
        if request.method != "POST":
            return _NOT_POST
        if path == "/ws/message":
            session = self._held_now(headers.get("x-connection-id", ""))
            if session is not None:
                self._last_request = time.monotonic()
                return self._deliver(session, request.body)
        return handler(request)

    def _refuse(self, request: Request, reason: str) -> Response:
        self.metrics.count("RequestsRefused")
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_SECONDS:
            log.warning(
                "refused a request: %s",
                reason,
                extra={"path": request.path, "remote": request.remote, "refused": self._refused},
            )
            self._refusal_logged = now
            self._refused = 0
        return FORBIDDEN

    # -- integration endpoints -----------------------------------------------------------

    async def on_connect(self, request: Request) -> Response:
        connection_id = request.headers.get("x-connection-id", "")
        if not connection_id:
            return json_response({"message": "x-connection-id header missing"}, status=400)
        if self.draining:
            return json_response({"message": "draining"}, status=503)
        if len(self.sessions) >= self.settings.max_sessions:
            log.warning("at capacity: refused a connection", extra={"connection_id": connection_id})
            self.metrics.count("SessionsRefused")
            return json_response({"message": "at capacity"}, status=503)
        if connection_id not in self.sessions:
            principal = request.headers.get("x-principal-id", "")
            stage = request.headers.get(STAGE_HEADER, "")
            term = self._term()
            record = await self.directory.claim(
                connection_id, self.address, principal=principal, state=_stage_state(stage)
            )
            if record is None:  # a retried $connect: the first one registered it
                record = await self.directory.get(connection_id)
                if record is None or record.ended:
                    return json_response({"message": "connection is over"}, status=403)
                if record.owner != self.address:
                    # The first attempt landed on another task, which holds the session: a
                    # second one here would answer the same client twice.
                    return json_response({"connectionId": connection_id})
            self._create(
                connection_id,
                principal,
                lease=self._lease(record, term),
                resumed=False,
                stage=_record_stage(record, stage),
                requested_model=request.headers.get(REQUESTED_MODEL_HEADER, "")[:MAX_MODEL_CHARS],
            )
        return json_response({"connectionId": connection_id})

    async def on_message(self, request: Request) -> Response:
        connection_id = request.headers.get("x-connection-id", "")
        if not connection_id:
            return json_response({"message": "x-connection-id header missing"}, status=400)
        body = request.body
        self._last_request = time.monotonic()
        session = self.sessions.get(connection_id)
        if session is not None and not await self._still_owned(session):
            session = None  # taken over while this task stalled: the frame goes to the owner
        if session is None and connection_id in self.ended:
            return self._refuse_ended(connection_id, request)
        if session is None:
            located = await self._locate(request, connection_id, body)
            if isinstance(located, Response):
                return located
            session = located
        return self._deliver(session, body)

    def _deliver(self, session: BridgeSession, body: bytes) -> Response:
        """Hand one client frame to its session: every answer is 200, what went wrong with the
        frame goes to the client as an error frame."""
        try:
            frames = session.parse(body)
        except ProtocolError as error:
            session.reject(error)
        except Exception:  # a parser bug must cost one frame, not the task
            log.exception("frame parser failed", extra={"connection_id": session.connection_id})
            session.reject(
                ProtocolError(ErrorCode.INTERNAL, "the frame could not be read", fatal=False)
            )
        else:
            for frame in frames:
                session.receive(frame)
        return OK

    async def on_disconnect(self, request: Request) -> Response:
        connection_id = request.headers.get("x-connection-id", "")
        session = self.sessions.get(connection_id)
        if session is not None and await self._still_owned(session):
            session.end("client disconnected")  # during a hand-over too: then it ends here
            return OK
        if connection_id in self.ended:
            return OK
        if request.verified_relay and RELAYED_HEADER in request.headers:
            return CONFLICT
        route = await self.directory.owner_of(connection_id)
        if route is None or route.ended:
            return OK
        if route.owner and route.owner != self.address:
            relayed = await self.relay.forward(route.owner, "/ws/disconnect", request.headers, b"")
            if relayed.outcome is RelayOutcome.DELIVERED:
                return OK
            if relayed.outcome is RelayOutcome.TIMED_OUT and await self.directory.alive(
                route.owner, self.settings.owner_timeout
            ):
                # A slow owner still holds it: it learns the client left from its next post
                # (410) or presence check; a tombstone now would end it under its feet.
                return OK
        # Nobody holds it: the conversation is over, and must not start again.
        await self.directory.end(connection_id, owner=route.owner)
        self.ended.add(connection_id, closed=True)
        return OK

    def on_health(self, _request: Request) -> Response:
        body = {"status": "draining" if self.draining else "ok", "sessions": len(self.sessions)}
        return json_response(body, status=503 if self.draining else 200)

    # -- ownership: relay to the owner, or take the session over -------------------------

    async def _locate(
        self, request: Request, connection_id: str, body: bytes
    ) -> BridgeSession | Response:
        """The local session for a frame this task does not hold yet, or the response to give
        when the frame went to (or must go to) another task."""
        verified = request.verified_relay
        relayed = verified and RELAYED_HEADER in request.headers
        handed_over_by = request.headers.get(ADOPT_HEADER) if verified else None
        # One lookup per connection at a time: concurrent frames of a connection this task
        # does not hold must not each take it over. The entry lives while requests use it.
        lock, users = self._locks.get(connection_id, (asyncio.Lock(), 0))
        self._locks[connection_id] = (lock, users + 1)
        try:
            async with lock:
                if relayed and handed_over_by is None:
                    # The sender believes this task owns the connection. Under the lock, a
                    # claim this task is making completes first: answering 409 while the
                    # session is being created would make the sender take it over too.
                    session = self._held(connection_id)
                    if session is not None:
                        return session
                    # It does not hold it (it restarted, or ended the session): the sender
                    # takes the session over.
                    return CONFLICT
                return await self._adopt_or_relay(
                    request, connection_id, body, handed_over_by=handed_over_by
                )
        finally:
            lock, users = self._locks[connection_id]
            if users == 1:
                del self._locks[connection_id]
            else:
                self._locks[connection_id] = (lock, users - 1)

    async def _adopt_or_relay(
        self,
        request: Request,
        connection_id: str,
        body: bytes,
        *,
        handed_over_by: str | None,
    ) -> BridgeSession | Response:
        session = self._held(connection_id)
        if session is not None:  # adopted while this request waited for the lock
            return session
        if connection_id in self.ended:  # ended while this request waited for the lock
            return self._refuse_ended(connection_id, request)
        # The owner a frame of this session went to lately, and how relaying this one went.
        tried: tuple[str, RelayOutcome] | None = None
        if handed_over_by is None and not self.draining:
            tried = await self._relay_to_known_owner(request, connection_id, body)
            if tried is None:
                return OK
        if self.draining and handed_over_by is None:
            # This task takes no session on: a live peer routes the frame (and refuses it if
            # the conversation is over), so a draining task reads nothing per frame.
            passed = await self._pass_to_peer(request, body)
            if passed is not None:
                return passed
            # No other task is alive: the whole task drains alone, and the frame goes on to
            # the sibling that owns the session, like any frame.
        principal = request.headers.get("x-principal-id", "")
        stage = request.headers.get(STAGE_HEADER, "")
        for _ in range(3):  # each round: someone else changed the record; look again
            route = await self.directory.owner_of(connection_id)
            if route is None:
                if self.draining and handed_over_by is None:
                    return json_response({"message": "draining"}, status=503)
                # No record (it expired, or a single process restarted): a fresh session.
                if len(self.sessions) >= self.settings.max_sessions:
                    self.metrics.count("SessionsRefused")
                    return json_response({"message": "at capacity"}, status=503)
                term = self._term()
                claimed = await self.directory.claim(
                    connection_id, self.address, principal=principal, state=_stage_state(stage)
                )
                if claimed is not None:
                    return self._create(
                        connection_id,
                        principal,
                        lease=self._lease(claimed, term),
                        resumed=True,
                        stage=_record_stage(claimed, stage),
                    )
                continue
            if route.ended:
                # The conversation is over (the client ended it or left): never start it again.
                self.ended.add(connection_id, closed=False)
                return self._refuse_ended(connection_id, request)
            owner = route.owner
            # Whoever owns the session gets the frame, whatever a relay's headers say: a
            # draining task hands frames to its peers in turn, and another peer may have
            # adopted the session already. Taking it from that peer would leave two live
            # sessions answering one client. The owner answering that it does not hold the
            # session (409), or being gone, is what lets this task take it over.
            outcome: RelayOutcome | None = None
            if owner and owner != self.address and tried is not None and tried[0] == owner:
                outcome = tried[1]  # this frame was just relayed there: not twice
            elif owner and owner != self.address:
                result = await self.relay.forward(owner, "/ws/message", request.headers, body)
                self.metrics.observe("RelayLatencyMs", result.seconds * 1000)
                if result.outcome is RelayOutcome.DELIVERED:
                    self.routes.remember(connection_id, owner)
                    return OK
                outcome = result.outcome
            tried = None
            # Taking over needs the whole record (the conversation); routing needed the owner.
            record = await self.directory.get(connection_id)
            if record is None or record.ended or record.owner != owner:
                continue
            # A relay that timed out says the owner is slow, not that it is gone: only a
            # heartbeat older than owner_timeout does. Asked after reading the record, so an
            # owner that woke, beat and fenced the record (lease.py) either shows alive here
            # or has moved the record past the version this claim needs.
            if outcome is RelayOutcome.TIMED_OUT and await self.directory.alive(
                owner, self.settings.owner_timeout
            ):
                # Alive but slow: taking over would cut a working session. This frame is
                # lost (API Gateway tells the client); the next one will try again.
                self.metrics.count("RelaysToSlowOwner")
                log.warning(
                    "owner %s is slow; frame not delivered",
                    owner,
                    extra={"connection_id": connection_id},
                )
                return json_response({"message": "owner busy"}, status=503)
            # A hand-over is real only when the record says so: nobody owns the session and
            # the task that released it is the one passing the frame. A header naming a task
            # proves nothing about the session.
            adopting = (
                handed_over_by is not None
                and not record.owner
                and record.handed_over_by == handed_over_by
            )
            if self.draining and not adopting:
                # Passed here by a draining peer: never pass a passed frame on again; the
                # sender tries its next peer.
                return CONFLICT
            if len(self.sessions) >= self.settings.max_sessions:
                # A full task takes no session over either: a draining peer then offers the
                # frame to its next peer, and the client's next frame tries again.
                log.warning(
                    "at capacity: did not take a session over",
                    extra={"connection_id": connection_id},
                )
                self.metrics.count("SessionsRefused")
                return json_response({"message": "at capacity"}, status=503)
            taken = await self._take_over(record, principal, stage)
            if taken is not None:
                return taken
        return json_response({"message": "ownership is changing; retry"}, status=503)

    async def _relay_to_known_owner(
        self, request: Request, connection_id: str, body: bytes
    ) -> tuple[str, RelayOutcome] | None:
        """Relay a frame to the owner this session's frames went to lately, without reading
        the directory. ``None`` once it is delivered; otherwise the owner tried (none: ``""``)
        and how it went, for the directory's way to go on from (the frame is not relayed to
        the same owner twice)."""
        owner = self.routes.get(connection_id)
        if owner is None:
            return "", RelayOutcome.NOT_OWNER
        result = await self.relay.forward(owner, "/ws/message", request.headers, body)
        self.metrics.observe("RelayLatencyMs", result.seconds * 1000)
        if result.outcome is RelayOutcome.DELIVERED:
            return None
        self.routes.forget(connection_id)
        return owner, result.outcome

    async def _take_over(
        self, record: SessionRecord, principal: str, stage: str
    ) -> BridgeSession | None:
        started = time.monotonic()
        term = self._term()
        claimed = await self.directory.claim(
            record.connection_id, self.address, replacing=record, principal=principal
        )
        if claimed is None:
            return None  # another task won the race
        if record.connection_id in self.ended:
            # The client left while the claim was being written ($disconnect, on this task,
            # found it owned here and held by no session): over, not to be started again.
            return None
        self.metrics.count("Takeovers")
        log.info(
            "took the session over",
            extra={
                "connection_id": record.connection_id,
                "previous_owner": record.owner or None,
                "turns": len(claimed.state.get("history", [])),
                "claim_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return self._create(
            record.connection_id,
            claimed.principal or principal,
            lease=self._lease(claimed, term),
            resumed=True,
            stage=_record_stage(claimed, stage),
        )

    def _held_now(self, connection_id: str) -> BridgeSession | None:
        """The local session of a connection when a frame can go to it without waiting: held,
        and its lease trusted without a directory write."""
        session = self.sessions.get(connection_id)
        if session is None or (session.lease is not None and not session.lease.trusted_now()):
            return None
        return session

    def _held(self, connection_id: str) -> BridgeSession | None:
        """The local session of a connection, unless another task took it over (it is still
        winding down here)."""
        session = self.sessions.get(connection_id)
        if session is None or (session.lease is not None and session.lease.lost):
            return None
        return session

    def _term(self) -> int:
        """The tenure's term now: read *before* a claim is sent, so that a lapse while the
        claim was out makes the new session fence itself before it sends anything."""
        return self.heartbeat.tenure.term if self.heartbeat is not None else 0

    def _lease(self, record: SessionRecord, term: int) -> SessionLease:
        return SessionLease(self.directory, record, self.heartbeat, term=term)

    def _after_lapse(self) -> None:
        """This task was stalled or cut off for longer than peers wait: every session fences
        its record now (a session another task took over ends quietly)."""
        sessions = [s for s in self.sessions.values() if s.lease is not None]
        if not sessions:
            return
        log.warning("heartbeat lapsed: confirming every session", extra={"sessions": len(sessions)})
        for session in sessions:
            task = asyncio.get_running_loop().create_task(
                self._confirm_after_lapse(session), name=f"confirm-{session.connection_id}"
            )
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)

    async def _confirm_after_lapse(self, session: BridgeSession) -> bool:
        async with self._confirm_slots:  # a few at a time: the directory serves frames too
            return await self._still_owned(session)

    async def _still_owned(self, session: BridgeSession) -> bool:
        """Whether a local session may take a frame: after this task stalled, its record is
        fenced first. A session another task took over ends here, quietly, and the frame goes
        to the new owner instead of being lost with it."""
        if session.lease is None:
            return True
        try:
            await session.lease.guard()
        except s2s.FencedError:
            session.end("ownership moved")
            return False
        return True

    def _refuse_ended(self, connection_id: str, request: Request) -> Response:
        """A frame for a conversation that is over: refused (the client was sent ``ended``),
        and the connection closed if it may still be open."""
        if self.ended.needs_closing(connection_id):
            assert self.connections is not None, "the application has not started"
            log.info(
                "closing a connection whose conversation ended",
                extra={"connection_id": connection_id},
            )
            connections = self.connections.for_stage(request.headers.get(STAGE_HEADER, ""))
            task = asyncio.create_task(
                connections.hang_up(connection_id), name=f"hang-up-{connection_id}"
            )
            self._hang_ups.add(task)
            task.add_done_callback(self._hang_ups.discard)
        return json_response(
            {"message": "the conversation has ended", "code": ErrorCode.SESSION_ENDED.value}
        )

    async def _pass_to_peer(self, request: Request, body: bytes) -> Response | None:
        """While draining: hand a frame to a live task, which takes the session on. ``None``
        when only this task's own processes are alive (they are draining too)."""
        alive = await self.directory.peers(self.settings.owner_timeout)
        peers = self._outside(alive)
        if not peers and self.siblings:
            return None
        if peers:
            # Start at a different peer each time so adopted sessions spread out.
            self._next_peer = (self._next_peer + 1) % len(peers)
            for peer in peers[self._next_peer :] + peers[: self._next_peer]:
                result = await self.relay.forward(
                    peer, "/ws/message", request.headers, body, handed_over_by=self.address
                )
                if result.outcome is RelayOutcome.DELIVERED:
                    return OK
        return json_response({"message": "draining"}, status=503)

    def _outside(self, addresses: Sequence[str]) -> list[str]:
        """The processes of other tasks among ``addresses``: where sessions may go when this
        task stops."""
        return [a for a in addresses if a != self.address and a not in self.siblings]

    def _create(
        self,
        connection_id: str,
        principal_id: str,
        *,
        lease: SessionLease | None,
        resumed: bool,
        stage: str = "",
        requested_model: str = "",
    ) -> BridgeSession:
        assert self.connections is not None, "the application has not started"
        session = BridgeSession(
            connection_id,
            principal_id=principal_id,
            engine=self.engine,
            settings=self.settings,
            connections=self.connections.for_stage(stage),
            dialect=dialect_for_stage(stage),
            stage=stage,
            requested_model=requested_model,
            tools=self.tools,
            metrics=self.metrics,
            on_ended=self._ended,
            lease=lease,
            resumed=resumed,
        )
        self.sessions[connection_id] = session
        self._all_ended.clear()
        self.metrics.gauge("SessionsActive", len(self.sessions))
        return session

    def _ended(self, session: BridgeSession) -> None:
        if session.conversation_over:
            self.ended.add(session.connection_id, closed=session.connection_closed)
        if self.sessions.get(session.connection_id) is session:
            del self.sessions[session.connection_id]
        if not self.sessions:
            self._all_ended.set()


def _stage_state(stage: str) -> dict[str, str]:
    """A new record's state: the stage, whose protocol every later owner speaks."""
    return {"stage": stage, "dialect": dialect_for_stage(stage).name}


def _record_stage(record: SessionRecord, requested: str) -> str:
    """The connection's stage: the record's (what ``$connect`` saw), else the request's."""
    stage = record.state.get("stage")
    return stage if isinstance(stage, str) and stage else requested


FORBIDDEN = json_response({"message": "forbidden"}, status=403)
CONFLICT = Response(409)
_NOT_POST = Response(405, b"Method Not Allowed", allow="POST")
_NOT_GET = Response(405, b"Method Not Allowed", allow="GET, HEAD")


async def listen(
    bridge: Bridge,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    sockets: Sequence[socket.socket] = (),
) -> HttpServer:
    """Start ``bridge`` and a server listening for it on ``host``:``port`` (0: any free port);
    ``reuse_port``: share the port with other processes (SO_REUSEPORT). Given ``sockets``
    (bound already), it listens on those instead."""
    await bridge.start()
    server = HttpServer(bridge.handle, max_body=MAX_BODY)
    try:
        if sockets:
            for sock in sockets:
                await server.start(sock=sock)
        else:
            await server.start(host, port, reuse_port=reuse_port)
    except BaseException:
        await bridge.stop()
        raise
    return server


async def close(bridge: Bridge, server: HttpServer) -> None:
    """Stop listening, end the bridge's sessions, then close the connections."""
    server.stop_listening()
    try:
        await bridge.stop()
    finally:
        await server.close(grace=1.0)


@contextlib.asynccontextmanager
async def serving(bridge: Bridge, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """``bridge`` served on ``host``:``port`` for the block; yields its URL."""
    server = await listen(bridge, host, port)
    try:
        yield f"http://{host}:{server.port}"
    finally:
        await close(bridge, server)


async def serve(bridge: Bridge, *, ready: asyncio.Event | None = None) -> None:
    """Run ``bridge`` until SIGTERM or SIGINT, then drain and exit."""
    # One of several processes of a task: the task's port shared (SO_REUSEPORT), and its own.
    server = await listen(
        bridge,
        bridge.settings.host,
        bridge.settings.port,
        sockets=listening_sockets(bridge.settings),
    )
    stop = stop_event()
    port = server.port
    if not bridge.settings.advertise_url and bridge.settings.port == 0:
        bridge.address = f"http://127.0.0.1:{port}"
    print(f"novakit bridge listening on http://{bridge.settings.host}:{port}", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        # Keep serving while draining: the sessions still get their clients' frames.
        log.info("stopping: draining sessions")
        await bridge.drain(bridge.settings.drain_seconds)
    finally:
        await close(bridge, server)
