"""A bounded memory of the connections whose conversation ended on (or was seen ended by) this
task, so that frames still in flight for them are refused without a directory read.

A conversation that is over is never started again: the client ended it, left, or the bridge
ended it, and the client was sent ``session`` ``ended`` (or is gone). Frames API Gateway still
delivers for it are refused. Each entry also says whether the connection is known to be closed:
if not (the hang-up failed, or the task that ended the conversation stopped before hanging up),
the first refused frame has this task close it. The directory's ended tombstone is the same
fact for every task; this memory spares the read.
"""

from __future__ import annotations

from collections import OrderedDict

# Entries are small (an id and a flag); in-flight frames arrive within seconds of the end.
DEFAULT_LIMIT = 10_000


class EndedConnections:
    """The most recently ended connection ids, at most ``limit`` (the oldest are forgotten)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._closed: OrderedDict[str, bool] = OrderedDict()

    def add(self, connection_id: str, *, closed: bool) -> None:
        """Remember that ``connection_id``'s conversation is over; ``closed``: its WebSocket is
        known to be closed (hung up, or the client left)."""
        self._closed[connection_id] = closed or self._closed.get(connection_id, False)
        self._closed.move_to_end(connection_id)
        while len(self._closed) > self._limit:
            self._closed.popitem(last=False)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._closed

    def __len__(self) -> int:
        return len(self._closed)

    def needs_closing(self, connection_id: str) -> bool:
        """True once for an ended connection not known to be closed: the caller closes it now
        (later frames find it closed, so a closing is attempted at most once)."""
        if self._closed.get(connection_id, True):
            return False
        self._closed[connection_id] = True
        return True
