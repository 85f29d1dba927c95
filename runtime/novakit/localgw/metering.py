"""What API Gateway would bill, counted per connection and in total, sans I/O.

API Gateway bills messages in 32 KB units (a 33 KB message is two messages; an empty one is one)
and connection time in connection-minutes. ``GatewayStats`` takes its clock as a parameter so the
arithmetic is testable without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .limits import FRAME_LIMIT

__all__ = ["ConnectionStats", "GatewayStats", "Traffic", "message_units"]


def message_units(size: int) -> int:
    """Billed messages for one message of ``size`` bytes."""
    return max(1, math.ceil(size / FRAME_LIMIT))


@dataclass
class Traffic:
    """Messages and bytes each way; ``in`` is client to gateway, ``out`` gateway to client."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    units_in: int = 0
    units_out: int = 0

    @property
    def units(self) -> int:
        """Metered message units both ways (what the per-message price applies to)."""
        return self.units_in + self.units_out

    def record_in(self, size: int) -> None:
        self.messages_in += 1
        self.bytes_in += size
        self.units_in += message_units(size)

    def record_out(self, size: int) -> None:
        self.messages_out += 1
        self.bytes_out += size
        self.units_out += message_units(size)

    def add(self, other: Traffic) -> None:
        self.messages_in += other.messages_in
        self.messages_out += other.messages_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.units_in += other.units_in
        self.units_out += other.units_out

    def as_dict(self) -> dict[str, int]:
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "units_in": self.units_in,
            "units_out": self.units_out,
            "units": self.units,
        }


@dataclass
class ConnectionStats(Traffic):
    """One connection's traffic and lifetime (monotonic seconds)."""

    connection_id: str = ""
    opened_at: float = 0.0
    closed_at: float | None = None
    close_code: int | None = None

    def seconds(self, now: float) -> float:
        end = self.closed_at if self.closed_at is not None else now
        return max(0.0, end - self.opened_at)


@dataclass
class GatewayStats:
    """All connections the gateway accepted (open and closed) and gateway-wide counters."""

    clock: Callable[[], float] = time.monotonic
    connections: dict[str, ConnectionStats] = field(default_factory=dict)
    rejected_connects: int = 0
    integration_errors: int = 0
    throttled_posts: int = 0
    handshake_timeouts: int = 0  # connections closed before their first request was complete

    def opened(self, connection_id: str) -> ConnectionStats:
        stats = ConnectionStats(connection_id=connection_id, opened_at=self.clock())
        self.connections[connection_id] = stats
        return stats

    def closed(self, connection_id: str, code: int) -> None:
        stats = self.connections[connection_id]
        stats.closed_at = self.clock()
        stats.close_code = code

    @property
    def totals(self) -> Traffic:
        total = Traffic()
        for stats in self.connections.values():
            total.add(stats)
        return total

    @property
    def connection_minutes(self) -> float:
        """Connection time so far, open connections included, in minutes."""
        now = self.clock()
        return sum(stats.seconds(now) for stats in self.connections.values()) / 60

    @property
    def billed_connection_minutes(self) -> int:
        """Connection-minutes rounded up per connection: an upper bound on the metered time."""
        now = self.clock()
        return sum(math.ceil(stats.seconds(now) / 60) for stats in self.connections.values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary for benchmark reports."""
        now = self.clock()
        return {
            "totals": {
                **self.totals.as_dict(),
                "connections": len(self.connections),
                "connection_minutes": self.connection_minutes,
                "billed_connection_minutes": self.billed_connection_minutes,
                "rejected_connects": self.rejected_connects,
                "integration_errors": self.integration_errors,
                "throttled_posts": self.throttled_posts,
            },
            "connections": {
                connection_id: {
                    **stats.as_dict(),
                    "seconds": stats.seconds(now),
                    "close_code": stats.close_code,
                }
                for connection_id, stats in self.connections.items()
            },
        }
