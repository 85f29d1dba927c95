"""docs/s2s.md: the send guard is awaited "before every event it sends". A task frozen in the
middle of a batch of events (a stream's setup with the history, a replay of the caller's audio
to a new stream) wakes after a takeover and must not send the rest of that batch to Bedrock."""

from __future__ import annotations

import pytest

from novakit import s2s
from novakit.s2s.nova.leg import Leg


class FreezesAfterFirstSend:
    """A Bedrock stream; while the first event is on its way the task freezes (SIGSTOP) and a
    peer takes the conversation over."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.taken_over = False

    async def send(self, payload: bytes) -> None:
        self.sent.append(payload)
        self.taken_over = True  # the freeze: by the time this send returns, another task owns it


async def test_a_fenced_task_sends_nothing_more_of_a_batch() -> None:
    stream = FreezesAfterFirstSend()

    async def guard() -> None:
        if stream.taken_over:
            raise s2s.FencedError("another task owns this conversation now")

    leg = Leg(1, "recovery", None, stream, 0.0, guard=guard)  # type: ignore[arg-type]
    replay = [f"audio chunk {n}".encode() for n in range(40)]  # ~1.3 s of the caller's audio
    with pytest.raises(s2s.ProviderError):
        await leg.send_all(replay)
    assert stream.sent == replay[:1], f"{len(stream.sent) - 1} events sent after the takeover"
