"""Several bridge tasks behind one API: each task's address, and the frame relay.

The NLB hands a frame to any task; the task that owns the connection is in the directory.
A frame that lands elsewhere is relayed to the owner over the internal network: the same
integration request (with API Gateway's secret header as it arrived), marked
``x-novakit-relayed`` so it is never relayed twice, and signed (``auth.RelayAuth``): a peer
acts on ``x-novakit-*`` headers only when the signature verifies.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from .auth import ADOPT_HEADER, GATEWAY_SECRET_HEADER, RelayAuth
from .httpclient import HttpClient, HttpClientError

log = logging.getLogger(__name__)

RELAYED_HEADER = "x-novakit-relayed"
# ADOPT_HEADER (from .auth): a relayed frame from a task that is shutting down and has handed
# its sessions over; the header's value is that task's address. The receiver takes the session
# on only when the directory record says that task handed it over (no owner, and the record's
# hand-over marker names it); while any task owns it, the frame goes to that task like any
# other. The header alone never moves a session.
__all__ = [
    "ADOPT_HEADER",
    "FORWARDED_HEADERS",
    "RELAYED_HEADER",
    "Relay",
    "RelayOutcome",
    "RelayResult",
    "RouteCache",
    "discover_address",
]
FORWARDED_HEADERS = (
    GATEWAY_SECRET_HEADER,
    "x-connection-id",
    "x-request-id",
    "x-route-key",
    "x-source-ip",
    "x-stage",
    "x-connected-at",
    "x-principal-id",
    "content-type",
)


def discover_address(port: int, environ: Mapping[str, str] | None = None) -> str:
    """This task's URL for other tasks: configured, from ECS task metadata, or loopback."""
    env = os.environ if environ is None else environ
    if env.get("NOVAKIT_ADVERTISE_URL"):
        return env["NOVAKIT_ADVERTISE_URL"].rstrip("/")
    metadata = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if metadata:
        # The container's own metadata lists its awsvpc network interface addresses.
        with urllib.request.urlopen(metadata, timeout=2) as response:  # local link only
            container = json.load(response)
        for network in container.get("Networks", []):
            for address in network.get("IPv4Addresses", []):
                return f"http://{address}:{port}"
        raise RuntimeError("ECS task metadata lists no IPv4 address for this container")
    return f"http://127.0.0.1:{port}"


class RouteCache:
    """Owners this task relayed to lately, so that the next frames of a session it does not
    hold skip the directory read. Safe when stale: an owner accepts a relayed frame only for a
    session it holds (else 409), and a gone one refuses the connection; either way the frame
    then goes the directory's way. Bounded in entries and in age."""

    def __init__(
        self,
        seconds: float = 10.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, connection_id: str) -> str | None:
        entry = self._owners.get(connection_id)
        if entry is None:
            return None
        owner, expires = entry
        if self._clock() >= expires:
            del self._owners[connection_id]
            return None
        return owner

    def remember(self, connection_id: str, owner: str) -> None:
        self._owners[connection_id] = (owner, self._clock() + self._seconds)
        self._owners.move_to_end(connection_id)
        while len(self._owners) > self._size:
            self._owners.popitem(last=False)

    def forget(self, connection_id: str) -> None:
        self._owners.pop(connection_id, None)

    def __len__(self) -> int:
        return len(self._owners)


class RelayOutcome(Enum):
    DELIVERED = "delivered"
    NOT_OWNER = "not_owner"  # the owner answered that it does not hold the session (409)
    REFUSED = "refused"  # no process listens there: the owner is gone
    TIMED_OUT = "timed_out"  # no answer in time, or an error status: the owner may be alive


@dataclass(frozen=True, slots=True)
class RelayResult:
    outcome: RelayOutcome
    seconds: float
    detail: str = ""


class Relay:
    """Forwards integration requests to other tasks over kept-alive connections, signed."""

    def __init__(self, timeout: float, auth: RelayAuth) -> None:
        self._auth = auth
        self._timeout = timeout
        self._connect_timeout = min(1.0, timeout)
        self._http: HttpClient | None = None

    async def forward(
        self,
        owner: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        handed_over_by: str | None = None,
    ) -> RelayResult:
        """Send an integration request to ``owner``; ``handed_over_by``: this task's address,
        when it is shutting down and gives the session to ``owner``."""
        if self._http is None:
            self._http = HttpClient(
                pool_size=_RELAY_CONNECTIONS,
                content_type=None,  # the request's own travels with it
                connect_timeout=self._connect_timeout,
            )
        sent = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
        sent[RELAYED_HEADER] = "1"
        if handed_over_by is not None:
            sent[ADOPT_HEADER] = handed_over_by
        sent.update(self._auth.sign("POST", path, sent, body))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                status = (await self._http.request("POST", owner + path, sent, body)).status
        except HttpClientError as exc:
            # Only a refused connection says nothing listens there. Any other failure to
            # connect (this task out of sockets, a route or name that failed, a host that does
            # not answer) says nothing about the owner: it may be alive.
            outcome = RelayOutcome.REFUSED if is_refusal(exc) else RelayOutcome.TIMED_OUT
            return RelayResult(outcome, time.monotonic() - started, repr(exc))
        except (TimeoutError, OSError) as exc:
            return RelayResult(RelayOutcome.TIMED_OUT, time.monotonic() - started, repr(exc))
        elapsed = time.monotonic() - started
        if status == 409:
            return RelayResult(RelayOutcome.NOT_OWNER, elapsed)
        if 200 <= status < 300:
            return RelayResult(RelayOutcome.DELIVERED, elapsed)
        return RelayResult(RelayOutcome.TIMED_OUT, elapsed, f"status {status}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


_RELAY_CONNECTIONS = 1024  # per peer: a relay never waits for another's connection


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` (or the failure to connect behind it) is a refused connection."""
    cause = exc.__cause__ if isinstance(exc, HttpClientError) else exc
    return isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
    )
