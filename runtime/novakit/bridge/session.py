"""One client connection: its ``novakit.s2s`` session, its inbound order and its ordered sender.

Integration requests only hand frames over (``receive``) and return at once; a worker task
feeds them to the model in order, a pump task turns model events into client frames, and tool
calls run as tasks of their own. The model session opens on the client's first frame, with the
options of its ``start`` frame if it sent one (``$connect`` cannot be answered with frames: API
Gateway accepts posts only once the connection is open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .. import s2s
from .connections import ConnectionGone, ConnectionsClient
from .dialects import V1, ConnectionCodec, Dialect
from .hangup import END_CALL, END_CALL_REASON, CallEnding, end_call_result
from .lease import SessionLease
from .liveness import Liveness, LivenessEnd
from .metrics import Metrics
from .protocol import (
    ClearReason,
    ClientAudio,
    ClientEnd,
    ClientFrame,
    ClientInterrupt,
    ClientPing,
    ClientRefusal,
    ClientReply,
    ClientStart,
    ClientText,
    ClientToolResult,
    ErrorCode,
    FrameRef,
    ProtocolError,
    SessionState,
)
from .sender import OrderedSender
from .sequencing import InboundSequencer
from .settings import BridgeSettings
from .throttle import SampledLog, TokenBucket
from .tools import ToolRunner

log = logging.getLogger(__name__)

# Why the model's answer stopped (its INTERRUPTED event) -> clear_audio's reason.
_CLEAR_REASONS: dict[str, ClearReason] = {
    "client": "client",  # the client sent interrupt
    "recovery": "recovery",  # the model's stream was lost mid answer; a new one goes on
}

# Input waiting for the model: ~30 s of 32 ms audio frames. Past it the client gets
# rate_limited errors (never silent loss) while the model catches up.
MAX_PENDING_INPUT = 1000
CLOSE_TIMEOUT = 5.0
# At most this many waiting client audio frames go to Bedrock as one event (~128 ms).
MAX_COALESCED_FRAMES = 4
# Frames a resumed session holds back until its `resumed` frame (refusals, pongs, draining).
MAX_BEFORE_RESUMED = 64
# Bound on one GET @connections presence check.
PRESENCE_TIMEOUT = 10.0
# How long a greeting posted right after $connect may wait for API Gateway to open the
# connection (a post before that is answered 410).
OPENING_SECONDS = 3.0

# Why sessions end -> the metric counting them (any other reason counts as EndedOther).
END_METRICS: dict[str, str] = {
    "client disconnected": "EndedDisconnected",
    "client ended the session": "EndedByClient",
    LivenessEnd.CLIENT_GONE: "EndedClientGone",  # a post answered 410
    LivenessEnd.CLIENT_ABSENT: "EndedClientGone",
    LivenessEnd.CLIENT_IDLE: "EndedClientIdle",
    LivenessEnd.NO_FIRST_FRAME: "EndedNoFirstFrame",
    "model session closed": "EndedModelClosed",
    "model session ended": "EndedModelClosed",
    "model session failed to open": "EndedModelFailed",
    "protocol error": "EndedProtocolError",
    "internal error": "EndedInternalError",
    "ownership moved": "EndedOwnershipMoved",
    END_CALL_REASON: "EndedByAgent",
    "this task is stopping": "EndedHandedOver",
    "server shutting down": "EndedShutdown",
}
# Error frames a connection may get at once before BridgeSettings.error_frames_per_second binds.
ERROR_BURST = 20
# Refused frames: the first is logged, then one line with counts per this many seconds.
REFUSED_LOG_SECONDS = 10.0


# Reasons the user gave for an end (``end`` frame, ``$disconnect``): they end a conversation even
# while it is being handed over to another task.
_USER_ENDS = frozenset(["client ended the session", "client disconnected"])


class State(Enum):
    WAITING = "waiting"  # connected, no frame yet
    OPENING = "opening"
    OPEN = "open"
    ENDING = "ending"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class _Input:
    """One unit of client input for the worker, in the order it must reach the model."""

    frame: ClientFrame
    received: float  # time.monotonic() when its integration request arrived


class BridgeSession:
    # Why, if the user ended the conversation while it was being handed over (``end``).
    _user_ended: str | None = None

    def __init__(
        self,
        connection_id: str,
        *,
        principal_id: str,
        engine: s2s.Engine,
        settings: BridgeSettings,
        connections: ConnectionsClient,
        tools: ToolRunner,
        metrics: Metrics,
        on_ended: Callable[[BridgeSession], None],
        lease: SessionLease | None = None,
        resumed: bool = False,
        dialect: Dialect = V1,
        stage: str = "",
        requested_model: str = "",
    ) -> None:
        """``connections``: the ``@connections`` of the connection's own ``stage``;
        ``dialect``: the client protocol spoken on that stage; ``requested_model``: the model
        the client named when it connected (reported back to it by protocols that do)."""
        self.connection_id = connection_id
        self.stage, self.dialect = stage, dialect
        self.principal_id = principal_id
        self._engine = engine
        self._settings = settings
        self._tools = tools
        self._metrics = metrics
        self._on_ended = on_ended
        self._resumed, self._connections = resumed, connections
        self.lease = lease
        # The conversation this session resumes (a takeover); once the model session is open,
        # the model session's own history is the one conversation log, saved for the next owner.
        self._resumed_history: list[s2s.Message] = []
        self._start_options: ClientStart | None = None
        # A conversation that had started (its options saved) goes on at once on this task.
        self._resuming = lease is not None and resumed and "options" in lease.state
        if lease is not None and resumed:
            self._resumed_history, self._start_options = _resumed(lease.state)
        # The client protocol's codec: parses its frames, encodes and batches what it is sent.
        self._batcher: ConnectionCodec = dialect.new_codec(
            batch_ms=settings.batch_ms,
            saved=_saved_codec(lease, resumed),
            allow_client_instructions=settings.allow_client_instructions,
        )
        # What a client of this protocol is told as soon as it connects (v1: nothing).
        greeting = [] if resumed else self._greeting(settings, requested_model)
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self.state = State.WAITING
        self.sender = OrderedSender(
            connection_id,
            connections,
            metrics,
            on_gone=self._client_gone,
            on_stalled=self.end,
            max_bytes=settings.output_queue_bytes,
            throttled_seconds=settings.throttled_seconds,
            guard=lease.guard if lease is not None else None,
            kinds=dialect.kinds,
            opening_seconds=OPENING_SECONDS if greeting else 0.0,
        )
        self._post(greeting)
        # A resumed session's numbering starts again at its `resumed` frame, so that frame goes
        # first: what it would say before (a refused frame, a pong) waits for it, or a client
        # would take it for a late frame of the task that held the conversation before. The
        # model session opens at once, so nothing waits for the client's next frame.
        self._before_resumed: list[Callable[[float], list[str]]] | None = (
            [] if self._resuming else None
        )
        self._error_frames = TokenBucket(
            settings.error_frames_per_second, ERROR_BURST, time.monotonic()
        )
        # Error frames the bucket held back since the last one sent; a feed failure logged.
        self._errors_unsent, self._feed_failure_logged = 0, False
        self._refusals = SampledLog(
            log, "refused a frame", every=REFUSED_LOG_SECONDS, extra=self._log_extra
        )
        self._gaps = SampledLog(
            log,
            "went on without missing audio",
            every=REFUSED_LOG_SECONDS,
            extra=self._log_extra,
            level=logging.WARNING,
        )
        self._sequencer: InboundSequencer[bytes] = InboundSequencer()
        self._pending: asyncio.Queue[_Input] = asyncio.Queue(MAX_PENDING_INPUT)
        self._lookahead: _Input | None = None  # taken from the queue while coalescing audio
        self._session: s2s.Session | None = None
        self._started = self._resuming  # a start frame now would be a second one
        self._voice = settings.voice
        # Tools the client declared and runs itself, and their calls awaiting its answer.
        self._client_tools, self._client_calls = frozenset[str](), set[str]()
        # The phone's end_call tool, run by the bridge itself, when the deployment offers it.
        self._call_ending, self._call_ending_changed = (
            CallEnding() if settings.phone_hangup and dialect.closing_hangs_up else None,
            asyncio.Event(),
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._sequence_timer: asyncio.TimerHandle | None = None
        self._awaiting_audio_since: float | None = None
        self._last_usage: s2s.Usage | None = None
        self._ended = asyncio.Event()
        self._handing_over = False
        self._told_ended = False  # the client was told the conversation is over
        # Set when the session has ended: the conversation is over for good (not handed over,
        # not taken by another task), and whether the WebSocket is known to be closed.
        self.conversation_over = self.connection_closed = False
        self.created = time.monotonic()
        self._liveness = Liveness(
            self.created,
            first_frame_seconds=settings.first_frame_seconds,
            idle_seconds=settings.idle_seconds,
            presence_seconds=settings.presence_seconds,
        )
        self._liveness_changed = asyncio.Event()
        self._worker = self._spawn(self._work(), "worker")
        self._spawn(self._watch_liveness(), "liveness")

    def _greeting(self, settings: BridgeSettings, requested_model: str) -> list[str]:
        model = requested_model or self._engine.config.model
        return self._batcher.greeting(self.connection_id, model, settings.voice, time.monotonic())

    @property
    def _log_extra(self) -> dict[str, str]:
        return {"connection_id": self.connection_id}

    # -- inbound (called by the integration endpoints; never blocks) --------------------------

    def parse(self, body: bytes) -> Sequence[ClientFrame]:
        """One client frame in this connection's protocol; raises ``ProtocolError``."""
        frames = self._batcher.parse(body)
        if self._call_ending is not None and self._call_ending.pending:
            self._call_ending_changed.set()  # a mark echo may say the goodbye was heard
        return frames

    def receive(self, frame: ClientFrame) -> None:
        if self.state in (State.ENDING, State.ENDED):
            self._refuse_after_end(frame)
            return
        now = time.monotonic()
        self._liveness.frame(now)
        match frame:
            case ClientPing(id=ping_id):
                self._post_soon(lambda at: self._batcher.pong(ping_id, at))
            case ClientInterrupt():
                # Acts on output at once; it need not wait behind queued input.
                if self._session is not None:
                    self._spawn(self._interrupt(), "interrupt")
            case ClientStart() if self._started:
                self.reject(
                    ProtocolError(
                        ErrorCode.ALREADY_STARTED,
                        "the session has started; send start before any audio or text",
                        ref=FrameRef("start"),
                    )
                )
            case ClientReply(frames=frames):
                self._post(list(frames))  # the protocol's own answer: nothing for the model
            case ClientRefusal(error=error):
                self.reject(error)
            case ClientEnd() if self._pending.full():
                # The user's end is not input to shed: what waits behind a model that fell
                # behind would only be answered to nobody.
                self.end("client ended the session")
            case ClientAudio(seq=seq, pcm=pcm):
                self._started = True
                delivery = self._sequencer.push(seq, pcm, now)
                for error in delivery.errors:
                    self.reject(error)
                for chunk in delivery.released:
                    self._enqueue(ClientAudio(seq, chunk))
                self._arm_sequence_timer()
            case _:
                self._started = True
                self._enqueue(frame)

    def reject(self, error: ProtocolError) -> None:
        """Tell the client a frame was refused; the session goes on unless the error is fatal.

        Logged the first time, then counted (``SampledLog``); error frames are rate limited
        (``TokenBucket``): a client sending nothing but bad frames costs bounded output and log.
        """
        now = time.monotonic()
        self._liveness.frame(now)  # a refused frame still shows the client is there
        self._metrics.count("ProtocolErrors")
        self._refusals.record(error.code.value, str(error), now)
        self._post_error(error, now)
        if error.fatal:
            self.end("protocol error")

    def _refuse_after_end(self, frame: ClientFrame) -> None:
        """A frame that came after the end (audio still in flight after ``end``): the client
        is told once, before the ``ended`` frame; a session handed over says nothing (its
        conversation goes on elsewhere)."""
        if self._handing_over and isinstance(frame, ClientEnd):
            self.end("client ended the session")
            return
        if self._told_ended or self._handing_over:
            return
        self._told_ended = True
        self._post(
            self._batcher.error(
                ErrorCode.SESSION_ENDED,
                "the conversation has ended; frames are no longer taken",
                True,
                FrameRef(frame.TYPE, getattr(frame, "seq", None)),
                time.monotonic(),
            )
        )

    def _post_error(self, error: ProtocolError, now: float) -> None:
        if not error.fatal and not self._error_frames.take(now):
            self._errors_unsent += 1
            self._metrics.count("ErrorFramesNotSent")
            return
        if self._errors_unsent:
            error = ProtocolError(
                error.code,
                f"{error.message} ({self._errors_unsent} earlier errors not sent: too many)",
                ref=error.ref,
                fatal=error.fatal,
            )
            self._errors_unsent = 0
        self._post_soon(lambda at: self._batcher.protocol_error(error, at), keep=error.fatal)

    def _post_soon(self, make: Callable[[float], list[str]], *, keep: bool = False) -> None:
        """Post what ``make`` encodes now, or once a resumed session has said so. What waits
        is bounded (a client pinging a session whose model is slow to open costs no more),
        except what must reach the client (``keep``: the session's own news, a fatal error),
        which the client does not cause."""
        if self._before_resumed is not None:
            if keep or len(self._before_resumed) < MAX_BEFORE_RESUMED:
                self._before_resumed.append(make)
            else:
                self._metrics.count("FramesNotSentBeforeResumed")
        else:
            self._post(make(time.monotonic()))

    def _release_before_resumed(self) -> None:
        waiting, self._before_resumed = self._before_resumed, None
        for make in waiting or ():
            self._post(make(time.monotonic()))

    def _enqueue(self, frame: ClientFrame) -> None:
        try:
            self._pending.put_nowait(_Input(frame, time.monotonic()))
        except asyncio.QueueFull:
            ref = FrameRef(frame.TYPE, getattr(frame, "seq", None))
            self.reject(
                ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    "input arrives faster than the model takes it; this frame was dropped",
                    ref=ref,
                )
            )

    def _arm_sequence_timer(self) -> None:
        deadline = self._sequencer.next_deadline()
        if deadline is None or self._sequence_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._sequence_timer = loop.call_at(
            loop.time() + max(0.0, deadline - time.monotonic()), self._release_held_audio
        )

    def _release_held_audio(self) -> None:
        self._sequence_timer = None
        delivery = self._sequencer.expire(time.monotonic())
        if delivery.skipped:
            self._gaps.record(
                "gaps", f"{delivery.skipped} audio frames never arrived", time.monotonic()
            )
        for error in delivery.errors:  # a frame too far ahead, dropped when its wait ended
            self.reject(error)
        for chunk in delivery.released:
            self._enqueue(ClientAudio(-1, chunk))
        self._arm_sequence_timer()

    # -- the worker: opens the model session, then feeds it input in order ----------------

    async def _work(self) -> None:
        try:
            first = await self._first_input()
            if first is not None and isinstance(first.frame, ClientEnd):
                self._client_ended()  # over before it began: no model session for a goodbye
                return
            start = first.frame if first and isinstance(first.frame, ClientStart) else None
            start = start or self._start_options or ClientStart()
            if not await self._open(start):
                return
            if first is not None and not isinstance(first.frame, ClientStart):
                await self._feed(first)
            while True:
                item = self._lookahead or await self._pending.get()
                self._lookahead = None
                if isinstance(item.frame, ClientEnd):
                    self._client_ended()
                    return
                if isinstance(item.frame, ClientAudio):
                    item = self._coalesce(item)
                await self._feed(item)
        except s2s.SessionClosedError:
            # The model session ended (its ERROR event told the client why): stop feeding it.
            self.end("model session closed")

    async def _first_input(self) -> _Input | None:
        """What the model session opens for: the client's first frame, or for a resumed
        conversation (whose model session opens at once) the frame that came with the takeover,
        if any."""
        if not self._resuming:
            return await self._pending.get()
        return None if self._pending.empty() else self._pending.get_nowait()

    def _client_ended(self) -> None:
        self.end("client ended the session")
        if not self._pending.empty():  # sent after end: refused, not dropped
            self._refuse_after_end(self._pending.get_nowait().frame)

    def _coalesce(self, item: _Input) -> _Input:
        """Join audio already waiting into one send: when the model side falls behind, fewer,
        larger Bedrock events cost less CPU, and nothing waits that was not waiting already."""
        assert isinstance(item.frame, ClientAudio)
        chunks = [item.frame.pcm]
        while len(chunks) < MAX_COALESCED_FRAMES and not self._pending.empty():
            waiting = self._pending.get_nowait()
            if not isinstance(waiting.frame, ClientAudio):
                self._lookahead = waiting
                break
            chunks.append(waiting.frame.pcm)
        if len(chunks) == 1:
            return item
        self._metrics.count("CoalescedFrames", len(chunks) - 1)
        return _Input(ClientAudio(item.frame.seq, b"".join(chunks)), item.received)

    async def _open(self, start: ClientStart) -> bool:
        self.state = State.OPENING
        now = time.monotonic()
        if start.output_sample_rate is not None or start.batch_ms is not None:
            # Reconfigure rather than replace: frames may have gone out already (a pong, an
            # error), and seq must keep counting.
            self._post(
                self._batcher.configure(
                    now, sample_rate=start.output_sample_rate, batch_ms=start.batch_ms
                )
            )
        instructions = None
        if start.instructions is not None:
            if not self._settings.allow_client_instructions:
                self.reject(
                    ProtocolError(
                        ErrorCode.BAD_FRAME,
                        "this bridge does not let clients set instructions; using its own",
                        ref=FrameRef("start"),
                    )
                )
            else:
                instructions = start.instructions
        self._voice = start.voice or self._settings.voice
        input_rate = start.input_sample_rate or self._engine.config.input_sample_rate
        self._batcher.input_sample_rate = input_rate
        client_tools = self._client_tools_of(start)
        self._client_tools = frozenset(t.name for t in client_tools)
        self._start_options = ClientStart(
            voice=self._voice,
            instructions=instructions,
            input_sample_rate=input_rate,
            output_sample_rate=self._batcher.sample_rate,
            batch_ms=self._batcher.batch_ms,
            client_tools=client_tools,
            tool_choice=start.tool_choice,
            endpointing=start.endpointing,
        )
        try:
            self._session = await self._engine.start(
                voice=self._voice,
                instructions=instructions,
                input_sample_rate=input_rate,
                output_sample_rate=self._batcher.sample_rate,
                history=self._resumed_history,
                send_guard=self.lease.guard if self.lease is not None else None,
                **_model_choices(
                    self._engine.config.tools, self._start_options, builtin=self._builtin_tools
                ),
            )
        except (s2s.ConfigError, s2s.ProviderError) as exc:
            if self._before_resumed is not None:
                # The client's numbering restarts at ``resumed``, also for a conversation this
                # task took over and then could not go on with: said before what waited.
                self._post(self._session_frame("resumed", time.monotonic()))
            self._release_before_resumed()
            code = getattr(exc, "code", "config")
            log.warning("could not open the model session: %s", exc, extra=self._log_extra)
            self._metrics.count("Errors")
            self._post(
                self._batcher.error(
                    ErrorCode.SESSION_FAILED,
                    # A ConfigError is about the session's own options (a voice the model
                    # lacks): its text helps the client. A ProviderError's may quote Bedrock.
                    f"could not start the conversation: {exc}"
                    if isinstance(exc, s2s.ConfigError)
                    else f"could not start the conversation: {client_error_text(code)}",
                    True,
                    FrameRef("start"),
                    time.monotonic(),
                )
            )
            self.end("model session failed to open")
            return False
        self.state = State.OPEN
        self._metrics.count("SessionsStarted")
        log.info(
            "session open",
            extra={**self._log_extra, "open_ms": round((time.monotonic() - now) * 1000)},
        )
        self._post(self._session_frame("resumed" if self._resumed else "ready", time.monotonic()))
        self._release_before_resumed()
        self._spawn(self._pump(self._session), "pump")
        if self._batcher.saved_state():
            # What the codec must carry over (a phone call's stream id) is saved now, not after
            # the first turn: a task taking the call over before then could not answer it.
            self._persist()
        return True

    def _session_frame(self, state: SessionState, now: float) -> list[str]:
        return self._batcher.session(
            state, self.connection_id, self._engine.config.model, self._voice, now
        )

    def _client_tools_of(self, start: ClientStart) -> tuple[s2s.ToolDefinition, ...]:
        """The tools the client declared to run itself, but those named like one of the
        deployment's (which the bridge runs): refused, the deployment's is kept."""
        own = {t.name for t in self._own_tools}
        taken = [t.name for t in start.client_tools if t.name in own]
        if taken:
            self.reject(
                ProtocolError(
                    ErrorCode.BAD_FRAME,
                    f"tools {taken} are the deployment's own tools (run by the server);"
                    " give the client's tools other names",
                    ref=FrameRef("start", param="tools"),
                )
            )
        return tuple(t for t in start.client_tools if t.name not in own)

    async def _feed(self, item: _Input) -> None:
        """Give one frame to the model. A frame the model side cannot take costs that frame
        (a non-fatal error to the client), never the conversation; only a closed model session
        ends it."""
        try:
            await self._feed_one(item)
        except s2s.SessionClosedError:
            raise
        except Exception as exc:
            frame = item.frame
            seq = getattr(frame, "seq", -1)  # -1: audio released after a gap, seq not kept
            ref = FrameRef(frame.TYPE, seq if seq >= 0 else None)
            self._metrics.count("FeedFailures")
            if isinstance(exc, ValueError | s2s.UnsupportedError):
                # The model's own refusal of this input: the client can act on its message.
                error = ProtocolError(ErrorCode.BAD_FRAME, f"the model refused it: {exc}", ref=ref)
            else:
                if not self._feed_failure_logged:  # a bug: its trace once, then counts
                    self._feed_failure_logged = True
                    log.error(
                        "could not give a %s frame to the model",
                        frame.TYPE,
                        exc_info=exc,
                        extra=self._log_extra,
                    )
                error = ProtocolError(
                    ErrorCode.INTERNAL,
                    "the bridge could not pass this frame to the model; it was dropped and the"
                    " conversation goes on",
                    ref=ref,
                    fatal=False,
                )
            self.reject(error)

    async def _feed_one(self, item: _Input) -> None:
        assert self._session is not None
        match item.frame:
            case ClientAudio(pcm=pcm):
                await self._session.send_audio(pcm)
                self._metrics.observe("InputLatencyMs", (time.monotonic() - item.received) * 1000)
            case ClientText(text=text):
                await self._session.send_text(text)
                self._awaiting_audio_since = time.monotonic()
            case ClientToolResult(call_id=call_id, output=output):
                if call_id not in self._client_calls:
                    raise ValueError(f"no call of a client tool is waiting for call_id {call_id!r}")
                self._client_calls.discard(call_id)
                await self._session.send_tool_result(
                    s2s.ToolResult(call_id, (s2s.TextPart(output),))
                )
            case ClientStart():
                self.reject(
                    ProtocolError(
                        ErrorCode.ALREADY_STARTED, "the session has started", ref=FrameRef("start")
                    )
                )
            case _:
                pass  # ping and interrupt are handled on receipt; end stops the worker

    async def _interrupt(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(s2s.SessionClosedError):
                await self._session.interrupt()

    # -- the pump: model events to client frames ----------------------------------------

    async def _pump(self, session: s2s.Session) -> None:
        async for event in session.recv():
            now = time.monotonic()
            try:
                self._forward(session, event, now)
            except ValueError as exc:
                # An event the client's protocol cannot carry (too large for a frame, say):
                # that event is lost, the conversation goes on.
                self._output_failed(event, exc, now)
        if self.state is State.OPEN:
            self.end("model session ended")

    def _forward(self, session: s2s.Session, event: s2s.Event, now: float) -> None:
        """One model event to the client (and whatever it sets going)."""
        match event:
            case s2s.AudioOutput(audio=pcm):
                if self._awaiting_audio_since is not None:
                    wait_ms = (now - self._awaiting_audio_since) * 1000
                    self._metrics.observe("TimeToFirstAudioMs", wait_ms)
                    self._awaiting_audio_since = None
                self._post(self._batcher.audio(pcm, now))
                self._arm_flush_timer()
                if self._call_ending is not None:
                    self._call_ending.audio(len(pcm) * 500 / self._batcher.sample_rate)
            case s2s.TextOutput(text=text, final=final):
                self._post(self._batcher.assistant_text(text, final, now))
            case s2s.Transcript(text=text):
                self._awaiting_audio_since = now
                self._post(self._batcher.transcript(text, now))
            case s2s.ToolCallRequest(tool_call=call) if self._is_end_call(call):
                self._post(self._batcher.tool_call(call, now, on_client=False))
                self._end_call(session, call, now)
            case s2s.ToolCallRequest(tool_call=call) if call.name in self._client_tools:
                # Declared by the client, which runs it and answers (ClientToolResult).
                self._client_calls.add(call.call_id)
                self._post(self._batcher.tool_call(call, now, on_client=True))
            case s2s.ToolCallRequest(tool_call=call):
                self._post(self._batcher.tool_call(call, now, on_client=False))
                self._spawn(self._run_tool(session, call), f"tool-{call.name}")
            case s2s.TurnEnd():
                self._post(self._batcher.turn_end(now, self._last_usage))
                self._arm_flush_timer()  # a closing event may wait for its usage
                self._last_usage = None
                self._persist()
                self._hang_up_after_turn(now)
            case s2s.Interrupted(reason=why):
                reason = _CLEAR_REASONS.get(why, "barge_in")
                self.sender.barge_in(self._batcher.barge_in(reason, now), since=now)
                heard = self._batcher.heard_fraction()
                if heard is not None:  # the history keeps what the listener heard
                    session.keep_heard(heard)
                self._persist()
                self._keep_call_after_barge_in()
            case s2s.UsageUpdate(usage=usage):
                self._last_usage = usage  # v1 sends it once per turn, not per model event
                self._post(self._batcher.usage_update(usage, now))
            case s2s.SessionError(error=error):
                self._on_model_error(error, now)
            case _:
                self._on_other_event(event, now)

    def _output_failed(self, event: s2s.Event, exc: ValueError, now: float) -> None:
        self._metrics.count("Errors")
        log.warning(
            "model event %s not sent to the client: %s",
            type(event).__name__,
            exc,
            extra=self._log_extra,
        )
        self._post(
            self._batcher.error(
                ErrorCode.INTERNAL,
                f"a {type(event).__name__} event of the model could not be sent to the client"
                " (too large for a frame); the conversation goes on",
                False,
                None,
                now,
            )
        )

    def _on_model_error(self, error: s2s.ErrorInfo, now: float) -> None:
        if self.lease is not None and self.lease.lost:
            # Fenced (lease.py): another task holds the conversation and speaks to the client.
            log.info("another task owns this conversation now", extra=self._log_extra)
            self.end("ownership moved")
            return
        self._metrics.count("Errors")
        log.warning(
            "model error %s: %s",
            error.code,
            error.message,
            extra={**self._log_extra, "fatal": error.fatal},
        )
        code = ErrorCode.SESSION_FAILED if error.fatal else ErrorCode.INTERNAL
        # The provider's message may quote Bedrock (and Bedrock may quote what it was sent):
        # it stays in the log; the client gets a fixed text for the code.
        self._post(self._batcher.error(code, client_error_text(error.code), error.fatal, None, now))

    def _on_other_event(self, event: s2s.Event, now: float) -> None:
        # Providers may add event types (a reconnection after a fault, say): tell the client
        # of a new model stream, and log anything else rather than drop it unseen.
        if isinstance(event, s2s.Reconnected):
            reason = event.reason or None
            self._post(
                self._batcher.session(
                    "reconnected",
                    self.connection_id,
                    self._engine.config.model,
                    self._voice,
                    now,
                    reason=reason,
                )
            )
        else:
            log.debug("event not forwarded: %s", event.type, extra=self._log_extra)

    @property
    def _own_tools(self) -> list[s2s.ToolDefinition]:
        """The tools the bridge runs: the deployment's, and the phone's ``end_call`` if offered."""
        return [*self._engine.config.tools, *self._builtin_tools]

    @property
    def _builtin_tools(self) -> list[s2s.ToolDefinition]:
        return [END_CALL] if self._call_ending is not None else []

    def _is_end_call(self, call: s2s.ToolCall) -> bool:
        return self._call_ending is not None and call.name == END_CALL.name

    def _end_call(self, session: s2s.Session, call: s2s.ToolCall, now: float) -> None:
        """The model asked to hang up: answered at once (say goodbye); the call ends once the
        goodbye has been heard (hangup.py)."""
        assert self._call_ending is not None
        first = not self._call_ending.pending
        self._call_ending.requested(now)
        log.info("the model asked to end the call", extra=self._log_extra)
        self._post(
            self._batcher.tool(call.call_id, call.name, "succeeded", now, ms=0, output="ending")
        )
        self._spawn(self._answer_end_call(session, call), "end-call")
        if first:
            self._spawn(self._hang_up_when_heard(self._call_ending), "hang-up")

    def _hang_up_after_turn(self, now: float) -> None:
        if self._call_ending is not None and self._call_ending.pending:
            self._call_ending.turn_ended(now)  # the goodbye is said; now it must be heard
            self._call_ending_changed.set()

    def _keep_call_after_barge_in(self) -> None:
        if self._call_ending is not None and self._call_ending.barge_in():
            log.info("the caller spoke over the goodbye: not hanging up", extra=self._log_extra)
            self._call_ending_changed.set()

    async def _answer_end_call(self, session: s2s.Session, call: s2s.ToolCall) -> None:
        try:
            await session.send_tool_result(end_call_result(call.call_id))
        except (s2s.SessionClosedError, ValueError) as exc:
            log.info("end_call result not delivered: %s", exc, extra=self._log_extra)

    async def _hang_up_when_heard(self, ending: CallEnding) -> None:
        """Wait until the goodbye has been heard (or its bound passed), then end the session:
        the model stream closes and the connection is closed, which ends the call."""
        played_out = getattr(self._batcher, "played_out", None)
        while self.state is State.OPEN and ending.pending:
            now = time.monotonic()
            if ending.check(now, played_out=played_out() if played_out is not None else True):
                self.end(END_CALL_REASON)
                return
            await _changed_or_due(self._call_ending_changed, ending.next_wakeup(), now)

    async def _run_tool(self, session: s2s.Session, call: s2s.ToolCall) -> None:
        outcome = await self._tools.run(
            call, connection_id=self.connection_id, principal_id=self.principal_id
        )
        ms = round(outcome.seconds * 1000)
        self._metrics.observe("ToolLatencyMs", ms)
        error = outcome.result.text() if outcome.result.is_error else None
        output = None if outcome.result.is_error else outcome.result.text()
        if outcome.status != "succeeded":
            self._metrics.count("ToolFailures")
        try:
            self._post(
                self._batcher.tool(
                    call.call_id,
                    call.name,
                    outcome.status,  # type: ignore[arg-type]
                    time.monotonic(),
                    ms=ms,
                    error=error,
                    output=output,
                )
            )
        except ValueError as exc:  # the client misses the tool's frame; the model still gets it
            log.warning("tool frame not sent: %s", exc, extra=self._log_extra)
        try:
            await session.send_tool_result(outcome.result)
        except (s2s.SessionClosedError, ValueError) as exc:
            log.info("tool result not delivered: %s", exc, extra=self._log_extra)

    # -- output -------------------------------------------------------------------------

    def _post(self, frames: list[str]) -> None:
        if frames:
            self.sender.send(frames)

    def _arm_flush_timer(self) -> None:
        deadline = self._batcher.next_deadline()
        if deadline is None or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(
            loop.time() + max(0.0, deadline - time.monotonic()), self._flush_due
        )

    def _flush_due(self) -> None:
        self._timer = None
        self._post(self._batcher.due(time.monotonic()))
        self._arm_flush_timer()

    # -- what a new owner needs ------------------------------------------------------------

    def history(self) -> list[s2s.Message]:
        """The conversation so far: the model session's own log (what a new stream of it would
        be told, tool calls and results included), or, before it opens, what it resumes."""
        if self._session is not None:
            return list(self._session.history())
        return list(self._resumed_history)

    def saved_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            # The protocol this client speaks: a new owner goes on speaking it.
            "stage": self.stage,
            "dialect": self.dialect.name,
            "codec": dict(self._batcher.saved_state()),
            "history": [{"role": m.role, "text": m.text} for m in self.history()],
        }
        if not self._started:
            # Nothing started yet: the new owner waits for the client's start (or first frame)
            # as this task would have, instead of going on with default options.
            return state
        start = self._start_options or ClientStart()
        state["options"] = {
            "voice": start.voice,
            "instructions": start.instructions,
            "input_sample_rate": start.input_sample_rate,
            "output_sample_rate": start.output_sample_rate,
            "batch_ms": start.batch_ms,
            "client_tools": [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in start.client_tools
            ],
            "tool_choice": start.tool_choice,
            "endpointing": start.endpointing,
        }
        return state

    def _persist(self) -> None:
        """Save the state after a turn, in the background, one save at a time."""
        if self.lease is None:
            return
        if self._saving is not None and not self._saving.done():
            self._save_again = True
            return
        self._saving = self._spawn(self._save_loop(), "save")

    async def _save_loop(self) -> None:
        while True:
            self._save_again = False
            if not await self._save_now():
                log.warning("another task owns this session now", extra=self._log_extra)
                self.end("ownership moved")
                return
            if not self._save_again:
                return

    async def _save_now(self) -> bool:
        return self.lease is None or await self.lease.save(self.saved_state())

    # -- liveness without $disconnect (liveness.py) ---------------------------------------

    async def _watch_liveness(self) -> None:
        liveness = self._liveness
        while self.state not in (State.ENDING, State.ENDED):
            now = time.monotonic()
            expired = liveness.expired(now)
            if expired is not None:
                self.end(expired)
                return
            if liveness.presence_due(now):
                liveness.presence_checked(now)
                if not await self._client_present():
                    liveness.gone_reported(time.monotonic(), LivenessEnd.CLIENT_ABSENT)
                continue
            # A timer, not an ordering: frames that arrive meanwhile move the deadline on.
            await _changed_or_due(self._liveness_changed, liveness.next_wakeup(), now)

    async def _client_present(self) -> bool:
        """GET @connections/{id}: False only on 410 Gone. Any other failure is logged and
        counts as present (an API hiccup must not end a conversation)."""
        try:
            async with asyncio.timeout(PRESENCE_TIMEOUT):
                await self._connections.get(self.connection_id)
        except ConnectionGone:
            return False
        except Exception as exc:
            log.warning("presence check failed: %s", type(exc).__name__, extra=self._log_extra)
        return True

    # -- ending ---------------------------------------------------------------------------

    def _client_gone(self) -> None:
        """A post answered 410. The sender has stopped; the session ends now, or once the
        frames API Gateway had queued stop arriving (liveness.py)."""
        if self._liveness.gone_reported(time.monotonic(), LivenessEnd.CLIENT_GONE):
            self.end(LivenessEnd.CLIENT_GONE)
        else:
            log.info("client gone while its frames still arrive", extra=self._log_extra)
            self._liveness_changed.set()

    def end(self, reason: str, *, hand_over: bool = False) -> None:
        """End the session (idempotent): close the model stream, post what is left, release.

        ``hand_over``: another task continues the conversation: nothing is said to the client,
        the state is saved and the directory record is kept for the next owner.
        """
        if self.state in (State.ENDING, State.ENDED):
            if self._handing_over and not hand_over and reason in _USER_ENDS:
                # The user ended it while it was being handed over: it is over, not moved.
                self._user_ended = reason
            return
        self.state = State.ENDING
        self._handing_over = hand_over
        log.info("session ending: %s", reason, extra={**self._log_extra, "reason": str(reason)})
        self._metrics.count("SessionsEnded")
        self._metrics.count(END_METRICS.get(reason, "EndedOther"))
        asyncio.get_running_loop().create_task(
            self._finish(reason, hand_over=hand_over), name="bridge-end"
        )

    async def _finish(self, reason: str, *, hand_over: bool = False) -> None:
        try:
            await self._wind_down(reason, hand_over=hand_over)
        except Exception:
            # A fault while closing must not leave the session holding its slot forever.
            log.exception("the session did not end cleanly", extra=self._log_extra)
        finally:
            self.state = State.ENDED
            self._ended.set()
            self._on_ended(self)

    async def _wind_down(self, reason: str, *, hand_over: bool) -> None:
        quiet = hand_over or (self.lease is not None and self.lease.lost)
        self._refusals.flush(time.monotonic())
        self._gaps.flush(time.monotonic())
        for handle in (self._timer, self._sequence_timer):
            if handle is not None:
                handle.cancel()
        current = asyncio.current_task()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.close(), CLOSE_TIMEOUT * 2)
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hand_over and self._user_ended is not None:
            # Ended by the user while the model stream closed: it ends here, for good.
            reason, hand_over, self._handing_over = self._user_ended, False, False
            quiet = self.lease is not None and self.lease.lost
        if self.lease is not None and hand_over:
            await self._save_now()
            await self.lease.release(forget=False)
        client_left = reason == "client disconnected"
        if not self.sender.gone and not quiet:
            self._release_before_resumed()
            now = time.monotonic()
            self._post(self._batcher.flush(now))
            if not client_left:
                self._told_ended = True
                self._post(
                    self._batcher.session(
                        "ended",
                        self.connection_id,
                        self._engine.config.model,
                        self._voice,
                        now,
                        reason=reason,
                    )
                )
        await self.sender.close(within=0 if client_left else CLOSE_TIMEOUT)
        if not quiet and not (self.lease is not None and self.lease.lost):
            # Over for good: a tombstone, so that no task starts it again for frames in flight,
            # then hang up (docs/protocol.md: the bridge closes the connection after ended).
            # Unless another task took the conversation over meanwhile (this one stalled): it
            # is not over, and the connection is that task's.
            if self.lease is not None and not await self.lease.end():
                return
            self.conversation_over = True
            self.connection_closed = (
                client_left
                or self.sender.gone
                or await self._connections.hang_up(self.connection_id, CLOSE_TIMEOUT)
            )

    async def wait_ended(self, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._ended.wait()
        except TimeoutError:
            return False
        return True

    def draining(self, reason: str) -> None:
        """Tell the client this task is going away (it should reconnect when convenient)."""
        if self.state in (State.WAITING, State.OPENING, State.OPEN):
            self._post_soon(
                lambda at: self._batcher.session(
                    "draining",
                    self.connection_id,
                    self._engine.config.model,
                    self._voice,
                    at,
                    reason=reason,
                ),
                keep=True,
            )

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro,  # type: ignore[arg-type]
            name=f"{name}-{self.connection_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "session task %s failed", task.get_name(), exc_info=exc, extra=self._log_extra
            )
            self._post(
                self._batcher.error(
                    ErrorCode.INTERNAL,
                    "the bridge failed; the conversation is ending",
                    True,
                    None,
                    time.monotonic(),
                )
            )
            self.end("internal error")


