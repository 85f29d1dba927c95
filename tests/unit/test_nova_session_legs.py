"""The session over several streams, with an in-memory stand-in for ``BedrockStream``: the
test decides when streams open, what Bedrock says and when it fails. No sockets, no SDK."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from novakit import s2s
from novakit.s2s.errors import ProviderError
from novakit.s2s.nova import NovaEngine
from novakit.s2s.nova import leg as leg_module
from novakit.s2s.nova.credentials import StaticCredentials

E = s2s.EventType


class FakeStream:
    """One stream: records what the session sends; replays what the test makes Bedrock say."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.sent: list[dict[str, Any]] = []
        self.output: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
        self.hold_sends: asyncio.Event | None = None  # set: sends wait for it
        self.held = asyncio.Event()  # a send is waiting for hold_sends
        self.input_closed = False
        self.released = False

    # -- what BedrockStream offers --
    async def send(self, payload: bytes) -> None:
        if self.hold_sends is not None:
            self.held.set()
            await self.hold_sends.wait()
        self.sent.append(json.loads(payload)["event"])

    async def accepted(self) -> None:
        return None

    async def receive(self) -> bytes | None:
        item = await self.output.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def close_input(self) -> None:
        self.input_closed = True
        self.output.put_nowait(None)  # Bedrock ends its side in turn

    async def aclose(self, *, input_done: bool = False) -> None:
        self.released = True
        if not input_done:
            self.input_closed = True

    def abort_send(self) -> None:
        return None

    # -- for the test --
    def say(self, name: str, **body: Any) -> None:
        self.output.put_nowait(json.dumps({"event": {name: body}}).encode())

    def fail(self, code: str = "throttled") -> None:
        self.output.put_nowait(ProviderError(code, "injected", retryable=True))

    def names(self) -> list[str]:
        return [next(iter(event)) for event in self.sent]

    def texts(self, *, interactive: bool) -> list[tuple[str, str]]:
        """(role, text) of the TEXT contents sent, history or interactive."""
        found: list[tuple[str, str]] = []
        roles: dict[str, str] = {}
        for event in self.sent:
            (name, body), *_ = event.items()
            if name == "contentStart" and body["type"] == "TEXT" and body["role"] != "SYSTEM":
                if body["interactive"] is interactive:
                    roles[body["contentName"]] = body["role"]
            elif name == "textInput" and body["contentName"] in roles:
                found.append((roles[body["contentName"]], body["content"]))
        return found

    def audio(self) -> bytes:
        return b"".join(
            base64.b64decode(e["audioInput"]["content"]) for e in self.sent if "audioInput" in e
        )


class Bedrock:
    """Hands out FakeStreams; ``gate`` (when cleared) holds the opening of new ones."""

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._opened = asyncio.Event()
        self.held = asyncio.Event()  # an opening is waiting at the closed gate

    async def open(self, model_id: str, options: Any, identity: Any) -> FakeStream:
        if not self.gate.is_set():
            self.held.set()
        await self.gate.wait()
        stream = FakeStream(len(self.streams))
        self.streams.append(stream)
        self._opened.set()
        return stream

    async def wait_for(self, count: int) -> FakeStream:
        async with asyncio.timeout(5):
            while len(self.streams) < count:
                self._opened.clear()
                await self._opened.wait()
        return self.streams[count - 1]


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bedrock]:
    fake = Bedrock()

    class Stream:
        open = staticmethod(fake.open)

    monkeypatch.setattr(leg_module, "BedrockStream", Stream)
    yield fake


def engine(model: str = "amazon.nova-2-sonic-v1:0", **extra: Any) -> NovaEngine:
    options = {"region": "us-east-1", "keepalive_after": 0, **extra}
    return NovaEngine(
        s2s.Config(model=model, extra=options), credentials=StaticCredentials("k", "s", None)
    )


@pytest.fixture
async def session(bedrock: Bedrock) -> AsyncIterator[s2s.Session]:
    async with engine().start() as opened:
        yield opened


