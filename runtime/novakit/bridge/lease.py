"""This task's ownership of one connection: saving its state, noticing when it is lost.

A lease wraps the directory record this task holds. Saves are serialized and conditional on
the record being unchanged since this task's last write, so a task that lost the session
(another took it over while it stalled) finds out on its next save and stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from .directory import Directory, SessionRecord

log = logging.getLogger(__name__)


class SessionLease:
    def __init__(self, directory: Directory, record: SessionRecord) -> None:
        self._directory = directory
        self.record = record
        self._lock = asyncio.Lock()
        self.lost = False

    @property
    def state(self) -> Mapping[str, Any]:
        return self.record.state

    async def save(self, state: Mapping[str, Any]) -> bool:
        """Store ``state``; False when the session belongs to another task now."""
        async with self._lock:
            if self.lost:
                return False
            try:
                saved = await self._directory.save(self.record, state)
            except Exception as exc:  # the directory is down: keep serving, try at next save
                log.warning(
                    "could not save session state: %r",
                    exc,
                    extra={"connection_id": self.record.connection_id},
                )
                return True
            if saved is None:
                self.lost = True
                return False
            self.record = saved
            return True

    async def release(self, *, forget: bool) -> None:
        async with self._lock:
            if self.lost:
                return
            try:
                await self._directory.release(self.record, forget=forget)
            except Exception as exc:
                log.warning(
                    "could not release the session: %r",
                    exc,
                    extra={"connection_id": self.record.connection_id},
                )

    async def end(self) -> None:
        """The conversation is over: leave an ended tombstone, so that no task starts it again
        for frames still in flight."""
        async with self._lock:
            if self.lost:
                return
            try:
                await self._directory.end(self.record.connection_id, owner=self.record.owner)
            except Exception as exc:
                log.warning(
                    "could not mark the session ended: %r",
                    exc,
                    extra={"connection_id": self.record.connection_id},
                )
