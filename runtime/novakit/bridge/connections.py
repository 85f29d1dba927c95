"""The API Gateway management API (``@connections``): how the bridge talks back to a client.

``POST {base}/@connections/{id}`` delivers one frame; ``GET`` tells whether the client is still
there; ``DELETE`` hangs up. Requests are SigV4-signed for ``execute-api`` with the task's
credentials (botocore's chain, refreshed ahead of expiry), sent over pooled keep-alive
connections (``httpclient``: the request's fixed head is built once per URL, only the signature
and the length per post), and retried with capped, jittered backoff when API Gateway throttles
or fails; ``GoneException`` (the client left) is not retried: it ends the session.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from ..sigv4 import amz_date, hmac_sha256, sha256_hex, signing_key
from .httpclient import HttpClient, HttpClientError

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
STAGE_FIELD = "{stage}"


def _stage_url(template: str, stage: str) -> str:
    """``template`` with its ``{stage}`` filled in; without a stage (a request that named none,
    as only a bridge driven by hand sends) the stage's path segment is left out."""
    if STAGE_FIELD not in template:
        return template
    if stage:
        return template.replace(STAGE_FIELD, quote(stage, safe=""))
    return template.replace("/" + STAGE_FIELD, "").replace(STAGE_FIELD, "")


class ConnectionGone(Exception):  # noqa: N818 - named after API Gateway's GoneException
    """The client is no longer connected (410 GoneException)."""


class PostError(Exception):
    """A post that cannot succeed (bad request, too large, forbidden) or that ran out of tries."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        super().__init__(f"{status} {error_type}: {message}")


class RequestSigner(Protocol):
    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Headers that authenticate this request."""
        ...


