"""The A/B benchmark's grid report: one row per cell, each variant's CPU and memory."""

from __future__ import annotations

from bench.ab import _numbers, table


def test_a_grid_of_cells_is_one_table_in_the_documented_units() -> None:
    cells = [
        {
            "frame_ms": frame_ms,
            "sessions": sessions,
            "median": {
                "before": {"bridge_cpu_ms_per_session_second": cpu, "bridge_mb_per_session": 0.3},
                "after": {
                    "bridge_cpu_ms_per_session_second": cpu / 2,
                    "bridge_mb_per_session": 0.2,
                },
            },
        }
        for frame_ms, sessions, cpu in ((100, 10, 9.0), (32, 40, 20.0))
    ]
    lines = table(cells).splitlines()
    assert lines[0] == (
        "| frame | sessions | before ms CPU/session-s | before MB/session"
        " | after ms CPU/session-s | after MB/session |"
    )
    assert lines[2] == "| 100 ms | 10 | 9.0 | 0.3 | 4.5 | 0.2 |"
    assert lines[3] == "| 32 ms | 40 | 20.0 | 0.3 | 10.0 | 0.2 |"
    assert len(lines) == 4


def test_lists_of_numbers_are_read_from_commas() -> None:
    assert _numbers("10,40, 100") == [10, 40, 100]
    assert _numbers("32") == [32]
