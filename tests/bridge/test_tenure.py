"""Slow is not dead: a task trusts its heartbeat for a while, and after a lapse each session
fences its record before the model hears anything more from this task."""

from __future__ import annotations

import asyncio

import pytest

from novakit import s2s
from novakit.bridge import lease as lease_module
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.lease import SessionLease
from novakit.bridge.tenure import TRUST, Heartbeat, Tenure

OWNER = "http://a"
PEER = "http://b"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_beat_is_trusted_for_less_than_peers_wait() -> None:
    clock = Clock()
    tenure = Tenure(owner_timeout=6.0, clock=clock)
    assert not tenure.trusted(tenure.term)  # no beat yet
    tenure.renewed(clock.now)
    term = tenure.term
    clock.now += 6.0 * TRUST
    assert tenure.trusted(term)
    clock.now += 0.01
    assert not tenure.trusted(term)
    assert 6.0 * TRUST < 6.0  # peers wait the whole owner_timeout


def test_beats_on_time_keep_the_term_and_a_late_one_moves_it_on() -> None:
    clock = Clock()
    tenure = Tenure(owner_timeout=6.0, clock=clock)
    tenure.renewed(clock.now)
    term = tenure.term
    for _ in range(5):  # every 2 s, each written at once
        clock.now += 2.0
        tenure.renewed(clock.now)
        assert tenure.term == term and tenure.trusted(term)
    # stalled for 10 s: the next beat lands after the trust ran out
    started = clock.now
    clock.now += 10.0
    tenure.renewed(started)  # a beat begun before the stall, written after it
    assert tenure.term == term + 1
    assert not tenure.trusted(term)  # sessions confirmed before the stall must fence


def test_a_write_that_lands_late_does_not_extend_trust_beyond_its_start() -> None:
    clock = Clock()
    tenure = Tenure(owner_timeout=4.0, clock=clock)
    tenure.renewed(clock.now)
    started = clock.now + 1.0
    clock.now += 3.5  # the write took 2.5 s: peers saw the old beat until it landed
    tenure.renewed(started)
    assert tenure.trusted(tenure.term)
    clock.now = started + 4.0 * TRUST + 0.01
    assert not tenure.trusted(tenure.term)


class CountingDirectory(MemoryDirectory):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.beats = 0
        self.confirms = 0
        self.beat_gate: asyncio.Event | None = None
        self.beating = asyncio.Event()  # set when a heartbeat write begins

    async def heartbeat(self, owner: str) -> None:
        self.beats += 1
        self.beating.set()
        if self.beat_gate is not None:
            await self.beat_gate.wait()
        await super().heartbeat(owner)

    async def confirm(self, record):  # type: ignore[no-untyped-def]
        self.confirms += 1
        return await super().confirm(record)


async def owned(clock: Clock) -> tuple[CountingDirectory, Heartbeat, SessionLease]:
    directory = CountingDirectory(clock)
    heartbeat = Heartbeat(directory, OWNER, Tenure(owner_timeout=6.0, clock=clock))
    assert await heartbeat.beat()
    record = await directory.claim("c=", OWNER, state={"history": []})
    assert record is not None
    return directory, heartbeat, SessionLease(directory, record, heartbeat)


async def test_while_trusted_sends_ask_nobody() -> None:
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    for _ in range(100):
        await lease.guard()
        clock.now += 0.01
    assert (directory.beats, directory.confirms) == (1, 0)


async def test_after_a_stall_the_session_confirms_once_then_sends_freely() -> None:
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    version = lease.record.version
    clock.now += 20.0  # stalled
    await lease.guard()
    assert (directory.beats, directory.confirms) == (2, 1)
    assert lease.record.version == version + 1
    for _ in range(10):
        await lease.guard()
    assert (directory.beats, directory.confirms) == (2, 1)


async def test_a_session_taken_over_during_the_stall_is_fenced() -> None:
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    seen = await directory.get("c=")
    clock.now += 20.0  # the owner stalls; a peer finds its heartbeat stale and takes over
    assert not await directory.alive(OWNER, 6.0)
    assert await directory.claim("c=", PEER, replacing=seen) is not None
    with pytest.raises(s2s.FencedError):
        await lease.guard()
    assert lease.lost
    with pytest.raises(s2s.FencedError):  # and stays fenced, without asking again
        await lease.guard()
    assert directory.confirms == 1
    assert (await directory.get("c=")).owner == PEER


