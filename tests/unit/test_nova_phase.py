"""The session's phase between its streams: every row of the table, and every step it refuses."""

from __future__ import annotations

import pytest

from novakit.s2s.nova.phase import TRANSITIONS, Phase, PhaseError, Step, advance

P, S = Phase, Step


def walk(*steps: Step, start: Phase = P.NEW) -> list[Phase]:
    phases = [start]
    for step in steps:
        phases.append(advance(phases[-1], step))
    return phases


def test_a_rollover_goes_through_its_phases_back_to_live() -> None:
    assert walk(S.OPEN, S.ROLLOVER_DUE, S.NEXT_READY, S.SWITCHED, S.STARTED) == [
        P.NEW,
        P.LIVE,
        P.PREPARING,
        P.READY,
        P.SWITCHING,
        P.LIVE,
    ]


def test_a_next_leg_lost_before_the_switch_is_prepared_again() -> None:
    assert walk(S.NEXT_LOST, S.NEXT_READY, start=P.READY) == [P.READY, P.PREPARING, P.READY]


def test_a_recovery_settles_back_to_live() -> None:
    assert walk(S.LEG_FAILED, S.REPLACED, S.SETTLED, start=P.LIVE) == [
        P.LIVE,
        P.RECOVERING,
        P.SETTLING,
        P.LIVE,
    ]


@pytest.mark.parametrize("phase", [P.LIVE, P.PREPARING, P.READY, P.SWITCHING, P.SETTLING])
def test_the_live_leg_failing_recovers_or_goes_dormant_from_any_carrying_phase(
    phase: Phase,
) -> None:
    assert advance(phase, S.LEG_FAILED) is P.RECOVERING
    assert advance(phase, S.WENT_QUIET) is P.DORMANT


def test_a_dormant_session_wakes_into_a_recovery() -> None:
    assert walk(S.WOKE, S.REPLACED, start=P.DORMANT) == [P.DORMANT, P.RECOVERING, P.SETTLING]


@pytest.mark.parametrize("phase", [p for p in Phase if p.open])
@pytest.mark.parametrize("step", [S.FAILED, S.CLOSE])
def test_every_open_phase_closes(phase: Phase, step: Step) -> None:
    assert walk(step, S.SHUT, start=phase) == [phase, P.CLOSING, P.CLOSED]


def test_a_session_closed_before_it_opened_is_closed_at_once() -> None:
    assert advance(P.NEW, S.CLOSE) is P.CLOSED


@pytest.mark.parametrize(
    ("phase", "step"),
    [
        (P.RECOVERING, S.LEG_FAILED),  # an attempt's leg failing is the recovery's business
        (P.RECOVERING, S.ROLLOVER_DUE),
        (P.SETTLING, S.ROLLOVER_DUE),  # a rollover waits until the replacement has settled
        (P.SWITCHING, S.ROLLOVER_DUE),
        (P.LIVE, S.SWITCHED),  # no switch without a next leg ready
        (P.PREPARING, S.SWITCHED),
        (P.LIVE, S.SETTLED),
        (P.DORMANT, S.LEG_FAILED),  # no leg to fail
        (P.CLOSING, S.CLOSE),
        (P.CLOSED, S.SHUT),
        (P.NEW, S.LEG_FAILED),
    ],
)
def test_steps_without_a_row_are_refused_by_name(phase: Phase, step: Step) -> None:
    with pytest.raises(PhaseError, match=f"no transition from {phase.value} on {step.value}"):
        advance(phase, step)


def test_what_each_phase_allows() -> None:
    carrying = {p for p in Phase if p.carrying}
    assert carrying == {P.LIVE, P.PREPARING, P.READY, P.SWITCHING, P.SETTLING}
    assert {p for p in Phase if p.may_roll} == {P.LIVE, P.PREPARING, P.READY}
    assert {p for p in Phase if not p.open} == {P.NEW, P.CLOSING, P.CLOSED}
    # every phase but CLOSED has a way on, and every phase is reachable from NEW
    sources = {phase for phase, _ in TRANSITIONS}
    assert set(Phase) - sources == {P.CLOSED}
    reached, frontier = {P.NEW}, [P.NEW]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is phase and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Phase)
