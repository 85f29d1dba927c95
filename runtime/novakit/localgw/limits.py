"""API Gateway's per-connection limits as pure rules: frame checks and the connection's clock.

The adapter feeds in frames and times and gets back the close (code and reason) API Gateway would
send; nothing here touches a socket or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ABNORMAL_CLOSURE",
    "BINARY_FRAME",
    "DELETED",
    "DURATION_LIMIT",
    "FRAME_LIMIT",
    "GOING_AWAY",
    "IDLE_TIMEOUT",
    "MESSAGE_LIMIT",
    "Close",
    "CloseCode",
    "ConnectionClock",
    "check_text_frame",
    "client_close",
]

FRAME_LIMIT = 32 * 1024  # bytes: inbound frames and @connections posts
MESSAGE_LIMIT = 128 * 1024  # bytes: a message split over several frames


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True)
class Close:
    """How a connection ended: the WebSocket close code and reason (``$disconnect`` gets both)."""

    code: int
    reason: str


BINARY_FRAME = Close(CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
IDLE_TIMEOUT = Close(CloseCode.GOING_AWAY, "Idle timeout")
DURATION_LIMIT = Close(CloseCode.GOING_AWAY, "Connection duration limit reached")
GOING_AWAY = Close(CloseCode.GOING_AWAY, "Going away")
DELETED = Close(CloseCode.NORMAL, "Connection deleted")
ABNORMAL_CLOSURE = Close(CloseCode.ABNORMAL, "Connection closed abnormally")


def check_text_frame(size: int) -> Close | None:
    """The close a text frame of ``size`` bytes causes, if any."""
    if size > FRAME_LIMIT:
        return Close(CloseCode.MESSAGE_TOO_BIG, f"Frame size limit is {FRAME_LIMIT} bytes")
    return None


def client_close(code: int | None, reason: str) -> Close:
    """The close a client's own close frame reports (no status code reads as 1005)."""
    if not code:
        return Close(CloseCode.NO_STATUS, reason or "No status code")
    return Close(code, reason)


class ConnectionClock:
    """Idle and duration limits of one connection, on a monotonic clock in seconds.

    Only client data frames count as activity: API Gateway does not treat protocol pings as
    traffic, and browsers cannot send them anyway, so clients keep alive with messages.
    """

    def __init__(self, connected_at: float, *, idle_seconds: float, max_seconds: float) -> None:
        self.connected_at = connected_at
        self.last_frame_at = connected_at
        self._idle_seconds = idle_seconds
        self._max_seconds = max_seconds

    def frame_received(self, now: float) -> None:
        self.last_frame_at = now

    def deadline(self) -> float:
        """The earliest time at which a limit can expire; check again then."""
        return min(self.last_frame_at + self._idle_seconds, self.connected_at + self._max_seconds)

    def expired(self, now: float) -> Close | None:
        if now >= self.connected_at + self._max_seconds:
            return DURATION_LIMIT
        if now >= self.last_frame_at + self._idle_seconds:
            return IDLE_TIMEOUT
        return None
