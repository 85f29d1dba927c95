"""The bridge's HTTP/1.1 server: API Gateway's integration requests in, answers out.

Every client frame reaches the bridge as one small integration request over a connection the
load balancer keeps alive, so this path runs once per frame and is kept short: llhttp (through
``httptools``) parses, a :class:`Request` holds what the bridge reads, and the common answers are
bytes built once. A handler answers at once (returns a :class:`Response`) or, when it must wait
(a directory read, a relay), returns a coroutine that runs as a task; requests pipelined on one
connection are answered in the order they arrived either way.

What it accepts: HTTP/1.1 (and 1.0) requests with ``Content-Length`` or chunked bodies of at most
``max_body`` bytes, at most ``MAX_HEADERS`` headers and ``MAX_HEAD_BYTES`` of request line and
headers. A malformed request is answered 400 and its connection closed; a body over the bound
is handed to the handler marked ``too_large`` (so that it can refuse an unauthenticated caller
first) and the connection is closed after the answer. A request that takes longer than
``request_timeout`` to arrive, and a connection idle for ``keepalive_timeout``, are closed.

:class:`RequestParser` is the protocol without I/O (bytes in, requests out);
:class:`HttpServer` the asyncio adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_HEADERS = 100
MAX_HEAD_BYTES = 16 * 1024  # request line and headers
REQUEST_TIMEOUT = 10.0  # first byte of a request -> its last
KEEPALIVE_TIMEOUT = 75.0  # idle between requests (shorter than the NLB's 350 s is fine)
MAX_PIPELINE = 32  # requests waiting behind one being handled; reading pauses beyond it
# A closed connection's answers still unsent this long after the close are dropped and the
# socket cut: a client that does not read would otherwise keep them, and the connection, forever.
CLOSE_GRACE = 5.0


class Headers(Mapping[str, str]):
    """A request's headers, by case-insensitive name (the first of repeated ones)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str] | None = None) -> None:
        self._items = items if items is not None else {}  # lower-case names

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """One request as the bridge reads it. ``verified_relay`` is the bridge's own mark: set once
    a peer's relay signature on it verified."""

    __slots__ = (
        "body",
        "headers",
        "keep_alive",
        "method",
        "path",
        "remote",
        "too_large",
        "verified_relay",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes = b"",
        remote: str | None = None,
        *,
        too_large: bool = False,
        keep_alive: bool = True,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.remote = remote
        self.too_large = too_large
        self.keep_alive = keep_alive and not too_large  # what the client asked for
        self.verified_relay = False

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


def make_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    remote: str | None = "127.0.0.1",
) -> Request:
    """A request as the parser would produce it (for handlers called without a socket)."""
    items: dict[str, str] = {}
    for name, value in (headers or {}).items():
        items.setdefault(name.lower(), value)
    return Request(method, path, Headers(items), body, remote)


class Response:
    """A status, a body and its content type; encoded once per keep-alive choice when it is one
    of the shared answers (``OK`` and the like), per request otherwise."""

    __slots__ = ("_encoded", "allow", "body", "content_type", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
        *,
        allow: str = "",
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.allow = allow
        self._encoded: dict[tuple[bool, bool, str], bytes] = {}

    def encode(self, *, keep_alive: bool = True, head: bool = False) -> bytes:
        date = _http_date()
        key = (keep_alive, head, date)
        cached = self._encoded.get(key)
        if cached is not None:
            return cached
        reason = HTTPStatus(self.status).phrase if self.status in _STATUSES else "Unknown"
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Date: {date}",
            "Server: novakit",
            f"Content-Length: {len(self.body)}",
        ]
        if self.body:
            lines.append(f"Content-Type: {self.content_type}")
        if self.allow:
            lines.append(f"Allow: {self.allow}")
        if not keep_alive:
            lines.append("Connection: close")
        encoded = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head:
            encoded += self.body
        if len(self._encoded) >= 8:  # older seconds' answers (the date is part of them)
            self._encoded.clear()
        self._encoded[key] = encoded
        return encoded

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json; charset=utf-8")


_STATUSES = frozenset(status.value for status in HTTPStatus)
_date = ["", -1]  # the Date header's value, and the second it is for


def _http_date() -> str:
    """The ``Date`` header's value, formatted once a second."""
    now = int(time.time())
    if _date[1] != now:
        _date[0], _date[1] = formatdate(now, usegmt=True), now
    return _date[0]  # type: ignore[return-value]


# The answers most requests get, shared (their bytes are built once a second).
OK = Response(200)
BAD_REQUEST = Response(400, b"Bad Request")
NOT_FOUND = Response(404, b"Not Found")
TOO_LARGE = Response(413, b"Request body too large")
TIMED_OUT = Response(408, b"Request Timeout")
SERVER_ERROR = Response(500, b"Internal Server Error")

Handler = Callable[[Request], "Response | Awaitable[Response]"]


class _RefusedError(Exception):
    """Raised from a parser callback to stop at a request the server will not read on."""


