"""Microbenchmarks of the bridge's per-frame work, no sockets: what each step costs in
microseconds of one core. They are the floor under the end-to-end figures and, unlike them,
steady on a shared machine (each is the best of five repeats).

- ``parse_audio_frame``: one client audio frame (32 ms or 100 ms of PCM) from JSON to PCM;
- ``encode_audio_frame``: one 100 ms output frame (24 kHz) from PCM to JSON;
- ``sign_botocore`` / ``sign_cached``: SigV4 of one ``@connections`` post of that frame, by
  botocore's ``SigV4Auth`` (as the bridge did) and by the bridge's cached-key signer;
- ``sign_event_sdk`` / ``sign_event_chained``: signing one 32 ms audio event for Bedrock's
  stream, by the SDK's ``AsyncEventSigner`` and by the kit's ``ChainedEventSigner``;
- ``metrics_observe``: one latency observation;
- ``http_server_aiohttp`` / ``http_server_novakit``: one integration request (a 100 ms audio
  frame with API Gateway's headers) through a server on loopback, as the bridge's HTTP layer
  answers it: aiohttp's web framework (application, middleware, handler, ``web.Response``: how
  the bridge served them before) and the kit's ``bridge.http`` server. CPU of the server's
  process only: the client is a blocking socket loop in a child process, one request at a time
  over one kept-alive connection; the handler checks the gateway secret and answers 200;
- ``post_aiohttp`` / ``post_novakit``: one signed ``@connections`` post of a 100 ms output
  frame to a server on loopback, through aiohttp's client (``ClientSession``, as the bridge
  posted before) and through the kit's ``bridge.httpclient``: CPU of the posting process only
  (the server is a child process), signing included, one post at a time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import textwrap
import time
import timeit
from collections.abc import Callable
from typing import Any

import aiohttp
import yarl
from aiohttp import web
from aws_sdk_signers import AsyncEventSigner
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from novakit.bridge.auth import GATEWAY_SECRET_HEADER, GatewayAuth
from novakit.bridge.connections import SigV4Signer
from novakit.bridge.http import OK, HttpServer, Request, Response
from novakit.bridge.httpclient import HttpClient
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import encode_audio, parse_client_frame
from novakit.s2s.nova.models import NOVA_2_SONIC
from novakit.s2s.nova.protocol import NovaProtocol, StreamSettings
from novakit.s2s.nova.signing import ChainedEventSigner

from .common import save

URL = "https://abc123.execute-api.us-east-1.amazonaws.com/prod/@connections/Ab1CdE2fGh3%3D"


def _best_us(function: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def _botocore_sign(credentials: Credentials, body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=URL, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _completed(coroutine: Any) -> Any:
    """The result of a coroutine that never suspends (a signer's uncontended path)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def _event_signing() -> dict[str, Callable[[], Any]]:
    identity = AWSCredentialsIdentity(access_key_id="AKIDBENCH", secret_access_key="bench-secret")
    properties = {"region": "us-east-1", "service": "bedrock"}
    protocol = NovaProtocol(StreamSettings(model=NOVA_2_SONIC, voice="matthew", instructions=""))
    payload = protocol.audio_event(bytes(1024))
    seed = b"0" * 64
    sdk = AsyncEventSigner(initial_signature=seed, event_encoder_cls=EventHeaderEncoder)
    chained = ChainedEventSigner(initial_signature=seed)

    def sign_with(signer: Any) -> Callable[[], Any]:
        def sign() -> Any:
            event = EventMessage(headers={":event-type": "chunk"}, payload=payload)
            return _completed(signer.sign(event=event, identity=identity, properties=properties))

        return sign

    return {"sign_event_sdk_us": sign_with(sdk), "sign_event_chained_us": sign_with(chained)}


SECRET = "bench-gateway-secret-0123456789abcdefABCDEF"
# The headers the stack's integration request sends for a client frame (values made up).
GATEWAY_HEADERS = {
    "Host": "bridge.internal:8080",
    "User-Agent": "AmazonAPIGateway_abc123",
    "Content-Type": "application/json",
    "x-amzn-apigateway-api-id": "abc123",
    "x-amzn-trace-id": "Root=1-67a1b2c3-0123456789abcdef01234567",
    "x-connection-id": "Ab1CdE2fGh3=",
    "x-principal-id": "user-1234",
    "x-request-id": "Ab1CdE2fGh3=-req-000001",
    "x-route-key": "$default",
    "x-source-ip": "203.0.113.7",
    "x-stage": "prod",
    "x-connected-at": "1765000000000",
    GATEWAY_SECRET_HEADER: SECRET,
}
_CLIENT = textwrap.dedent(
    """
    import socket, sys
    port, count = int(sys.argv[1]), int(sys.argv[2])
    request = sys.stdin.buffer.read()
    sock = socket.create_connection(("127.0.0.1", port))
    for _ in range(count):
        sock.sendall(request)
        answer = b""
        while b"\\r\\n\\r\\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    sock.close()
    """
)


def _frame_request(frame: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in GATEWAY_HEADERS.items())
    return (
        f"POST /ws/message HTTP/1.1\r\n{head}Content-Length: {len(frame)}\r\n\r\n".encode() + frame
    )


async def _aiohttp_server(auth: GatewayAuth) -> tuple[int, Callable[[], Any]]:
    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> Any:
        if not auth.accepts(request.headers.get(GATEWAY_SECRET_HEADER)):
            return web.Response(status=403)
        if any(name.lower().startswith("x-novakit-") for name in request.headers):
            return web.Response(status=403)
        return await handler(request)

    async def on_message(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application(client_max_size=64 * 1024, middlewares=[authenticate])
    app.router.add_post("/ws/message", on_message)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner.addresses[0][1], runner.cleanup


async def _novakit_server(auth: GatewayAuth) -> tuple[int, Callable[[], Any]]:
    def handle(request: Request) -> Response:
        if not auth.accepts(request.headers.get(GATEWAY_SECRET_HEADER)):
            return Response(403)
        if any(name.startswith("x-novakit-") for name in request.headers):
            return Response(403)
        return OK

    server = HttpServer(handle)
    await server.start("127.0.0.1", 0)
    return server.port, server.close


async def _through_server(kind: str, request: bytes, count: int) -> float:
    auth = GatewayAuth((SECRET,))
    port, stop = await (_aiohttp_server if kind == "aiohttp" else _novakit_server)(auth)
    try:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENT, str(port), str(count), stdin=subprocess.PIPE
        )
        started = time.process_time()
        await client.communicate(request)
        used = time.process_time() - started
        if client.returncode != 0:
            raise RuntimeError(f"the benchmark's client failed ({client.returncode})")
    finally:
        await stop()
    return used / count * 1e6


_SINK = textwrap.dedent(
    """
    import socket, sys
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    answer = b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n"
    pending = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        pending += data
        while True:
            head, sep, rest = pending.partition(b"\\r\\n\\r\\n")
            if not sep:
                break
            length = 0
            for line in head.split(b"\\r\\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                break
            pending = rest[length:]
            sock.sendall(answer)
    """
)


async def _posts(kind: str, body: bytes, count: int) -> float:
    sink = await asyncio.create_subprocess_exec(sys.executable, "-c", _SINK, stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = int(await sink.stdout.readline())
    url = f"http://127.0.0.1:{port}/prod/@connections/Ab1CdE2fGh3%3D"
    signer = SigV4Signer("us-east-1", Credentials("AKIDBENCH", "bench-secret", "bench-token"))
    try:
        if kind == "aiohttp":
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as http:
                started = time.process_time()
                for _ in range(count):
                    headers = signer.sign("POST", url, body)
                    async with http.request(
                        "POST", yarl.URL(url, encoded=True), data=body, headers=headers
                    ) as response:
                        await response.read()
                        assert response.status == 200
                used = time.process_time() - started
        else:
            client = HttpClient()
            started = time.process_time()
            for _ in range(count):
                headers = signer.sign("POST", url, body)
                async with asyncio.timeout(5):
                    answer = await client.request("POST", url, headers, body)
                assert answer.status == 200
            used = time.process_time() - started
            await client.close()
    finally:
        sink.kill()
        await sink.wait()
    return used / count * 1e6


def posts(count: int = 3000, repeat: int = 3) -> dict[str, float]:
    """CPU µs of the posting process per ``@connections`` post, best of ``repeat`` runs."""
    body = encode_audio(7, bytes(4800), 24000).encode()
    return {
        f"post_{kind}_us": min(asyncio.run(_posts(kind, body, count)) for _ in range(repeat))
        for kind in ("aiohttp", "novakit")
    }


def http_server(count: int = 5000, repeat: int = 3) -> dict[str, float]:
    """CPU µs of the server's process per integration request, best of ``repeat`` runs."""
    frame = json.dumps(
        {"type": "audio", "seq": 1, "data": base64.b64encode(bytes(3200)).decode()}
    ).encode()
    request = _frame_request(frame)
    return {
        f"http_server_{kind}_us": min(
            asyncio.run(_through_server(kind, request, count)) for _ in range(repeat)
        )
        for kind in ("aiohttp", "novakit")
    }


def measure() -> dict[str, float]:
    frame_32 = json.dumps(
        {"type": "audio", "seq": 1, "data": base64.b64encode(bytes(1024)).decode()}
    ).encode()
    frame_100 = json.dumps(
        {"type": "audio", "seq": 1, "data": base64.b64encode(bytes(3200)).decode()}
    ).encode()
    pcm = bytes(4800)  # 100 ms at 24 kHz
    body = encode_audio(7, pcm, 24000).encode()
    credentials = Credentials("AKIDBENCH", "bench-secret", "bench-session-token")
    signer = SigV4Signer("us-east-1", credentials)
    metrics = Metrics()
    results = {
        "parse_audio_frame_32ms_us": _best_us(lambda: parse_client_frame(frame_32), 20000),
        "parse_audio_frame_100ms_us": _best_us(lambda: parse_client_frame(frame_100), 20000),
        "encode_audio_frame_100ms_us": _best_us(lambda: encode_audio(7, pcm, 24000), 20000),
        "sign_botocore_us": _best_us(lambda: _botocore_sign(credentials, body), 2000),
        "sign_cached_us": _best_us(lambda: signer.sign("POST", URL, body), 20000),
        **{name: _best_us(sign, 5000) for name, sign in _event_signing().items()},
        "metrics_observe_us": _best_us(lambda: metrics.observe("InputLatencyMs", 1.234), 100000),
        **http_server(),
        **posts(),
    }
    return {name: round(value, 2) for name, value in results.items()}


async def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"per_call": measure()}
    results["path"] = str(save("micro", results))
    return results
