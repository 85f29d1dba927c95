"""Several bridge processes in one task: their addresses and their listening sockets.

A bridge process runs its event loop on one thread, so one process uses one CPU at most. A task
with more CPUs runs one process per CPU (``supervisor``), all listening on the task's port with
``SO_REUSEPORT``: the kernel spreads the load balancer's connections over them. Each process is
also its own task as far as the session directory is concerned: it listens on a port of its
own (``relay_port + index``), advertises ``http://<task address>:<that port>``, owns the
sessions it opened, and relays a frame for a sibling's session to that sibling, signed, exactly
as to another task.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .settings import BridgeSettings

# Connections the kernel queues for each process before it accepts them (the NLB opens few,
# kept alive; a relay burst after a takeover opens more).
BACKLOG = 512


def with_port(url: str, port: int) -> str:
    """``url`` with its port replaced: a process's address on the task's host."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{port}", "", "", ""))


def process_address(task_url: str, settings: BridgeSettings, index: int) -> str:
    """Where process ``index`` of the task at ``task_url`` is reached by other processes."""
    return with_port(task_url, settings.relay_port + index)


def sibling_addresses(address: str, settings: BridgeSettings) -> frozenset[str]:
    """The other processes of this process's task (none for a lone process)."""
    if settings.process_index is None:
        return frozenset()
    return frozenset(
        process_address(address, settings, index)
        for index in range(settings.processes)
        if index != settings.process_index
    )


async def sessions_of(http: aiohttp.ClientSession, addresses: Iterable[str]) -> int:
    """Sessions the processes at ``addresses`` hold, from their ``/health``; a process that does
    not answer (it is being started again) holds none."""

    async def one(address: str) -> int:
        try:
            async with http.get(f"{address}/health") as response:
                sessions = (await response.json()).get("sessions", 0)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0
        return sessions if isinstance(sessions, int) else 0

    return sum(await asyncio.gather(*(one(address) for address in addresses)))


def listening_sockets(settings: BridgeSettings) -> list[socket.socket]:
    """For a process of a task (``process_index`` set): the task's port, shared with its
    siblings, and its own port. Empty for a lone process, which listens as it always has."""
    private_port = settings.private_port
    if private_port is None:
        return []
    shared = socket.create_server((settings.host, settings.port), backlog=BACKLOG, reuse_port=True)
    try:
        # Not shared: a second process on this port would take half of another's relays.
        own = socket.create_server((settings.host, private_port), backlog=BACKLOG)
    except OSError:
        shared.close()
        raise
    return [shared, own]
