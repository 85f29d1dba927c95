"""One leg of a session: a Bedrock stream, its ``NovaProtocol`` state and its receive task.

A session runs a conversation over a succession of legs (rollover, recovery). A leg knows
nothing of the others: it opens (credentials snapshot, request, setup events), reports what
Bedrock sends to the session's callbacks, and closes. Which leg is live, and what is sent to it,
is the session's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from ..errors import FencedError, ProviderError
from ..events import Event
from ..session import SendGuard
from .credentials import CredentialSource
from .options import NovaOptions
from .protocol import MalformedEventError, NovaProtocol, StreamSettings
from .stream import BedrockStream

log = logging.getLogger(__name__)

EventsCallback = Callable[["Leg", list[Event]], None]
EndCallback = Callable[["Leg", ProviderError | None], None]


class Leg:
    """A Bedrock stream in one of these states: opened (setup sent), started (history and the
    audio content sent: it carries the conversation), retired (replaced; being closed), failed
    (``failure`` says why: nothing more is written to it), closed."""

    def __init__(
        self,
        number: int,
        purpose: str,
        protocol: NovaProtocol,
        stream: BedrockStream,
        opened_at: float,
        *,
        guard: SendGuard | None = None,
    ) -> None:
        self.number = number
        self.purpose = purpose  # initial | rollover | recovery
        self.protocol = protocol
        self.stream = stream
        self.opened_at = opened_at
        self.started = False
        self.retired = False
        self.failure: ProviderError | None = None
        self.audio_sent_upto = 0  # offset in the session's AudioRing
        self.events_received = 0
        self.skipped_events = 0  # unreadable output events, logged and skipped
        self.last_received = opened_at  # when Bedrock last sent this stream anything
        # Held while writing: a tool result's three events are never interleaved with audio,
        # and nothing is written while the leg is being started or closed.
        self.lock = asyncio.Lock()
        self.ended = False  # Bedrock ended its side (or the connection broke)
        # A send was cancelled midway: the event signature chain may be broken, so nothing
        # more is written (a later event would fail Bedrock's signature check).
        self.broken = False
        self._guard = guard
        self._receiver: asyncio.Task[None] | None = None
        self._input_finished = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Leg {self.number} {self.purpose}>"

    @classmethod
    async def open(
        cls,
        *,
        number: int,
        purpose: str,
        settings: StreamSettings,
        model_id: str,
        options: NovaOptions,
        credentials: CredentialSource,
        on_events: EventsCallback,
        on_end: EndCallback,
        guard: SendGuard | None = None,
    ) -> Leg:
        """Open a stream with fresh credentials and send its setup (sessionStart, promptStart,
        system prompt); raises ``ProviderError`` if Bedrock refuses it, or if ``guard`` says
        this process may no longer speak for the conversation (code ``fenced``)."""
        loop = asyncio.get_running_loop()
        await _check(guard)
        identity = await credentials.snapshot()  # rotated credentials apply to new streams
        stream = await BedrockStream.open(model_id, options, identity)
        leg = cls(number, purpose, NovaProtocol(settings), stream, loop.time(), guard=guard)
        try:
            try:
                await leg.send_all(leg.protocol.setup_events())
            finally:
                # The response tells why a request was refused better than a failed write does.
                await stream.accepted()
        except BaseException:
            await stream.aclose(input_done=True)
            raise
        leg._receiver = asyncio.create_task(
            leg._receive(on_events, on_end), name=f"nova-receive-{number}"
        )
        return leg

    async def send_all(self, payloads: Sequence[bytes]) -> None:
        """Send events in order (the caller holds ``lock``), the send guard asked before each:
        a process that stalled inside a long batch (a setup, a replay) sends nothing more of it
        once another holds the conversation."""
        if self.failure is not None:
            raise self.failure
        try:
            for payload in payloads:
                await _check(self._guard)
                await self.stream.send(payload)
        except asyncio.CancelledError:
            self.broken = True
            raise
        except ProviderError:
            # The receive side learnt first why the stream is gone (Bedrock's exception) and
            # cut this send short: that reason, not the cut, is the failure.
            if self.failure is not None:
                raise self.failure from None
            raise

    @property
    def writable(self) -> bool:
        return self.failure is None and not self.ended and not self.broken

    def age(self, now: float) -> float:
        return now - self.opened_at

    async def finish_input(self) -> None:
        """End our side in Bedrock's order: audio contentEnd (if started), promptEnd,
        sessionEnd, end of input. Skipped once the stream failed or Bedrock ended it (nothing
        is written after that); idempotent, never raises. The caller holds ``lock``."""
        if self._input_finished or self._closed:
            return
        self._input_finished = True
        if self.writable:
            with contextlib.suppress(ProviderError):
                await self.send_all(self.protocol.closing_events())
            await self.stream.close_input()

    async def close(self, grace: float) -> None:
        """``finish_input``, then wait up to ``grace`` seconds for Bedrock to end its side (its last
        events still reach the session), then release the connection. Never raises."""
        if self._closed:
            return
        await self.finish_input()
        if self.failure is None and not self.broken and self._receiver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._receiver), grace)
            except TimeoutError:
                log.warning("Bedrock did not end stream %d within %ss", self.number, grace)
            except Exception:  # the receive task reports its own failures
                log.debug("receive task of %r failed", self, exc_info=True)
        await self.release()

    def fail(self, error: ProviderError) -> bool:
        """Record why the leg is unusable (the first reason wins) and cut short a send that
        would otherwise wait for its timeout. Returns whether this was news."""
        if self.failure is not None:
            return False
        self.failure = error
        self.stream.abort_send()
        return True

    async def release(self) -> None:
        """Stop receiving and release the connection without writing more; idempotent."""
        if self._closed:
            return
        self._closed = True
        receiver = self._receiver
        if receiver is not None and receiver is not asyncio.current_task() and not receiver.done():
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
        await self.stream.aclose(input_done=not self.writable)

    async def _receive(self, on_events: EventsCallback, on_end: EndCallback) -> None:
        error: ProviderError | None = None
        try:
            while (payload := await self.stream.receive()) is not None:
                if not payload:
                    continue
                self.last_received = asyncio.get_running_loop().time()
                try:
                    events = self.protocol.receive(payload)
                except MalformedEventError as bad:
                    # One unreadable event is skipped: the stream itself carries on. Logged by
                    # name and fault only: its content may be what the user said.
                    self.skipped_events += 1
                    log.warning(
                        "stream %d: skipped an output event %s: %s",
                        self.number,
                        bad.name,
                        bad.problem,
                    )
                    events = []
                self.events_received += 1
                if events:
                    on_events(self, events)
                # A read of data already received does not suspend: without this, a stream that
                # sends faster than the loop turns would keep the session's consumer from ever
                # running, its events piling up in the session (the receive window bounds only
                # what is not read yet).
                await asyncio.sleep(0)
        except ProviderError as failure:
            error = failure
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the caller waiting forever
            log.exception("receive loop of %r failed", self)
            error = ProviderError(
                "internal", f"{type(exc).__name__} in the receive loop", retryable=False
            )
        self.ended = True
        on_end(self, error)


async def _check(guard: SendGuard | None) -> None:
    """Ask the caller's send guard; a fenced caller gets a final ``fenced`` error (a new stream
    would not help: another process holds the conversation)."""
    if guard is None:
        return
    try:
        await guard()
    except FencedError as exc:
        raise ProviderError(
            "fenced", str(exc) or "another process holds it", retryable=False
        ) from exc
