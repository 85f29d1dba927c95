"""The bridge's HTTP server: the parser without sockets, then the server on loopback against
hostile clients (malformed, oversize, floods, pipelining, slow and vanishing clients)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from novakit import s2s
from novakit.bridge import http as http_module
from novakit.bridge.app import Bridge, serving
from novakit.bridge.connections import Unsigned
from novakit.bridge.http import (
    MAX_BODY,
    MAX_HEADERS,
    OK,
    HttpServer,
    Request,
    RequestParser,
    Response,
    json_response,
    make_request,
)
from novakit.bridge.metrics import Metrics
from novakit.bridge.settings import BridgeSettings

from ..gateway_auth import GATEWAY_SECRET, gateway_headers


def post(path: str, body: bytes, **headers: str) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: b\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


# -- the parser, without sockets --------------------------------------------------------------


def test_pipelined_requests_come_out_in_order_with_their_headers_and_bodies() -> None:
    parser = RequestParser(remote="10.0.0.1")
    stream = post("/ws/message", b'{"a":1}', **{"X-Connection-Id": "c1="}) + post(
        "/ws/message?x=1", b"", **{"x-connection-id": "c2="}
    )
    first, second = parser.feed(stream)
    assert (first.method, first.path, first.body, first.remote) == (
        "POST",
        "/ws/message",
        b'{"a":1}',
        "10.0.0.1",
    )
    assert first.headers["x-connection-id"] == first.headers.get("X-CONNECTION-ID") == "c1="
    assert "X-Connection-Id" in first.headers and "x-missing" not in first.headers
    assert (second.path, second.body, second.headers.get("x-connection-id")) == (
        "/ws/message",
        b"",
        "c2=",
    )
    assert first.keep_alive and second.keep_alive and not parser.error


def test_a_request_fed_byte_by_byte_is_complete_only_at_its_last_byte() -> None:
    parser = RequestParser()
    data = post("/ws/message", b"x" * 300, **{"x-gateway-secret": "s"})
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) == []
        assert parser.in_message or i == 0
    (request,) = parser.feed(data[-1:])
    assert request.body == b"x" * 300 and not parser.in_message and parser.begun == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT A REQUEST\r\n\r\n",
        b"POST /ws/message HTTP/9.9\r\n\r\n",
        b"POST /ws/message HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST /ws/message HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_a_malformed_request_is_an_error_after_the_good_ones_before_it(garbage: bytes) -> None:
    parser = RequestParser()
    requests = parser.feed(post("/ws/message", b"ok") + garbage)
    assert [r.body for r in requests] == [b"ok"]
    assert parser.error == 400
    assert parser.feed(post("/ws/message", b"after")) == []  # nothing is read after it


def test_an_upgrade_is_answered_as_a_request_and_then_nothing_is_read() -> None:
    parser = RequestParser()
    upgrade = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    (request,) = parser.feed(upgrade + b"\x81\x05hello")
    assert request.path == "/" and not request.keep_alive and not parser.error
    assert parser.feed(post("/ws/message", b"after")) == []


def test_a_body_over_the_bound_is_marked_and_not_read() -> None:
    parser = RequestParser()
    (request,) = parser.feed(post("/ws/message", b"x" * (MAX_BODY + 1)))
    assert request.too_large and request.body == b"" and not request.keep_alive
    assert parser.error == 413
    # the same with a chunked body, which announces no length
    parser = RequestParser()
    chunk = b"x" * 40_000
    chunked = (
        b"POST /ws/message HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(chunk)
        + chunk
        + b"\r\n"
    ) * 1
    chunked += (b"%x\r\n" % len(chunk)) + chunk + b"\r\n0\r\n\r\n"
    (request,) = parser.feed(chunked)
    assert request.too_large and parser.error == 413
    # exactly the bound is fine
    (request,) = RequestParser().feed(post("/ws/message", b"x" * MAX_BODY))
    assert len(request.body) == MAX_BODY and not request.too_large


def test_header_floods_are_refused() -> None:
    many = {f"x-h{i}": "v" for i in range(MAX_HEADERS + 1)}
    parser = RequestParser()
    assert parser.feed(post("/ws/message", b"", **many)) == [] and parser.error == 400
    parser = RequestParser()
    long = {"x-long": "v" * 20_000}
    assert parser.feed(post("/ws/message", b"", **long)) == [] and parser.error == 400
    parser = RequestParser()
    assert parser.feed(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n") == []
    assert parser.error == 400


def test_a_header_that_never_ends_is_cut_without_being_kept() -> None:
    parser = RequestParser()
    assert parser.feed(b"POST /ws/message HTTP/1.1\r\nX-Endless: ") == []
    fed = 0
    while not parser.error:
        assert parser.feed(b"a" * 1000) == []
        fed += 1000
        assert fed <= 20_000, "the head grew past its bound"
    assert parser.error == 400
    # a head split across reads, followed in one read by its body and more requests, is fine
    parser = RequestParser()
    whole = post("/ws/message", b"x" * 60_000) * 3
    assert parser.feed(whole[:40]) == []
    assert [len(r.body) for r in parser.feed(whole[40:])] == [60_000] * 3


def test_closing_requests_and_repeated_headers() -> None:
    parser = RequestParser()
    (closing,) = parser.feed(post("/x", b"", Connection="close"))
    assert not closing.keep_alive
    (old,) = RequestParser().feed(b"GET /health HTTP/1.0\r\n\r\n")
    assert not old.keep_alive
    (repeated,) = RequestParser().feed(
        b"GET /p%20q?a=b HTTP/1.1\r\nX-Secret: first\r\nx-secret: second\r\n\r\n"
    )
    assert repeated.headers["x-secret"] == "first" and repeated.path == "/p q"


def test_responses_are_encoded_once_a_second_and_head_answers_carry_no_body() -> None:
    answer = json_response({"status": "ok"})
    full = answer.encode()
    head = answer.encode(head=True)
    assert full.startswith(b"HTTP/1.1 200 OK\r\n") and full.endswith(b'{"status": "ok"}')
    assert b"Content-Length: 16\r\n" in head and head.endswith(b"\r\n\r\n")
    assert b"Connection: close" in answer.encode(keep_alive=False)
    assert OK.encode() is OK.encode()  # shared bytes within the second


# -- the server on loopback --------------------------------------------------------------------


@asynccontextmanager
async def server_for(
    handler: Callable[[Request], Response | Awaitable[Response]], **options: Any
) -> AsyncIterator[HttpServer]:
    server = HttpServer(handler, **options)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close(grace=0.5)


def recording(calls: list[Request]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        calls.append(request)
        return OK

    return handler


async def exchange(port: int, data: bytes, *, within: float = 10.0) -> bytes:
    """Send ``data``, then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(within):
            return await reader.read(-1)
    finally:
        writer.close()


