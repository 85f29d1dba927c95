"""Ending sessions whose client is gone without ``$disconnect``: the sans-I/O decisions, the
settings that drive them, the fixed texts of error frames, and the session's watch (fakes)."""

from __future__ import annotations

import asyncio
import random

import pytest

from novakit.bridge.connections import ConnectionGone
from novakit.bridge.liveness import CLOSING_GRACE, PRESENCE_JITTER, Liveness, LivenessEnd
from novakit.bridge.metrics import UNITS, Metrics
from novakit.bridge.protocol import ClientPing
from novakit.bridge.session import END_METRICS, BridgeSession, State, client_error_text
from novakit.bridge.settings import BridgeSettings, SettingsError
from novakit.bridge.tools import ToolRunner

from ..gateway_auth import SECRET_ENV
from .test_session import FakeConnections, FakeEngine


def liveness(**kw: float) -> Liveness:
    settings = {"first_frame_seconds": 30.0, "idle_seconds": 600.0, "presence_seconds": 60.0}
    settings.update(kw)
    return Liveness(1000.0, rng=random.Random(7), **settings)


def test_no_first_frame_ends_after_its_bound_then_idle_counts_from_the_last_frame() -> None:
    alive = liveness(presence_seconds=0)
    assert alive.next_wakeup() == 1030.0
    assert alive.expired(1029.9) is None
    assert alive.expired(1030.0) is LivenessEnd.NO_FIRST_FRAME
    alive.frame(1010.0)
    assert alive.expired(1030.0) is None
    assert alive.next_wakeup() == 1610.0
    alive.frame(1500.0)
    assert alive.expired(2099.9) is None
    assert alive.expired(2100.0) is LivenessEnd.CLIENT_IDLE


def test_presence_checks_are_jittered_and_each_schedules_the_next() -> None:
    alive = liveness(idle_seconds=0, first_frame_seconds=0)
    first = alive.next_presence
    assert first is not None
    low, high = 1000 + 60 * (1 - PRESENCE_JITTER), 1000 + 60 * (1 + PRESENCE_JITTER)
    assert low <= first <= high
    assert not alive.presence_due(first - 0.01) and alive.presence_due(first)
    alive.presence_checked(first)
    assert alive.next_presence is not None and alive.next_presence > first + 47
    # Sessions opened together do not all check together.
    times = {
        Liveness(0, first_frame_seconds=0, idle_seconds=0, presence_seconds=60).next_presence
        for _ in range(20)
    }
    assert len(times) > 1


@pytest.mark.parametrize("reason", [LivenessEnd.CLIENT_ABSENT, LivenessEnd.CLIENT_GONE])
def test_a_410_while_frames_still_arrive_ends_the_session_once_they_stop(
    reason: LivenessEnd,
) -> None:
    alive = liveness(idle_seconds=0, first_frame_seconds=0, presence_seconds=0)
    assert alive.closing_grace == CLOSING_GRACE
    alive.frame(1050.0)
    # The connection is closing: its queued frames (then $disconnect) are still coming.
    assert not alive.gone_reported(1052.0, reason)
    assert alive.next_wakeup() == 1050.0 + CLOSING_GRACE
    alive.frame(1055.0)  # one more arrives
    assert alive.expired(1060.0) is None
    assert alive.next_wakeup() == 1055.0 + CLOSING_GRACE
    assert alive.expired(1055.0 + CLOSING_GRACE) is reason  # then silence: gone
    assert liveness().gone_reported(1000.0, reason)  # no frame ever: gone at once
    assert liveness(presence_seconds=2.0).closing_grace == 2.0


def test_zero_turns_each_check_off() -> None:
    alive = liveness(first_frame_seconds=0, idle_seconds=0, presence_seconds=0)
    assert alive.next_wakeup() is None
    assert alive.expired(1e9) is None and not alive.presence_due(1e9)


