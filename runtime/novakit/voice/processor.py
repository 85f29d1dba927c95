"""Frame processors and how they are chained.

A :class:`FrameProcessor` turns each incoming frame into zero or more outgoing frames, in order:
it may drop a frame, pass it on, replace it, split it or add frames before or after it. The base
class passes every frame through unchanged, so a subclass only handles the frame types it cares
about and delegates the rest with ``async for f in super().process(frame): yield f`` (or simply
``yield frame``).

Processing is pull-based and strictly sequential: a frame is pushed through the whole chain, and
every frame it produced has been yielded at the far end, before the next frame goes in. That
makes ordering deterministic, and back-pressure comes for free: a slow consumer slows the
producer instead of filling a queue.

Lifecycle: :meth:`FrameProcessor.start` runs once before the first frame and
:meth:`FrameProcessor.close` once after the last; both default to doing nothing. Stream
boundaries *within* a processor's lifetime are marked by :class:`~novakit.voice.frames.StartFrame`
and :class:`~novakit.voice.frames.EndFrame`, which are ordinary frames.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any

from novakit.voice.frames import Frame

__all__ = ["Chain", "FrameProcessor", "ProcessorError", "chain", "run"]

# Frame reprs end up in error messages; keep a failing TextFrame with a long text readable.
_MAX_REPR = 120


def _short_repr(frame: Frame) -> str:
    text = repr(frame)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


class FrameProcessor:
    """Base class: passes every frame through unchanged; ``start`` and ``close`` do nothing."""

    @property
    def name(self) -> str:
        """Name used in error messages; the class name unless overridden."""
        return type(self).__name__

    async def start(self) -> None:
        """Acquire resources before the first frame."""

    async def close(self) -> None:
        """Release resources after the last frame. Not called when ``start`` raised."""

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        """Yield the frames that replace ``frame`` (by default ``frame`` itself)."""
        yield frame

    def __repr__(self) -> str:
        return f"<{self.name}>"


class ProcessorError(RuntimeError):
    """A processor raised while starting, processing a frame or closing.

    The original exception is ``__cause__``; ``processor`` is the processor that raised and
    ``frame`` the frame it was processing (``None`` for ``start``/``close``).
    """

    def __init__(
        self, processor: FrameProcessor, stage: str, cause: BaseException, frame: Frame | None
    ) -> None:
        where = f"processing {_short_repr(frame)}" if frame is not None else f"in {stage}()"
        super().__init__(f"{processor.name} failed {where}: {type(cause).__name__}: {cause}")
        self.processor = processor
        self.stage = stage
        self.frame = frame


async def _aclose(iterator: AsyncIterator[Frame]) -> None:
    # process() is usually an async generator; closing it runs its finally blocks now instead of
    # whenever the garbage collector gets to it.
    aclose: Any = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class Chain(FrameProcessor):
    """Processors run in sequence; built by :func:`chain`."""

    def __init__(self, processors: tuple[FrameProcessor, ...]) -> None:
        self.processors = processors

    @property
    def name(self) -> str:
        return "chain(" + ", ".join(p.name for p in self.processors) + ")"

    async def start(self) -> None:
        """Start processors in order; if one fails, close those already started, newest first."""
        for index, processor in enumerate(self.processors):
            try:
                await processor.start()
            except Exception as exc:
                error = exc if isinstance(exc, ProcessorError) else _wrap(processor, "start", exc)
                try:
                    await _close_all(self.processors[:index])
                except ProcessorError as close_error:
                    error.add_note(f"also: {close_error}")
                raise error from error.__cause__

    async def close(self) -> None:
        """Close processors in reverse order; every one is closed even if another fails."""
        await _close_all(self.processors)

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        async for out in self._through(0, frame):
            yield out

    async def _through(self, index: int, frame: Frame) -> AsyncGenerator[Frame, None]:
        # Depth-first: each output of processor i is pushed through i+1.. before processor i is
        # asked for its next output, which preserves order across splits.
        if index == len(self.processors):
            yield frame
            return
        processor = self.processors[index]
        outputs = processor.process(frame)
        try:
            while True:
                try:
                    out = await anext(outputs)
                except StopAsyncIteration:
                    break
                except ProcessorError:
                    raise  # a nested chain already named the culprit
                except Exception as exc:
                    raise ProcessorError(processor, "process", exc, frame) from exc
                async for final in self._through(index + 1, out):
                    yield final
        finally:
            await _aclose(outputs)


def _wrap(processor: FrameProcessor, stage: str, exc: Exception) -> ProcessorError:
    error = ProcessorError(processor, stage, exc, None)
    error.__cause__ = exc
    return error


async def _close_all(processors: tuple[FrameProcessor, ...]) -> None:
    errors: list[ProcessorError] = []
    for processor in reversed(processors):
        try:
            await processor.close()
        except ProcessorError as exc:
            errors.append(exc)
        except Exception as exc:
            errors.append(_wrap(processor, "close", exc))
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"also: {other}")
        raise first


def chain(*processors: FrameProcessor) -> Chain:
    """One processor that runs ``processors`` in order.

    Each frame goes through the first processor; every frame that comes out goes through the
    second, and so on. Frames a processor does not handle pass through it unchanged (the base
    class behaviour). An exception from a processor is re-raised as :class:`ProcessorError`
    naming it and the frame. ``chain()`` with no processors passes every frame through.
    """
    for processor in processors:
        if not isinstance(processor, FrameProcessor):
            raise TypeError(f"chain() takes FrameProcessor instances, got {processor!r}")
    return Chain(processors)


async def run(
    processor: FrameProcessor, frames: AsyncIterable[Frame]
) -> AsyncGenerator[Frame, None]:
    """Start ``processor``, push ``frames`` through it, yield its output, then close it.

    ``run`` adds no frames of its own: end the input with an
    :class:`~novakit.voice.frames.EndFrame` to have buffered audio flushed. ``close`` runs when
    the input is exhausted, on error, or when the returned generator is closed; wrap it in
    ``contextlib.aclosing`` when stopping early so that happens promptly.
    """
    await processor.start()
    try:
        async for frame in frames:
            async for out in processor.process(frame):
                yield out
    finally:
        await processor.close()
