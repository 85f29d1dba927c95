"""The client's microphone rate (the ``start`` frame's ``input_sample_rate``: 8, 16 or 24 kHz)
reaches the model session, is reported in the session frame and survives a takeover."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from novakit import s2s
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.lease import SessionLease
from novakit.bridge.protocol import ClientAudio, ClientStart

from .test_session import FakeConnections, FakeEngine, bridge_session, until


class RecordingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.configs: list[s2s.Config] = []

    def create_session(self, config: s2s.Config, history: Sequence[s2s.Message]) -> s2s.Session:
        self.configs.append(config)
        return super().create_session(config, history)


def session_frame(connections: FakeConnections) -> dict[str, object]:
    return next(json.loads(f) for f in connections.posted if '"type":"session"' in f)


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_the_start_frames_input_rate_is_the_model_sessions(rate: int) -> None:
    engine = RecordingEngine()
    connections = FakeConnections()
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a")
    assert record is not None
    session = bridge_session(engine, connections, lease=SessionLease(directory, record))
    session.receive(ClientStart(input_sample_rate=rate))
    await connections.wait_for("session")
    assert [c.input_sample_rate for c in engine.configs] == [rate]
    assert session_frame(connections)["input_sample_rate"] == rate
    assert session.saved_state()["options"]["input_sample_rate"] == rate
    await directory.save(record, session.saved_state())
    session.end("this task is stopping", hand_over=True)
    assert await session.wait_ended(5)

    # another task takes the conversation over: the client still sends audio at that rate
    handed = await directory.get("c=")
    assert handed is not None
    taken = await directory.claim("c=", "http://b", replacing=handed)
    assert taken is not None
    successor = RecordingEngine()
    resumed = bridge_session(
        successor, FakeConnections(), lease=SessionLease(directory, taken), resumed=True
    )
    resumed.receive(ClientAudio(1, bytes(640)))
    await until(lambda: bool(successor.configs))
    assert successor.configs[0].input_sample_rate == rate
    resumed.end("test over")
    assert await resumed.wait_ended(5)


async def test_without_a_start_frame_the_engines_rate_is_used_and_reported() -> None:
    engine = RecordingEngine()
    connections = FakeConnections()
    session = bridge_session(engine, connections)
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    assert [c.input_sample_rate for c in engine.configs] == [16000]
    assert session_frame(connections)["input_sample_rate"] == 16000
    session.end("test over")
    assert await session.wait_ended(5)