def test_liveness_settings_come_from_the_environment() -> None:
    base = {"NOVAKIT_CONNECTIONS_URL": "http://127.0.0.1:8080", **SECRET_ENV}
    defaults = BridgeSettings.from_env(base)
    assert (defaults.idle_seconds, defaults.first_frame_seconds, defaults.presence_seconds) == (
        600.0,
        30.0,
        60.0,
    )
    custom = BridgeSettings.from_env(
        {
            **base,
            "NOVAKIT_IDLE_SECONDS": "300",
            "NOVAKIT_FIRST_FRAME_SECONDS": "0",
            "NOVAKIT_PRESENCE_SECONDS": "15.5",
        }
    )
    assert (custom.idle_seconds, custom.first_frame_seconds, custom.presence_seconds) == (
        300.0,
        0.0,
        15.5,
    )
    with pytest.raises(SettingsError, match="NOVAKIT_IDLE_SECONDS must be between"):
        BridgeSettings.from_env({**base, "NOVAKIT_IDLE_SECONDS": "-1"})
    names = [name for name, _ in BridgeSettings.describe()]
    assert {
        "NOVAKIT_IDLE_SECONDS",
        "NOVAKIT_FIRST_FRAME_SECONDS",
        "NOVAKIT_PRESENCE_SECONDS",
    } <= set(names)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("throttled", "the model service is busy; try again shortly (throttled)"),
        ("validation", "the model refused a request (validation)"),
        ("stalled", "the connection to the model failed (stalled)"),
        ("access_denied", "the bridge is not allowed to use the model (access_denied)"),
        ('x"; <script>', "the connection to the model failed (other)"),
    ],
)
def test_error_frames_carry_a_fixed_text_for_each_code(code: str, text: str) -> None:
    assert client_error_text(code) == text


def test_every_end_reason_is_a_counted_metric() -> None:
    assert set(END_METRICS.values()) | {"EndedOther", "SessionsEnded"} <= set(UNITS)
    assert END_METRICS[LivenessEnd.CLIENT_IDLE] == "EndedClientIdle"


class PresenceGateway(FakeConnections):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Exception | None] = []
        self.gets = 0

    async def get(self, connection_id: str) -> dict[str, str]:
        self.gets += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return {}

    async def delete(self, connection_id: str) -> None:
        return None


async def test_a_failing_presence_check_keeps_the_session_and_410_ends_it() -> None:
    engine = FakeEngine()
    gateway = PresenceGateway()
    gateway.answers = [TimeoutError(), RuntimeError("500"), ConnectionGone("c=")]
    session = BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(
            connections_url="http://127.0.0.1:1",
            presence_seconds=0.05,
            idle_seconds=0,
            first_frame_seconds=0,
        ),
        connections=gateway,  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=Metrics(),
        on_ended=lambda s: None,
    )
    session.receive(ClientPing())
    assert await session.wait_ended(5)
    assert gateway.gets == 3  # two failures were not taken for a departure
    assert session.state is State.ENDED


async def test_a_session_ended_for_idleness_takes_no_more_frames() -> None:
    engine = FakeEngine()
    session = BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(
            connections_url="http://127.0.0.1:1", idle_seconds=0.1, presence_seconds=0
        ),
        connections=PresenceGateway(),  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=Metrics(),
        on_ended=lambda s: None,
    )
    session.receive(ClientPing())
    assert await session.wait_ended(5)
    session.receive(ClientPing())  # a late frame is ignored, not a crash
    await asyncio.sleep(0)
    assert session.state is State.ENDED


class GoneGateway(PresenceGateway):
    async def post(self, connection_id: str, data: bytes, *, before_retry: object = None) -> float:
        raise ConnectionGone(connection_id)


async def test_a_post_answered_410_ends_the_session_once_the_frames_stop() -> None:
    """A closing connection: API Gateway still delivers the frames it had queued. The session
    takes them (none opens a new session) and ends when they stop."""
    engine = FakeEngine()
    metrics = Metrics()
    session = BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(
            connections_url="http://127.0.0.1:1", presence_seconds=0.5, idle_seconds=0
        ),
        connections=GoneGateway(),  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=metrics,
        on_ended=lambda s: None,
    )
    session.receive(ClientPing())  # its pong's post answers 410
    for _ in range(8):  # frames keep coming for 0.8 s
        await asyncio.sleep(0.1)
        assert session.state is State.WAITING  # not ending
        session.receive(ClientPing())
    assert await session.wait_ended(5)
    counts = metrics.snapshot()["counts"]
    assert isinstance(counts, dict) and counts.get("EndedClientGone") == 1
