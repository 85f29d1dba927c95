"""BridgeSession without sockets: a fake model session and a fake @connections client."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from novakit import s2s
from novakit.bridge.directory import MemoryDirectory
from novakit.bridge.lease import SessionLease
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import ClientAudio, ClientEnd, ClientPing, ClientText
from novakit.bridge.session import MAX_BEFORE_RESUMED, BridgeSession, State
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tools import ToolRunner


class FakeSession(s2s.Session):
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.changed = asyncio.Condition()
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = asyncio.Event()  # a send is waiting at the closed gate
        self._closed = False
        self.events: asyncio.Queue[s2s.Event | None] = asyncio.Queue()
        self.log: list[s2s.Message] = []  # what history() answers

    async def open(self) -> None:
        return None

    async def send_audio(self, pcm: bytes) -> None:
        if not self.gate.is_set():
            self.held.set()
        await self.gate.wait()
        await self._record(("audio", pcm))

    async def send_text(self, text: str) -> None:
        await self._record(("text", text))

    async def _record(self, item: tuple[str, Any]) -> None:
        async with self.changed:
            self.sent.append(item)
            self.changed.notify_all()

    async def send_tool_result(self, result: s2s.ToolResult) -> None:
        self.sent.append(("tool", result))

    async def interrupt(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        self.events.put_nowait(None)

    async def recv(self) -> AsyncIterator[s2s.Event]:  # type: ignore[override]
        while (event := await self.events.get()) is not None:
            yield event

    def history(self) -> list[s2s.Message]:
        return list(self.log)

    @property
    def closed(self) -> bool:
        return self._closed


class FakeEngine(s2s.Engine):
    name = "fake"

    def __init__(self) -> None:
        self.config = s2s.Config()
        self.session = FakeSession()
        self.histories: list[tuple[s2s.Message, ...]] = []  # given to each session started

    def create_session(self, config: s2s.Config, history: Sequence[s2s.Message]) -> s2s.Session:
        self.histories.append(tuple(history))
        self.session.log = list(history)
        return self.session


class FakeConnections:
    def __init__(self) -> None:
        self.posted: list[str] = []
        self.hung_up: list[str] = []
        self.changed = asyncio.Condition()

    async def hang_up(self, connection_id: str, within: float = 5.0) -> bool:
        self.hung_up.append(connection_id)
        return True

    async def post(self, connection_id: str, data: bytes, *, before_retry: object = None) -> float:
        async with self.changed:
            self.posted.append(data.decode())
            self.changed.notify_all()
        return 0.0

    async def wait_for(self, kind: str) -> None:
        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(
                lambda: any(f'"type":"{kind}"' in frame for frame in self.posted)
            )


def bridge_session(
    engine: FakeEngine,
    connections: FakeConnections | None = None,
    metrics: Metrics | None = None,
    *,
    lease: SessionLease | None = None,
    resumed: bool = False,
    on_ended: Callable[[BridgeSession], None] = lambda s: None,
) -> BridgeSession:
    return BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1"),
        connections=connections or FakeConnections(),  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=metrics or Metrics(),
        on_ended=on_ended,
        lease=lease,
        resumed=resumed,
    )


async def test_audio_waiting_behind_a_slow_send_goes_to_bedrock_as_one_event() -> None:
    engine = FakeEngine()
    session = bridge_session(engine)
    engine.session.gate.clear()  # Bedrock is slow: the first send blocks
    for seq in range(7):
        session.receive(ClientAudio(seq, bytes([seq]) * 4))
    session.receive(ClientText("typed"))
    session.receive(ClientAudio(7, bytes([7]) * 4))
    async with asyncio.timeout(5):
        await engine.session.held.wait()  # the first frame is being sent, the rest wait
    engine.session.gate.set()
    async with asyncio.timeout(5), engine.session.changed:
        await engine.session.changed.wait_for(lambda: len(engine.session.sent) >= 5)
    sent = engine.session.sent
    assert sent[0] == ("audio", bytes([0]) * 4)  # the one that was sending
    # then up to four waiting frames at once, in order, and nothing jumps the text
    assert sent[1] == ("audio", b"".join(bytes([n]) * 4 for n in (1, 2, 3, 4)))
    assert sent[2] == ("audio", b"".join(bytes([n]) * 4 for n in (5, 6)))
    assert sent[3] == ("text", "typed")
    assert sent[4] == ("audio", bytes([7]) * 4)
    session.end("test over")
    assert await session.wait_ended(5)


async def test_a_barge_in_is_timed_from_the_model_event_to_the_clear_posted() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    metrics = Metrics()
    session = bridge_session(engine, connections, metrics)
    session.receive(ClientAudio(0, bytes(640)))  # opens the model session
    await connections.wait_for("session")
    engine.session.events.put_nowait(s2s.Event.interrupted("barge_in"))
    await connections.wait_for("clear_audio")
    await asyncio.sleep(0)  # the sender notes the post once it returns
    values = metrics.snapshot()["values"]
    assert isinstance(values, dict)
    assert sum(values["BargeInMs"].values()) == 1
    session.end("test over")
    assert await session.wait_ended(5)


@pytest.mark.parametrize(
    ("model_reason", "clear_reason"),
    [
        ("barge_in", "barge_in"),
        ("client", "client"),
        ("recovery", "recovery"),  # the stream was lost mid answer: not the user's doing
        ("something new", "barge_in"),
    ],
)
async def test_clear_audio_says_why_the_answer_stopped(
    model_reason: str, clear_reason: str
) -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    session = bridge_session(engine, connections)
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    engine.session.events.put_nowait(s2s.Event.interrupted(model_reason))
    await connections.wait_for("clear_audio")
    (clear,) = [json.loads(f) for f in connections.posted if '"type":"clear_audio"' in f]
    assert clear["reason"] == clear_reason
    session.end("test over")
    assert await session.wait_ended(5)


async def until(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Poll ``check`` (a state no event announces) until it holds, for at most ``within`` s."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.01)


def frames_of(connections: FakeConnections) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in connections.posted]


async def test_frames_after_end_are_refused_once_then_ended_and_the_connection_closed() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a")
    assert record is not None
    session = bridge_session(engine, connections, lease=SessionLease(directory, record))
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    session.receive(ClientEnd())
    for seq in range(1, 6):  # microphone audio still in flight after end
        session.receive(ClientAudio(seq, bytes(640)))
    assert await session.wait_ended(5)
    for seq in range(6, 9):  # and after the session ended
        session.receive(ClientAudio(seq, bytes(640)))
    sent = frames_of(connections)
    errors = [f for f in sent if f["type"] == "error"]
    assert [(e["code"], e["fatal"]) for e in errors] == [("session_ended", True)]
    assert errors[0]["ref"] == {"type": "audio", "seq": 1}
    ended = [f for f in sent if f.get("state") == "ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "client ended the session"
    assert sent.index(errors[0]) < sent.index(ended[0])  # told before the end
    assert [f["seq"] for f in sent] == list(range(len(sent)))
    assert connections.hung_up == ["c="]
    assert session.conversation_over and session.connection_closed
    tombstone = await directory.owner_of("c=")
    assert tombstone is not None and tombstone.ended
    assert [item[0] for item in engine.session.sent] == ["audio"]  # nothing fed after end


class BrokenHangUp(FakeConnections):
    async def hang_up(self, connection_id: str, within: float = 5.0) -> bool:
        raise RuntimeError("the management API client broke")


async def test_a_fault_while_ending_still_ends_the_session_and_frees_its_slot() -> None:
    ended: list[BridgeSession] = []
    session = bridge_session(FakeEngine(), BrokenHangUp(), on_ended=ended.append)
    session.receive(ClientAudio(0, bytes(640)))
    session.receive(ClientEnd())
    assert await session.wait_ended(5)
    assert session.state is State.ENDED and ended == [session]


async def test_a_session_handed_over_tells_the_client_nothing_and_keeps_its_record() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a")
    assert record is not None
    session = bridge_session(engine, connections, lease=SessionLease(directory, record))
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    session.end("this task is stopping", hand_over=True)
    session.receive(ClientAudio(1, bytes(640)))
    assert await session.wait_ended(5)
    assert [f["type"] for f in frames_of(connections)] == ["session"]
    assert connections.hung_up == []
    assert not session.conversation_over
    route = await directory.owner_of("c=")
    assert route is not None and not route.ended and route.owner == ""


async def test_the_saved_state_is_the_model_sessions_history_and_a_takeover_resumes_it() -> None:
    engine = FakeEngine()
    connections = FakeConnections()
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a")
    assert record is not None
    session = bridge_session(engine, connections, lease=SessionLease(directory, record))
    session.receive(ClientAudio(0, bytes(640)))
    await connections.wait_for("session")
    engine.session.log = [
        s2s.Message("user", "how many holidays do I get"),
        s2s.Message("assistant", '[tool lookup {"topic": "holidays"} returned {"days": 25}]'),
        s2s.Message("assistant", "You get 25 days."),
    ]
    engine.session.events.put_nowait(s2s.TurnEnd())
    await connections.wait_for("turn_end")
    expected = [{"role": m.role, "text": m.text} for m in engine.session.log]

    async def saved() -> bool:
        stored = await directory.get("c=")
        return stored is not None and stored.state.get("history") == expected

    await until(saved)
    session.end("this task is stopping", hand_over=True)
    assert await session.wait_ended(5)

    # another task takes it over: its model session starts from exactly that history
    handed = await directory.get("c=")
    assert handed is not None
    taken = await directory.claim("c=", "http://b", replacing=handed)
    assert taken is not None
    successor = FakeEngine()
    resumed = bridge_session(
        successor, FakeConnections(), lease=SessionLease(directory, taken), resumed=True
    )
    assert resumed.saved_state()["history"] == expected  # before the model session opens
    resumed.receive(ClientAudio(1, bytes(640)))
    await until(lambda: bool(successor.histories))
    assert successor.histories == [tuple(engine.session.log)]
    resumed.end("test over")
    assert await resumed.wait_ended(5)


async def test_a_resumed_sessions_first_frame_is_resumed_whatever_it_refused_before() -> None:
    """After a takeover the new owner numbers its frames from 0 again, starting with
    ``resumed``; a frame it refuses (or a ping it answers) before its model session is open
    comes after that, or the client would see seq 0 before knowing the numbering restarted
    (it looks like a late frame of the task that held the conversation before)."""
    directory = MemoryDirectory()
    # the task that held it had started the conversation (its options are saved)
    record = await directory.claim("c=", "http://a", state={"options": {"voice": "tiffany"}})
    assert record is not None
    connections = FakeConnections()
    session = bridge_session(
        FakeEngine(), connections, lease=SessionLease(directory, record), resumed=True
    )
    session.receive(ClientAudio(119, bytes(640)))  # the frame that made this task take over
    session.receive(ClientAudio(117, bytes(640)))  # a late one: refused as out of order
    session.receive(ClientPing("p1"))
    await connections.wait_for("pong")
    frames = [json.loads(text) for text in connections.posted]
    assert [(f["type"], f["seq"]) for f in frames[:3]] == [
        ("session", 0),
        ("error", 1),
        ("pong", 2),
    ]
    assert frames[0]["state"] == "resumed"
    assert frames[1]["code"] == "out_of_order"
    session.end("test over")
    assert await session.wait_ended(5)


class SlowToOpen(FakeSession):
    def __init__(self) -> None:
        super().__init__()
        self.opening = asyncio.Event()

    async def open(self) -> None:
        await self.opening.wait()


async def test_what_waits_for_resumed_is_bounded_and_draining_waits_too() -> None:
    directory = MemoryDirectory()
    record = await directory.claim("c=", "http://a", state={"options": {}})
    assert record is not None
    engine = FakeEngine()
    engine.session = slow = SlowToOpen()
    connections = FakeConnections()
    session = bridge_session(
        engine, connections, lease=SessionLease(directory, record), resumed=True
    )
    session.draining("this server is shutting down")  # while the model session opens
    for n in range(MAX_BEFORE_RESUMED * 3):
        session.receive(ClientPing(f"p{n}"))
    slow.opening.set()
    await connections.wait_for("pong")
    await until(lambda: len(connections.posted) >= MAX_BEFORE_RESUMED + 1)
    frames = [json.loads(text) for text in connections.posted]
    assert [(f["type"], f.get("state")) for f in frames[:2]] == [
        ("session", "resumed"),
        ("session", "draining"),
    ]
    assert len(frames) == 1 + MAX_BEFORE_RESUMED  # the pings beyond the bound went unanswered
    session.end("test over")
    assert await session.wait_ended(5)