class SigV4Signer:
    """Signs management API requests with botocore's credential chain (task role on ECS).

    The signature is SigV4's, as botocore's ``SigV4Auth`` computes it for these requests
    (headers signed: ``host``, ``x-amz-date`` and, with temporary credentials,
    ``x-amz-security-token``; the payload's SHA-256), but cheaper per request: the signing
    key, which depends only on the secret key, the day, the Region and the service, is derived
    once a day (four HMACs) instead of once per post, and each URL's canonical path and host
    are computed once. ``tests/bridge/test_connections.py`` checks it against botocore byte
    for byte. A URL with a query string is signed by botocore itself.
    """

    def __init__(
        self,
        region: str,
        credentials: Any = None,
        service: str = "execute-api",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from botocore.session import get_session

        self._region = region
        self._service = service
        self._clock = clock
        found = credentials if credentials is not None else get_session().get_credentials()
        if found is None:
            raise PostError(0, "NoCredentials", "no AWS credentials found to sign @connections")
        self._credentials: Any = found
        self._targets: dict[str, tuple[str, str]] = {}  # url -> (host, canonical path)

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        frozen = self._credentials.get_frozen_credentials()  # refreshed by botocore when due
        target = self._targets.get(url)
        if target is None:
            if "?" in url:
                return self._sign_with_botocore(frozen, method, url, body)
            target = self._target(url)
        host, path = target
        stamp = amz_date(int(self._clock()))
        day = stamp[:8]
        key = signing_key(frozen.secret_key, day, self._region, self._service)
        token = frozen.token
        if token:
            trimmed = " ".join(token.split())
            headers_block = f"host:{host}\nx-amz-date:{stamp}\nx-amz-security-token:{trimmed}\n"
            signed = "host;x-amz-date;x-amz-security-token"
        else:
            headers_block = f"host:{host}\nx-amz-date:{stamp}\n"
            signed = "host;x-amz-date"
        payload = sha256_hex(body) if body else _EMPTY_SHA256
        canonical = f"{method.upper()}\n{path}\n\n{headers_block}\n{signed}\n{payload}"
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac_sha256(key, string_to_sign.encode()).hex()
        headers = {"X-Amz-Date": stamp}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def _target(self, url: str) -> tuple[str, str]:
        from botocore.utils import normalize_url_path

        parts = urlsplit(url)
        host = parts.hostname or ""  # lower case, without userinfo
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        path = quote(normalize_url_path(parts.path), safe="/~")
        target = (host, path)
        if len(self._targets) >= _MAX_TARGETS:  # connection ids come and go
            self._targets.clear()
        self._targets[url] = target
        return target

    def _sign_with_botocore(
        self, frozen: Any, method: str, url: str, body: bytes
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body)
        SigV4Auth(frozen, self._service, self._region).add_auth(request)
        return dict(request.headers.items())


_EMPTY_SHA256 = sha256(b"").hexdigest()
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_TARGETS = 10_000


class Unsigned:
    """No signature: for a local gateway that does not check them."""

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {}


@dataclass(slots=True)
class PostStats:
    posts: int = 0
    retries: int = 0
    failures: int = 0
    gone: int = 0
    bytes: int = 0


class ConnectionsClient:
    """Posts, reads and deletes connections through the management API.

    ``base_url`` may hold ``{stage}``: each API Gateway stage has its own ``@connections``
    (``https://{api}.execute-api.{region}.amazonaws.com/{stage}/@connections/{id}``), and a
    connection is reached through the stage it connected to (:meth:`for_stage`).
    """

    def __init__(
        self,
        base_url: str,
        signer: RequestSigner,
        *,
        attempts: int = 4,
        timeout: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        pool_size: int = 64,
    ) -> None:
        self._template = base_url.rstrip("/")
        self._base = _stage_url(self._template, "")
        self._stages: dict[str, ConnectionsClient] = {}
        self._owner: ConnectionsClient | None = None  # set on the views of for_stage()
        self._signer = signer
        self._attempts = attempts
        self._timeout = timeout  # seconds, per attempt
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._pool_size = pool_size
        self._http: HttpClient | None = None
        self.stats = PostStats()

    def for_stage(self, stage: str) -> ConnectionsClient:
        """This client for the connections of ``stage`` (itself when the base URL names no
        stage): the same HTTP pool, signer and stats, the stage's ``@connections``."""
        base = _stage_url(self._template, stage)
        if base == self._base:
            return self
        view = self._stages.get(base)
        if view is None:
            view = copy.copy(self)
            view._base = base
            view._owner = self._owner or self
            view._stages = {}
            self._stages[base] = view
        return view

    def url(self, connection_id: str) -> str:
        # Connection ids end in '=': encode them once here; SigV4 encodes the path again.
        return f"{self._base}/@connections/{quote(connection_id, safe='')}"

    async def __aenter__(self) -> ConnectionsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> HttpClient:
        if self._owner is not None:
            return self._owner._client()
        if self._http is None:
            self._http = HttpClient(pool_size=self._pool_size)
        return self._http

    async def close(self) -> None:
        if self._owner is None and self._http is not None:
            await self._http.close()
            self._http = None

    async def post(
        self,
        connection_id: str,
        data: bytes,
        *,
        before_retry: Callable[[], Awaitable[None]] | None = None,
    ) -> float:
        """Deliver ``data`` as one frame; returns the post's latency in seconds (last attempt).

        Raises ``ConnectionGone`` when the client left and ``PostError`` when it cannot be
        delivered (after retries for throttling and server errors). ``before_retry`` is
        awaited before each retry (a session lease's guard: a retry after a long stall must
        not post for a session another task took over; whatever it raises propagates).
        """
        started = time.monotonic()
        await self._request("POST", connection_id, data, before_retry)
        self.stats.posts += 1
        self.stats.bytes += len(data)
        return time.monotonic() - started

    async def delete(self, connection_id: str) -> None:
        """Hang up on the client (API Gateway then sends ``$disconnect``)."""
        await self._request("DELETE", connection_id, b"")

    async def hang_up(self, connection_id: str, within: float = 5.0) -> bool:
        """``delete`` bounded by ``within`` seconds, never raising: True once the connection is
        closed (or was already gone); a failure is logged."""
        try:
            async with asyncio.timeout(within):
                await self.delete(connection_id)
        except ConnectionGone:
            return True
        except (PostError, TimeoutError) as exc:
            log.warning(
                "could not close the connection: %s", exc, extra={"connection_id": connection_id}
            )
            return False
        return True

    async def get(self, connection_id: str) -> dict[str, Any]:
        """The connection's details (``ConnectedAt``, ``Identity``, ``LastActiveAt``)."""
        body = await self._request("GET", connection_id, b"")
        import json

        result: dict[str, Any] = json.loads(body or b"{}")
        return result

    async def _request(
        self,
        method: str,
        connection_id: str,
        data: bytes,
        before_retry: Callable[[], Awaitable[None]] | None = None,
    ) -> bytes:
        url = self.url(connection_id)
        for attempt in range(1, self._attempts + 1):
            if attempt > 1 and before_retry is not None:
                await before_retry()
            headers = self._signer.sign(method, url, data)
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._client().request(method, url, headers, data)
                body = response.body
                status = response.status
                error_type = response.headers.get("x-amzn-errortype", "").split(":")[0]
            except (HttpClientError, TimeoutError) as exc:
                status, error_type, body = 0, type(exc).__name__, str(exc).encode()
            if 200 <= status < 300:
                return body
            if status == 410:
                self.stats.gone += 1
                raise ConnectionGone(connection_id)
            message = body[:200].decode("utf-8", "replace")
            if (status in _RETRYABLE_STATUS or status == 0) and attempt < self._attempts:
                self.stats.retries += 1
                delay = random.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))
                log.debug(
                    "retrying @connections %s after %s %s",
                    method,
                    status,
                    error_type,
                    extra={"connection_id": connection_id, "attempt": attempt},
                )
                await asyncio.sleep(delay)
                continue
            self.stats.failures += 1
            raise PostError(status, error_type or "HttpError", message)
        raise AssertionError("unreachable: the last attempt returns or raises")