# Provider error codes (novakit.s2s.nova.faults) -> what a client is told. Fixed texts: what
# Bedrock said, which may quote input, goes to the log only.
_CLIENT_ERROR_TEXTS: dict[str, str] = {
    "throttled": "the model service is busy; try again shortly",
    "quota_exceeded": "the model service is busy; try again shortly",
    "access_denied": "the bridge is not allowed to use the model",
    "bad_credentials": "the bridge is not allowed to use the model",
    "expired_credentials": "the bridge is not allowed to use the model",
    "model_not_found": "the model is not available",
    "validation": "the model refused a request",
    "config": "the session's settings are not valid for the model",
}


def client_error_text(code: str) -> str:
    """The fixed text an error frame carries for a provider error ``code`` (the code, one of
    the provider's own identifiers, is named in it)."""
    text = _CLIENT_ERROR_TEXTS.get(code, "the connection to the model failed")
    safe = code if code.replace("_", "").isalnum() and len(code) <= 32 else "other"
    return f"{text} ({safe})"


async def _changed_or_due(changed: asyncio.Event, wakeup: float | None, now: float) -> None:
    """Wait until ``changed`` is set, or the monotonic time ``wakeup`` (None: no deadline)."""
    changed.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(None if wakeup is None else max(0.0, wakeup - now)):
            await changed.wait()


