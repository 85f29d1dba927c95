"""EMF metrics and JSON logs: the shapes CloudWatch reads."""

from __future__ import annotations

import io
import json
import logging

from novakit.bridge import logs
from novakit.bridge.metrics import NAMESPACE, Metrics


def test_metrics_aggregate_values_and_counts_into_emf() -> None:
    out = io.StringIO()
    metrics = Metrics("bridge", out=out, clock=lambda: 1700000000.0)
    for value in (12.0, 12.0, 30.04):
        metrics.observe("PostLatencyMs", value)
    metrics.count("ToolFailures")
    metrics.count("ToolFailures")
    metrics.gauge("SessionsActive", 3)
    assert metrics.flush() == 2
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    directive = first["_aws"]["CloudWatchMetrics"][0]
    assert first["_aws"]["Timestamp"] == 1700000000000
    assert directive["Namespace"] == NAMESPACE and directive["Dimensions"] == [["Service"]]
    assert directive["Metrics"] == [{"Name": "PostLatencyMs", "Unit": "Milliseconds"}]
    assert first["PostLatencyMs"] == {"Values": [12.0, 30.0], "Counts": [2, 1]}
    assert (second["ToolFailures"], second["SessionsActive"]) == (2, 3)
    assert metrics.flush() == 1  # gauges persist; observations and counts were reset


def test_more_than_100_distinct_values_split_into_several_lines() -> None:
    out = io.StringIO()
    metrics = Metrics(out=out)
    for value in range(250):
        metrics.observe("PostLatencyMs", float(value))
    assert metrics.flush() == 3
    sizes = [
        len(json.loads(line)["PostLatencyMs"]["Values"]) for line in out.getvalue().splitlines()
    ]
    assert sizes == [100, 100, 50]


def test_logs_are_json_with_the_connection_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("INFO", stream)
    try:
        logging.getLogger("novakit.bridge.test").info(
            "session open", extra={"connection_id": "abc=", "open_ms": 80}
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "session open"
    assert (entry["connection_id"], entry["open_ms"], entry["level"]) == ("abc=", 80, "INFO")
