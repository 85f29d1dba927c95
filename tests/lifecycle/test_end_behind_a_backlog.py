"""``end`` sent while the model is behind (its input queue full): the user's end is a control
frame, not input to shed; refusing it with `rate_limited` leaves the conversation running."""

from __future__ import annotations

from novakit.bridge.protocol import ClientAudio, ClientEnd
from novakit.bridge.session import MAX_PENDING_INPUT

from ..bridge.test_session import FakeConnections, FakeEngine, bridge_session, frames_of


async def test_end_is_taken_even_when_input_is_backed_up() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    session = bridge_session(engine, connections)
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    engine.session.gate.clear()  # Bedrock stops taking audio for a while (a slow stream)
    for seq in range(1, MAX_PENDING_INPUT + 3):
        session.receive(ClientAudio(seq, bytes(640)))
    session.receive(ClientEnd())
    engine.session.gate.set()
    ended = await session.wait_ended(5)
    refused = [
        f["ref"] for f in frames_of(connections) if f.get("code") == "rate_limited" and "ref" in f
    ]
    if not ended:
        session.end("test over")
        await session.wait_ended(5)
    assert {"type": "end"} not in refused, "the user's end was refused as rate_limited"
    assert ended, "the conversation went on after the user ended it"