class RequestParser:
    """HTTP/1.1 requests from a byte stream, without I/O.

    ``feed(data)`` returns the requests completed by ``data``, in order. After a malformed
    request (or one over the bounds) it sets ``error`` (the status to answer) and ignores what
    follows; a request whose body is over ``max_body`` is returned with ``too_large`` set, and
    ``error`` is set too (the rest of the stream is not read).
    """

    __slots__ = (
        "_body",
        "_body_size",
        "_head_bytes",
        "_head_pending",
        "_headers",
        "_in_head",
        "_parser",
        "_ready",
        "_stopped",
        "_tail",
        "_url",
        "begun",
        "continue_wanted",
        "error",
        "in_message",
        "max_body",
        "remote",
    )

    def __init__(self, *, max_body: int = MAX_BODY, remote: str | None = None) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self.max_body = max_body
        self.remote = remote
        self._ready: list[Request] = []
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._in_head = False
        self._head_pending = 0
        self._tail = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self.error = 0
        self._stopped = False
        self.continue_wanted = False  # the request being read waits for "100 Continue"
        self.in_message = False  # between a request's first byte and its last
        self.begun = 0  # requests started so far

    def feed(self, data: bytes) -> list[Request]:
        if self.error or self._stopped:
            return []
        if self._in_head and self._head_grows_too_long(data):
            self.error = 400
            return []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self.error:  # a callback failed, not a bound: a fault of ours
                log.exception("HTTP parser callback failed")
                self.error = 400
        except httptools.HttpParserUpgrade:
            # No protocol upgrades (WebSocket stays at API Gateway): the request is answered
            # as any other, then the connection closes (what follows is not HTTP/1.1).
            if self._ready:
                self._ready[-1].keep_alive = False
            self._stopped = True
        except httptools.HttpParserError:
            self.error = 400
        if self._in_head:
            self._tail = data[-3:]
        ready, self._ready = self._ready, []
        return ready

    def _head_grows_too_long(self, data: bytes) -> bool:
        """Counts the bytes of a head that goes on past the chunk it began in (llhttp keeps a
        header's bytes until its line ends, so a header that never ends must be cut here)."""
        end = (self._tail + data).find(b"\r\n\r\n")
        self._head_pending += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
        return self._head_pending > MAX_HEAD_BYTES

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.begun += 1
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._in_head = True
        self._head_pending = 0
        self._tail = b""
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(400)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES or len(self._headers) >= MAX_HEADERS:
            self._refuse(400)
        key = _NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_NAMES) < _MAX_NAMES:
                _NAMES[name] = key
        if key not in self._headers:
            self._headers[key] = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        self._in_head = False
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            self._too_large()
        expect = self._headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            self.continue_wanted = True

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            self._too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self.continue_wanted = False
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(self._method(), self._path(), Headers(self._headers), body, self.remote)
        if not self._parser.should_keep_alive():
            request.keep_alive = False
        self._ready.append(request)

    # -- helpers ----------------------------------------------------------------------------

    def _method(self) -> str:
        method = self._parser.get_method()
        return _METHODS.get(method) or method.decode("latin-1")

    def _path(self) -> str:
        path = self._url.split(b"?", 1)[0].split(b"#", 1)[0]
        text = path.decode("utf-8", "surrogateescape")
        return unquote(text) if "%" in text else text

    def _too_large(self) -> None:
        self.in_message = False
        self._ready.append(
            Request(
                self._method(),
                self._path(),
                Headers(self._headers),
                b"",
                self.remote,
                too_large=True,
            )
        )
        self._refuse(413)

    def _refuse(self, status: int) -> None:
        self.error = status
        raise _RefusedError(status)


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_NAMES: dict[bytes, str] = {}
_MAX_NAMES = 256  # header names seen, decoded once each (any caller can invent more)


