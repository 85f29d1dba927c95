"""The asyncio session: moves bytes between the caller, ``NovaProtocol`` and ``BedrockStream``.

Concurrency model: one receive task per session reads the model's events; senders share one
lock so that a tool result's three events are never interleaved with audio. Every failure
becomes exactly one ``ERROR`` event; a fatal one closes the session and ends ``recv()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from enum import Enum

from ..config import Config, Message, ToolResult
from ..errors import ProviderError, SessionClosedError
from ..events import Event, EventType
from ..session import EventQueue, Session
from .credentials import CredentialSource
from .models import NovaModel
from .options import NovaOptions
from .protocol import NovaProtocol, StreamSettings
from .stream import BedrockStream

log = logging.getLogger(__name__)

_KEEPALIVE_STEP = 0.032  # seconds of silence per keep-alive event, sent in real time


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class NovaSession(Session):
    """A conversation over one Bedrock bidirectional stream."""

    def __init__(
        self,
        config: Config,
        history: Sequence[Message],
        options: NovaOptions,
        model: NovaModel,
        credentials: CredentialSource,
    ) -> None:
        self.config = config
        self._options = options
        self._credentials = credentials
        self._protocol = NovaProtocol(
            StreamSettings(
                model=model,
                voice=config.voice,
                instructions=config.instructions,
                tools=config.tools,
                output_sample_rate=config.output_sample_rate,
                max_tokens=options.max_tokens,
                top_p=options.top_p,
                temperature=options.temperature,
                endpointing_sensitivity=options.endpointing_sensitivity,
                history=history,
            )
        )
        self._events = EventQueue()
        self._stream: BedrockStream | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._state = _State.NEW
        self._failure: ProviderError | None = None
        self._odd_byte = b""
        self._closed = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None
        self._last_audio = 0.0

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def failure(self) -> ProviderError | None:
        """The error that ended the session, if one did."""
        return self._failure

    @property
    def pending_tool_calls(self) -> frozenset[str]:
        return self._protocol.pending_tool_calls

    async def open(self) -> None:
        if self._state is not _State.NEW:
            raise SessionClosedError("a session can be opened once")
        self._state = _State.OPEN
        try:
            identity = await self._credentials.snapshot()
            self._stream = await BedrockStream.open(self.config.model, self._options, identity)
            try:
                await self._send_all(self._protocol.opening_events(), report=False)
            finally:
                # The response tells why a request was refused better than a failed write does.
                await self._stream.accepted()
        except ProviderError:
            await self._shutdown(server_ended=True)
            raise
        self._receiver = asyncio.create_task(self._receive_loop(), name="nova-receive")
        self._last_audio = asyncio.get_running_loop().time()
        if self._options.keepalive_after > 0:
            self._keepalive = asyncio.create_task(self._keep_alive(), name="nova-keepalive")

    async def send_audio(self, pcm: bytes) -> None:
        self._check_open()
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise TypeError(f"audio must be bytes of PCM16, not {type(pcm).__name__}")
        data = self._odd_byte + bytes(pcm)
        # PCM16 samples are two bytes: keep a dangling byte for the next call.
        cut = len(data) - (len(data) % 2)
        data, self._odd_byte = data[:cut], data[cut:]
        step = self._options.max_audio_event_bytes
        events = [self._protocol.audio_event(data[i : i + step]) for i in range(0, len(data), step)]
        self._last_audio = asyncio.get_running_loop().time()
        await self._send_all(events)

    async def send_text(self, text: str) -> None:
        self._check_open()
        await self._send_all(self._protocol.text_events(text))

    async def send_tool_result(self, result: ToolResult) -> None:
        self._check_open()
        await self._send_all(self._protocol.tool_result_events(result))

    async def interrupt(self) -> None:
        self._check_open()
        self._protocol.interrupt()
        dropped = self._events.drop_audio()
        log.debug("client interrupt dropped %d bytes of queued audio", dropped)
        self._events.put(Event.interrupted("client"))

    def recv(self) -> AsyncIterator[Event]:
        return aiter(self._events)

    async def close(self) -> None:
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            self._events.close()
            self._closed.set()
            return
        if self._state is not _State.OPEN:
            await self._closed.wait()
            return
        self._state = _State.CLOSING
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(ProviderError, SessionClosedError):
                await self._send_all(self._protocol.closing_events(), report=False, closing=True)
            await stream.close_input()
            # Let Bedrock end its side so that its last events reach the caller.
            if self._receiver is not None:
                try:
                    await asyncio.wait_for(
                        asyncio.shield(self._receiver), self._options.close_timeout
                    )
                except TimeoutError:
                    log.warning(
                        "Bedrock did not end the stream within %ss", self._options.close_timeout
                    )
        await self._shutdown(server_ended=False)

    # ---- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            reason = f" ({self._failure})" if self._failure else ""
            raise SessionClosedError(f"the session is {self._state.value}{reason}")

    async def _send_all(
        self, events: list[bytes], *, report: bool = True, closing: bool = False
    ) -> None:
        """Send events in order under the send lock. ``report`` turns a failure into the
        session's fatal error; only ``closing`` sends may follow the start of ``close()``, so
        nothing is ever written after the closing events."""
        stream = self._stream
        if stream is None:
            raise SessionClosedError("the session is not open")
        async with self._send_lock:
            if not closing and self._state is not _State.OPEN:
                raise SessionClosedError(f"the session is {self._state.value}")
            for payload in events:
                if self._failure is not None:
                    raise SessionClosedError(f"the session failed ({self._failure})")
                try:
                    await stream.send(payload)
                except ProviderError as error:
                    if report:
                        self._fail(error)
                    raise

    async def _keep_alive(self) -> None:
        """Stream silence in real time while the caller sends no audio.

        Bedrock cuts a stream that carries no audio for a few minutes, and it finds the end of
        the user's turn in the audio itself: a caller that only types, or waits on a tool, must
        not leave the stream silent."""
        loop = asyncio.get_running_loop()
        step = _KEEPALIVE_STEP
        silence = self._protocol.audio_event(bytes(2 * round(16000 * step)))
        while self._state is _State.OPEN:
            idle_for = loop.time() - self._last_audio
            if idle_for < self._options.keepalive_after:
                await asyncio.sleep(self._options.keepalive_after - idle_for)
                continue
            try:
                await self._send_all([silence])
            except (ProviderError, SessionClosedError):
                return
            await asyncio.sleep(step)

    async def _receive_loop(self) -> None:
        stream = self._stream
        assert stream is not None
        try:
            while (payload := await stream.receive()) is not None:
                if not payload:
                    continue
                try:
                    events = self._protocol.receive(payload)
                except ProviderError as error:
                    # One bad event is reported; the stream itself may well carry on.
                    self._events.put(Event.failure(error.code, error.message, fatal=False))
                    continue
                for event in events:
                    if event.type is EventType.INTERRUPTED:
                        self._events.drop_audio()
                    self._events.put(event)
            if self._state is _State.OPEN:
                self._fail(
                    ProviderError("stream_ended", "Bedrock ended the stream", retryable=True)
                )
        except ProviderError as error:
            if self._state is _State.OPEN:
                self._fail(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the caller waiting forever
            log.exception("receive loop failed")
            self._fail(ProviderError("internal", repr(exc), retryable=False))

    def _fail(self, error: ProviderError) -> None:
        """Record the first fatal error, tell the caller once, and close in the background."""
        if self._failure is not None or self._state is _State.CLOSED:
            return
        self._failure = error
        log.warning("nova session failed: %s", error)
        self._events.put(
            Event.failure(error.code, error.message, fatal=True, retryable=error.retryable)
        )
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
            asyncio.get_running_loop().create_task(self._shutdown(server_ended=True))

    async def _shutdown(self, *, server_ended: bool) -> None:
        if self._state is _State.CLOSED:
            return
        current = asyncio.current_task()
        if self._keepalive is not None and self._keepalive is not current:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keepalive
        receiver = self._receiver
        if receiver is not None and receiver is not current and not receiver.done():
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
        if self._stream is not None:
            await self._stream.aclose(input_done=server_ended)
        self._state = _State.CLOSED
        self._events.close()
        self._closed.set()
