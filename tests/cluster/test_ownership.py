"""One task owns a conversation, whatever happens to the tasks: a property over random
schedules of kills, drains, stalls and a slow directory (Hypothesis), and the stall case on
its own. The checks are ownership.py's, over every event the emulator received.

``make test`` runs a few schedules; ``make soak`` many (``NOVAKIT_OWNERSHIP_EXAMPLES``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import OWNER_TIMEOUT, RELAY_TIMEOUT
from .scenario import Disruption, run

EXAMPLES = int(os.environ.get("NOVAKIT_OWNERSHIP_EXAMPLES", "2"))
# A frozen owner's heartbeat is old enough for a takeover once a relay to it has timed out
# after owner_timeout (the relay began once the gateway took the frozen task out).
GONE_AFTER = OWNER_TIMEOUT + RELAY_TIMEOUT + 1.0

disruptions = st.one_of(
    st.builds(Disruption, st.sampled_from(["kill", "drain"]), st.integers(0, 2)),
    # frozen long enough to be taken for dead (a relay times out, then the heartbeat is
    # older than owner_timeout): taken over, and fenced when it wakes
    st.builds(
        Disruption, st.just("stall"), st.integers(0, 2), st.floats(GONE_AFTER, GONE_AFTER + 3)
    ),
    # slow, not dead: nothing should move (and if it does, nothing may break)
    st.builds(Disruption, st.just("short_stall"), st.integers(0, 2), st.floats(0.3, 1.5)),
    st.builds(Disruption, st.just("slow_directory"), st.integers(0, 2), st.floats(0.5, 3.0)),
)


@pytest.mark.timeout(240 * EXAMPLES + 60)  # each example is a cluster's life, on a busy machine
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # Each example is a cluster's life: a failure is reported as found, not shrunk for an hour.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(schedule=st.lists(disruptions, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_one_owner_at_a_time_whatever_happens(schedule: list[Disruption], seed: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        outcome = asyncio.run(asyncio.wait_for(run(Path(scratch), schedule, seed), 600))
    assert outcome.problems == [], f"{schedule}, seed {seed}: {outcome.problems}"


@pytest.mark.timeout(300)
async def test_a_frozen_owner_is_taken_over_and_stays_silent_when_it_wakes(
    tmp_path: Path,
) -> None:
    outcome = await run(
        tmp_path, [Disruption("stall", client=0, seconds=GONE_AFTER + 2.0)], seed=11
    )
    assert outcome.problems == []
    # three conversations, and client 0's (at least) moved to a new stream
    assert outcome.streams >= 4
    assert "took the session over" in outcome.logs
    # the frozen task woke up, learned it had lost the conversation, and said nothing more
    assert "another task took the session over while this one was stalled" in outcome.logs
