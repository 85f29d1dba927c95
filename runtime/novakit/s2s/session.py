"""The provider-neutral ``Engine`` and ``Session`` interfaces.

An engine holds configuration and shared resources; a session is one conversation. Usage::

    engine = s2s.new("nova", s2s.Config(instructions="You are helpful."))
    async with engine.start(voice="tiffany") as session:
        await session.send_audio(pcm16)  # at Config.input_sample_rate (16 kHz by default)
        async for event in session.recv():
            ...

``engine.start(...)`` may also be awaited (``session = await engine.start()``), in which case the
caller closes the session.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from .config import Config, Message, ToolChoice, ToolDefinition, ToolResult
from .events import AudioOutput, Event

# Awaited before a session opens a stream to the model and before each send to it; raises
# ``FencedError`` once the caller no longer holds the conversation.
SendGuard = Callable[[], Awaitable[None]]


class Session(ABC):
    """One conversation with a speech-to-speech model.

    Sending methods raise ``SessionClosedError`` once the session has closed. ``recv()`` yields
    events until the session closes, then ends; there is one consumer per session.

    ``send_guard`` (set by ``Engine.start``) is for callers that share a conversation between
    processes: when it raises ``FencedError`` the session sends the model nothing more, fails
    with code ``fenced`` and closes.
    """

    send_guard: SendGuard | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect and configure the model; called by ``engine.start``."""

    @abstractmethod
    async def send_audio(self, pcm: bytes) -> None:
        """Stream user audio: PCM16 little-endian mono at the configured input rate."""

    @abstractmethod
    async def send_text(self, text: str) -> None:
        """Send typed user input the model answers as if spoken."""

    @abstractmethod
    async def send_tool_result(self, result: ToolResult) -> None:
        """Answer a ``TOOL_CALL`` (once per call id)."""

    @abstractmethod
    async def interrupt(self) -> None:
        """Stop the assistant locally: drop queued output audio and emit ``INTERRUPTED``."""

    @abstractmethod
    async def close(self) -> None:
        """End the conversation in order and release the connection; idempotent."""

    @abstractmethod
    def recv(self) -> AsyncIterator[Event]:
        """The session's events, in the order the model produced them."""

    @abstractmethod
    def history(self) -> list[Message]:
        """The conversation so far, as the session would tell a new model stream: what the
        user said or typed, what the assistant said, and the tool calls with their results.
        Pass it as ``engine.start(history=...)`` to continue the conversation elsewhere (another
        process, after a restart) from exactly where the model was."""

    def keep_heard(self, fraction: float) -> None:  # noqa: B027 - optional for providers
        """After an ``INTERRUPTED``: the listener heard only the first ``fraction`` (0 to 1) of
        the cut answer (a phone plays audio later than it arrives), so the history keeps only
        that share of its words. Providers that keep no history have nothing to do."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once the session has closed."""

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SessionStarter:
    """What ``Engine.start`` returns: await it for an open session, or use ``async with``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __await__(self) -> Generator[Any, None, Session]:
        return self._open().__await__()

    async def _open(self) -> Session:
        await self._session.open()
        return self._session

    async def __aenter__(self) -> Session:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.close()


class Engine(ABC):
    """A configured provider that starts sessions."""

    name: str
    config: Config

    def start(
        self,
        *,
        instructions: str | None = None,
        tools: Sequence[ToolDefinition] | None = None,
        tool_choice: ToolChoice | str | None = None,
        model: str | None = None,
        voice: str | None = None,
        input_sample_rate: int | None = None,
        output_sample_rate: int | None = None,
        history: Sequence[Message] = (),
        send_guard: SendGuard | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> SessionStarter:
        """Start a session; keyword arguments override the engine's config for this session
        (``extra``: provider options added to the config's, such as Nova's
        ``endpointing_sensitivity``).

        ``send_guard``: awaited before every stream the session opens and every send to the
        model; it raises ``FencedError`` when this caller must not speak for the conversation
        any more (another process owns it now)."""
        config = self.config.with_overrides(
            instructions=instructions,
            tools=tuple(tools) if tools is not None else None,
            tool_choice=tool_choice,
            model=model,
            voice=voice,
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            extra={**self.config.extra, **extra} if extra else None,
        )
        session = self.create_session(config, tuple(history))
        session.send_guard = send_guard
        return SessionStarter(session)

    @abstractmethod
    def create_session(self, config: Config, history: Sequence[Message]) -> Session:
        """Build an unopened session (validating ``config`` for this provider)."""

    async def close(self) -> None:  # noqa: B027 - providers without shared resources need nothing
        """Release resources shared by sessions."""


class EventQueue:
    """The session's outgoing events: ordered, with output audio that can be dropped at once.

    Barge-in must discard audio the listener has not received yet without touching transcripts
    or tool calls, so this is a deque rather than an ``asyncio.Queue``.
    """

    def __init__(self) -> None:
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, event: Event) -> None:
        if self._closed:
            return
        self._items.append(event)
        self._ready.set()

    def drop_audio(self) -> int:
        """Remove every queued ``AUDIO_OUTPUT``; returns how many bytes of audio were dropped."""
        kept = [e for e in self._items if not isinstance(e, AudioOutput)]
        dropped = sum(len(e.audio) for e in self._items if isinstance(e, AudioOutput))
        self._items = deque(kept)
        return dropped

    def close(self) -> None:
        """No more events will come; consumers get what is queued, then the end."""
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> Event | None:
        """The next event, or ``None`` once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event