async def next_event(session: s2s.Session, kind: s2s.EventType) -> s2s.Event:
    async with asyncio.timeout(5):
        async for event in session.recv():
            if event.type is kind:
                return event
    raise AssertionError(f"recv() ended before {kind}")


def assistant_says(stream: FakeStream, text: str, n: int) -> None:
    """A complete spoken answer: audio, then its FINAL text ending the turn."""
    stream.say("contentStart", contentId=f"a{n}", type="AUDIO", role="ASSISTANT")
    stream.say("audioOutput", contentId=f"a{n}", content=base64.b64encode(bytes(4800)).decode())
    stream.say("contentEnd", contentId=f"a{n}", type="AUDIO", stopReason="END_TURN")
    final = json.dumps({"generationStage": "FINAL"})
    stream.say(
        "contentStart",
        contentId=f"t{n}",
        type="TEXT",
        role="ASSISTANT",
        additionalModelFields=final,
    )
    stream.say("textOutput", contentId=f"t{n}", content=text, role="ASSISTANT")
    stream.say("contentEnd", contentId=f"t{n}", type="TEXT", stopReason="END_TURN")


def user_said(stream: FakeStream, text: str, n: int) -> None:
    stream.say("contentStart", contentId=f"u{n}", type="TEXT", role="USER")
    stream.say("textOutput", contentId=f"u{n}", content=text, role="USER")
    stream.say("contentEnd", contentId=f"u{n}", type="TEXT", stopReason="END_TURN")


async def test_text_typed_during_an_outage_is_sent_once_to_the_next_stream(
    bedrock: Bedrock, session: s2s.Session
) -> None:
    first = bedrock.streams[0]
    bedrock.gate.clear()  # the replacement stream will take a while to open
    first.fail()
    async with asyncio.timeout(5):
        await bedrock.held.wait()  # the session is opening the replacement
    await session.send_text("are you there?")  # during the outage: neither raises nor is lost
    bedrock.gate.set()
    second = await bedrock.wait_for(2)
    reconnected = await next_event(session, E.RECONNECTED)
    assert reconnected.reason == "throttled"
    assert first.texts(interactive=True) == []
    assert second.texts(interactive=True) == [("USER", "are you there?")]
    assert second.texts(interactive=False) == []  # not history as well
    # From then on it is part of the conversation: a later stream is told it as history.
    assistant_says(second, "I am.", 1)
    await next_event(session, E.TURN_END)
    second.fail("model_timeout")
    third = await bedrock.wait_for(3)
    await next_event(session, E.RECONNECTED)
    assert third.texts(interactive=False) == [("USER", "are you there?"), ("ASSISTANT", "I am.")]
    assert third.texts(interactive=True) == []  # answered: not asked again


async def test_a_send_cancelled_midway_replaces_the_stream(
    bedrock: Bedrock, session: s2s.Session
) -> None:
    first = bedrock.streams[0]
    first.hold_sends = asyncio.Event()  # the network stalls
    sending = asyncio.create_task(session.send_audio(b"\x01\x00" * 160))
    async with asyncio.timeout(5):
        await first.held.wait()  # the send is under way
    sending.cancel()  # the caller gives up on this send
    with pytest.raises(asyncio.CancelledError):
        await sending
    second = await bedrock.wait_for(2)
    reconnected = await next_event(session, E.RECONNECTED)
    assert reconnected.reason == "connection"
    assert second.audio() == b"\x01\x00" * 160  # what the first may not have got is replayed
    first.hold_sends.set()
    await asyncio.sleep(0.05)
    assert "promptEnd" not in first.names()  # nothing written after a broken send


async def test_usage_is_counted_over_all_streams(bedrock: Bedrock, session: s2s.Session) -> None:
    first = bedrock.streams[0]
    first.say("usageEvent", details={"total": {"output": {"speechTokens": 10}}}, totalTokens=10)
    assert (await next_event(session, E.USAGE)).usage == s2s.Usage(
        output_speech_tokens=10, total_tokens=10
    )
    first.fail()
    second = await bedrock.wait_for(2)
    second.say("usageEvent", details={"total": {"output": {"speechTokens": 4}}}, totalTokens=4)
    usage = (await next_event(session, E.USAGE)).usage
    assert usage == s2s.Usage(output_speech_tokens=14, total_tokens=14)