class HttpServer:
    """Serves ``handler`` on a listening socket (see the module's docstring for the contract)."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body: int = MAX_BODY,
        request_timeout: float = REQUEST_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
    ) -> None:
        """Listen on ``host``:``port`` (``reuse_port``: SO_REUSEPORT, the port shared with other
        processes) or on the bound socket ``sock``; called again, listens on one more."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=1024)
        elif port is not None:
            server = await loop.create_server(
                lambda: _Connection(self), host, port, reuse_port=reuse_port or None, backlog=1024
            )
        else:
            raise ValueError("a port or a socket to listen on")
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="http-timeouts")

    @property
    def port(self) -> int:
        """The port of the first socket listened on."""
        assert self._servers and self._servers[0].sockets, "the server has not started"
        port: int = self._servers[0].sockets[0].getsockname()[1]
        return port

    def stop_listening(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening, let requests being handled finish for ``grace`` seconds (then they
        are cancelled), and close every connection."""
        self.stop_listening()
        busy = [c.task for c in self.connections if c.task is not None]
        if busy:
            _done, late = await asyncio.wait(busy, timeout=grace)
            for task in late:
                task.cancel()
        for connection in list(self.connections):
            connection.close(grace=min(grace, CLOSE_GRACE))
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for server in self._servers:
            await server.wait_closed()

    async def _sweep(self) -> None:
        """Closes connections whose request is too slow to arrive, or that sat idle too long.
        Once a second over all connections: nothing per request."""
        tick = min(1.0, self.request_timeout / 4, self.keepalive_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check(now)


class _Connection(asyncio.Protocol):
    """One client connection: parses, hands requests over in order, writes answers in order."""

    __slots__ = (
        "_closing",
        "_idle_mark",
        "_idle_since",
        "_loop",
        "_paused",
        "_queue",
        "_server",
        "_slow_mark",
        "_slow_since",
        "_transport",
        "_writing_paused",
        "answered",
        "parser",
        "task",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.parser = RequestParser(max_body=server.max_body)
        self._queue: deque[Request] = deque()
        self.task: asyncio.Task[Response] | None = None
        self._closing = False  # answer what is queued, then close
        self._paused = False
        self._writing_paused = False
        self.answered = 0
        self._idle_mark = -1
        self._idle_since = 0.0
        self._slow_mark = -1
        self._slow_since = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they are ones.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.parser.remote = peer[0] if isinstance(peer, tuple) and peer else None
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # A handler already running finishes (its work is not undone half way); its answer
        # has nowhere to go.
        self._transport = None
        self._queue.clear()
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        parser = self.parser
        for request in parser.feed(data):
            if self._closing:  # an answer closed the connection: nothing after it is read
                return
            if self.task is None and not self._queue:
                self._handle(request)
            else:
                self._queue.append(request)
        if parser.continue_wanted and parser.in_message:
            parser.continue_wanted = False
            if self.task is None and not self._queue and self._transport is not None:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if parser.error:
            self._closing = True
            if parser.error != 413:  # a too-large request is in the queue, answered in turn
                self._queue.append(_FAILED)
            if self.task is None:
                self._drain()
        elif len(self._queue) > MAX_PIPELINE:
            self._pause()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests.
        self._writing_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if len(self._queue) <= MAX_PIPELINE:
            self._resume()

    # -- handling -------------------------------------------------------------------------

    def _handle(self, request: Request) -> None:
        if request is _FAILED:
            self._answer(request, BAD_REQUEST)
            return
        try:
            result = self._server.handler(request)
        except Exception:
            log.exception("request handler failed", extra={"path": request.path})
            result = SERVER_ERROR
        if isinstance(result, Response):
            self._answer(request, result)
            return
        task: asyncio.Task[Response] = self._loop.create_task(result)  # type: ignore[arg-type]
        self.task = task
        task.add_done_callback(lambda done: self._finished(request, done))

    def _finished(self, request: Request, task: asyncio.Task[Response]) -> None:
        self.task = None
        if task.cancelled():
            response = SERVER_ERROR
        elif task.exception() is not None:
            log.error(
                "request handler failed", exc_info=task.exception(), extra={"path": request.path}
            )
            response = SERVER_ERROR
        else:
            response = task.result()
        self._answer(request, response)
        self._drain()

    def _drain(self) -> None:
        """Handle queued requests until one must wait (or none is left)."""
        while self.task is None and self._queue and self._transport is not None:
            self._handle(self._queue.popleft())
        if self.task is None and not self._queue and self._closing:
            self.close()
        elif len(self._queue) <= MAX_PIPELINE and not self._writing_paused:
            self._resume()

    def _answer(self, request: Request, response: Response) -> None:
        self.answered += 1
        keep_alive = request.keep_alive
        if self._transport is not None:
            self._transport.write(
                response.encode(keep_alive=keep_alive, head=request.method == "HEAD")
            )
        if not keep_alive:  # nothing after this answer is read or answered
            self._closing = True
            self._queue.clear()
            self.close()

    def close(self, grace: float | None = None) -> None:
        transport = self._transport
        if transport is None:
            return
        self._transport = None
        transport.close()  # after what is written has been sent...
        if transport.get_write_buffer_size():
            # ...which a client that does not read never lets happen.
            wait = CLOSE_GRACE if grace is None else grace
            asyncio.get_running_loop().call_later(wait, transport.abort)

    # -- flow control and timeouts --------------------------------------------------------

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def check(self, now: float) -> None:
        """Called about once a second: close a connection whose request takes longer than the
        request timeout to arrive, or that has been idle longer than the keep-alive timeout."""
        if self._transport is None:
            return
        server = self._server
        if self.parser.in_message:
            if self._slow_mark != self.parser.begun:
                self._slow_mark, self._slow_since = self.parser.begun, now
            elif now - self._slow_since > server.request_timeout:
                log.info("closing a connection whose request did not arrive in time")
                if self.task is None and not self._queue:
                    self._transport.write(TIMED_OUT.encode(keep_alive=False))
                self.close()
            return
        if self.task is not None or self._queue:
            self._idle_mark = -1
            return
        if self._idle_mark != self.answered:
            self._idle_mark, self._idle_since = self.answered, now
        elif now - self._idle_since > server.keepalive_timeout:
            self.close()


# Stands in the queue for a malformed request: answered 400, then the connection closes.
_FAILED = Request("", "", Headers(), keep_alive=False)
