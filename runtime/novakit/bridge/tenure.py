"""How long this task may act on its sessions without asking the directory.

Peers take a session over from a task only when that task looks gone: its relay refused, or
timed out while its newest heartbeat is older than ``owner_timeout`` by their clock. So after a
heartbeat that started at ``t`` (and was written), no peer can decide this task is gone before
``t + owner_timeout``. This task trusts itself a little less long than that (``TRUST``, the
rest absorbs clock differences between tasks and the write's own delay).

When a heartbeat lands after that trust ran out, or none lands, the task was stalled or cut
off for long enough that a peer may have taken some sessions over. The tenure's ``term`` then
moves on, and each session fences itself once (``Directory.confirm``, a conditional write of
its record) before it sends the model anything again: whoever wrote the record first owns the
session, and the other stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .directory import Directory

log = logging.getLogger(__name__)

# Share of owner_timeout this task trusts a heartbeat for (6 s: 4.5 s).
TRUST = 0.75


class Tenure:
    def __init__(self, owner_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.trusted_for = owner_timeout * TRUST
        self._clock = clock
        self._until: float | None = None  # trust runs out then (monotonic)
        self.term = 0  # moves on after every lapse

    def renewed(self, started: float) -> None:
        """A heartbeat that started at ``started`` (this clock) was written."""
        if self._until is None or self._clock() > self._until:
            self.term += 1  # a lapse (or the first beat): every session confirms before it sends
        self._until = max(self._until or started, started + self.trusted_for)

    def trusted(self, term: int) -> bool:
        """Whether a session confirmed in ``term`` may send without asking the directory."""
        return term == self.term and self._until is not None and self._clock() <= self._until

    def now(self) -> float:
        return self._clock()


class Heartbeat:
    """Writes this task's heartbeat every ``every`` seconds, and on demand (a session that must
    fence itself asks for a beat that starts after it asked); each written beat renews the
    tenure. Callers asking at the same time share one write."""

    def __init__(
        self,
        directory: Directory,
        address: str,
        tenure: Tenure,
        *,
        on_lapse: Callable[[], None] | None = None,
    ) -> None:
        self._directory = directory
        self._address = address
        self.tenure = tenure
        # Called when a beat lands after a lapse: sessions that send nothing (a silent caller)
        # must still learn now whether they were taken over, not at their next send.
        self._on_lapse = on_lapse
        self._beat: asyncio.Task[bool] | None = None
        self._beat_started = 0.0

    async def beat(self) -> bool:
        """A heartbeat that started no earlier than this call; False if it could not be
        written (the directory is unreachable)."""
        asked = self.tenure.now()
        while True:
            beat = self._beat
            failed = beat is not None and beat.done() and not beat.result()
            if beat is not None and self._beat_started >= asked and not failed:
                return await asyncio.shield(beat)  # started since we asked: share it
            if beat is not None and not beat.done():
                # Started before we asked: it proves nothing about now. Let it finish first.
                await asyncio.shield(beat)
                continue
            self._beat_started = self.tenure.now()
            self._beat = asyncio.get_running_loop().create_task(
                self._write(self._beat_started), name="heartbeat-write"
            )

    async def _write(self, started: float) -> bool:
        try:
            await self._directory.heartbeat(self._address)
        except Exception as exc:  # the directory is briefly unreachable: try again next beat
            log.warning("heartbeat failed: %r", exc)
            return False
        term = self.tenure.term
        self.tenure.renewed(started)
        if self.tenure.term != term and self._on_lapse is not None:
            self._on_lapse()
        return True

    async def run(self, every: float) -> None:
        """Beat until cancelled."""
        while True:
            await self.beat()
            await asyncio.sleep(every)
