"""The bridge's event loop: uvloop unless asked for asyncio's own (docs/performance.md)."""

from __future__ import annotations

import asyncio

import pytest

from novakit.bridge.cli import run_loop
from novakit.bridge.settings import BridgeSettings, SettingsError


def loop_type_under(event_loop: str) -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main(), event_loop)
    return seen[0]


def test_the_bridge_runs_on_uvloop_unless_asked_for_asyncios_loop() -> None:
    pytest.importorskip("uvloop")
    assert loop_type_under("uvloop").startswith("uvloop")
    assert loop_type_under("asyncio").startswith("asyncio")


def test_the_event_loop_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVAKIT_CONNECTIONS_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("NOVAKIT_INSECURE_NO_GATEWAY_SECRET", "1")
    assert BridgeSettings.from_env().event_loop == "uvloop"
    monkeypatch.setenv("NOVAKIT_EVENT_LOOP", "AsyncIO")
    assert BridgeSettings.from_env().event_loop == "asyncio"
    monkeypatch.setenv("NOVAKIT_EVENT_LOOP", "trio")
    with pytest.raises(SettingsError, match="EVENT_LOOP must be uvloop or asyncio"):
        BridgeSettings.from_env()