def statuses(answers: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)]


async def test_pipelined_requests_are_answered_in_order_when_some_must_wait() -> None:
    release = asyncio.Event()
    handled: list[bytes] = []

    async def slow(request: Request) -> Response:
        await release.wait()
        handled.append(request.body)
        return Response(202, request.body)

    def handler(request: Request) -> Response | Awaitable[Response]:
        if request.path == "/slow":
            return slow(request)
        handled.append(request.body)
        return Response(200, request.body)

    async with server_for(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/fast", b"1") + post("/slow", b"2") + post("/fast", b"3"))
        await writer.drain()
        first = await reader.readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200") and await reader.readexactly(1) == b"1"
        assert handled == [b"1"]  # the third waits behind the second
        release.set()
        rest = b""
        while rest.count(b"HTTP/1.1") < 2 or not rest.endswith(b"3"):
            rest += await reader.read(4096)
        assert statuses(rest) == [202, 200] and handled == [b"1", b"2", b"3"]
        writer.write(post("/fast", b"4", Connection="close") + post("/fast", b"5"))
        last = await reader.read(-1)  # closed after the answer to the closing request
        writer.close()
        assert statuses(last) == [200] and last.endswith(b"4") and b"5" not in handled


async def test_a_malformed_request_gets_400_and_its_connection_closed() -> None:
    calls: list[Request] = []

    def handler(request: Request) -> Response:
        calls.append(request)
        return OK

    async with server_for(handler) as server:
        answers = await exchange(server.port, post("/a", b"") + b"\x00\x01 garbage\r\n\r\n")
        assert statuses(answers) == [200, 400] and b"Connection: close" in answers
        assert len(calls) == 1


async def test_an_oversize_body_is_answered_then_the_connection_closed() -> None:
    seen: list[bool] = []

    def handler(request: Request) -> Response:
        seen.append(request.too_large)
        return Response(413) if request.too_large else OK

    async with server_for(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # Only the headers: the server answers without waiting for a body it will not read.
        writer.write(b"POST /a HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
        writer.close()
        assert statuses(answer) == [413] and seen == [True]


async def test_a_slow_request_is_cut_off_by_the_request_timeout() -> None:
    calls: list[Request] = []
    async with server_for(recording(calls), request_timeout=0.4) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        closed = asyncio.create_task(reader.read(-1))
        header = b"POST /a HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        for byte in header:  # a slowloris: one byte at a time, never finishing
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)  # the client's pace is what is under test
        async with asyncio.timeout(10):
            answer = await closed
        writer.close()
        assert loop.time() - started < 5  # 0.4 s, checked once every 0.1 s
        assert statuses(answer) == [408] and calls == []


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout() -> None:
    async with server_for(lambda _r: OK, keepalive_timeout=0.4) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/a", b""))
        async with asyncio.timeout(10):
            answer = await reader.read(-1)  # the answer, then the close
        writer.close()
        assert statuses(answer) == [200]


async def test_a_client_that_leaves_mid_body_costs_nothing() -> None:
    calls: list[Request] = []
    async with server_for(recording(calls)) as server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(10):
            while server.connections:  # noqa: ASYNC110 - the server's cleanup has no event
                await asyncio.sleep(0.01)
        assert calls == []


async def test_a_handler_failure_is_a_500_and_the_connection_lives_on() -> None:
    async def broken(_request: Request) -> Response:
        raise RuntimeError("bug")

    def handler(request: Request) -> Response | Awaitable[Response]:
        if request.path == "/sync":
            raise RuntimeError("bug")
        return broken(request) if request.path == "/async" else OK

    async with server_for(handler) as server:
        answers = await exchange(
            server.port,
            post("/sync", b"") + post("/async", b"") + post("/ok", b"", Connection="close"),
        )
        assert statuses(answers) == [500, 500, 200]


async def test_expect_continue_is_answered_before_the_body() -> None:
    async with server_for(lambda r: Response(200, r.body)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hi")
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
        writer.close()
        assert statuses(answer) == [200] and answer.endswith(b"hi")


# -- the bridge behind it ----------------------------------------------------------------------


class HeldSession:
    """What the bridge calls on a session it holds when a frame arrives."""

    def __init__(self) -> None:
        self.connection_id = "held="
        self.lease = None
        self.frames: list[Any] = []

    def parse(self, body: bytes) -> list[Any]:
        return [json.loads(body)]

    def receive(self, frame: Any) -> None:
        self.frames.append(frame)

    def reject(self, error: Exception) -> None:
        self.frames.append(error)


class UnusedEngine:
    """No session is started here: the engine is only closed."""

    async def close(self) -> None:
        return None


@asynccontextmanager
async def bridge_url() -> AsyncIterator[tuple[Bridge, str]]:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9", gateway_secrets=(GATEWAY_SECRET,)
    )
    bridge = Bridge(
        settings,
        engine=cast(s2s.Engine, UnusedEngine()),
        tools=[],
        signer=Unsigned(),
        metrics=Metrics("t", out=io.StringIO()),
    )
    async with serving(bridge) as url:
        yield bridge, url


async def test_a_frame_for_a_held_session_is_handled_without_a_task() -> None:
    async with bridge_url() as (bridge, _url):
        session = HeldSession()
        bridge.sessions[session.connection_id] = cast(Any, session)
        try:
            request = make_request(
                "POST", "/ws/message", gateway_headers("held="), b'{"type":"text"}'
            )
            assert bridge.handle(request) is OK  # an answer, not a coroutine
            assert session.frames == [{"type": "text"}]
        finally:
            bridge.sessions.clear()


async def test_the_bridge_answers_as_before_over_one_kept_alive_connection() -> None:
    async with bridge_url() as (bridge, url):
        session = HeldSession()
        bridge.sessions[session.connection_id] = cast(Any, session)
        port = int(url.rsplit(":", 1)[1])
        secret = {"x-gateway-secret": GATEWAY_SECRET}
        frames = b"".join(
            post("/ws/message", json.dumps({"seq": i}).encode(), **gateway_headers("held="))
            for i in range(20)
        )
        try:
            answers = await exchange(
                port,
                frames
                + b"GET /ws/message HTTP/1.1\r\nx-gateway-secret: "
                + GATEWAY_SECRET.encode()
                + b"\r\n\r\n"
                + post("/health", b"", **secret)
                + post("/nowhere", b"", **secret)
                + post("/ws/message", b"x" * (MAX_BODY + 1))  # no secret: 403, then closed
                + post("/ws/message", b""),  # never read
            )
            assert statuses(answers) == [200] * 20 + [405, 405, 404, 403]
            assert session.frames == [{"seq": i} for i in range(20)]  # in order
            answers = await exchange(port, post("/ws/message", b"x" * (MAX_BODY + 1), **secret))
            assert statuses(answers) == [413]
            answers = await exchange(port, b"HEAD /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert statuses(answers) == [200] and answers.endswith(b"\r\n\r\n")
        finally:
            bridge.sessions.clear()


async def test_servers_listen_on_a_shared_port_or_on_sockets_bound_for_them() -> None:
    first = HttpServer(lambda _r: Response(200, b"first"))
    second = HttpServer(lambda _r: Response(200, b"second"))
    bound = socket.create_server(("127.0.0.1", 0))
    try:
        await first.start("127.0.0.1", 0, reuse_port=True)
        await second.start("127.0.0.1", first.port, reuse_port=True)  # SO_REUSEPORT
        await second.start(sock=bound)  # and a socket of its own
        assert second.port == first.port
        answer = await exchange(bound.getsockname()[1], post("/a", b"", Connection="close"))
        assert answer.endswith(b"second")
        bodies = {
            (await exchange(first.port, post("/a", b"", Connection="close"))).split(b"\r\n\r\n")[1]
            for _ in range(20)
        }
        assert bodies and bodies <= {b"first", b"second"}  # the kernel spreads connections
    finally:
        await first.close()
        await second.close()


async def test_closing_lets_a_request_finish_within_the_grace_then_cancels_it() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(_request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return OK

    server = HttpServer(forever)
    await server.start("127.0.0.1", 0)
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(post("/a", b""))
    async with asyncio.timeout(10):
        await started.wait()
        await server.close(grace=0.2)
        await cancelled.wait()
    writer.close()
    assert not server.connections


def test_the_server_and_the_client_run_on_uvloop() -> None:
    """uvloop's transports are not ``asyncio.Transport`` subclasses: the server refused every
    connection under uvloop (an assertion in ``connection_made``) until it stopped asking."""
    uvloop = pytest.importorskip("uvloop")
    from novakit.bridge.httpclient import HttpClient

    async def talk() -> list[tuple[int, bytes]]:
        async with (
            asyncio.timeout(20),
            server_for(lambda request: Response(200, request.body[::-1])) as server,
        ):
            client = HttpClient()
            try:
                url = f"http://127.0.0.1:{server.port}/ws/message"
                answers = [await client.request("POST", url, {}, body) for body in (b"ab", b"cd")]
            finally:
                await client.close()
        return [(answer.status, answer.body) for answer in answers]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(talk()) == [(200, b"ba"), (200, b"dc")]


async def test_a_client_that_never_reads_loses_its_connection_and_its_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing waits for what is written to be sent, which a client that does not read never
    allows: its answers, its socket and its place in the server stayed forever (and the
    server's own close hung on asyncio's loop). They go CLOSE_GRACE after the close."""
    monkeypatch.setattr(http_module, "CLOSE_GRACE", 0.5)
    async with server_for(lambda request: Response(200, b"x" * 1000), keepalive_timeout=1.0) as (
        server
    ):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setblocking(False)
        try:
            requests = b"GET /health HTTP/1.1\r\n\r\n" * 2000
            for _ in range(50):  # more answers than any socket buffer holds
                with contextlib.suppress(BlockingIOError):
                    sock.send(requests)
                await asyncio.sleep(0.005)
            async with asyncio.timeout(20):
                while server.connections:  # noqa: ASYNC110 - the sweep's own pace, bounded
                    await asyncio.sleep(0.1)
        finally:
            sock.close()
