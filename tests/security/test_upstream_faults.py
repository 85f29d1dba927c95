"""Upstream faults never kill or wedge a session, and never reach a client verbatim (issue 13,
item 6): unreadable Bedrock events are skipped, a stream that stalls mid-answer is replaced
within a bound, and error frames carry fixed texts, not what Bedrock sent."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import pytest

from novakit.bridge.session import State
from novakit.emulator import (
    Emulator,
    EmulatorConfig,
    FaultKind,
    FaultPlan,
    Outcome,
    Script,
    ScriptTurn,
    Trigger,
)
from novakit.emulator.faults import CORRUPT_MARKER, EXCEPTION_FAULTS

from .harness import conversation, nova_engine

Q1, R1 = "what is the first thing", "The first thing is this. It comes before the second."
Q2, R2 = "and the second", "The second thing is that."
SCRIPT = Script((ScriptTurn(R1, transcript=Q1), ScriptTurn(R2, transcript=Q2)))
UPSTREAM_TEXTS = [message for _, message in EXCEPTION_FAULTS.values()] + [
    "You don't have access to the model",
    CORRUPT_MARKER,
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(endpoint_seconds=0.4, pace=0, script=SCRIPT)
    async with Emulator(config) as emulator:
        yield emulator


def no_upstream_payload(frames: list[dict[str, object]]) -> None:
    for frame in frames:
        text = json.dumps(frame)
        for upstream in UPSTREAM_TEXTS:
            assert upstream not in text, f"{upstream!r} reached the client in {text[:200]}"


@pytest.mark.parametrize(
    "kind", [FaultKind.BAD_JSON, FaultKind.UNKNOWN_EVENT, FaultKind.WRONG_TYPE]
)
async def test_corrupt_events_are_skipped_and_the_session_goes_on(
    emu: Emulator, kind: FaultKind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novakit.s2s")
    emu.faults = [FaultPlan(kind, Trigger.ASSISTANT_SPEECH)]
    async with conversation(nova_engine(emu), presence_seconds=0) as talk:
        talk.type(Q1)
        await talk.gateway.wait_for(lambda f: f.get("type") == "turn_end")
        talk.type(Q2)  # the session still answers
        await talk.gateway.until(lambda: len(talk.gateway.of_type("turn_end")) >= 2)
        assert talk.session.state is State.OPEN

        frames = talk.gateway.frames
        assert not talk.gateway.of_type("error")
        assert [f["state"] for f in talk.gateway.of_type("session")] == ["ready"]  # no reconnect
        finals = " ".join(f["text"] for f in talk.gateway.of_type("text") if f.get("final"))
        assert finals == f"{R1} {R2}"
        no_upstream_payload(frames)
    assert len(emu.records) == 1 and emu.records[0].fault is kind
    assert emu.records[0].outcome is Outcome.COMPLETED
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("novakit.s2s")]
    assert all(CORRUPT_MARKER not in line for line in logged)
    if kind is FaultKind.UNKNOWN_EVENT:
        assert any("speculativeThought" in line for line in logged)
    else:
        skipped = [line for line in logged if "skipped an output event" in line]
        assert skipped, logged
        if kind is FaultKind.WRONG_TYPE:  # each named with what was wrong
            assert any("usageEvent: details is a string, not an object" in s for s in skipped)
            assert any("textOutput: content is an array, not a string" in s for s in skipped)


async def test_a_stream_that_stalls_mid_answer_is_replaced_within_the_bound(
    emu: Emulator,
) -> None:
    emu.faults = [FaultPlan(FaultKind.STALL, Trigger.ASSISTANT_SPEECH)]
    stall_timeout = 1.5
    async with conversation(nova_engine(emu, stall_timeout=stall_timeout)) as talk:
        talk.type(Q1)
        asked = time.monotonic()
        await talk.gateway.wait_for(
            lambda f: f.get("type") == "session" and f.get("state") == "reconnected"
        )
        recovered_after = time.monotonic() - asked
        await talk.gateway.until(lambda: len(talk.gateway.of_type("turn_end")) >= 1)
        talk.type(Q2)
        await talk.gateway.until(lambda: len(talk.gateway.of_type("turn_end")) >= 2)

        reconnected = [f for f in talk.gateway.of_type("session") if f["state"] == "reconnected"]
        assert [f.get("reason") for f in reconnected] == ["stalled"]
        assert stall_timeout <= recovered_after < stall_timeout + 6.0
        # The answer the stall cut is given again in full, once; nothing is lost.
        finals = " ".join(f["text"] for f in talk.gateway.of_type("text") if f.get("final"))
        assert finals == f"{R1} {R2}"
        assert not talk.gateway.of_type("error")
        no_upstream_payload(talk.gateway.frames)
    await emu.wait_for_streams(2, timeout=10)
    stalled, replacement = emu.records
    assert stalled.fault is FaultKind.STALL
    # The stalled stream was let go by the client, not left open.
    assert stalled.outcome in (Outcome.CLIENT_RESET, Outcome.CONNECTION_LOST)
    assert replacement.outcome is Outcome.COMPLETED


@pytest.mark.parametrize(
    ("plans", "options"),
    [
        ([FaultPlan(FaultKind.VALIDATION, Trigger.ASSISTANT_SPEECH)], {}),
        ([FaultPlan(FaultKind.ACCESS_DENIED)], {}),
        (
            [FaultPlan(FaultKind.MODEL_STREAM_ERROR, Trigger.ASSISTANT_SPEECH)],
            {"recovery_attempts": 0},
        ),
        ([FaultPlan(FaultKind.THROTTLE, every_stream=True)], {"recovery_budget": 1.0}),
    ],
    ids=["validation", "access_denied", "stream_error", "throttled"],
)
async def test_error_frames_carry_fixed_texts_never_upstream_payload(
    emu: Emulator, plans: list[FaultPlan], options: dict[str, object]
) -> None:
    emu.faults = plans
    async with conversation(nova_engine(emu, **options), presence_seconds=0) as talk:
        talk.type(Q1)
        assert await talk.session.wait_ended(20)
        errors = talk.gateway.of_type("error")
        assert errors, talk.gateway.frames
        for error in errors:
            assert error["code"] == "session_failed"
            assert error["message"].endswith(")")  # a fixed text naming the error code
        no_upstream_payload(talk.gateway.frames)