async def test_on_nova_sonic_v1_a_cut_answer_is_not_asked_again(bedrock: Bedrock) -> None:
    async with engine(model="amazon.nova-sonic-v1:0", allow_retired_model=True).start() as session:
        first = bedrock.streams[0]
        user_said(first, "what is new", 1)
        first.say("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT")
        first.say("audioOutput", contentId="a1", content=base64.b64encode(bytes(480)).decode())
        await next_event(session, E.AUDIO_OUTPUT)
        first.fail("model_stream_error")
        cut = await next_event(session, E.INTERRUPTED)
        assert cut.reason == "recovery"
        second = await bedrock.wait_for(2)
        await next_event(session, E.RECONNECTED)
        # No typed text on v1: the question stays in the history for the user to take up.
        assert second.texts(interactive=True) == []
        assert second.texts(interactive=False) == [("USER", "what is new")]
        # ...and the session is not left waiting for an answer that will not come.
        assert session._turns.quiet(0.0)  # type: ignore[attr-defined]


async def test_with_recovery_off_a_failure_ends_the_session(bedrock: Bedrock) -> None:
    async with engine(recovery_attempts=0).start() as session:
        bedrock.streams[0].fail()
        error = await next_event(session, E.ERROR)
        assert error.error is not None
        assert (error.error.code, error.error.fatal, error.error.retryable) == (
            "throttled",
            True,
            True,
        )
        assert [e async for e in session.recv()] == []
    assert len(bedrock.streams) == 1


LOOKUP = s2s.ToolDefinition(
    "lookup",
    "Look a topic up.",
    {"type": "object", "properties": {"topic": {"type": "string"}}},
)


async def test_history_is_what_a_new_stream_is_told_and_continues_elsewhere(
    bedrock: Bedrock,
) -> None:
    tooled = engine()
    config = tooled.config.with_overrides(tools=(LOOKUP,))
    async with tooled.start(tools=config.tools) as session:
        first = bedrock.streams[0]
        user_said(first, "how many holidays", 1)
        first.say("contentStart", contentId="k1", type="TOOL", role="TOOL")
        first.say(
            "toolUse",
            contentId="k1",
            toolName="lookup",
            toolUseId="call-1",
            content='{"topic": "holidays"}',
        )
        first.say("contentEnd", contentId="k1", type="TOOL", stopReason="TOOL_USE")
        await next_event(session, E.TOOL_CALL)
        await session.send_tool_result(s2s.ToolResult("call-1", [s2s.TextPart('{"days": 25}')]))
        assistant_says(first, "You get 25 days.", 1)
        # The turn ends with its audio; its FINAL text may come just before or just after.
        seen: set[s2s.EventType] = set()
        async with asyncio.timeout(5):
            async for event in session.recv():
                seen.add(event.type)
                if {E.TURN_END, E.TEXT_OUTPUT} <= seen:
                    break
        history = session.history()
        assert history == [
            s2s.Message("user", "how many holidays"),
            s2s.Message("assistant", '[tool lookup {"topic": "holidays"} returned {"days": 25}]'),
            s2s.Message("assistant", "You get 25 days."),
        ]
        # a stream of this session that fails is replaced by one told exactly that
        first.fail()
        second = await bedrock.wait_for(2)
        await next_event(session, E.RECONNECTED)
        told = second.texts(interactive=False)
    # a session started elsewhere from history() tells its first stream the same
    async with tooled.start(tools=config.tools, history=history) as elsewhere:
        third = await bedrock.wait_for(3)
        assert elsewhere.history() == history
    assert third.texts(interactive=False) == told
    assert told == [
        ("USER", "how many holidays"),
        ("ASSISTANT", history[1].text + " You get 25 days."),
    ]


# -- a stream that goes quiet, and a caller that does ----------------------------------------


