"""After Bedrock's exceptions, broken connections and refused streams, nothing is left behind:
no awscrt request-body writer still running, and no "Task exception was never retrieved" (such
as AWS_ERROR_HTTP_STREAM_HAS_COMPLETED) logged, one of which a long-running bridge would
otherwise leave per failed stream."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from novakit import s2s
from novakit.emulator import Emulator, EmulatorConfig, FaultKind, FaultPlan, Trigger

from .conftest import emulator_extra
from .dialogue import E, Listener, say

pytestmark = pytest.mark.contract

FAULTS = [
    FaultKind.THROTTLE,
    FaultKind.MODEL_STREAM_ERROR,
    FaultKind.RESET,
    FaultKind.DROP,
    FaultKind.INVALID_EVENT,
    FaultKind.VALIDATION,
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(endpoint_seconds=0.4, pace=0)) as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the loop's exception handler is told (unretrieved task exceptions among it)."""
    # Earlier tests' leftovers (the conformance suite drives the raw SDK, whose writers nobody
    # retrieves) are collected first: only what this test leaves counts.
    await collect_garbage()
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


def body_writers() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "_set_request_body_generator" in repr(t.get_coro()) and not t.done()
    ]


async def collect_garbage() -> None:
    """Tasks report an unretrieved exception when they are collected."""
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)


@pytest.mark.parametrize("fault", FAULTS, ids=str)
async def test_no_task_is_left_unretrieved_after_a_fault(
    emu: Emulator, fault: FaultKind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with loop_errors() as seen:
        caplog.clear()
        emu.faults = [FaultPlan(fault, Trigger.USER_SPEECH)]
        session = await s2s.new("nova", s2s.Config(extra=emulator_extra(emu))).start()
        listener = Listener(session)
        with contextlib.suppress(s2s.SessionClosedError):
            await say(session, 0.8)
        await listener.until(
            lambda: listener.ended or bool(listener.events(E.RECONNECTED)), within=15
        )
        if not listener.ended:
            # recovered: one more turn on the new stream, then an orderly close
            await say(session, 0.8)
            await listener.until(lambda: listener.count(E.TURN_END) >= 1, within=15)
        await session.close()
        await listener.finish()
        await emu.wait_for_streams(len(emu.records))
        await collect_garbage()
        assert body_writers() == []
    unretrieved = [c for c in seen if "never retrieved" in str(c.get("message"))]
    assert unretrieved == []
    assert "never retrieved" not in caplog.text
    assert len(emu.records) >= 1


async def test_streams_failed_at_once_leave_nothing(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with loop_errors() as seen:
        caplog.clear()
        emu.faults = [FaultPlan(FaultKind.THROTTLE, Trigger.START, every_stream=True)]
        engine = s2s.new("nova", s2s.Config(extra=emulator_extra(emu, recovery_attempts=0)))
        for _ in range(3):
            try:
                session = await engine.start()
            except s2s.ProviderError:
                continue  # refused while opening
            listener = Listener(session)
            with contextlib.suppress(s2s.SessionClosedError):
                await say(session, 0.5)
            await listener.until(lambda heard=listener: heard.ended, within=15)
            await session.close()
            assert [e.error.code for e in listener.events(E.ERROR) if e.error] == ["throttled"]
        await emu.wait_for_streams(3)
        await collect_garbage()
        assert body_writers() == []
    assert [c for c in seen if "never retrieved" in str(c.get("message"))] == []
    assert "never retrieved" not in caplog.text
