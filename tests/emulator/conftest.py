"""Fixtures for the emulator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from novakit.emulator import Emulator, EmulatorConfig


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A running emulator tuned for tests: short endpointing, no pacing delays."""
    async with Emulator(EmulatorConfig(endpoint_seconds=0.3, pace=0)) as running:
        yield running
