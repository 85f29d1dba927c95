"""A small HTTP/1.1 client over kept-alive connections: how the bridge's ``@connections``
posts leave.

A post is one small request to one host (API Gateway's management API, or the local gateway),
tens of times a second per conversation, so the client is kept to what that needs: a pool of
connections per host (TLS for ``https``), the request written in one ``write`` from a head
built once per method and URL plus the headers that change (the signature's, the length), and
the answer parsed by llhttp (``httptools``). No redirects, cookies, proxies or compression.

A request that fails on a connection that had already served one, before any byte of the answer
came back, is sent once more on a new connection: the server closed the idle connection while
the request was on its way (the usual race of keep-alive). Any other failure is the caller's to
retry (``ConnectionsClient`` does, with backoff).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_RESPONSE_BODY = 1024 * 1024  # what an error or a GET answers is far smaller
_MAX_HEADS = 4096  # request heads kept (one per connection id and method)


class HttpClientError(Exception):
    """The request got no complete answer (connection refused or lost, malformed answer); a
    failure to connect has the ``OSError`` (or ``TimeoutError``) as its ``__cause__``."""


@dataclass(frozen=True, slots=True)
class ClientResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, str, int]  # scheme, host, port: the pool
    head: bytes  # request line and the fixed headers


class HttpClient:
    """Requests over pooled keep-alive connections; at most ``pool_size`` open per host, and
    as many requests in flight (more wait for a connection)."""

    def __init__(
        self,
        *,
        pool_size: int = 64,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "novakit",
        content_type: str | None = "application/octet-stream",
        connect_timeout: float | None = None,
    ) -> None:
        """``content_type``: sent with every body (``None``: the caller's headers carry it);
        ``connect_timeout``: seconds a new connection may take (``None``: the caller's bound
        on the whole request is the only one)."""
        self._pool_size = pool_size
        self._content_type = content_type
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._targets: dict[tuple[str, str], _Target] = {}
        self._closed = False

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> ClientResponse:
        """Send one request; ``url`` is used as it is (its path already encoded)."""
        if self._closed:
            raise HttpClientError("the client is closed")
        target = self._targets.get((method, url))
        if target is None:
            target = self._target(method, url)
        data = [target.head]
        for name, value in headers.items():
            # The inverse of the bridge's server, which reads header values as UTF-8 (a relay
            # passes on what API Gateway sent, an authorizer's principal id among it).
            data.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
        data.append(b"Content-Length: %d\r\n\r\n" % len(body))
        if body:
            data.append(body)
        request = b"".join(data)
        slots = self._slots.get(target.key)
        if slots is None:
            slots = self._slots[target.key] = asyncio.Semaphore(self._pool_size)
        async with slots:
            connection, reused = await self._connection(target.key)
            try:
                response = await connection.exchange(request)
            except _StaleError:
                connection.close()
                if not reused:
                    raise HttpClientError("the connection closed before answering") from None
                connection, _ = await self._connection(target.key, fresh=True)
                try:
                    response = await connection.exchange(request)
                except BaseException:
                    connection.close()
                    raise
            except BaseException:
                connection.close()  # half a request or half an answer: never reused
                raise
            if connection.reusable:
                self._idle.setdefault(target.key, []).append(connection)
            else:
                connection.close()
            return response

    async def close(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _connection(
        self, key: tuple[str, str, int], *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        if not fresh:
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                if connection.reusable:
                    return connection, True
                connection.close()
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        secure = scheme == "https"
        if secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _transport, connection = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=self._ssl if secure else None,
                    server_hostname=host if secure else None,
                )
        except (OSError, TimeoutError) as exc:
            raise HttpClientError(f"could not connect to {host}:{port}: {exc!r}") from exc
        return connection, False

    def _target(self, method: str, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpClientError(f"not an http(s) URL: {url}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        host_header = f"[{host}]" if ":" in host else host
        if port != default:
            host_header = f"{host_header}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"User-Agent: {self._user_agent}\r\n"
            + (
                f"Content-Type: {self._content_type}\r\n"
                if self._content_type and method in ("POST", "PUT")
                else ""
            )
        ).encode("latin-1")
        target = _Target((parts.scheme, host, port), head)
        if len(self._targets) >= _MAX_HEADS:  # connection ids come and go
            self._targets.clear()
        self._targets[(method, url)] = target
        return target


class _StaleError(Exception):
    """The connection closed before any byte of the answer: the request may be sent again."""


class _Connection(asyncio.Protocol):
    """One connection, one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[ClientResponse] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._received = False
        self.reusable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they are ones.
        self._transport = cast(asyncio.Transport, transport)
        self.reusable = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._received:
                waiter.set_exception(HttpClientError(f"connection lost mid-answer: {exc!r}"))
            else:
                waiter.set_exception(_StaleError())

    async def exchange(self, request: bytes) -> ClientResponse:
        if self._transport is None:
            raise _StaleError
        self.reusable = False  # until this answer has been read in full
        self._received = False
        self._headers = {}
        self._body = []
        self._size = 0
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpClientError(f"malformed answer: {exc}"))

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BODY:
            raise HttpClientError("answer too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():  # an answer nobody asked for
            self._fail(HttpClientError("unexpected answer"))
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._headers, self._body, self._size = {}, [], 0
            return
        keep_alive = self._parser.should_keep_alive()
        waiter.set_result(ClientResponse(status, self._headers, b"".join(self._body)))
        if keep_alive and self._transport is not None:
            self.reusable = True
        else:
            self.close()
