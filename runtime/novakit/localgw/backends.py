"""Sends integration requests to the backends, spread like the NLB behind the VPC link.

Successive requests go to successive backends (or, with ``spread="random"``, to any backend at
random) whatever their connection, so a frame can reach a process that does not own its
connection; the bridge relays it. One pooled aiohttp session keeps
connections to the backends alive between requests.

With ``health_path`` set, backends are health-checked like NLB targets: after
``unhealthy_threshold`` failed checks in a row a backend gets no more requests, and it gets them
again after as many successes. Requests sent to a dead backend before that fail, as they do
behind an NLB. When no backend is healthy, requests go to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp

from .integration import IntegrationRequest

__all__ = ["BackendPool", "IntegrationResult"]

log = logging.getLogger("novakit.localgw")


@dataclass(frozen=True)
class IntegrationResult:
    """A backend's answer: its status, or ``None`` with the error when there was no answer."""

    backend: str
    status: int | None
    error: str | None = None


class BackendPool:
    def __init__(
        self,
        backends: Sequence[str],
        *,
        timeout: float,
        health_path: str | None = None,
        health_interval: float = 5.0,
        unhealthy_threshold: int = 2,
        static_headers: Mapping[str, str] | None = None,
        spread: Literal["round_robin", "random"] = "round_robin",
        seed: int | None = None,
        keepalive: bool = True,
    ) -> None:
        if not backends:
            raise ValueError("at least one backend URL is required")
        # Added to every integration request, as API Gateway adds static request parameters.
        self._static_headers = dict(static_headers or {})
        self.backends = tuple(url.rstrip("/") for url in backends)
        self._next_backend = itertools.cycle(self.backends)
        self._random = random.Random(seed) if spread == "random" else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._health_path = health_path
        self._health_interval = health_interval
        self._threshold = unhealthy_threshold
        self.healthy = dict.fromkeys(self.backends, True)
        self._streak = dict.fromkeys(self.backends, 0)  # checks in a row against the state
        self._checker: asyncio.Task[None] | None = None
        self._keepalive = keepalive

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            auto_decompress=False,
            connector=aiohttp.TCPConnector(
                limit=0,
                **({"keepalive_timeout": 60} if self._keepalive else {"force_close": True}),
            ),
        )
        if self._health_path is not None:
            self._checker = asyncio.create_task(self._check_health(), name="health-checks")

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pick(self) -> str:
        if self._random is not None:
            healthy = [b for b in self.backends if self.healthy[b]]
            return self._random.choice(healthy or self.backends)
        for _ in self.backends:
            backend = next(self._next_backend)
            if self.healthy[backend]:
                return backend
        return next(self._next_backend)  # none healthy: try them all, as an NLB fails open

    async def _check_health(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(0.2, self._health_interval / 2))
        async with aiohttp.ClientSession(timeout=timeout) as checks:
            while True:
                await asyncio.gather(*(self._check(checks, b) for b in self.backends))
                await asyncio.sleep(self._health_interval)

    async def _check(self, checks: aiohttp.ClientSession, backend: str) -> None:
        try:
            async with checks.get(f"{backend}{self._health_path}") as response:
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if ok == self.healthy[backend]:
            self._streak[backend] = 0
            return
        self._streak[backend] += 1
        if self._streak[backend] >= self._threshold:
            self.healthy[backend] = ok
            self._streak[backend] = 0
            log.info("backend %s is %s", backend, "healthy" if ok else "unhealthy")

    async def send(self, request: IntegrationRequest) -> IntegrationResult:
        if self._session is None:
            raise RuntimeError("BackendPool.start() was not called")
        backend = self._pick()
        try:
            async with self._session.post(
                backend + request.path,
                data=request.body if request.body else None,
                headers={**request.headers, **self._static_headers},
            ) as response:
                # Read the body so the connection goes back to the pool; its content is unused.
                await response.read()
                return IntegrationResult(backend, response.status)
        except TimeoutError:
            return IntegrationResult(backend, None, "integration timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return IntegrationResult(backend, None, f"{type(exc).__name__}: {exc}")
