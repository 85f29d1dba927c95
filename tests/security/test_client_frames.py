"""Hostile client frames: every frame the parser accepts can reach the model, a frame the model
side cannot take costs that frame and never the conversation, one stray ``seq`` cannot mute the
microphone, and refusals cost bounded log lines.

Frames go in as the integration endpoint hands them over (parse, then ``receive`` or
``reject``), to a session whose fake model refuses input the way the Nova provider does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from novakit import s2s
from novakit.bridge import session as session_module
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import MAX_SEQ, ProtocolError, parse_client_frame
from novakit.bridge.session import REFUSED_LOG_SECONDS, BridgeSession, State
from novakit.bridge.settings import BridgeSettings
from novakit.bridge.tools import ToolRunner

from ..bridge.test_session import FakeConnections, FakeSession

pytestmark = pytest.mark.timeout(60)


class StrictSession(FakeSession):
    """Takes input as the Nova provider does: text must not be blank and must encode to UTF-8
    (it goes to Bedrock inside a JSON event). ``fail_on`` makes one audio payload raise."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_on: bytes | None = None

    async def send_text(self, text: str) -> None:
        if not text.strip():
            raise ValueError("text is empty")
        text.encode()  # UnicodeEncodeError for a lone surrogate
        await super().send_text(text)

    async def send_audio(self, pcm: bytes) -> None:
        if self.fail_on is not None and self.fail_on in pcm:
            self.fail_on = None
            raise RuntimeError("injected: the provider failed on this chunk")
        await super().send_audio(pcm)


class StrictEngine(s2s.Engine):
    name = "strict"

    def __init__(self) -> None:
        self.config = s2s.Config()
        self.session = StrictSession()
        self.opened_with: list[s2s.Config] = []

    def create_session(self, config: s2s.Config, history: Sequence[s2s.Message]) -> s2s.Session:
        config.instructions.encode()  # the system prompt goes to Bedrock as UTF-8 JSON too
        self.opened_with.append(config)
        return self.session


def new_session(
    engine: StrictEngine, connections: FakeConnections, **settings: Any
) -> BridgeSession:
    return BridgeSession(
        "c=",
        principal_id="",
        engine=engine,
        settings=BridgeSettings(connections_url="http://127.0.0.1:1", **settings),
        connections=connections,  # type: ignore[arg-type]
        tools=ToolRunner(),
        metrics=Metrics(),
        on_ended=lambda s: None,
    )


def deliver(session: BridgeSession, frame: str) -> None:
    """What the bridge's $default endpoint does with one frame's body."""
    try:
        parsed = parse_client_frame(frame.encode())
    except ProtocolError as error:
        session.reject(error)
    else:
        session.receive(parsed)


def errors(connections: FakeConnections) -> list[dict[str, Any]]:
    return [f for f in map(json.loads, connections.posted) if f["type"] == "error"]


async def model_got(session: StrictSession, item: tuple[str, Any]) -> None:
    async with asyncio.timeout(5), session.changed:
        await session.changed.wait_for(lambda: item in session.sent)


# JSON escapes spell what a JavaScript client sends: "\ud83d" is the first half of 😀, as left
# by `text.slice(0, n)` cutting between the two UTF-16 units.
@pytest.mark.parametrize(
    "bad",
    [
        '{"type":"text","text":"   "}',
        '{"type":"text","text":"\\t\\n\\u3000"}',
        '{"type":"text","text":"hi \\ud83d"}',
        '{"type":"text","text":"\\ude00 hi"}',
    ],
    ids=["spaces", "unicode-whitespace", "high-surrogate", "low-surrogate"],
)
async def test_text_the_model_cannot_take_is_refused_and_the_session_goes_on(bad: str) -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections)
    deliver(session, '{"type":"text","text":"first"}')
    await model_got(engine.session, ("text", "first"))
    deliver(session, bad)
    deliver(session, '{"type":"text","text":"after 😀"}')
    await model_got(engine.session, ("text", "after 😀"))
    assert session.state is State.OPEN
    (error,) = errors(connections)
    assert error["code"] == "bad_frame" and error["fatal"] is False
    assert error["ref"] == {"type": "text"}
    assert engine.session.sent == [("text", "first"), ("text", "after 😀")]
    session.end("test over")
    assert await session.wait_ended(5)


@pytest.mark.parametrize(
    "instructions", ['"\\ud83d Be brief."', '""', '" \\n "'], ids=["surrogate", "empty", "blank"]
)
async def test_bad_client_instructions_refuse_the_start_frame_not_the_session(
    instructions: str,
) -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections, allow_client_instructions=True)
    deliver(session, f'{{"type":"start","voice":"tiffany","instructions":{instructions}}}')
    deliver(session, '{"type":"text","text":"hello"}')
    await model_got(engine.session, ("text", "hello"))
    assert session.state is State.OPEN
    (error,) = errors(connections)
    assert (error["code"], error["fatal"], error["ref"]) == ("bad_frame", False, {"type": "start"})
    assert "instructions" in error["message"]
    # the refused start set nothing: the engine's own prompt, the bridge's voice
    (config,) = engine.opened_with
    assert config.instructions == engine.config.instructions
    assert config.voice == BridgeSettings.voice != "tiffany"
    session.end("test over")
    assert await session.wait_ended(5)


