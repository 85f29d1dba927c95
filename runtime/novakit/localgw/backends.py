"""Sends integration requests to the backends, spread round-robin like the NLB behind the VPC link.

Successive requests go to successive backends whatever their connection, so a frame can reach a
process that does not own its connection; the bridge relays it. One pooled aiohttp session keeps
connections to the backends alive between requests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from .integration import IntegrationRequest

__all__ = ["BackendPool", "IntegrationResult"]


@dataclass(frozen=True)
class IntegrationResult:
    """A backend's answer: its status, or ``None`` with the error when there was no answer."""

    backend: str
    status: int | None
    error: str | None = None


class BackendPool:
    def __init__(self, backends: Sequence[str], *, timeout: float) -> None:
        if not backends:
            raise ValueError("at least one backend URL is required")
        self.backends = tuple(url.rstrip("/") for url in backends)
        self._next_backend = itertools.cycle(self.backends)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: IntegrationRequest) -> IntegrationResult:
        if self._session is None:
            raise RuntimeError("BackendPool.start() was not called")
        backend = next(self._next_backend)
        try:
            async with self._session.post(
                backend + request.path,
                data=request.body if request.body else None,
                headers=request.headers,
            ) as response:
                # Read the body so the connection goes back to the pool; its content is unused.
                await response.read()
                return IntegrationResult(backend, response.status)
        except TimeoutError:
            return IntegrationResult(backend, None, "integration timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return IntegrationResult(backend, None, f"{type(exc).__name__}: {exc}")
