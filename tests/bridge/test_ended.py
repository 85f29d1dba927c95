"""The bounded memory of ended connections."""

from __future__ import annotations

import pytest

from novakit.bridge.ended import EndedConnections


def test_an_ended_connection_is_remembered_and_closed_at_most_once() -> None:
    ended = EndedConnections()
    ended.add("open=", closed=False)
    ended.add("closed=", closed=True)
    assert "open=" in ended and "closed=" in ended and "other=" not in ended
    assert ended.needs_closing("open=")
    assert not ended.needs_closing("open=")  # the next frames find it being closed
    assert not ended.needs_closing("closed=")
    assert not ended.needs_closing("other=")


def test_knowing_it_closed_is_never_forgotten_by_a_later_add() -> None:
    ended = EndedConnections()
    ended.add("c=", closed=True)
    ended.add("c=", closed=False)  # another task's tombstone seen later
    assert not ended.needs_closing("c=")


def test_the_oldest_entries_go_first_past_the_limit() -> None:
    ended = EndedConnections(limit=3)
    for name in ("a=", "b=", "c="):
        ended.add(name, closed=True)
    ended.add("a=", closed=True)  # seen again: now the newest
    ended.add("d=", closed=True)
    assert len(ended) == 3
    assert "b=" not in ended
    assert all(name in ended for name in ("a=", "c=", "d="))


def test_the_limit_must_allow_one_entry() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EndedConnections(limit=0)
