"""A conversation whose first client frame is ``end``: the user ended it before saying anything."""

from __future__ import annotations

from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.lease import SessionLease
from novakit.bridge.protocol import ClientEnd

from ..bridge.test_session import FakeConnections, FakeEngine, bridge_session, frames_of


async def test_end_as_the_first_frame_ends_the_conversation_without_a_bedrock_stream() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a")
    assert record is not None
    session = bridge_session(engine, connections, lease=SessionLease(directory, record))
    session.receive(ClientEnd())  # e.g. the page's Disconnect pressed before speaking
    ended = await session.wait_ended(5)
    streams = len(engine.histories)
    states = [f.get("state") for f in frames_of(connections) if f["type"] == "session"]
    tombstone = await directory.owner_of("c=")
    if not ended:
        session.end("test over")
        await session.wait_ended(5)
    # expected: the conversation is over, the client told `ended`, the connection closed
    assert ended, f"not ended 5 s after end; client got session states {states}"
    assert states[-1:] == ["ended"]
    assert tombstone is not None and tombstone.ended
    assert connections.hung_up == ["c="]
    # and no Bedrock stream was opened for a conversation that was already over
    assert streams == 0