async def test_a_stream_silent_while_an_answer_is_owed_is_replaced(bedrock: Bedrock) -> None:
    async with engine(stall_timeout=0.3).start() as session:
        first = bedrock.streams[0]
        await session.send_text("hello?")
        # Bedrock keeps the stream open and says nothing: a stall.
        second = await bedrock.wait_for(2)
        assistant_says(second, "Hello.", 1)  # the new stream answers
        reconnected = await next_event(session, E.RECONNECTED)
        assert reconnected.reason == "stalled"
        assert first.released
        assert second.texts(interactive=True) == [("USER", "hello?")]  # asked again
        await next_event(session, E.TURN_END)
        await asyncio.sleep(0.6)  # answered: nothing owed, so no more stalls
        assert len(bedrock.streams) == 2


async def test_output_arriving_keeps_a_slow_answer_from_counting_as_stalled(
    bedrock: Bedrock,
) -> None:
    async with engine(stall_timeout=0.3).start() as session:
        first = bedrock.streams[0]
        await session.send_text("tell me a long story")
        for _ in range(6):  # an event every 0.1 s, for twice the stall timeout
            first.say("usageEvent", totalTokens=1)
            await next_event(session, E.USAGE)
            await asyncio.sleep(0.1)
        assistant_says(first, "Once upon a time.", 1)
        await next_event(session, E.TURN_END)
        await asyncio.sleep(0.5)  # nothing is owed now: silence is fine
        assert len(bedrock.streams) == 1


async def test_a_tool_call_pauses_the_stall_watch_until_its_result(bedrock: Bedrock) -> None:
    async with engine(stall_timeout=0.3).start() as session:
        first = bedrock.streams[0]
        await session.send_text("look it up")
        first.say("contentStart", contentId="t", type="TOOL", role="TOOL")
        first.say("toolUse", toolName="lookup", toolUseId="c1", content="{}")
        first.say("contentEnd", contentId="t", type="TOOL", stopReason="TOOL_USE")
        call = await next_event(session, E.TOOL_CALL)
        await asyncio.sleep(0.6)  # the tool is slow: the model waits on it, silently
        assert len(bedrock.streams) == 1
        assert call.tool_call is not None
        await session.send_tool_result(s2s.ToolResult("c1", [s2s.TextPart("42")]))
        second = await bedrock.wait_for(2)  # then nothing came back: stalled
        assistant_says(second, "It is 42.", 1)
        assert (await next_event(session, E.RECONNECTED)).reason == "stalled"


async def test_a_stream_cut_while_the_caller_is_silent_is_replaced_when_it_speaks(
    bedrock: Bedrock,
) -> None:
    async with engine(keepalive_after=0.05, keepalive_limit=0.3).start() as session:
        first = bedrock.streams[0]
        await session.send_text("hi")
        assistant_says(first, "Hello.", 1)
        await next_event(session, E.TURN_END)
        await asyncio.sleep(0.6)  # past the bound: the keep-alive has stopped
        heard = len(first.audio())
        await asyncio.sleep(0.3)
        assert len(first.audio()) == heard > 0  # it streamed silence, then stopped
        first.fail("idle_timeout")  # Bedrock's idle cut
        await asyncio.sleep(0.5)
        assert len(bedrock.streams) == 1  # not replaced while the caller says nothing
        assert session.stats.dormant == 1  # type: ignore[attr-defined]
        await session.send_audio(b"\x02\x00" * 160)  # the caller is back
        second = await bedrock.wait_for(2)
        assert (await next_event(session, E.RECONNECTED)).reason == "idle_timeout"
        assert second.texts(interactive=False) == [("USER", "hi"), ("ASSISTANT", "Hello.")]
        assert b"\x02\x00" * 160 in second.audio()  # replayed to the new stream


