"""The emulator's network side: TLS (ALPN h2) + HTTP/2 on loopback, a thin asyncio adapter.

Everything protocol-shaped happens in the sans-I/O pieces (``sigv4``, ``session``); this module
moves bytes, respects HTTP/2 flow control, and runs timers.

Requests: ``POST /model/{modelId}/invoke-with-bidirectional-stream`` with content type
``application/vnd.amazon.eventstream``. Refusals before streaming are an HTTP status, an
``x-amzn-errortype`` header and a JSON ``{"message": ...}`` body, in this order of checks:
unknown route 404 ``UnknownOperationException``; wrong content type 400 ``ValidationException``;
SigV4 (403 ``MissingAuthenticationTokenException`` / ``UnrecognizedClientException`` /
``InvalidSignatureException``, 400 ``IncompleteSignatureException``); unknown model 400
``ValidationException`` ("The provided model identifier is invalid."); an ``access_denied`` fault
403 ``AccessDeniedException``.

How the SDK (aws-sdk-bedrock-runtime 0.12.0 over awscrt) surfaces these, found by running it:
``invoke_model_with_bidirectional_stream`` and early ``input_stream.send`` calls succeed (the
request is already on its way), and the error is raised by ``await stream.await_output()``. Error
types the operation models come back as their classes with the body's message
(``ValidationException("The provided model identifier is invalid.")``,
``AccessDeniedException``); the others (``InvalidSignatureException``,
``UnrecognizedClientException``, ...) come back as a plain ``smithy_core.exceptions.CallError``
whose message names the status and the type ("Unknown error for operation ... - status: 403 -
id: com.amazonaws.bedrockruntime#InvalidSignatureException"); the body's message is not kept.
Exception messages on an open stream are raised by ``receive()`` as the modeled exception
(``ThrottlingException``, ``ValidationException``, ``ModelTimeoutException``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
import ssl
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trustme

from .conversation import EngineSettings, Script, ScriptCursor
from .faults import FaultKind, FaultPlan, arm_faults
from .grammar import MODELS
from .record import Outcome, RecordedError, StreamRecord
from .session import EndAction, SessionLimits, StreamSession, describe
from .sigv4 import MAX_CLOCK_SKEW, Credentials, SigV4Error, verify_request

__all__ = ["DEFAULT_CREDENTIALS", "Emulator", "EmulatorConfig"]

log = logging.getLogger(__name__)

DEFAULT_CREDENTIALS = Credentials("AKIDEMULATOR", "emulator-secret")
EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
_ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/invoke-with-bidirectional-stream$")
_INVALID_MODEL = "The provided model identifier is invalid."
_ACCESS_DENIED = "You don't have access to the model with the specified model ID."


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class EmulatorConfig:
    """How the emulator listens, whom it trusts, and how it behaves."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port (see ``Emulator.endpoint``)
    region: str = "us-east-1"
    credentials: tuple[Credentials, ...] = (DEFAULT_CREDENTIALS,)
    script: Script = field(default_factory=Script)
    # "stream": every stream starts the script from its first turn; "emulator": one cursor runs
    # on across streams (a client that rolls over to a new stream continues the conversation;
    # a turn a stream did not finish answering is the next stream's, see ``ScriptCursor``).
    script_scope: Literal["stream", "emulator"] = "stream"
    pace: float = 1.0  # wall seconds per clock second (0.25: 4x faster); 0: input audio drives it
    endpoint_seconds: float | None = None  # shorter endpointing pause than the model's (tests)
    stream_seconds: float = 480.0  # then modelTimeoutException
    idle_seconds: float = 175.0  # without input audio, then validationException 531
    faults: tuple[FaultPlan, ...] = ()
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_clock_skew: datetime.timedelta = MAX_CLOCK_SKEW
    clock: Callable[[], datetime.datetime] = _utc_now  # the time SigV4 checks against
    # What it remembers (``records``). Tests read every event; a long-running emulator
    # (``novakit emulator``, ``novakit dev``) would otherwise grow by every second of audio.
    keep_records: int | None = None  # finished streams' records kept, oldest dropped; None: all
    record_audio: bool = True  # False: audioInput and audioOutput events are not recorded


