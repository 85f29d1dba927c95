"""A speech-to-speech session as a ``novakit.voice`` frame processor.

``as_frame_processor(engine, ...)`` puts a model inside a ``chain(...)``: audio and user text
frames go to the model; what the model produces comes out as frames, *including* transcripts,
tool calls and interruptions (the pipeline of the original Go framework dropped those):

===================  ==========================================
session event        frame
===================  ==========================================
AUDIO_OUTPUT         ``AudioFrame`` at the output rate
TEXT_OUTPUT          ``TextFrame(role="assistant", final=...)``
TRANSCRIPT           ``TranscriptFrame``
TOOL_CALL            ``ToolCallFrame`` (also answered by ``tool_handler`` if given)
INTERRUPTED          ``InterruptFrame``
ERROR                ``ErrorFrame``
TURN_END             ``TurnEndFrame``
===================  ==========================================

Pipelines pull: a processor speaks when a frame comes in. The model's output is read in the
background and handed on with the next incoming frame, so with a live microphone (a frame every
20-32 ms) it flows on without added delay worth noticing. At ``EndFrame`` the processor keeps
the audio flowing with silence, as a real client does, until the model has finished its turn (or
``settle`` seconds pass with nothing from it), then closes the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from ..voice.frames import (
    AudioFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptFrame,
    StartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptFrame,
    TurnEndFrame,
)
from ..voice.processor import FrameProcessor
from .config import TextPart, ToolDefinition, ToolResult
from .errors import S2SError
from .events import (
    AudioOutput,
    Event,
    Interrupted,
    SessionError,
    TextOutput,
    ToolCall,
    ToolCallRequest,
    Transcript,
    TurnEnd,
)
from .session import Engine, Session

log = logging.getLogger(__name__)

ToolHandler = Callable[[ToolCall], Awaitable[ToolResult]]

_SILENCE_STEP = 0.032  # seconds of silence per event while waiting at the end of input


class S2SProcessor(FrameProcessor):
    """Runs one session of ``engine`` for the frames that pass through (module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        model: str | None = None,
        instructions: str | None = None,
        voice: str | None = None,
        tools: Sequence[ToolDefinition] | None = None,
        tool_handler: ToolHandler | None = None,
        settle: float = 3.0,
        end_timeout: float = 60.0,
    ) -> None:
        self.engine = engine
        self._overrides = {
            "model": model,
            "instructions": instructions,
            "voice": voice,
            "tools": tools,
        }
        self._tool_handler = tool_handler
        self._settle = settle
        self._end_timeout = end_timeout
        self.session: Session | None = None
        self._ready: deque[Frame] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._turn_done = asyncio.Event()

    @property
    def name(self) -> str:
        return f"S2SProcessor({self.engine.name})"

    async def start(self) -> None:
        await self._open()

    async def close(self) -> None:
        await self._close_session()

    async def process(self, frame: Frame) -> AsyncIterator[Frame]:
        match frame:
            case StartFrame():
                await self._open()
                yield frame
            case AudioFrame():
                session = await self._open()
                rate = self.engine.config.input_sample_rate
                if frame.sample_rate != rate or frame.channels != 1:
                    raise ValueError(
                        f"{self.name} takes mono audio at {rate} Hz, got {frame.channels}"
                        f" channel(s) at {frame.sample_rate} Hz; put ResampleProcessor({rate})"
                        " before it"
                    )
                self._turn_done.clear()
                await session.send_audio(frame.pcm)
            case TextFrame(role="user"):
                session = await self._open()
                self._turn_done.clear()
                await session.send_text(frame.text)
            case InterruptFrame():
                if self.session is not None and not self.session.closed:
                    await self.session.interrupt()  # its INTERRUPTED event becomes the frame
                else:
                    yield frame
            case EndFrame():
                await self._finish_turn()
                await self._close_session()
                for ready in self._take_ready():
                    yield ready
                yield frame
                return
            case _:
                yield frame
        for ready in self._take_ready():
            yield ready

    # ---- internals -----------------------------------------------------------------------

    async def _open(self) -> Session:
        if self.session is None or self.session.closed:
            self.session = await self.engine.start(**self._overrides)  # type: ignore[arg-type]
            self._reader = asyncio.create_task(self._read(self.session), name="s2s-frames")
        return self.session

    async def _read(self, session: Session) -> None:
        async for event in session.recv():
            frame = _to_frame(event)
            if isinstance(event, TurnEnd | Interrupted | SessionError):
                self._turn_done.set()
            if isinstance(event, ToolCallRequest) and self._tool_handler:
                task = asyncio.create_task(self._answer(session, event.tool_call))
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
            if frame is not None:
                self._ready.append(frame)
        self._turn_done.set()

    async def _answer(self, session: Session, call: ToolCall) -> None:
        assert self._tool_handler is not None
        try:
            result = await self._tool_handler(call)
        except Exception as exc:  # the model is told, and can say so
            # The exception's message may quote the arguments: the type only, all of it at DEBUG.
            log.warning("tool %s failed: %s", call.name, type(exc).__name__)
            log.debug("tool %s failure in full", call.name, exc_info=exc)
            result = ToolResult(call.call_id, [TextPart(f"{type(exc).__name__}: {exc}")], True)
        with contextlib.suppress(S2SError):
            await session.send_tool_result(result)

    async def _finish_turn(self) -> None:
        """Stream silence until the model ends its turn, goes quiet, or time runs out."""
        session = self.session
        if session is None or session.closed:
            return
        rate = self.engine.config.input_sample_rate
        silence = bytes(2 * round(rate * _SILENCE_STEP))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._end_timeout
        last_output = loop.time()
        seen = len(self._ready)
        while not self._turn_done.is_set() and not session.closed:
            now = loop.time()
            if len(self._ready) != seen:
                seen, last_output = len(self._ready), now
            if now >= deadline or now - last_output >= self._settle:
                break
            try:
                await session.send_audio(silence)
            except S2SError:
                break
            await asyncio.sleep(_SILENCE_STEP)

    async def _close_session(self) -> None:
        for task in list(self._tool_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, self._settle)
        if self.session is not None:
            await self.session.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, self._settle)
            self._reader = None

    def _take_ready(self) -> list[Frame]:
        frames = list(self._ready)
        self._ready.clear()
        return frames


def _to_frame(event: Event) -> Frame | None:
    match event:
        case AudioOutput(audio=pcm, sample_rate=rate):
            return AudioFrame(pcm, rate)
        case TextOutput(text=text, final=final):
            return TextFrame(text, "assistant", final=final)
        case Transcript(text=text):
            return TranscriptFrame(text, final=True)
        case ToolCallRequest(tool_call=call):
            return ToolCallFrame(call.call_id, call.name, call.arguments)
        case Interrupted():
            return InterruptFrame()
        case SessionError(error=error):
            return ErrorFrame(error.code, error.message)
        case TurnEnd():
            return TurnEndFrame()
    return None


def as_frame_processor(
    engine: Engine,
    *,
    model: str | None = None,
    instructions: str | None = None,
    voice: str | None = None,
    tools: Sequence[ToolDefinition] | None = None,
    tool_handler: ToolHandler | None = None,
) -> S2SProcessor:
    """Wrap ``engine`` as a frame processor (one session per processor run)."""
    return S2SProcessor(
        engine,
        model=model,
        instructions=instructions,
        voice=voice,
        tools=tools,
        tool_handler=tool_handler,
    )