async def test_the_keep_alive_goes_on_while_an_answer_is_owed(bedrock: Bedrock) -> None:
    """A caller silent past keepalive_limit while the model still owes it an answer (slow, or
    on a busy machine) keeps its stream alive: stopping there would let Bedrock cut the stream
    mid-answer, and a stream cut for a silent caller is not replaced."""
    async with engine(keepalive_after=0.05, keepalive_limit=0.2).start() as session:
        first = bedrock.streams[0]
        await session.send_text("hi")
        await asyncio.sleep(0.6)  # a span of time (three limits), not an order of events
        # Well past the limit, silence still arrives: the answer is owed.
        heard = len(first.audio())
        async with asyncio.timeout(10):
            # The fake stream has no event for "audio arrived": poll, bounded.
            while len(first.audio()) == heard:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assistant_says(first, "Hello.", 1)
        await next_event(session, E.TURN_END)
        assert session.stats.dormant == 0  # type: ignore[attr-defined]


async def test_a_failure_while_the_caller_talks_is_recovered_at_once(bedrock: Bedrock) -> None:
    async with engine(keepalive_limit=5.0).start() as session:
        await session.send_audio(b"\x01\x00" * 160)
        bedrock.streams[0].fail("throttled")
        await bedrock.wait_for(2)
        assert (await next_event(session, E.RECONNECTED)).reason == "throttled"


async def test_no_rollover_stream_is_opened_for_a_silent_caller(bedrock: Bedrock) -> None:
    options = {"keepalive_after": 0.05, "keepalive_limit": 0.3, "rollover_after": 0.5}
    async with engine(**options).start() as session:
        first = bedrock.streams[0]
        await session.send_text("hi")
        assistant_says(first, "Hello.", 1)
        await next_event(session, E.TURN_END)  # nothing is owed to the caller any more
        await asyncio.sleep(0.7)  # past both: silent, and the stream is due for a rollover
        first.say("usageEvent", totalTokens=1)  # something from Bedrock all the same
        await next_event(session, E.USAGE)
        await asyncio.sleep(0.3)
        assert len(bedrock.streams) == 1
        await session.send_audio(b"\x01\x00" * 160)  # the caller is back: the rollover goes on
        await bedrock.wait_for(2)


