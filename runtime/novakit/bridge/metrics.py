"""Metrics in CloudWatch's embedded metric format (EMF), aggregated and flushed periodically.

EMF is a JSON log line that CloudWatch Logs turns into metrics: no API calls, no extra agent.
Per-frame figures (post latency) are aggregated as value/count pairs so a busy task writes a
few lines a minute, not one per frame.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TextIO

NAMESPACE = "Novakit"

UNITS = {
    "SessionsActive": "Count",
    "SessionsStarted": "Count",
    "SessionsRefused": "Count",
    "TimeToFirstAudioMs": "Milliseconds",
    "ToolLatencyMs": "Milliseconds",
    "ToolFailures": "Count",
    "PostLatencyMs": "Milliseconds",
    "InputLatencyMs": "Milliseconds",
    "OutputLatencyMs": "Milliseconds",
    "OutputDelayMs": "Milliseconds",
    "BargeInMs": "Milliseconds",
    "StaleAudioFrames": "Count",
    "CoalescedFrames": "Count",
    "PostFailures": "Count",
    "Errors": "Count",
    "ProtocolErrors": "Count",
    "SessionsEnded": "Count",
    # why sessions ended (bridge/session.py END_METRICS)
    **{
        name: "Count"
        for name in (
            "EndedDisconnected",
            "EndedByClient",
            "EndedClientGone",
            "EndedClientIdle",
            "EndedNoFirstFrame",
            "EndedModelClosed",
            "EndedModelFailed",
            "EndedProtocolError",
            "EndedInternalError",
            "EndedOwnershipMoved",
            "EndedHandedOver",
            "EndedShutdown",
            "EndedByAgent",
            "EndedOther",
        )
    },
}


class Metrics:
    """Collects observations and counts; ``flush()`` writes one EMF line per metric set."""

    def __init__(
        self,
        service: str = "bridge",
        *,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._out = out
        self._clock = clock
        self._values: defaultdict[str, Counter[float]] = defaultdict(Counter)
        self._counts: Counter[str] = Counter()
        self._gauges: dict[str, float] = {}

    def observe(self, name: str, value: float) -> None:
        # Rounded so that equal values aggregate; EMF keeps up to 100 distinct values per line.
        self._values[name][round(value, 1)] += 1

    def count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def gauge(self, name: str, value: float) -> None:
        self._gauges[name] = value

    def snapshot(self) -> dict[str, object]:
        """What would be flushed now (for tests and the health endpoint)."""
        return {
            "values": {k: dict(v) for k, v in self._values.items()},
            "counts": dict(self._counts),
            "gauges": dict(self._gauges),
        }

    def flush(self) -> int:
        """Write the aggregated metrics as EMF lines and reset them; returns lines written."""
        lines = 0
        out = self._out or sys.stdout
        records: dict[str, object] = {}
        for name, counter in self._values.items():
            pairs = list(counter.items())
            for start in range(0, len(pairs), 100):  # EMF: at most 100 values per metric
                chunk = pairs[start : start + 100]
                self._write(
                    out, {name: {"Values": [v for v, _ in chunk], "Counts": [c for _, c in chunk]}}
                )
                lines += 1
        for name, n in self._counts.items():
            records[name] = n
        records.update(self._gauges)
        if records:
            self._write(out, records)
            lines += 1
        self._values.clear()
        self._counts.clear()
        return lines

    def _write(self, out: TextIO, metrics: dict[str, object]) -> None:
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Service"]],
                        "Metrics": [
                            {"Name": name, "Unit": UNITS.get(name, "None")} for name in metrics
                        ],
                    }
                ],
            },
            "Service": self._service,
            **metrics,
        }
        out.write(json.dumps(document, separators=(",", ":")) + "\n")
        out.flush()
