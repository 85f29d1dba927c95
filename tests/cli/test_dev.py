"""``novakit dev --once``: the local stack's demo runs end to end, as a user starts it."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

from novakit import audio
from novakit.cli import _local_time


def test_novakit_dev_once_runs_the_demo_and_writes_the_reply(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "novakit.cli", "dev", "--once", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    endpoint = "export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127.0.0.1:"
    assert any(line.startswith(endpoint) for line in lines)
    said = [line for line in lines if line.startswith(("user", "tool", "assistant"))]
    assert said[0] == "user       what time is it in Tokyo"
    assert said[1].startswith("tool       get_time({'zone': 'Asia/Tokyo'}) -> ")
    assert said[-2:] == ["assistant  You are welcome.", "assistant  Goodbye!"]
    pcm, rate = audio.read_wav(out)
    assert rate == 24000
    assert audio.duration(pcm, rate) > 1.0


def test_the_demo_tool_tells_the_time_in_the_zone_asked() -> None:
    result = json.loads(_local_time({"zone": "Asia/Tokyo"}))
    now = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))
    told = datetime.datetime.strptime(result["time"], "%H:%M").replace(
        year=now.year, month=now.month, day=now.day, tzinfo=now.tzinfo
    )
    assert result["zone"] == "Asia/Tokyo"
    apart = abs((now - told).total_seconds())
    assert min(apart, 86400 - apart) < 120  # a minute boundary, or midnight, may pass between
    assert json.loads(_local_time({"zone": "Mars/Olympus"})) == {
        "error": "unknown time zone 'Mars/Olympus'"
    }
