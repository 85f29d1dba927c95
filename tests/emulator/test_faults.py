"""Fault plans: the spec syntax, one-shot versus every-stream, and when each trigger fires."""

from __future__ import annotations

import pytest

from novakit.emulator.faults import FaultKind, FaultPlan, FaultTracker, Trigger, arm_faults


@pytest.mark.parametrize(
    ("spec", "plan"),
    [
        ("throttle", FaultPlan(FaultKind.THROTTLE)),
        ("reset@2.5s", FaultPlan(FaultKind.RESET, Trigger.SECONDS, 2.5)),
        ("internal@3turns", FaultPlan(FaultKind.INTERNAL, Trigger.TURNS, 3)),
        ("drop@1turn", FaultPlan(FaultKind.DROP, Trigger.TURNS, 1)),
        ("invalid_event@user", FaultPlan(FaultKind.INVALID_EVENT, Trigger.USER_SPEECH)),
        (
            "model_stream_error@assistant:every",
            FaultPlan(FaultKind.MODEL_STREAM_ERROR, Trigger.ASSISTANT_SPEECH, every_stream=True),
        ),
        ("idle_cut@start:every", FaultPlan(FaultKind.IDLE_CUT, every_stream=True)),
        ("validation@1turn", FaultPlan(FaultKind.VALIDATION, Trigger.TURNS, 1)),
        ("stall@assistant", FaultPlan(FaultKind.STALL, Trigger.ASSISTANT_SPEECH)),
        ("wrong_type@2s:every", FaultPlan(FaultKind.WRONG_TYPE, Trigger.SECONDS, 2, True)),
        ("bad_json", FaultPlan(FaultKind.BAD_JSON)),
        ("unknown_event@user", FaultPlan(FaultKind.UNKNOWN_EVENT, Trigger.USER_SPEECH)),
    ],
)
def test_parse(spec: str, plan: FaultPlan) -> None:
    assert FaultPlan.parse(spec) == plan
    assert FaultPlan.parse(str(plan)) == plan


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("explode", "unknown fault kind 'explode'"),
        ("throttle@soon", "bad fault time 'soon'"),
        ("throttle@seconds", "give a number"),
        ("access_denied@5s", "when the stream opens"),
    ],
)
def test_parse_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultPlan.parse(spec)


def test_exception_faults_name_the_bedrock_exception() -> None:
    assert FaultPlan(FaultKind.THROTTLE).exception == (
        "throttlingException",
        "Too many requests, please wait before trying again.",
    )
    assert FaultPlan(FaultKind.MODEL_TIMEOUT).exception == (
        "modelTimeoutException",
        "Model has timed out in processing the request",
    )
    exception = FaultPlan(FaultKind.IDLE_CUT).exception
    assert exception is not None
    assert exception[0] == "validationException"
    assert "InternalErrorCode=531" in exception[1]
    rejected = FaultPlan(FaultKind.VALIDATION).exception
    assert rejected is not None
    assert rejected[0] == "validationException"
    assert "531" not in rejected[1]  # a plain rejection, not the idle cut
    assert FaultPlan(FaultKind.RESET).exception is None


def test_one_shot_plans_are_used_up_by_the_next_stream() -> None:
    once = FaultPlan(FaultKind.THROTTLE)
    every = FaultPlan(FaultKind.RESET, every_stream=True)
    armed, left = arm_faults([once, every])
    assert armed == [once, every]
    assert left == [every]
    armed, left = arm_faults(left)
    assert armed == [every]
    assert left == [every]


def test_tracker_triggers() -> None:
    plans = [
        FaultPlan(FaultKind.INTERNAL, Trigger.SECONDS, 5),
        FaultPlan(FaultKind.THROTTLE, Trigger.TURNS, 2),
        FaultPlan(FaultKind.RESET, Trigger.USER_SPEECH),
        FaultPlan(FaultKind.DROP, Trigger.ASSISTANT_SPEECH),
    ]
    tracker = FaultTracker(plans, started_at=100.0)
    quiet = {"turns_done": 0, "user_speaking": False, "assistant_speaking": False}
    assert tracker.next_deadline() == 105.0
    assert tracker.due(now=104.9, **quiet) is None
    assert tracker.due(now=105.0, **quiet) == plans[0]
    assert tracker.next_deadline() is None
    assert tracker.due(now=106, **{**quiet, "turns_done": 1}) is None
    assert tracker.due(now=106, **{**quiet, "turns_done": 2}) == plans[1]
    assert tracker.due(now=106, **{**quiet, "user_speaking": True}) == plans[2]
    assert tracker.due(now=106, **{**quiet, "assistant_speaking": True}) == plans[3]
    assert tracker.due(now=106, turns_done=9, user_speaking=True, assistant_speaking=True) is None


def test_start_plans_fire_at_once_and_access_denied_is_not_tracked() -> None:
    tracker = FaultTracker(
        [FaultPlan(FaultKind.ACCESS_DENIED), FaultPlan(FaultKind.UNAVAILABLE)], started_at=0
    )
    assert [p.kind for p in tracker.plans] == [FaultKind.UNAVAILABLE]
    plan = tracker.due(now=0, turns_done=0, user_speaking=False, assistant_speaking=False)
    assert plan is not None
    assert plan.kind is FaultKind.UNAVAILABLE
