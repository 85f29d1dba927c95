"""The ``@connections`` posts' HTTP client against servers we did not write (aiohttp's, over
TCP and TLS) and against raw sockets that misbehave."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme
from aiohttp import web

from novakit.bridge.httpclient import MAX_RESPONSE_BODY, HttpClient, HttpClientError


@asynccontextmanager
async def aiohttp_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, list[object]]]:
    """An aiohttp server; yields its base URL and the peer of each request (one per TCP
    connection used)."""
    peers: list[object] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}", peers
    finally:
        await runner.cleanup()


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(
        status=201,
        body=body[::-1],
        headers={
            "x-amzn-ErrorType": "None",
            "x-got-host": request.headers["Host"],
            "x-got-type": request.headers.get("Content-Type", ""),
            "x-got-signature": request.headers.get("Authorization", ""),
            "x-got-path": request.raw_path,
        },
    )


async def test_requests_reuse_one_connection_and_carry_what_was_given() -> None:
    async with aiohttp_server(echo) as (url, peers):
        client = HttpClient()
        try:
            for i in range(5):
                answer = await client.request(
                    "POST", f"{url}/prod/@connections/a%3D", {"Authorization": f"sig{i}"}, b"abc"
                )
                assert (answer.status, answer.body) == (201, b"cba")
                assert answer.headers["x-amzn-errortype"] == "None"
                assert answer.headers["x-got-signature"] == f"sig{i}"
                assert answer.headers["x-got-path"] == "/prod/@connections/a%3D"
                assert answer.headers["x-got-host"] == url.removeprefix("http://")
                assert answer.headers["x-got-type"] == "application/octet-stream"
            answer = await client.request("GET", f"{url}/x?y=1", {})
            assert answer.body == b""
        finally:
            await client.close()
        assert len(set(peers)) == 1 and len(peers) == 6  # kept alive


async def test_concurrent_requests_use_at_most_the_pool() -> None:
    release = asyncio.Event()
    inside = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1
        return web.Response(text="ok")

    async with aiohttp_server(slow) as (url, peers):
        client = HttpClient(pool_size=3)
        try:
            tasks = [
                asyncio.create_task(client.request("POST", f"{url}/p", {}, b"x")) for _ in range(7)
            ]
            async with asyncio.timeout(10):
                while inside < 3:  # noqa: ASYNC110 - the server's count has no event
                    await asyncio.sleep(0.01)
            release.set()
            answers = await asyncio.gather(*tasks)
        finally:
            await client.close()
        assert [a.body for a in answers] == [b"ok"] * 7
        assert most == 3 and len(set(peers)) == 3


async def test_tls_with_the_system_s_context_or_a_given_one() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    async with aiohttp_server(echo, server_context) as (url, _peers):
        untrusting = HttpClient()
        try:
            with pytest.raises(HttpClientError):  # a certificate no system CA signed
                await untrusting.request("POST", f"{url}/p", {}, b"x")
        finally:
            await untrusting.close()
        client_context = ssl.create_default_context()
        authority.configure_trust(client_context)
        client = HttpClient(ssl_context=client_context)
        try:
            answer = await client.request("POST", f"{url}/p", {}, b"secure")
            assert (answer.status, answer.body) == (201, b"eruces")
        finally:
            await client.close()


@asynccontextmanager
async def raw_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def test_a_connection_closed_while_idle_is_replaced_without_an_error() -> None:
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request, then closes as a server whose idle timeout ran out would.
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with raw_server(once) as url:
        client = HttpClient()
        try:
            for _ in range(3):
                answer = await client.request("POST", f"{url}/p", {}, b"x")
                assert answer.body == b"ok"
        finally:
            await client.close()
        assert connections >= 2  # new connections, no error seen by the caller


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # lost mid-answer
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE_BODY + 1)
        + b"x" * (MAX_RESPONSE_BODY + 1),
        b"",  # closed before answering a request on a new connection
    ],
)
async def test_a_broken_answer_is_an_error_and_its_connection_is_dropped(answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(broken) as url:
        client = HttpClient()
        try:
            with pytest.raises(HttpClientError):
                async with asyncio.timeout(10):
                    await client.request("POST", f"{url}/p", {}, b"x")
        finally:
            await client.close()


async def test_nothing_listening_is_an_error() -> None:
    async with raw_server(lambda _r, w: asyncio.sleep(0)) as url:
        pass  # closed: nothing listens on that port now
    client = HttpClient()
    try:
        with pytest.raises(HttpClientError, match="could not connect"):
            await client.request("POST", f"{url}/p", {}, b"x")
    finally:
        await client.close()


async def test_a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one() -> None:
    seen: list[int] = []  # the number of each connection that read a request

    async def first_one_answers_once(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        number = len(set(seen)) + 1
        answered = 0
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(number)
            if number == 1 and answered == 1:
                break  # the race of keep-alive: closed as the request arrived
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            answered += 1
        writer.close()

    async with raw_server(first_one_answers_once) as url:
        client = HttpClient()
        try:
            for _ in range(3):
                assert (await client.request("POST", f"{url}/p", {}, b"x")).body == b"ok"
        finally:
            await client.close()
    assert seen == [1, 1, 2, 2]


async def test_an_interim_answer_is_not_taken_for_the_final_one() -> None:
    """A 100 or 103 before the answer: taken as the answer, it left the real one on the
    connection for the next request to read."""

    async def interim_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await writer.drain()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
            await writer.drain()

    async with raw_server(interim_first) as url:
        client = HttpClient()
        try:
            answers = [await client.request("POST", f"{url}/p", {}, b"x") for _ in range(2)]
        finally:
            await client.close()
    assert [(a.status, a.body) for a in answers] == [(200, b"0"), (200, b"1")]
    assert "link" not in answers[0].headers


async def test_header_values_go_as_utf_8_as_the_bridge_reads_them() -> None:
    """A relay passes on the headers API Gateway sent; a principal id with "é" came out as
    latin-1 (its signature then failed at the peer) and one with "用" raised."""
    got: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async with raw_server(record) as url:
        client = HttpClient()
        try:
            answer = await client.request("POST", f"{url}/p", {"x-principal-id": "José 用户"}, b"")
        finally:
            await client.close()
    assert answer.status == 204
    assert "x-principal-id: José 用户\r\n".encode() in got[0]