class Emulator:
    """A running emulator: ``async with Emulator(config) as emu: ...``.

    ``endpoint`` and ``ca_path`` are what a client needs; ``script`` and ``faults`` may be changed
    between streams; ``records`` has one ``StreamRecord`` per request, in arrival order (the
    oldest finished ones dropped beyond ``config.keep_records``).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.records: list[StreamRecord] = []
        self._streams = 0  # requests so far (records may have been dropped: keep_records)
        self._script = self.config.script
        self._shared_cursor = ScriptCursor(self._script)
        self._faults: list[FaultPlan] = list(self.config.faults)
        self._server: asyncio.Server | None = None
        self._connections: set[_H2Protocol] = set()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._changed = asyncio.Event()
        self._port = self.config.port
        self._ca_path = ""

    # -- settings that tests change between streams ---------------------------

    @property
    def script(self) -> Script:
        return self._script

    @script.setter
    def script(self, script: Script) -> None:
        self._script = script
        self._shared_cursor = ScriptCursor(script)

    @property
    def faults(self) -> list[FaultPlan]:
        """Plans not yet used up (one-shot plans leave when a stream takes them)."""
        return list(self._faults)

    @faults.setter
    def faults(self, plans: list[FaultPlan] | tuple[FaultPlan, ...]) -> None:
        self._faults = list(plans)

    # -- lifecycle ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"https://{self.config.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def ca_path(self) -> str:
        """PEM file of the CA that signed the emulator's certificate (trust it in the client)."""
        return self._ca_path

    async def start(self) -> None:
        ca = trustme.CA()
        # The leaf covers both loopback names, so either works in the endpoint URL.
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
        self._tmp = tempfile.TemporaryDirectory(prefix="novakit-emulator-")
        ca_file = Path(self._tmp.name) / "emulator-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self._ca_path = str(ca_file)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        context.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _H2Protocol(self),
            self.config.host,
            self.config.port,
            ssl=context,
            ssl_shutdown_timeout=2.0,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("emulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.shutdown()
            await self._server.wait_closed()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # A built-in bound, so a test waiting on a stream that never ends fails instead of hanging.
    async def wait_for_streams(
        self,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[StreamRecord]:
        """Wait until at least ``count`` streams have ended; return all records."""

        async def ended() -> None:
            while sum(1 for r in self.records if r.done) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(ended(), timeout)
        return self.records

    # -- used by connections --------------------------------------------------

    def _notify(self) -> None:
        self._forget_old()
        self._changed.set()

    def _forget_old(self) -> None:
        keep = self.config.keep_records
        if keep is None or len(self.records) <= keep:
            return
        finished = [r for r in self.records if r.done]
        if len(finished) > keep:
            dropped = {id(r) for r in finished[: len(finished) - keep]}
            self.records = [r for r in self.records if id(r) not in dropped]

    def _new_record(self, model_id: str) -> StreamRecord:
        record = StreamRecord(index=self._streams, model_id=model_id)
        self._streams += 1
        self._forget_old()
        self.records.append(record)
        return record

    def _open_stream(
        self, method: str, path: str, headers: list[tuple[str, str]], now: float
    ) -> tuple[StreamRecord, StreamSession | None]:
        """Decide on a request: a live session, or a record of why it was refused."""
        route_path = path.partition("?")[0]
        match = _ROUTE.match(route_path)
        model_id = unquote(match["model"]) if match else ""
        record = self._new_record(model_id)
        fields = {name: value for name, value in headers}

        def refuse(status: int, error_type: str, message: str) -> tuple[StreamRecord, None]:
            record.status = status
            record.outcome = Outcome.REJECTED
            record.error = RecordedError(error_type, message, status)
            return record, None

        if match is None or method != "POST":
            return refuse(404, "UnknownOperationException", f"No operation for {method} {path}")
        content_type = fields.get("content-type", "")
        if content_type.split(";")[0].strip() != EVENT_STREAM_TYPE:
            return refuse(400, "ValidationException", f"Content-Type must be {EVENT_STREAM_TYPE}")
        try:
            auth = verify_request(
                method,
                path,
                headers,
                credentials=self.config.credentials,
                region=self.config.region,
                now=self.config.clock(),
                max_skew=self.config.max_clock_skew,
            )
        except SigV4Error as exc:
            return refuse(exc.status, exc.error_type, exc.message)
        record.access_key_id = auth.credentials.access_key_id
        model = MODELS.get(model_id)
        if model is None:
            return refuse(400, "ValidationException", _INVALID_MODEL)

        armed, self._faults = arm_faults(self._faults)
        if any(p.kind is FaultKind.ACCESS_DENIED for p in armed):
            record.fault = FaultKind.ACCESS_DENIED
            return refuse(403, "AccessDeniedException", _ACCESS_DENIED)

        config = self.config
        engine = config.engine
        if config.endpoint_seconds is not None:
            engine = replace(engine, endpoint_seconds=config.endpoint_seconds)
        cursor = (
            self._shared_cursor
            if config.script_scope == "emulator"
            else ScriptCursor(self._script, follows_history=True)
        )
        session = StreamSession(
            model=model,
            auth=auth,
            record=record,
            now=now,
            cursor=cursor,
            seed=f"stream-{record.index}",
            engine_settings=engine,
            limits=SessionLimits(config.stream_seconds, config.idle_seconds, config.pace),
            faults=armed,
            record_audio=config.record_audio,
        )
        return record, session


@dataclass
class _Stream:
    record: StreamRecord
    session: StreamSession | None
    pending: bytearray = field(default_factory=bytearray)
    end_action: EndAction | None = None
    closed_local: bool = False  # END_STREAM or RST_STREAM sent: never write again
    timer: asyncio.TimerHandle | None = None


class _H2Protocol(asyncio.Protocol):
    """One client connection: HTTP/2 frames to and from ``StreamSession`` objects."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._streams: dict[int, _Stream] = {}
        self._closed = False

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            # Bidirectional streaming needs HTTP/2; refuse rather than speak HTTP/1.1 badly.
            transport.abort()
            return
        self._emulator._connections.add(self)
        self._conn.initiate_connection()
        self._conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        self._write()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("HTTP/2 protocol error from client: %s", exc)
            self._abort_all(Outcome.CONNECTION_LOST)
            self._write()
            self._close()
            return
        now = self._loop.time()
        for event in events:
            self._dispatch(event, now)
        self._flush_all()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._abort_all(Outcome.CONNECTION_LOST)
        self._emulator._connections.discard(self)
        self._emulator._notify()

    def shutdown(self) -> None:
        """The emulator is stopping: end what is open and close the connection."""
        if self._closed:
            return
        self._abort_all(Outcome.SHUTDOWN)
        try:
            self._conn.close_connection()
            self._write()
        except h2.exceptions.ProtocolError:
            pass
        self._close()

    # -- HTTP/2 events --------------------------------------------------------

    def _dispatch(self, event: h2.events.Event, now: float) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, h2.events.DataReceived):
            # Acknowledge at once: the session buffers what it needs, and a slow consumer must
            # not shrink the client's window until large audio stalls.
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.session is not None and event.data:
                stream.session.receive_data(event.data, now)
                self._after_session(event.stream_id, stream)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.session is not None:
                stream.session.input_ended(now)
                self._after_session(event.stream_id, stream)
            self._forget_if_done(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.closed_local = True
                if stream.timer is not None:
                    stream.timer.cancel()
                if stream.session is not None:
                    stream.session.abort(Outcome.CLIENT_RESET)
                self._emulator._notify()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._abort_all(Outcome.CONNECTION_LOST)
            self._close()

    def _on_request(self, event: h2.events.RequestReceived, now: float) -> None:
        headers = [(str(k), str(v)) for k, v in event.headers]
        pseudo = dict(headers)
        record, session = self._emulator._open_stream(
            pseudo.get(":method", ""), pseudo.get(":path", ""), headers, now
        )
        sid = event.stream_id
        request_id = str(uuid.uuid4())
        stream = _Stream(record, session)
        self._streams[sid] = stream
        if session is None:
            assert record.error is not None
            body = json.dumps({"message": record.error.message}).encode()
            self._conn.send_headers(
                sid,
                [
                    (":status", str(record.status)),
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("x-amzn-errortype", record.error.error_type),
                    ("x-amzn-requestid", request_id),
                ],
            )
            stream.pending += body
            stream.end_action = EndAction.END_STREAM
            self._emulator._notify()
            return
        self._conn.send_headers(
            sid,
            [
                (":status", "200"),
                ("content-type", EVENT_STREAM_TYPE),
                ("x-amzn-requestid", request_id),
            ],
        )
        self._after_session(sid, stream)

    def _after_session(self, sid: int, stream: _Stream) -> None:
        session = stream.session
        assert session is not None
        if not stream.closed_local:
            stream.pending += session.data_to_send()
        if session.end_action is not None and stream.end_action is None:
            stream.end_action = session.end_action
            if session.record.done:
                log.info("stream %s ended: %s", sid, describe(session.record))
            self._emulator._notify()
        self._schedule_timer(sid, stream)

    # -- timers ---------------------------------------------------------------

    def _schedule_timer(self, sid: int, stream: _Stream) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        if stream.session is None or stream.closed_local:
            return
        wake = stream.session.next_wakeup()
        if wake is not None:
            stream.timer = self._loop.call_at(wake, self._on_timer, sid)

    def _on_timer(self, sid: int) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.session is None or self._closed:
            return
        stream.timer = None
        stream.session.tick(self._loop.time())
        self._after_session(sid, stream)
        self._flush_all()

    # -- output ---------------------------------------------------------------

    def _flush_all(self) -> None:
        if self._closed:
            return
        for sid in list(self._streams):
            self._flush(sid)
        self._write()

    def _flush(self, sid: int) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.closed_local:
            return
        action = stream.end_action
        if action is EndAction.DROP:
            self._abort_all(Outcome.CONNECTION_LOST)
            self._close(abort=True)
            return
        if action is EndAction.RESET:
            stream.pending.clear()
            self._reset(sid, stream)
            return
        # Send what the peer's flow-control window allows; WindowUpdated brings us back.
        while stream.pending:
            window = min(
                self._conn.local_flow_control_window(sid), self._conn.max_outbound_frame_size
            )
            if window <= 0:
                return
            chunk = bytes(stream.pending[:window])
            del stream.pending[:window]
            self._conn.send_data(sid, chunk)
        if action is EndAction.END_STREAM:
            stream.closed_local = True
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._conn.end_stream(sid)
            if stream.timer is not None:
                stream.timer.cancel()
            self._forget_if_done(sid)

    def _reset(self, sid: int, stream: _Stream) -> None:
        stream.closed_local = True
        if stream.timer is not None:
            stream.timer.cancel()
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self._streams.pop(sid, None)

    def _forget_if_done(self, sid: int) -> None:
        """Drop a stream once both sides are closed (h2 no longer knows it as open)."""
        stream = self._streams.get(sid)
        if stream is None or not stream.closed_local:
            return
        h2_stream = self._conn.streams.get(sid)
        if h2_stream is None or h2_stream.closed:
            self._streams.pop(sid, None)

    def _abort_all(self, outcome: Outcome) -> None:
        for stream in self._streams.values():
            stream.closed_local = True
            if stream.timer is not None:
                stream.timer.cancel()
            if stream.session is not None:
                stream.session.abort(outcome)
        self._streams.clear()
        self._emulator._notify()

    def _write(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._closed:
            self._transport.write(data)

    def _close(self, abort: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._transport is not None:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()