@pytest.mark.parametrize(
    ("rate", "extra"),
    [
        (8000, {}),
        (16000, {"max_audio_event_bytes": 32000}),
        (24000, {}),
        (16000, {"max_audio_event_bytes": 640}),
    ],
)
async def test_audio_events_carry_at_most_100_ms_whatever_the_caller_sends(
    bedrock: Bedrock, rate: int, extra: dict[str, Any]
) -> None:
    options = {"region": "us-east-1", "keepalive_after": 0, **extra}
    config = s2s.Config(input_sample_rate=rate, extra=options)
    nova = NovaEngine(config, credentials=StaticCredentials("k", "s", None))
    pcm = bytes(range(256)) * (2 * rate * 3 // 256)  # 3 s in one call
    async with nova.start() as session:
        await session.send_audio(pcm)
        stream = bedrock.streams[0]
        sizes = [
            len(base64.b64decode(e["audioInput"]["content"]))
            for e in stream.sent
            if "audioInput" in e
        ]
        audio_start = next(
            e["contentStart"]
            for e in stream.sent
            if e.get("contentStart", {}).get("type") == "AUDIO"
        )
    limit = min(extra.get("max_audio_event_bytes", 4800), rate * 2 // 10)
    assert max(sizes) == limit
    assert stream.audio() == pcm  # in order, nothing lost
    assert audio_start["audioInputConfiguration"]["sampleRateHertz"] == rate


async def test_a_send_cut_short_by_a_known_failure_raises_that_failure() -> None:
    """The receive side records Bedrock's exception and cuts a send in flight short: the send
    reports the exception (throttled), not its own cut (a timeout)."""
    from novakit.s2s.nova.leg import Leg
    from novakit.s2s.nova.models import NOVA_2_SONIC
    from novakit.s2s.nova.protocol import NovaProtocol, StreamSettings

    class CutStream:
        def abort_send(self) -> None:
            return None

        async def send(self, payload: bytes) -> None:
            leg.fail(ProviderError("throttled", "Too many requests", retryable=True))
            raise ProviderError("timeout", "the send was cut short", retryable=True)

    protocol = NovaProtocol(StreamSettings(model=NOVA_2_SONIC, voice="matthew", instructions=""))
    leg = Leg(1, "recovery", protocol, CutStream(), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as raised:
        await leg.send_all([b"{}"])
    assert raised.value.code == "throttled"


def record_phases(session: s2s.Session) -> list[str]:
    """The phases the session moves through from now on (phase.py)."""
    seen: list[str] = []
    move = session._move  # type: ignore[attr-defined]

    def recording(step: Any) -> None:
        move(step)
        seen.append(session.phase.value)  # type: ignore[attr-defined]

    session._move = recording  # type: ignore[attr-defined]
    return seen


async def test_a_recovery_moves_through_its_phases(bedrock: Bedrock) -> None:
    async with engine().start() as session:
        phases = record_phases(session)
        bedrock.gate.clear()  # the replacement takes a while to open
        bedrock.streams[0].fail("throttled")
        await bedrock.wait_for(1)
        async with asyncio.timeout(5):
            while session.phase.value != "recovering":  # type: ignore[attr-defined]  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await session.send_audio(b"\x01\x00" * 160)  # kept for the next stream, not refused
        assert session.phase.value == "recovering"  # type: ignore[attr-defined]
        bedrock.gate.set()
        await next_event(session, E.RECONNECTED)
        assert phases == ["recovering", "settling", "live"]
    assert phases[-2:] == ["closing", "closed"]


async def test_a_rollover_moves_through_its_phases(bedrock: Bedrock) -> None:
    async with engine(rollover_after=0.2).start() as session:
        phases = record_phases(session)
        first = bedrock.streams[0]
        await session.send_text("hi")
        assistant_says(first, "Hello.", 1)
        await next_event(session, E.TURN_END)
        await asyncio.sleep(0.3)  # past rollover_after
        await session.send_audio(b"\x01\x00" * 160)  # a send checks for a due rollover
        second = await bedrock.wait_for(2)
        async with asyncio.timeout(5):
            while not second.audio():
                await session.send_audio(b"\x01\x00" * 160)
                await asyncio.sleep(0.01)
        assert phases[:4] == ["preparing", "ready", "switching", "live"]
        assert session.phase.value == "live"  # type: ignore[attr-defined]


@pytest.mark.parametrize("chunk_ms", [10, 32, 100, 400])
async def test_the_keepalive_keeps_only_the_tail_of_the_callers_audio(
    session: s2s.Session, chunk_ms: int
) -> None:
    """What the keep-alive looks at (did the caller stop mid-speech?) is the last 0.25 s, held
    by reference: a few chunks, not a growing or fixed-count list of them."""
    chunk = b"\x01\x00" * (16 * chunk_ms)
    for _ in range(50):
        await session.send_audio(chunk)
    held = session._caller_audio.tail  # type: ignore[attr-defined]
    assert sum(len(c) for c in held) >= 8000  # 0.25 s at 16 kHz
    assert sum(len(c) for c in held) < 8000 + len(chunk)


async def test_the_keepalive_reads_the_callers_tail_only_once_the_audio_has_stopped(
    bedrock: Bedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the caller stopped mid-speech matters only once its audio has stopped for
    keepalive_after: while it flows, the keep-alive must not read the tail at each wake-up
    (that cost CPU per session-second for every talking session)."""
    from novakit.s2s.nova import session as session_module

    looked: list[float] = []
    real = session_module.keepalive_wait

    def counting(*args: Any, **kwargs: Any) -> float:
        looked.append(asyncio.get_running_loop().time())
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "keepalive_wait", counting)
    async with engine(keepalive_after=2.0).start() as session:
        for _ in range(40):  # 0.8 s of 20 ms chunks: never a pause near keepalive_after
            await session.send_audio(b"\x01\x00" * 320)
            stopped = asyncio.get_running_loop().time()
            await asyncio.sleep(0.02)
        assert looked == []  # the audio never paused for keepalive_after
        async with asyncio.timeout(10):
            while not looked:  # noqa: ASYNC110 - no event says "the keep-alive looked"
                await asyncio.sleep(0.02)
        assert looked[0] - stopped >= 2.0 - 0.01
