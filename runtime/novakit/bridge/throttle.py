"""Per-connection throttles, as pure code on a caller's clock: what a hostile client can make
the bridge send and log.

:class:`TokenBucket` bounds the error frames a connection gets (a client that sends nothing but
bad frames would otherwise get one error per frame, and a client that does not read would
pile them up in its sender). :class:`SampledLog` bounds the log lines about refused frames:
the first refusal is logged in full, later ones are counted by reason and summed up in one line
at most every ``every`` seconds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["SampledLog", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class SampledLog:
    """Logs the first event in full, then one summary with counts per ``every`` seconds."""

    __slots__ = (
        "_counts",
        "_extra",
        "_first_logged",
        "_level",
        "_log",
        "_since",
        "_what",
        "every",
    )

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        every: float,
        extra: Mapping[str, Any],
        level: int = logging.INFO,
    ) -> None:
        self._log = log
        self._what = what
        self._level = level
        self.every = every
        self._extra = dict(extra)
        self._first_logged = False
        self._counts: Counter[str] = Counter()
        self._since = 0.0

    def record(self, reason: str, message: str, now: float) -> None:
        """One event: ``reason`` groups it in the summary (an error code, say)."""
        if not self._first_logged:
            self._first_logged = True
            self._since = now
            self._log.log(self._level, "%s: %s", self._what, message, extra=self._extra)
            return
        self._counts[reason] += 1
        if now - self._since >= self.every:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Log the summary of what was counted since the last line, if anything was."""
        if self._counts:
            total = sum(self._counts.values())
            self._log.log(
                self._level,
                "%s: %d more in %.0f s",
                self._what,
                total,
                now - self._since,
                extra={**self._extra, "counts": dict(self._counts)},
            )
            self._counts.clear()
        self._since = now