def _model_choices(
    own: Sequence[s2s.ToolDefinition],
    start: ClientStart,
    *,
    builtin: Sequence[s2s.ToolDefinition] = (),
) -> dict[str, Any]:
    """``Engine.start`` options a client's start may add: its own tools (beside the
    deployment's and the bridge's built-in ones), which tool the model must use, Nova's
    endpointing sensitivity."""
    choices: dict[str, Any] = {}
    if start.client_tools or builtin:
        choices["tools"] = [*own, *builtin, *start.client_tools]
    if start.tool_choice == "any":
        choices["tool_choice"] = "any"
    elif start.tool_choice not in (None, "auto"):
        choices["tool_choice"] = s2s.ToolChoice.tool(str(start.tool_choice))
    if start.endpointing is not None:
        choices["extra"] = {"endpointing_sensitivity": start.endpointing}
    return choices


def _resumed(state: Mapping[str, Any]) -> tuple[list[s2s.Message], ClientStart]:
    """The conversation and options a previous owner saved."""
    return _messages(state.get("history", [])), _start_from(state.get("options", {}))


def _saved_codec(lease: SessionLease | None, resumed: bool) -> Mapping[str, Any] | None:
    """What the previous owner's codec saved (the client protocol's own state), if any."""
    state = lease.state.get("codec") if lease is not None and resumed else None
    return state if isinstance(state, Mapping) else None


