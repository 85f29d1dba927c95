"""The cost model (bench/costs.py): the NAT leg of the audio and the bedrock-runtime endpoint's
break-even, computed from the assumptions, not restated."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import costs

MIB = 1024**2


def test_audio_through_the_nat_by_leg() -> None:
    legs = costs.nat_gib_per_session_minute()
    # 16 kHz PCM16 for 60 s, base64, 10 % framing: 2.69 MiB to Bedrock.
    assert legs["to_bedrock"] * 1024 == pytest.approx(60 * 32_000 * 4 / 3 * 1.10 / MIB, rel=1e-9)
    # 30 s of 24 kHz PCM16 answers, back from Bedrock and out again to @connections.
    assert legs["from_bedrock"] * 1024 == pytest.approx(30 * 48_000 * 4 / 3 * 1.10 / MIB)
    assert legs["to_connections"] * 1024 == pytest.approx(30 * 48_000 * 4 / 3 * 1.05 / MIB)
    total_mib = sum(legs.values()) * 1024
    assert 6.5 < total_mib < 6.7


def test_nat_is_in_the_total_and_makes_it_about_0_0012() -> None:
    row = costs.per_session_minute(598, 237, 60)  # the measured 100 ms / 100 ms row
    parts = row["api_gateway"] + row["fargate"] + row["lambda"] + row["network"]
    assert row["total"] == pytest.approx(parts, abs=1e-6)
    assert row["network"] == pytest.approx(0.00029, abs=0.00001)
    assert 0.00110 < row["total"] < 0.00120
    # Less agent speech, less NAT.
    quiet = costs.per_session_minute(598, 237, 60, speech_seconds=10)
    assert quiet["network"] < row["network"]


def test_the_endpoint_moves_the_bedrock_legs_only() -> None:
    nat = costs.per_session_minute(598, 237, 60)
    endpoint = costs.per_session_minute(598, 237, 60, bedrock_endpoint=True)
    legs = costs.nat_gib_per_session_minute()
    bedrock = legs["to_bedrock"] + legs["from_bedrock"]
    assert nat["network"] - endpoint["network"] == pytest.approx(bedrock * (0.045 - 0.01), abs=1e-6)
    assert endpoint["network"] > legs["to_connections"] * 0.045 * 0.99  # @connections stays


def test_break_even_is_where_the_monthly_charge_equals_the_savings() -> None:
    answer = costs.endpoint_break_even()
    assert answer["endpoint_usd_per_month"] == pytest.approx(0.01 * 2 * 730)
    minutes = answer["break_even_session_minutes_per_month"]
    assert minutes * answer["saved_usd_per_session_minute"] == pytest.approx(14.60, rel=0.001)
    assert 85_000 < minutes < 95_000
    # Three zones' endpoints need half as many minutes again.
    three = costs.endpoint_break_even(assume=replace(costs.ASSUMPTIONS, availability_zones=3))
    assert three["break_even_session_minutes_per_month"] == pytest.approx(minutes * 1.5, rel=0.01)