async def test_a_takeover_decided_before_the_owner_woke_loses_its_claim() -> None:
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    clock.now += 20.0
    seen = await directory.get("c=")  # a peer read the record during the stall...
    await lease.guard()  # ...the owner woke, beat and fenced...
    assert await directory.claim("c=", PEER, replacing=seen) is None  # ...so the claim fails
    assert (await directory.get("c=")).owner == OWNER


async def test_concurrent_sends_after_a_stall_share_one_beat_and_one_confirm() -> None:
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    clock.now += 20.0
    directory.beat_gate = asyncio.Event()
    directory.beating.clear()
    waiting = [asyncio.create_task(lease.guard()) for _ in range(20)]
    await asyncio.wait_for(directory.beating.wait(), 10)  # the first send's beat is out
    directory.beat_gate.set()
    await asyncio.gather(*waiting)
    assert (directory.beats, directory.confirms) == (2, 1)


async def test_a_beat_begun_before_the_ask_is_not_taken_as_proof() -> None:
    clock = Clock()
    directory = CountingDirectory(clock)
    heartbeat = Heartbeat(directory, OWNER, Tenure(owner_timeout=6.0, clock=clock))
    directory.beat_gate = asyncio.Event()
    early = asyncio.create_task(heartbeat.beat())
    await asyncio.wait_for(directory.beating.wait(), 10)
    clock.now += 1.0
    late = asyncio.create_task(heartbeat.beat())  # asked after the first write began
    directory.beat_gate.set()
    assert await early and await late
    assert directory.beats == 2


async def test_a_directory_out_of_reach_holds_sends_then_gives_the_session_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cut off from the directory, a task cannot know whether a peer took the session over:
    # it sends nothing until it can confirm, and gives the session up after a bound.
    monkeypatch.setattr(lease_module, "FENCE_RETRY_SECONDS", 0.0)
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    attempts = 0

    async def down(*_args: object, **_kwargs: object) -> None:
        nonlocal attempts
        attempts += 1
        clock.now += 3.0  # each attempt waits out its timeouts
        raise ConnectionError("directory unreachable")

    directory.heartbeat = down  # type: ignore[method-assign]
    directory.confirm = down  # type: ignore[method-assign,assignment]
    clock.now += 20.0
    with pytest.raises(s2s.FencedError):
        await lease.guard()
    assert lease.lost
    # bounded: about FENCE_GIVE_UP owner timeouts of attempts, not forever
    assert 2 <= attempts <= 2 * lease_module.FENCE_GIVE_UP * 6.0 / 3.0 + 2


async def test_a_directory_back_in_time_lets_the_session_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lease_module, "FENCE_RETRY_SECONDS", 0.0)
    clock = Clock()
    directory, _heartbeat, lease = await owned(clock)
    real_heartbeat = directory.heartbeat
    failures = 2

    async def flaky(owner: str) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("directory unreachable")
        await real_heartbeat(owner)

    directory.heartbeat = flaky  # type: ignore[method-assign]
    clock.now += 20.0
    await lease.guard()
    assert not lease.lost and failures == 0


async def test_a_claim_sent_before_a_lapse_fences_before_its_first_send() -> None:
    # The claim went out, the task stalled, a peer took the session over, the task's late
    # heartbeat landed (a new term), then the claim's answer came back: the session must not
    # count as confirmed in the new term.
    clock = Clock()
    directory = CountingDirectory(clock)
    heartbeat = Heartbeat(directory, OWNER, Tenure(owner_timeout=6.0, clock=clock))
    assert await heartbeat.beat()
    term = heartbeat.tenure.term  # read before the claim is sent
    record = await directory.claim("c=", OWNER)
    assert record is not None
    clock.now += 20.0  # stalled with the answer on its way
    assert await directory.claim("c=", PEER, replacing=await directory.get("c=")) is not None
    assert await heartbeat.beat()  # the late beat lands: a new term
    lease = SessionLease(directory, record, heartbeat, term=term)
    with pytest.raises(s2s.FencedError):
        await lease.guard()


async def test_a_beat_after_a_lapse_tells_the_task_once() -> None:
    clock = Clock()
    lapses: list[int] = []
    tenure = Tenure(owner_timeout=6.0, clock=clock)
    heartbeat = Heartbeat(
        CountingDirectory(clock), OWNER, tenure, on_lapse=lambda: lapses.append(tenure.term)
    )
    assert await heartbeat.beat()  # the first beat starts the first term
    for _ in range(3):
        clock.now += 2.0
        assert await heartbeat.beat()
    assert lapses == [1]
    clock.now += 30.0  # stalled
    assert await heartbeat.beat()
    clock.now += 2.0
    assert await heartbeat.beat()
    assert lapses == [1, 2]