async def test_an_exception_while_feeding_a_frame_costs_that_frame_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections)
    engine.session.fail_on = b"\x07\x07"
    with caplog.at_level(logging.INFO, logger="novakit.bridge"):
        deliver(session, '{"type":"audio","seq":0,"data":"AQE="}')  # 01 01
        await model_got(engine.session, ("audio", b"\x01\x01"))
        # 07 07: the provider fails on it (alone in the queue, so fed on its own)
        deliver(session, '{"type":"audio","seq":1,"data":"Bwc="}')
        await connections.wait_for("error")
        deliver(session, '{"type":"audio","seq":2,"data":"AwM="}')
        await model_got(engine.session, ("audio", b"\x03\x03"))
    assert session.state is State.OPEN
    (error,) = errors(connections)
    assert error["code"] == "internal" and error["fatal"] is False
    assert error["ref"] == {"type": "audio", "seq": 1}
    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.connection_id == "c="  # type: ignore[attr-defined]
    assert "injected" in str(logged.exc_info[1])  # type: ignore[index]
    session.end("test over")
    assert await session.wait_ended(5)


def pcm_of(seq: int) -> bytes:
    return (seq % 30000 + 1).to_bytes(2, "little")


def audio(seq: int) -> str:
    data = base64.b64encode(pcm_of(seq)).decode()
    return json.dumps({"type": "audio", "seq": seq, "data": data})


async def wait_audio(session: StrictSession, total: int) -> bytes:
    async with asyncio.timeout(5), session.changed:
        await session.changed.wait_for(
            lambda: sum(len(p) for kind, p in session.sent if kind == "audio") >= total
        )
    return b"".join(p for kind, p in session.sent if kind == "audio")


async def test_a_stray_huge_seq_does_not_mute_the_microphone() -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections)
    for seq in range(3):
        deliver(session, audio(seq))
    deliver(session, audio(MAX_SEQ))
    await connections.wait_for("error")  # dropped when its wait ended, the sequence unmoved
    assert session._sequencer.held == 0 and session._sequencer.next_seq == 3
    for seq in range(3, 40):  # far more than the hold window
        deliver(session, audio(seq))
    heard = await wait_audio(engine.session, 40 * 2)
    assert heard == b"".join(pcm_of(seq) for seq in range(40))
    (error,) = errors(connections)
    assert error["code"] == "out_of_order" and error["fatal"] is False
    assert error["ref"] == {"type": "audio", "seq": MAX_SEQ}
    session.end("test over")
    assert await session.wait_ended(5)


async def test_a_stray_first_seq_costs_a_few_frames_then_the_microphone_is_followed() -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections)
    deliver(session, audio(MAX_SEQ))  # the first frame starts the sequence ...
    for seq in range(30):  # ... but a real numbering far from it takes over
        deliver(session, audio(seq))
    heard = await wait_audio(engine.session, 2 + 27 * 2)
    assert heard == pcm_of(MAX_SEQ) + b"".join(pcm_of(seq) for seq in range(3, 30))
    assert [e["ref"]["seq"] for e in errors(connections)] == [0, 1, 2]
    session.end("test over")
    assert await session.wait_ended(5)


async def test_refused_frames_are_logged_once_then_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(session_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    engine, connections = StrictEngine(), FakeConnections()
    with caplog.at_level(logging.INFO, logger="novakit.bridge.session"):
        session = new_session(engine, connections)
        for n in range(600):  # a second of a hostile client: one bad frame every ms or so
            now[0] += 0.001
            deliver(session, "{not json" if n % 2 else '{"type":"bogus"}')
        lines = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and "unknown_type" in lines[0].getMessage()
        now[0] += REFUSED_LOG_SECONDS
        deliver(session, '{"type":"text","text":" "}')
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2
    summary = lines[1]
    assert summary.counts == {"bad_json": 300, "unknown_type": 299, "bad_frame": 1}  # type: ignore[attr-defined]
    assert summary.connection_id == "c="  # type: ignore[attr-defined]
    monkeypatch.undo()
    session.end("test over")
    assert await session.wait_ended(5)


async def test_gaps_in_the_audio_are_logged_once_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, connections = StrictEngine(), FakeConnections()
    session = new_session(engine, connections)
    with caplog.at_level(logging.INFO, logger="novakit.bridge.session"):
        heard = 0
        for seq in range(0, 10, 2):  # every other frame missing: a gap after each
            deliver(session, audio(seq))
            heard += 2
            await wait_audio(engine.session, heard)  # released once the gap is given up
        lines = [r for r in caplog.records if "missing audio" in r.getMessage()]
        assert len(lines) == 1 and "1 audio frames never arrived" in lines[0].getMessage()
        session.end("test over")
        assert await session.wait_ended(5)
    lines = [r for r in caplog.records if "missing audio" in r.getMessage()]
    assert len(lines) == 2
    assert lines[1].counts == {"gaps": 3}  # type: ignore[attr-defined]
