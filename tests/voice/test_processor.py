"""FrameProcessor, chain() and run(): order, pass-through, lifecycle, errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import pytest

from novakit.voice import (
    EndFrame,
    Frame,
    FrameProcessor,
    ProcessorError,
    StartFrame,
    TextFrame,
    TranscriptFrame,
    chain,
    run,
)

pytestmark = pytest.mark.timeout(20)


def text(value: str) -> TextFrame:
    return TextFrame(value, "user")


def texts(frames: Iterable[Frame]) -> list[str]:
    return [f.text if isinstance(f, TextFrame) else type(f).__name__ for f in frames]


async def source(*frames: Frame) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


async def collect(processor: FrameProcessor, *frames: Frame) -> list[Frame]:
    return [out async for out in run(processor, source(*frames))]


class Tag(FrameProcessor):
    """Appends its tag to text frames, records lifecycle calls in a shared log."""

    def __init__(self, tag: str, log: list[str] | None = None) -> None:
        self.tag = tag
        self.log = log if log is not None else []

    @property
    def name(self) -> str:
        return f"Tag({self.tag})"

    async def start(self) -> None:
        self.log.append(f"start {self.tag}")

    async def close(self) -> None:
        self.log.append(f"close {self.tag}")

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        if isinstance(frame, TextFrame):
            yield TextFrame(frame.text + self.tag, frame.role)
        else:
            async for out in super().process(frame):
                yield out


class DropOdd(FrameProcessor):
    """Drops text frames whose text ends in an odd digit."""

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        if isinstance(frame, TextFrame) and frame.text[-1] in "13579":
            return
        yield frame


class SplitWords(FrameProcessor):
    """Splits a text frame into one frame per word."""

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        if isinstance(frame, TextFrame):
            for word in frame.text.split():
                yield text(word)
        else:
            yield frame


class Fails(FrameProcessor):
    def __init__(self, on: str = "process", log: list[str] | None = None) -> None:
        self.on = on
        self.log = log if log is not None else []

    async def start(self) -> None:
        self.log.append("start Fails")
        if self.on == "start":
            raise OSError("device busy")

    async def close(self) -> None:
        self.log.append("close Fails")
        if self.on == "close":
            raise OSError("flush failed")

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        if self.on == "process" and isinstance(frame, TextFrame) and "boom" in frame.text:
            raise KeyError("no such voice")
        yield frame


async def test_base_processor_passes_every_frame_through() -> None:
    frames = [StartFrame(), text("a"), TranscriptFrame("b"), EndFrame()]
    assert await collect(FrameProcessor(), *frames) == frames


async def test_chain_applies_processors_in_order() -> None:
    out = await collect(chain(Tag("1"), Tag("2"), Tag("3")), text("a"), text("b"))
    assert texts(out) == ["a123", "b123"]


async def test_chain_passes_unhandled_frames_through_in_place() -> None:
    out = await collect(
        chain(Tag("x"), Tag("y")), StartFrame(), text("a"), TranscriptFrame("t"), EndFrame()
    )
    assert out == [StartFrame(), text("axy"), TranscriptFrame("t"), EndFrame()]


async def test_a_processor_may_drop_frames() -> None:
    out = await collect(chain(DropOdd(), Tag("!")), *(text(str(i)) for i in range(6)))
    assert texts(out) == ["0!", "2!", "4!"]


async def test_a_split_keeps_order_through_later_processors() -> None:
    out = await collect(
        chain(SplitWords(), Tag("."), DropOdd()),
        text("one two three"),
        StartFrame(),
        text("four five"),
    )
    assert texts(out) == ["one.", "two.", "three.", "StartFrame", "four.", "five."]


async def test_split_outputs_are_pushed_depth_first() -> None:
    # Each frame a processor yields goes all the way through before its next one is requested.
    log: list[str] = []

    class Recorder(FrameProcessor):
        async def process(self, frame: Frame) -> AsyncIterator[Frame]:
            assert isinstance(frame, TextFrame)
            log.append(f"saw {frame.text}")
            yield frame

    class Splitter(FrameProcessor):
        async def process(self, frame: Frame) -> AsyncIterator[Frame]:
            for part in ("p", "q"):
                log.append(f"yield {part}")
                yield text(part)

    out = await collect(chain(Splitter(), Recorder()), text("x"))
    assert texts(out) == ["p", "q"]
    assert log == ["yield p", "saw p", "yield q", "saw q"]


async def test_nested_chains_and_empty_chain() -> None:
    out = await collect(chain(chain(Tag("a"), Tag("b")), chain(), Tag("c")), text(">"))
    assert texts(out) == [">abc"]
    assert await collect(chain(), text("z"), EndFrame()) == [text("z"), EndFrame()]


async def test_start_in_order_close_in_reverse() -> None:
    log: list[str] = []
    pipeline = chain(Tag("a", log), chain(Tag("b", log), Tag("c", log)), Tag("d", log))
    out = await collect(pipeline, text(""))
    assert texts(out) == ["abcd"]
    assert log == [
        "start a",
        "start b",
        "start c",
        "start d",
        "close d",
        "close c",
        "close b",
        "close a",
    ]


async def test_failed_start_closes_what_was_started_and_names_the_processor() -> None:
    log: list[str] = []
    pipeline = chain(Tag("a", log), Tag("b", log), Fails("start", log), Tag("d", log))
    with pytest.raises(ProcessorError, match=r"^Fails failed in start\(\): OSError: device busy"):
        await pipeline.start()
    assert log == ["start a", "start b", "start Fails", "close b", "close a"]


async def test_close_reaches_every_processor_even_when_one_fails() -> None:
    log: list[str] = []
    pipeline = chain(Tag("a", log), Fails("close", log), Tag("c", log))
    await pipeline.start()
    log.clear()
    with pytest.raises(ProcessorError, match=r"Fails failed in close\(\): OSError: flush failed"):
        await pipeline.close()
    assert log == ["close c", "close Fails", "close a"]


async def test_exception_names_the_processor_and_the_frame() -> None:
    pipeline = chain(Tag("a"), chain(Tag("b"), Fails()), Tag("c"))
    received: list[Frame] = []
    with pytest.raises(ProcessorError) as caught:
        async for frame in run(pipeline, source(text("ok"), text("boom"), text("later"))):
            received.append(frame)
    assert texts(received) == ["okabc"]  # frames before the failure were delivered
    error = caught.value
    assert str(error) == (
        "Fails failed processing TextFrame(text='boomab', role='user', final=True): "
        "KeyError: 'no such voice'"
    )
    assert isinstance(error.processor, Fails)
    assert error.frame == text("boomab")
    assert isinstance(error.__cause__, KeyError)


async def test_error_message_truncates_long_frames() -> None:
    pipeline = chain(Fails())

    class Boom(FrameProcessor):
        async def process(self, frame: Frame) -> AsyncIterator[Frame]:
            raise ValueError("bad")
            yield frame  # pragma: no cover - makes this an async generator

    with pytest.raises(ProcessorError, match=r"^Boom failed processing TextFrame\(text='xxx") as e:
        await collect(chain(pipeline, Boom()), text("x" * 500))
    assert len(str(e.value)) < 200


async def test_downstream_error_closes_upstream_generators() -> None:
    closed: list[str] = []

    class Slow(FrameProcessor):
        async def process(self, frame: Frame) -> AsyncIterator[Frame]:
            try:
                yield text("first")
                yield text("boom")
                yield text("never")
            finally:
                closed.append("Slow")

    with pytest.raises(ProcessorError, match="^Fails failed"):
        await collect(chain(Slow(), Fails()), text("go"))
    assert closed == ["Slow"]


async def test_run_closes_the_processor_when_the_consumer_stops_early() -> None:
    log: list[str] = []
    received: list[str] = []
    async with contextlib.aclosing(run(Tag("!", log), source(text("a"), text("b")))) as frames:
        async for frame in frames:
            received += texts([frame])
            break
    assert received == ["a!"]
    assert log == ["start !", "close !"]


async def test_run_closes_the_processor_when_the_source_fails() -> None:
    log: list[str] = []

    async def broken() -> AsyncIterator[Frame]:
        yield text("a")
        raise ConnectionResetError("microphone gone")

    with pytest.raises(ConnectionResetError):
        async for _ in run(Tag("!", log), broken()):
            pass
    assert log == ["start !", "close !"]


def test_chain_rejects_non_processors() -> None:
    with pytest.raises(TypeError, match="chain\\(\\) takes FrameProcessor instances"):
        chain(Tag("a"), print)  # type: ignore[arg-type]


def test_chain_name_lists_its_processors() -> None:
    assert chain(Tag("a"), chain(DropOdd())).name == "chain(Tag(a), chain(DropOdd))"
