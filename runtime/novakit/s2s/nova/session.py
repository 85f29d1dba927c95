"""The asyncio session: one conversation over a succession of Bedrock streams ("legs").

Concurrency model: each leg has one receive task, which hands the model's events to the
session synchronously (``_on_leg_events``), and one write lock, so that a tool result's three
events are never interleaved with audio and nothing is written to a leg that another task is
starting or closing. Locks are per leg so that a send stuck on a dying stream never holds up
its successor. Where the session stands between legs (live, preparing or switching to a rollover's
next leg, recovering, settling, dormant, closing) is one ``Phase`` that moves only along the rows
of phase.py's table. The decisions (when to switch, what a failure cut, what to replay, how long
to retry) live in sans-I/O pieces: ``TurnTracker``, ``AudioRing``, ``ConversationLog`` and
``RecoveryPolicy`` (continuity.py, history.py); this module carries them out.

Long conversations (docs/s2s.md, "Long conversations"):

* **Rollover.** Once the live leg is ``rollover_after`` seconds old, the next leg is opened in
  the background (fresh credentials; setup only). At the first quiet point (an answer played
  out, a barge-in, or no answer owed) the session switches: the old leg is retired (from then
  on only its USAGE events count) and closed in Bedrock's order in the background; the new one
  is sent the history and the audio content, then the user's audio since the last transcript,
  which the old leg heard but had not turned into words. Nothing is heard twice (the old leg's
  answers are complete or cut when it is retired) and nothing is lost (what it had not
  answered is replayed).
* **Recovery.** When the live leg fails with a retryable error, a fresh leg is opened with the
  history (backoff with full jitter; bounded attempts and time). Meanwhile ``send_audio`` keeps
  (bounded) what it is given; it is replayed. An answer being spoken is ended with
  ``INTERRUPTED`` (reason ``recovery``); an answer owed is asked for again by sending the
  user's words as text (Nova 2), so it is given in full. Then one ``RECONNECTED`` event. An
  attempt is all or nothing: the new leg's events are held until it is in place. A final error,
  or running out of attempts, ends the session with one fatal ``ERROR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Config, Message, ToolChoice, ToolResult
from ..errors import ProviderError, SessionClosedError, UnsupportedError
from ..events import (
    AudioOutput,
    Event,
    Interrupted,
    TextOutput,
    ToolCall,
    ToolCallRequest,
    Transcript,
    TurnEnd,
    Usage,
    UsageUpdate,
)
from ..session import EventQueue, Session
from .continuity import (
    AudioRing,
    CallerAudio,
    RecoveryPolicy,
    StallWatch,
    TurnTracker,
    caller_silent,
    keepalive_wait,
)
from .credentials import CredentialSource
from .faults import to_provider_error
from .history import ConversationLog
from .leg import Leg
from .models import NovaModel
from .options import NovaOptions, audio_event_bytes
from .phase import Phase, Step, advance
from .protocol import StreamSettings, tool_result_json
from .telemetry import SessionStats, StatsRecorder

log = logging.getLogger(__name__)

_PREOPEN_RETRY_MAX = 30.0  # seconds between attempts to pre-open a rollover leg, at most
# A replacement leg counts as working (RECONNECTED is sent) once Bedrock has sent it something
# or it has stayed up this long: one that is refused at once continues the outage instead.
_SETTLE_SECONDS = 1.0


@dataclass(slots=True)
class _Outage:
    """A failure being recovered from."""

    reason: str  # the error code of the failure that began it
    error: ProviderError  # the latest failure
    started: float  # the first failure (attempts and the time budget count from here)
    failed_at: float  # the latest failure
    attempts: int = 0
    downtime: float = 0.0  # from the latest failure to a new leg in place


@dataclass(slots=True)
class _Rollover:
    triggered_at: float
    at: str = "quiet"  # the kind of quiet point it switched at


@dataclass(slots=True)
class _Call:
    call: ToolCall
    leg: Leg
    answered: bool = False


class NovaSession(Session):
    """A conversation with Nova Sonic that outlives any single Bedrock stream."""

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
        self._model = model
        self._credentials = credentials
        self._settings = StreamSettings(
            model=model,
            voice=config.voice,
            instructions=config.instructions,
            tools=config.tools,
            tool_choice=config.tool_choice if isinstance(config.tool_choice, ToolChoice) else None,
            speech_instructions=options.speech_instructions,
            output_sample_rate=config.output_sample_rate,
            input_sample_rate=config.input_sample_rate,
            max_tokens=options.max_tokens,
            top_p=options.top_p,
            temperature=options.temperature,
            endpointing_sensitivity=options.endpointing_sensitivity,
        )
        self._log = ConversationLog(history)
        self._bytes_per_second = 2 * config.input_sample_rate  # PCM16 mono
        self._audio_step = audio_event_bytes(options, config.input_sample_rate)
        self._ring = AudioRing(
            round(options.replay_seconds * self._bytes_per_second), self._bytes_per_second
        )
        self._turns = TurnTracker()
        self._recovery = RecoveryPolicy(
            attempts=options.recovery_attempts, budget=options.recovery_budget
        )
        self._stall = StallWatch(options.stall_timeout)
        self._stall_timer: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        self._stats = StatsRecorder(options.on_telemetry)
        self._events = EventQueue()
        self._phase = Phase.NEW
        self._failure: ProviderError | None = None
        self._closed = asyncio.Event()
        self._odd_byte = b""
        self._heard_upto = 0  # ring offset up to which some stream has been sent the audio
        self._last_audio = 0.0  # when the caller last sent audio (for the keep-alive)
        self._caller_audio = CallerAudio(2 * self.config.input_sample_rate)
        self._last_input = 0.0  # when the caller last sent anything (keepalive_limit)
        self._input_arrived = asyncio.Event()  # wakes a keep-alive that has stopped
        # In the DORMANT phase, the failure of the last stream (the caller was silent): the next
        # input opens one (with the history) instead of a recovery loop now.
        self._dormant: ProviderError | None = None
        self._legs_opened = 0
        self._leg: Leg | None = None  # the leg carrying the conversation
        self._next: Leg | None = None  # a rollover's next leg, set up and waiting
        self._calls: dict[str, _Call] = {}
        self._usage: dict[int, Usage] = {}  # last running totals of each leg
        self._rollover: _Rollover | None = None  # PREPARING to SWITCHING: for its figures
        self._boundary = "quiet"  # the last quiet point's kind
        self._preopen_failures = 0
        self._preopen_not_before = 0.0
        self._outage: _Outage | None = None  # RECOVERING: the failure being recovered from
        self._last_outage: _Outage | None = None
        self._held: list[Event] = []  # a recovery attempt's events, delivered if it succeeds
        # SETTLING: the replacement leg, its outage and the timer that settles it.
        self._unsettled: tuple[Leg, _Outage, asyncio.TimerHandle] | None = None
        # Texts for the model that no leg could take yet (an outage): (text, the user's words?).
        # Typed input, and results of tool calls whose leg is gone.
        self._queued_texts: list[tuple[str, bool]] = []
        self._last_output_audio: float | None = None
        self._gap_from: float | None = None  # set after a switch until the new leg's first audio
        self._keepalive: asyncio.Task[None] | None = None
        self._preopening: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._switching: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ---- public --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._phase is Phase.CLOSED

    @property
    def phase(self) -> Phase:
        """Where the session stands between its streams (phase.py)."""
        return self._phase

    def _move(self, step: Step) -> None:
        before, self._phase = self._phase, advance(self._phase, step)
        log.debug("phase %s -> %s (%s)", before.value, self._phase.value, step.value)

    @property
    def failure(self) -> ProviderError | None:
        """The error that ended the session, if one did."""
        return self._failure

    @property
    def pending_tool_calls(self) -> frozenset[str]:
        return frozenset(cid for cid, c in self._calls.items() if not c.answered)

    @property
    def stats(self) -> SessionStats:
        """Rollovers, recoveries and streams so far (see ``telemetry.py``)."""
        return self._stats.snapshot()

    async def open(self) -> None:
        if self._phase is not Phase.NEW:
            raise SessionClosedError("a session can be opened once")
        self._move(Step.OPEN)
        try:
            leg = await self._open_leg("initial")
            self._leg = leg
            async with leg.lock:
                await self._start_leg(leg, self._log.messages())
        except ProviderError:
            if self._phase.open:
                self._move(Step.FAILED)
            await self._shutdown()
            raise
        self._last_audio = self._last_input = asyncio.get_running_loop().time()
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
        self._last_audio = asyncio.get_running_loop().time()
        self._caller_input()
        self._caller_audio.push(data)
        self._take_audio(data)
        await self._flush_audio()

    async def send_text(self, text: str) -> None:
        self._check_open()
        if not self._model.interactive_text:
            raise UnsupportedError(
                f"{self._model.model_id} does not accept typed text during a voice"
                " session; use amazon.nova-2-sonic-v1:0"
            )
        if not text.strip():
            raise ValueError("text is empty")
        self._caller_input()
        self._turns.user_input()
        if await self._send_on_live(lambda leg: leg.protocol.text_events(text)):
            # Logged once sent, so that a leg started meanwhile does not also get it as history.
            self._log.user(text)
            self._expect_answer()
        else:
            self._queued_texts.append((text, True))  # the next leg is told

    async def send_tool_result(self, result: ToolResult) -> None:
        self._check_open()
        entry = self._calls.get(result.call_id)
        if entry is None or entry.answered:
            known = ", ".join(sorted(self.pending_tool_calls)) or "none"
            raise ValueError(
                f"no tool call {result.call_id!r} is waiting for a result (waiting: {known})"
            )
        entry.answered = True
        self._caller_input()
        sent = await self._send_on_live(
            lambda leg: leg.protocol.tool_result_events(result), only_on=entry.leg
        )
        # Still outstanding while being sent: no rollover switches away from its leg meanwhile.
        self._log.tool_answered(result)
        self._turns.tool_answered(result.call_id)
        if sent:
            self._expect_answer()
        else:
            # The leg that asked is gone; no other leg knows the call id.
            await self._tell_orphan_result(entry.call, result)

    async def interrupt(self) -> None:
        self._check_open()
        leg = self._leg
        if leg is not None and leg.started:
            leg.protocol.interrupt()
        dropped = self._events.drop_audio()
        log.debug("client interrupt dropped %d bytes of queued audio", dropped)
        self._turns.interrupted()
        self._stall.settle()
        self._log.turn_over()
        self._boundary = "interrupted"
        self._events.put(Event.interrupted("client"))

    def recv(self) -> AsyncIterator[Event]:
        return aiter(self._events)

    def history(self) -> list[Message]:
        return self._log.messages()

    def keep_heard(self, fraction: float) -> None:
        self._log.keep_heard(fraction)

    async def close(self) -> None:
        if self._phase is Phase.NEW:
            self._move(Step.CLOSE)
            self._events.close()
            self._closed.set()
            return
        if not self._phase.open:
            await self._closed.wait()
            return
        self._move(Step.CLOSE)  # no send starts from now on
        leg = self._leg
        if leg is not None:
            async with leg.lock:  # a send in flight finishes first
                await leg.finish_input()
        # Only now stop the background work: cancelling a task in the middle of a send could
        # break that stream's signature chain before its closing events.
        await self._cancel_tasks()
        if leg is not None:
            # Let Bedrock end its side so that its last events reach the caller.
            await leg.close(self._options.close_timeout)
        await self._shutdown()

    # ---- sending -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._phase.open:
            reason = f" ({self._failure})" if self._failure else ""
            raise SessionClosedError(f"the session is {self._phase.value}{reason}")

    def _take_audio(self, data: bytes) -> None:
        start = self._ring.start
        self._ring.append(data)
        self._turns.input_audio(len(data) / self._bytes_per_second)
        lost = self._ring.start - max(start, self._heard_upto)  # pushed out, never sent
        if lost > 0:
            self._stats.audio_dropped(lost / self._bytes_per_second)

    async def _flush_audio(self) -> None:
        """Send the live leg the audio it has not had yet (nothing during an outage: it is
        kept for the next leg)."""
        while (leg := self._usable_leg()) is not None:
            async with leg.lock:
                if leg is not self._usable_leg():
                    continue  # switched or failed while waiting: try the live one
                try:
                    if leg.started:
                        await self._send_ring(leg)
                    else:
                        await self._complete_switch(leg)
                except ProviderError as error:
                    self._leg_failed(leg, error)
                except asyncio.CancelledError:
                    self._send_cancelled(leg)
                    raise
            break
        self._maybe_roll()

    async def _send_on_live(
        self, build: Callable[[Leg], list[bytes]], *, only_on: Leg | None = None
    ) -> bool:
        """Send what ``build`` makes for the live leg; False if there is none fit to take it
        (an outage, a failed leg, or not ``only_on``). ``build`` may raise ``ValueError``."""
        while True:
            self._check_open()
            leg = self._usable_leg()
            if leg is None or (only_on is not None and leg is not only_on):
                return False
            async with leg.lock:
                self._check_open()
                if leg is not self._usable_leg():
                    continue  # switched or failed while waiting
                try:
                    if not leg.started:
                        await self._complete_switch(leg)
                    await leg.send_all(build(leg))
                except ProviderError as error:
                    self._leg_failed(leg, error)
                    return False
                except asyncio.CancelledError:
                    self._send_cancelled(leg)
                    raise
                return True

    def _send_cancelled(self, leg: Leg) -> None:
        """The caller cancelled a send midway: that stream can take nothing more (its event
        signatures are chained), so it is replaced like a failed one."""
        if leg.broken:
            self._leg_failed(
                leg, ProviderError("connection", "a send was cancelled midway", retryable=True)
            )

    def _usable_leg(self) -> Leg | None:
        leg = self._leg
        if not self._phase.carrying or leg is None or leg.failure is not None:
            return None
        return leg

    async def _send_ring(self, leg: Leg) -> None:
        data = self._ring.read(leg.audio_sent_upto)
        leg.audio_sent_upto = self._heard_upto = self._ring.end
        if data:
            step = self._audio_step  # small real-time frames, whatever the caller passed
            await leg.send_all(
                [leg.protocol.audio_event(data[i : i + step]) for i in range(0, len(data), step)]
            )

    async def _start_leg(
        self, leg: Leg, history: Sequence[Message], texts: Sequence[str] = ()
    ) -> float:
        """Make ``leg`` carry the conversation (its lock held): history, the audio content,
        typed texts, then the audio it has not heard. Returns how long that took."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        payloads = leg.protocol.start_events(history)
        for text in texts:
            payloads += leg.protocol.text_events(text)
        await leg.send_all(payloads)
        leg.started = True
        await self._send_ring(leg)
        return loop.time() - began

    def _caller_input(self) -> None:
        """The caller sent something: it is there. A session gone dormant opens a stream."""
        self._last_input = asyncio.get_running_loop().time()
        self._caller_audio.latest_input_is_audio = False  # audio sets it again
        self._input_arrived.set()
        if self._phase is Phase.DORMANT:
            self._wake()

    def _go_dormant(self, leg: Leg, error: ProviderError) -> None:
        """The live stream ended while the caller has been silent past ``keepalive_limit``
        (Bedrock's idle cut, usually): no stream replaces it until the caller speaks or types
        again. A caller that left without a word must not keep streams opening, and one that
        comes back continues with the history (``_wake``)."""
        log.info(
            "stream %d ended (%s) while the caller is silent: no new stream until it speaks",
            leg.number,
            error.code,
        )
        self._dormant = error
        self._leg = None
        self._rollover = None
        self._move(Step.WENT_QUIET)
        self._cut_turn()
        self._stall.settle()
        waiting, self._next = self._next, None
        if waiting is not None:
            self._spawn(waiting.close(self._options.close_timeout))
        self._stats.went_dormant(error.code)

    def _wake(self) -> None:
        """Input for a dormant session: recover now, as from a failure that just happened."""
        error, self._dormant = self._dormant, None
        if self._phase is not Phase.DORMANT or error is None:
            return
        log.info("the caller is back: opening a new stream with the history")
        now = asyncio.get_running_loop().time()
        outage = _Outage(reason=error.code, error=error, started=now, failed_at=now)
        self._outage = outage
        self._move(Step.WOKE)
        self._last_outage = None  # not a continuation of an earlier outage
        self._recovering = asyncio.get_running_loop().create_task(
            self._recover(outage), name="nova-recover"
        )

    def _expect_answer(self) -> None:
        """An answer is owed from now: watch the live stream for a stall."""
        self._stall.expect(asyncio.get_running_loop().time())
        if self._options.stall_timeout <= 0:
            return
        if self._stall_timer is None and self._phase.open:
            self._arm_stall_timer(self._options.stall_timeout)

    def _caller_gone_quiet(self, now: float) -> bool:
        """The caller has sent nothing for ``keepalive_limit`` and no answer is owed to it: a
        model still answering (at a slow pace, or on a busy machine) keeps its stream alive."""
        return self._stall.owed_since is None and caller_silent(
            now, self._last_input, self._options.keepalive_limit
        )

    def _arm_stall_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._stall_timer = loop.call_at(loop.time() + max(0.0, delay), self._check_stall)

    def _check_stall(self) -> None:
        """The stall timer: re-armed while output keeps arriving, acts once it has not."""
        self._stall_timer = None
        if not self._phase.open or self._stall.owed_since is None:
            return
        leg = self._usable_leg()
        if leg is None or not leg.started:
            # An outage (its recovery decides what is owed next) or a switch under way.
            self._arm_stall_timer(self._options.stall_timeout)
            return
        deadline = self._stall.deadline(leg.last_received)
        if deadline is None:
            return
        now = asyncio.get_running_loop().time()
        if now < deadline:
            self._arm_stall_timer(deadline - now)
            return
        self._stall.settle()
        timeout = self._options.stall_timeout
        log.warning("stream %d sent nothing for %g s while an answer was owed", leg.number, timeout)
        self._leg_failed(
            leg,
            ProviderError(
                "stalled",
                f"Bedrock sent nothing for {timeout:g} s while an answer was owed",
                retryable=True,
            ),
        )

    async def _tell_orphan_result(self, call: ToolCall, result: ToolResult) -> None:
        """A result for a call made on a leg that is gone: it is in the history; a model that
        takes text is also told now, so that it can give the answer that was waiting on it."""
        if not self._model.interactive_text:
            return
        text = (
            f"(The {call.name} tool, called before the connection to the model was renewed, "
            f"returned: {tool_result_json(result)})"
        )
        sent = await self._send_on_live(lambda leg: leg.protocol.text_events(text))
        if sent:
            self._turns.user_input()
            self._expect_answer()
        else:
            self._queued_texts.append((text, False))

    async def _keep_alive(self) -> None:
        """Stream silence in real time while the caller sends no audio.

        Bedrock cuts a stream that carries no audio for a few minutes, and it finds the end of
        the user's turn in the audio itself: a caller that only types, or waits on a tool, must
        not leave the stream silent. It follows the live leg; during an outage it pauses."""
        loop = asyncio.get_running_loop()
        step = self._options.keepalive_step
        silence = bytes(2 * round(self.config.input_sample_rate * step))
        due: float | None = None  # when the next piece of silence is due (real-time pace)
        while self._phase.open:
            now = loop.time()
            if self._caller_gone_quiet(now):
                # The caller has said nothing for long (it may be gone without a word): stop
                # paying for silence. Bedrock then cuts the stream for idleness, and it is
                # not replaced until the caller sends something (see _go_dormant).
                log.info("no input for %.0f s: the keep-alive stops", now - self._last_input)
                due = None
                self._input_arrived.clear()
                await self._input_arrived.wait()
                continue
            idle_for = now - self._last_audio
            if idle_for < self._options.keepalive_after:
                # The caller's audio is still flowing: whether it ends in speech does not
                # matter yet (and reading its tail every wake-up would cost CPU per session).
                due = None
                await asyncio.sleep(self._options.keepalive_after - idle_for)
                continue
            wait = keepalive_wait(
                self._options.keepalive_after,
                self._options.keepalive_after_speech,
                self._caller_audio.tail,
                2 * self.config.input_sample_rate,
                after_stall=self._options.keepalive_after_stall,
                open_microphone=self._caller_audio.streaming,
            )
            if idle_for < wait:
                due = None
                # Look again at least every keepalive_after: more audio may change the wait.
                await asyncio.sleep(min(wait - idle_for, self._options.keepalive_after))
                continue
            if due is None and self._caller_audio.heard:
                log.info(
                    "no audio from the caller for %.1f s (open microphone: %s):"
                    " the keep-alive streams silence",
                    idle_for,
                    "yes" if self._caller_audio.microphone.open else "no",
                )
            due = now if due is None else due
            # Behind schedule (a busy loop): catch up, as a microphone's buffer would, by up
            # to a second.
            pieces = min(1 + int((now - due) / step), max(1, round(1.0 / step)))
            due += pieces * step
            if self._phase is not Phase.RECOVERING:
                self._take_audio(silence * pieces)
                await self._flush_audio()
            else:
                due = None
            await asyncio.sleep(max(0.0, due - loop.time()) if due is not None else step)

    # ---- receiving -----------------------------------------------------------------------

    def _on_leg_events(self, leg: Leg, events: list[Event]) -> None:
        if leg is not self._leg:
            # A retired leg was switched away from at a quiet point: nothing of a turn in
            # progress is left on it, and what it hears after is replayed to its successor.
            # Its token counts still count. A leg set up in advance says nothing.
            for event in events:
                if isinstance(event, UsageUpdate):
                    self._events.put(self._session_usage(leg, event.usage))
            return
        if self._phase is Phase.RECOVERING:
            self._held.extend(events)  # a recovery attempt: all or nothing
            return
        self._deliver(leg, events)
        self._maybe_roll()

    def _deliver(self, leg: Leg, events: list[Event]) -> None:
        if self._phase is Phase.SETTLING:
            self._settled(leg)  # Bedrock answers on it: the recovery is done
        now = asyncio.get_running_loop().time()
        for received in events:
            event: Event = received
            match received:
                case Transcript(text=text):
                    # What this leg was sent is now words: a successor need not hear it.
                    self._ring.forget_before(leg.audio_sent_upto)
                    self._log.user(text)
                    self._turns.user_input()
                    self._expect_answer()
                case TextOutput(text=text, final=True):
                    self._log.assistant(text)
                case AudioOutput(audio=pcm, sample_rate=rate):
                    self._turns.assistant_audio(len(pcm) / 2 / rate, now)
                    if self._gap_from is not None:
                        self._stats.rollover_audio_gap(now - self._gap_from)
                        self._gap_from = None
                    self._last_output_audio = now
                case ToolCallRequest(tool_call=call):
                    self._calls[call.call_id] = _Call(call, leg)
                    self._log.tool_called(call)
                    self._turns.tool_called(call.call_id)
                    self._stall.settle()  # the model waits on the caller now
                case TurnEnd():
                    self._turns.turn_ended()
                    self._stall.settle()
                    self._log.turn_over()
                    self._boundary = "turn_end"
                case Interrupted():
                    self._events.drop_audio()
                    self._turns.interrupted()
                    self._stall.settle()
                    self._log.turn_over()
                    self._boundary = "interrupted"
                case UsageUpdate(usage=usage):
                    event = self._session_usage(leg, usage)
                case _:
                    pass
            self._events.put(event)

    def _session_usage(self, leg: Leg, usage: Usage) -> Event:
        """Usage events carry running totals for the session, over all its legs."""
        self._usage[leg.number] = usage
        legs = self._usage.values()
        return Event.usage_event(
            Usage(
                input_speech_tokens=sum(u.input_speech_tokens for u in legs),
                input_text_tokens=sum(u.input_text_tokens for u in legs),
                output_speech_tokens=sum(u.output_speech_tokens for u in legs),
                output_text_tokens=sum(u.output_text_tokens for u in legs),
                total_tokens=sum(u.total_tokens for u in legs),
            )
        )

    def _on_leg_end(self, leg: Leg, error: ProviderError | None) -> None:
        """A leg's receive task ended: Bedrock ended the stream (``error`` None) or it failed."""
        if leg is self._next:
            self._next = None
            if self._phase is Phase.READY:
                self._move(Step.NEXT_LOST)
            self._preopen_failed(error)
            self._spawn(leg.release())
            return
        error = error or ProviderError("stream_ended", "Bedrock ended the stream", retryable=True)
        if leg is self._leg and self._phase.open:
            self._leg_failed(leg, error)
        elif not leg.retired:
            leg.fail(error)  # e.g. a recovery attempt's leg, not live yet

    # ---- rollover ------------------------------------------------------------------------

    def _maybe_roll(self) -> None:
        """Past ``rollover_after``: set up the next leg, then switch at a quiet point."""
        after = self._options.rollover_after
        leg = self._leg
        if after <= 0 or not self._phase.may_roll:
            return
        if leg is None or not leg.started or leg.failure is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if leg.age(now) < after:
            return
        if self._caller_gone_quiet(now):
            return  # no new stream for a caller who says nothing (see _go_dormant)
        if self._phase is Phase.LIVE:
            self._rollover = _Rollover(triggered_at=now)
            self._move(Step.ROLLOVER_DUE)
            if self._next is not None:  # opened earlier, still fit for use
                self._move(Step.NEXT_READY)
        if self._phase is Phase.PREPARING:
            if self._preopening is None and now >= self._preopen_not_before:
                self._preopening = loop.create_task(self._preopen(), name="nova-preopen")
            return
        if self._turns.quiet(now):
            self._switch()

    async def _preopen(self) -> None:
        try:
            leg = await self._open_leg("rollover")
        except ProviderError as error:
            self._preopen_failed(error)
            return
        finally:
            self._preopening = None
        if not self._phase.open or leg.failure is not None or leg.ended:
            await leg.close(self._options.close_timeout)
            return
        self._preopen_failures = 0
        self._next = leg  # during a recovery, its next attempt may take it
        if self._phase is Phase.PREPARING:
            self._move(Step.NEXT_READY)
        self._maybe_roll()

    def _preopen_failed(self, error: ProviderError | None) -> None:
        """Opening the next leg failed, or it ended before use: try again later, backing off."""
        self._preopen_failures += 1
        wait = min(_PREOPEN_RETRY_MAX, 2.0**self._preopen_failures)
        self._preopen_not_before = asyncio.get_running_loop().time() + wait
        log.warning("the stream set up for a rollover failed (%s); again in %.0f s", error, wait)

    def _switch(self) -> None:
        """Make the waiting leg the live one. Synchronous, so that no event of the old leg is
        delivered after the decision; the new leg is started by whoever next holds its lock
        (the switch task, or a send that gets there first)."""
        old, new = self._leg, self._next
        assert old is not None and new is not None and self._rollover is not None
        self._next = None
        self._rollover.at = self._boundary
        self._boundary = "quiet"
        new.audio_sent_upto = self._ring.start  # what no transcript has accounted for
        self._leg = new
        self._move(Step.SWITCHED)
        self._retire(old)
        log.info("rolling over from stream %d to %d", old.number, new.number)
        self._switching = asyncio.get_running_loop().create_task(
            self._finish_switch(new), name="nova-switch"
        )

    async def _finish_switch(self, new: Leg) -> None:
        async with new.lock:
            if self._usable_leg() is new and not new.started:
                try:
                    await self._complete_switch(new)
                except ProviderError as error:
                    self._leg_failed(new, error)
        self._switching = None

    async def _complete_switch(self, new: Leg) -> None:
        """Start a leg switched to by a rollover (its lock held)."""
        pause = await self._start_leg(new, self._log.messages())
        if self._phase is Phase.SWITCHING and self._leg is new:
            self._move(Step.STARTED)
        rollover = self._rollover
        if rollover is not None:
            now = asyncio.get_running_loop().time()
            self._stats.rolled_over(now - rollover.triggered_at, pause, rollover.at)
            self._rollover = None
        self._gap_from = self._last_output_audio

    def _retire(self, leg: Leg) -> None:
        leg.retired = True

        async def close_retired() -> None:
            async with leg.lock:  # a send to it may be in flight
                await leg.finish_input()
            await leg.close(self._options.close_timeout)

        self._spawn(close_retired())

    # ---- recovery ------------------------------------------------------------------------

    def _leg_failed(self, leg: Leg, error: ProviderError) -> None:
        if not leg.fail(error):
            return
        if leg is not self._leg or not self._phase.carrying:
            return  # not the live leg; while RECOVERING, an attempt's (its task sees it)
        log.warning("stream %d failed: %s", leg.number, error)
        self._spawn(leg.release())
        if self._unsettled is not None:  # SETTLING: RECONNECTED was not told, and will not be
            self._unsettled[2].cancel()
            self._unsettled = None
        if not error.retryable or self._recovery.attempts == 0:
            self._fail(error)
            return
        now = asyncio.get_running_loop().time()
        if self._caller_gone_quiet(now):
            self._go_dormant(leg, error)
            return
        previous = self._last_outage
        if previous is not None and self._recovery.continues_outage(
            replacement=leg.purpose == "recovery",
            heard_from=leg.events_received > 0,
            age=leg.age(now),
        ):
            outage = previous
            outage.error = error
            outage.failed_at = now
        else:
            outage = _Outage(reason=error.code, error=error, started=now, failed_at=now)
        self._outage = outage
        self._leg = None
        self._rollover = None
        self._move(Step.LEG_FAILED)
        self._cut_turn()
        self._recovering = asyncio.get_running_loop().create_task(
            self._recover(outage), name="nova-recover"
        )

    def _cut_turn(self) -> None:
        """The live leg is gone mid-conversation: end an answer being spoken."""
        if self._turns.stream_cut():
            self._events.drop_audio()
            self._events.put(Event.interrupted("recovery"))

    async def _recover(self, outage: _Outage) -> None:
        loop = asyncio.get_running_loop()
        while self._phase is Phase.RECOVERING:
            delay = self._recovery.delay(outage.attempts, loop.time() - outage.started, self._rng)
            if delay is None:
                self._give_up(outage)
                return
            leg = self._take_next_leg()
            if leg is None:
                await asyncio.sleep(delay)
            outage.attempts += 1
            # Ask again what the failure left unanswered (not while a tool call is out: its
            # result, when it comes, is what the model needs, and a second call could repeat
            # what the tool did).
            question = None
            if (
                self._model.interactive_text
                and self._turns.owes_answer
                and not self._turns.tools_outstanding
            ):
                question = self._log.rewind_unanswered()
            history = self._log.messages()
            if question:
                self._log.user(question)
            # Queued texts follow; a tool result's summary only if the question is not asked
            # again (then the history's tool line tells the model).
            queued = list(self._queued_texts)
            texts = [question] if question else []
            texts += [text for text, words in queued if words or not question]
            try:
                if leg is None:
                    leg = await self._open_leg("recovery")
                leg.audio_sent_upto = self._ring.start
                self._held.clear()
                self._leg = leg
                async with leg.lock:
                    await self._start_leg(leg, history, texts)
                if leg.failure is not None:
                    raise leg.failure
                if leg.ended:
                    raise ProviderError("stream_ended", "Bedrock ended the stream", retryable=True)
            except ProviderError as error:
                log.warning("reconnect attempt %d failed: %s", outage.attempts, error)
                if leg is not None:
                    leg.fail(error)
                    self._spawn(leg.release())
                self._leg = None
                self._held.clear()
                outage.error = error
                if not error.retryable:
                    self._fail(error)
                    return
                continue
            self._reconnected(leg, outage, told=bool(texts), queued=queued)
            return

    def _take_next_leg(self) -> Leg | None:
        """A leg set up for a rollover serves a recovery attempt (a stream that hit Bedrock's
        limit before the rollover could switch) without waiting, unless it is already due for
        a rollover itself (it has waited that long for a quiet point)."""
        leg, self._next = self._next, None
        if leg is None:
            return None
        age = leg.age(asyncio.get_running_loop().time())
        if leg.failure is not None or leg.ended or age >= self._options.rollover_after:
            self._spawn(leg.close(self._options.close_timeout))
            return None
        leg.purpose = "recovery"
        return leg

    def _reconnected(
        self, leg: Leg, outage: _Outage, *, told: bool, queued: list[tuple[str, bool]]
    ) -> None:
        """``leg`` is in place: audio flows to it again. The recovery is announced once it
        settles (``_SETTLE_SECONDS``), or at once if Bedrock has already sent it something."""
        loop = asyncio.get_running_loop()
        self._outage = None
        self._last_outage = outage
        self._move(Step.REPLACED)
        del self._queued_texts[: len(queued)]
        for text, words in queued:
            if words:
                self._log.user(text)
        if self._queued_texts:  # queued while this attempt was under way
            self._spawn(self._send_queued())
        if told:
            self._turns.user_input()
            self._expect_answer()
        else:
            self._turns.answer_abandoned()
            self._stall.settle()
        outage.downtime = loop.time() - outage.failed_at
        timer = loop.call_later(_SETTLE_SECONDS, self._settled, leg)
        self._unsettled = (leg, outage, timer)
        held, self._held = self._held, []
        if held:
            self._deliver(leg, held)
        self._recovering = None

    async def _send_queued(self) -> None:
        while self._queued_texts and self._phase.carrying:
            text, words = self._queued_texts[0]
            if not await self._send_on_live(_text_builder(text)):
                return  # the next recovery takes them
            self._queued_texts.pop(0)
            if words:
                self._log.user(text)
            self._turns.user_input()
            self._expect_answer()

    def _settled(self, leg: Leg) -> None:
        if self._phase is not Phase.SETTLING or self._unsettled is None:
            return
        if self._unsettled[0] is not leg:
            return
        _, outage, timer = self._unsettled
        self._unsettled = None
        timer.cancel()
        self._move(Step.SETTLED)
        log.info(
            "stream %d replaces the failed one after %d attempt(s), %.2f s (%s)",
            leg.number,
            outage.attempts,
            outage.downtime,
            outage.reason,
        )
        self._stats.recovered(outage.downtime, outage.reason, outage.attempts)
        self._events.put(Event.reconnected(outage.reason, outage.attempts, outage.downtime))

    def _give_up(self, outage: _Outage) -> None:
        self._stats.recovery_failed(outage.attempts, outage.reason)
        error = outage.error
        elapsed = asyncio.get_running_loop().time() - outage.started
        self._fail(
            ProviderError(
                error.code,
                f"{error.message} (no working stream after {outage.attempts} reconnect"
                f" attempt(s) in {elapsed:.1f} s)",
                retryable=error.retryable,
            )
        )

    # ---- legs and lifetime -----------------------------------------------------------------

    async def _open_leg(self, purpose: str) -> Leg:
        loop = asyncio.get_running_loop()
        self._legs_opened += 1
        began = loop.time()
        try:
            leg = await Leg.open(
                number=self._legs_opened,
                purpose=purpose,
                settings=self._settings,
                model_id=self.config.model,
                options=self._options,
                credentials=self._credentials,
                on_events=self._on_leg_events,
                on_end=self._on_leg_end,
                guard=self.send_guard,
            )
        except ProviderError:
            raise
        except Exception as exc:  # e.g. the credential chain failed: classify it
            raise to_provider_error(exc) from exc
        self._stats.stream_opened(loop.time() - began, purpose)
        return leg

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fail(self, error: ProviderError) -> None:
        """Record the first fatal error, tell the caller once, and close in the background."""
        if self._failure is not None or self._phase is Phase.CLOSED:
            return
        self._failure = error
        log.warning("nova session failed: %s", error)
        self._events.put(
            Event.failure(error.code, error.message, fatal=True, retryable=error.retryable)
        )
        if self._phase.open:
            self._move(Step.FAILED)
            self._spawn(self._shutdown())

    async def _cancel_tasks(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._input_arrived.set()  # a keep-alive waiting for input sees the state and ends
        if self._unsettled is not None:
            self._unsettled[2].cancel()
            self._unsettled = None
        current = asyncio.current_task()
        for task in (self._keepalive, self._preopening, self._recovering, self._switching):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _shutdown(self) -> None:
        if self._phase is Phase.CLOSED:
            return
        await self._cancel_tasks()
        legs = [leg for leg in (self._leg, self._next) if leg is not None]
        self._leg = self._next = None
        # A leg set up in advance is healthy: end it in order too. Bounded by close_timeout.
        await asyncio.gather(*(leg.close(self._options.close_timeout) for leg in legs))
        current = asyncio.current_task()
        pending = [t for t in self._background if t is not current and not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._options.close_timeout + 1)
            for task in late:
                task.cancel()
        if not self.closed:  # two shutdowns may overlap (a failing open)
            self._move(Step.SHUT)
        self._events.close()
        self._closed.set()


def _text_builder(text: str) -> Callable[[Leg], list[bytes]]:
    return lambda leg: leg.protocol.text_events(text)