def _messages(items: Iterable[Any]) -> list[s2s.Message]:
    kept = []
    for item in items:
        if isinstance(item, Mapping) and item.get("role") in ("user", "assistant"):
            kept.append(s2s.Message(str(item["role"]), str(item.get("text", ""))))
    return kept


def _start_from(options: Mapping[str, Any]) -> ClientStart:
    def number(name: str) -> int | None:
        value = options.get(name)
        return value if isinstance(value, int) else None

    def text(name: str) -> str | None:
        value = options.get(name)
        return value if isinstance(value, str) else None

    return ClientStart(
        voice=text("voice"),
        instructions=text("instructions"),
        input_sample_rate=number("input_sample_rate"),
        output_sample_rate=number("output_sample_rate"),
        batch_ms=number("batch_ms"),
        client_tools=_tools(options.get("client_tools")),
        tool_choice=text("tool_choice"),
        endpointing=text("endpointing"),
    )


def _tools(items: object) -> tuple[s2s.ToolDefinition, ...]:
    """Client tools as a previous owner saved them (any that no longer validate are left out)."""
    tools = []
    for item in items if isinstance(items, list) else []:
        with contextlib.suppress(s2s.ConfigError, KeyError, TypeError):
            tools.append(
                s2s.ToolDefinition(item["name"], item["description"], item["input_schema"])
            )
    return tuple(tools)
