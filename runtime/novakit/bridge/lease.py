"""This task's ownership of one connection: saving its state, noticing when it is lost.

A lease wraps the directory record this task holds. Every write is serialized and conditional
on the record being unchanged since this task's last write (the record's version is the lease's
epoch), so a task that lost the session (another took it over while it stalled) finds out on
its next write and stops.

``guard`` is the model session's send guard (``s2s.SendGuard``): while this task's tenure is
trusted (tenure.py) it returns at once; after a lapse it fences the record
(``Directory.confirm``) before the model is sent anything, and raises ``s2s.FencedError`` when
another task owns the session now. So at most one task streams a conversation to the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from .. import s2s
from .directory import Directory, SessionRecord
from .tenure import TRUST, Heartbeat

log = logging.getLogger(__name__)

# A fence that cannot reach the directory is tried again this often...
FENCE_RETRY_SECONDS = 1.0
# ...for at most this many owner timeouts; then the session is given up (ended quietly). Until
# then nothing is sent for it: a task cut off from the directory cannot know whether a peer
# took the session over, and sending anyway could make two tasks speak at once.
FENCE_GIVE_UP = 2.0


class SessionLease:
    def __init__(
        self,
        directory: Directory,
        record: SessionRecord,
        heartbeat: Heartbeat | None = None,
        *,
        term: int | None = None,
    ) -> None:
        self._directory = directory
        self.record = record
        self._lock = asyncio.Lock()
        self.lost = False
        self._heartbeat = heartbeat
        # The claim was a conditional write: it confirms the record in the term that was
        # current when it was sent (``term``; by default the current one).
        if term is None:
            term = heartbeat.tenure.term if heartbeat is not None else 0
        self._term = term

    def trusted_now(self) -> bool:
        """Whether :meth:`guard` would return at once: not lost, and this task's tenure
        trusted (no fence to write first)."""
        if self.lost:
            return False
        heartbeat = self._heartbeat
        return heartbeat is None or heartbeat.tenure.trusted(self._term)

    async def guard(self) -> None:
        """Return when this task may send the model something for the session; raise
        ``s2s.FencedError`` when another task owns it now."""
        if self.lost:
            raise s2s.FencedError("another task owns this conversation now")
        heartbeat = self._heartbeat
        if heartbeat is None or heartbeat.tenure.trusted(self._term):
            return
        async with self._lock:
            if not self.lost and heartbeat.tenure.trusted(self._term):
                return  # confirmed by a send that held the lock before this one
            if self.lost or not await self._fence(heartbeat):
                raise s2s.FencedError("another task owns this conversation now")

    async def _fence(self, heartbeat: Heartbeat) -> bool:
        """After a lapse: beat, then move the record on. Peers that look at this task after
        the beat see it alive; a takeover decided before it was on the record's previous
        version and fails. False when the takeover came first, or when the directory could
        not be reached for ``FENCE_GIVE_UP`` owner timeouts."""
        tenure = heartbeat.tenure
        give_up = tenure.now() + FENCE_GIVE_UP * tenure.trusted_for / TRUST
        while True:
            try:
                # One attempt is bounded by the trust a beat gives: a slower answer is stale.
                async with asyncio.timeout(tenure.trusted_for):
                    written = await heartbeat.beat()
                    term = tenure.term
                    confirmed = await self._directory.confirm(self.record)
            except Exception as exc:
                confirmed, written = self.record, False
                log.warning(
                    "could not confirm the session's owner: %r",
                    exc,
                    extra={"connection_id": self.record.connection_id},
                )
            if confirmed is None:
                self.lost = True
                log.warning(
                    "another task took the session over while this one was stalled",
                    extra={"connection_id": self.record.connection_id},
                )
                return False
            self.record = confirmed
            if written:
                self._term = term
                return True
            if tenure.now() >= give_up:
                self.lost = True
                log.error(
                    "the session directory cannot be reached: giving the session up",
                    extra={"connection_id": self.record.connection_id},
                )
                return False
            await asyncio.sleep(FENCE_RETRY_SECONDS)  # a retry pace, not an ordering

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
            # From here on another task may take the session: nothing more is sent for it
            # from this one (the guard raises), not even output still queued for the client.
            self.lost = True
            try:
                await self._directory.release(self.record, forget=forget)
            except Exception as exc:
                log.warning(
                    "could not release the session: %r",
                    exc,
                    extra={"connection_id": self.record.connection_id},
                )

    async def end(self) -> bool:
        """The conversation is over: leave an ended tombstone, so that no task starts it again
        for frames still in flight. False when another task owns it now (this task stalled and
        was taken over): the conversation goes on there, and this task has lost it."""
        async with self._lock:
            if self.lost:
                return False
            connection_id = self.record.connection_id
            try:
                if await self._directory.end(connection_id, owner=self.record.owner):
                    return True
                route = await self._directory.owner_of(connection_id)
            except Exception as exc:
                log.warning(
                    "could not mark the session ended: %r",
                    exc,
                    extra={"connection_id": connection_id},
                )
                return True  # unknown: the client's end stands
            if route is None or route.ended:
                return True  # already over (a $disconnect's tombstone, or its TTL passed)
            self.lost = True
            return False
