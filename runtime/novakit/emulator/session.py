"""One bidirectional stream, sans I/O: request-body bytes in, response-body bytes out.

``StreamSession`` chains the pure pieces for a stream that passed request verification:
event-stream decoding, the chunk-signature chain, the chunk envelope, the input grammar, the
conversation engine, fault plans and the stream limits. Wall-clock time is a parameter (``now``),
never read here, so the whole path is testable without sockets or sleeping; the server calls
``tick`` at ``next_wakeup``.

Wire form of one event, both directions: an event-stream message with ``:message-type=event``,
``:event-type=chunk``, ``:content-type=application/json`` and payload ``{"bytes": "<base64 of
{"event": {...}}>"}``. Input messages travel inside the signed envelope (see ``sigv4``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .conversation import ConversationEngine, EngineSettings, OutputEvent, ScriptCursor
from .eventstream import Decoder, EventStreamError, Message, decode_message, encode_message
from .faults import CONTENT_FAULTS, FaultKind, FaultPlan, FaultTracker, idle_cut_message
from .grammar import InputGrammar, ModelInfo, ViolationError, parse_event
from .record import Outcome, RecordedError, RecordedEvent, StreamRecord
from .sigv4 import ChunkSignatureError, ChunkVerifier, RequestAuth

__all__ = [
    "EndAction",
    "SessionLimits",
    "StreamSession",
    "chunk_message",
    "exception_message",
    "unwrap_chunk",
]

_TIMEOUT_MESSAGE = "Model has timed out in processing the request"


class EndAction(StrEnum):
    END_STREAM = "end_stream"  # finish the response normally (after any queued bytes)
    RESET = "reset"  # RST_STREAM
    DROP = "drop"  # abort the whole connection


@dataclass(frozen=True)
class SessionLimits:
    stream_seconds: float = 480.0  # Bedrock's 8 minutes
    idle_seconds: float = 175.0  # cut after this long without input audio
    # Wall seconds per second of the engine's clock: 1 is real time, 0.25 four times faster.
    # 0 is the tests' "as fast as the input allows": the input audio drives the clock while an
    # audio content is open, and the clock jumps to the next output when none is.
    pace: float = 1.0


_AUDIO_EVENTS = frozenset({"audioInput", "audioOutput"})


def chunk_message(event: OutputEvent) -> Message:
    payload = json.dumps({"bytes": base64.b64encode(event.to_json()).decode("ascii")})
    return Message(
        {
            ":message-type": "event",
            ":event-type": "chunk",
            ":content-type": "application/json",
        },
        payload.encode(),
    )


def exception_message(exception_type: str, message: str) -> Message:
    return Message(
        {
            ":message-type": "exception",
            ":exception-type": exception_type,
            ":content-type": "application/json",
        },
        json.dumps({"message": message}).encode(),
    )


def unwrap_chunk(encoded: bytes) -> bytes:
    """The event JSON carried by an encoded input chunk message (a ViolationError if malformed)."""
    try:
        message = decode_message(encoded)
    except EventStreamError as exc:
        raise ViolationError(
            "chunk", f"the signed payload is not an event-stream message ({exc})"
        ) from exc
    if message.headers.get(":message-type") != "event":
        raise ViolationError("chunk", ":message-type must be 'event'")
    event_type = message.headers.get(":event-type")
    if event_type != "chunk":
        raise ViolationError("chunk", f"unknown :event-type {event_type!r} (expected 'chunk')")
    try:
        document = json.loads(message.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViolationError("chunk", f"the payload is not JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("bytes"), str):
        raise ViolationError("chunk", 'the payload must be {"bytes": "<base64>"}')
    try:
        return base64.b64decode(document["bytes"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ViolationError("chunk", f"bytes is not valid base64 ({exc})") from exc


def raw_chunk_message(document: bytes) -> Message:
    """A well-framed chunk carrying ``document`` as its event, whatever it is."""
    payload = json.dumps({"bytes": base64.b64encode(document).decode("ascii")})
    return Message(
        {
            ":message-type": "event",
            ":event-type": "chunk",
            ":content-type": "application/json",
        },
        payload.encode(),
    )


def _corrupt(message: Message) -> bytes:
    """A message whose trailing CRC is wrong: undecodable by any conforming client."""
    encoded = bytearray(encode_message(message.headers, message.payload))
    encoded[-1] ^= 0xFF
    return bytes(encoded)


class StreamSession:
    def __init__(
        self,
        *,
        model: ModelInfo,
        auth: RequestAuth,
        record: StreamRecord,
        now: float,
        cursor: ScriptCursor,
        seed: str,
        engine_settings: EngineSettings | None = None,
        limits: SessionLimits | None = None,
        faults: list[FaultPlan] | None = None,
        record_audio: bool = True,
    ) -> None:
        self.record = record
        self._record_audio = record_audio
        self.limits = limits or SessionLimits()
        self.started_at = now
        self.end_action: EndAction | None = None
        self._decoder = Decoder()
        self._verifier = ChunkVerifier(auth)
        self._grammar = InputGrammar(model)
        self._engine = ConversationEngine(model, seed=seed, turns=cursor, settings=engine_settings)
        self._engine.audio_drives_clock = self.limits.pace <= 0
        self._faults = FaultTracker(faults or [], now)
        self._out = bytearray()
        self._stalled = False  # a stall fault fired: nothing more is sent, nothing ends
        self._last_audio = now
        self._pump(now)  # faults planned for the start fire before any input

    @property
    def engine(self) -> ConversationEngine:
        return self._engine

    @property
    def ended(self) -> bool:
        return self.end_action is not None

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self.ended:
            return
        try:
            frames = self._decoder.feed(data)
        except EventStreamError as exc:
            self._violation(f"chunk: the input is not a valid event stream ({exc})")
            return
        # Bring the clock up to now first: what an event starts is scheduled from the present.
        self._pace(now)
        for frame in frames:
            try:
                payload = self._verifier.verify(frame)
            except ChunkSignatureError as exc:
                self._violation(f"chunk: {exc}")
                return
            if payload is None:
                self._input_finished(now)
                return
            try:
                event = parse_event(unwrap_chunk(payload))
                if self._record_audio or event.name not in _AUDIO_EVENTS:
                    self.record.input_events.append(
                        RecordedEvent(event.name, dict(event.body), now)
                    )
                accepted = self._grammar.accept(event)
            except ViolationError as exc:
                self._violation(exc.message)
                return
            if event.name == "audioInput":
                self._last_audio = now
            elif event.name == "sessionEnd":
                self.record.session_end_received = True
            self._engine.handle(accepted)
            self._pump(now)
            if self.ended:
                return
        self._pace(now)
        self._pump(now)

    def input_ended(self, now: float) -> None:
        """The client ended its side of the HTTP/2 stream."""
        if self._stalled:
            self.record.input_closed = True  # a stalled server does not answer even that
            return
        if not self.ended:
            # Without the final signed frame: not clean, but not an error Bedrock reports either.
            self._finish(Outcome.INPUT_CLOSED, now)

    def abort(self, outcome: Outcome) -> None:
        """The stream is gone (client reset, connection lost, shutdown): record why."""
        if self.record.outcome is None:
            self.record.outcome = outcome
        if self.end_action is None:
            self.end_action = EndAction.RESET

    # -- time -----------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.ended or self._stalled:
            return
        if now - self.started_at >= self.limits.stream_seconds:
            self._send_exception("modelTimeoutException", _TIMEOUT_MESSAGE, Outcome.TIMEOUT)
            return
        if now - self._last_audio >= self.limits.idle_seconds:
            self._send_exception("validationException", idle_cut_message(), Outcome.TIMEOUT)
            return
        self._pace(now)
        self._pump(now)

    def next_wakeup(self) -> float | None:
        """When ``tick`` next has something to do (wall clock), or None once ended (or stalled)."""
        if self.ended or self._stalled:
            return None
        times = [
            self.started_at + self.limits.stream_seconds,
            self._last_audio + self.limits.idle_seconds,
        ]
        deadline = self._faults.next_deadline()
        if deadline is not None:
            times.append(deadline)
        due = self._engine.next_due()
        if due is not None:
            if self.limits.pace > 0:
                times.append(self.started_at + due * self.limits.pace)
            elif not self._engine.audio_open:
                times.append(self.started_at)  # at once
        return min(times)

    def _pace(self, now: float) -> None:
        """Move the engine's clock: from the wall clock, or (pace 0) to what is due."""
        engine = self._engine
        if self.limits.pace > 0:
            # Absolute, not incremental: the clock is the stream's age, scaled, so rounding
            # and late timers never accumulate.
            engine.advance_to((now - self.started_at) / self.limits.pace)
        elif not engine.audio_open:
            while (due := engine.next_due()) is not None:
                engine.advance_to(due)

    # -- output ---------------------------------------------------------------

    def _pump(self, now: float) -> None:
        if self._stalled:
            self._engine.take_output()  # generated, never sent
            return
        for event in self._engine.take_output():
            if event.name == "toolUse":
                self._grammar.expect_tool_result(event.body["toolUseId"])
            if self._record_audio or event.name not in _AUDIO_EVENTS:
                self.record.output_events.append(RecordedEvent(event.name, dict(event.body), now))
            self._out += chunk_message(event).encode()
        plan = self._faults.due(
            now=now,
            turns_done=self._engine.completed_turns,
            user_speaking=self._engine.user_speaking,
            assistant_speaking=self._engine.assistant_speaking,
        )
        if plan is not None:
            self._fire(plan)

    def _fire(self, plan: FaultPlan) -> None:
        self.record.fault = plan.kind
        exception = plan.exception
        if exception is not None:
            self._send_exception(*exception, Outcome.FAULT)
            return
        content = CONTENT_FAULTS.get(plan.kind)
        if content is not None:  # the stream goes on after them
            for document in content:
                self._out += raw_chunk_message(document).encode()
            return
        self.record.error = RecordedError(plan.kind.value, f"injected fault {plan}")
        if plan.kind is FaultKind.STALL:
            self._stalled = True  # what is already out goes; the outcome is how the client ends it
            return
        self.record.outcome = Outcome.FAULT
        if plan.kind is FaultKind.RESET:
            self.end_action = EndAction.RESET
        elif plan.kind is FaultKind.DROP:
            self.end_action = EndAction.DROP
        else:  # INVALID_EVENT
            self._out += _corrupt(chunk_message(OutputEvent("textOutput", {"content": "?"})))
            self.end_action = EndAction.END_STREAM

    def _send_exception(self, exception_type: str, message: str, outcome: Outcome) -> None:
        if self._stalled:
            return
        self._out += exception_message(exception_type, message).encode()
        self.record.error = RecordedError(exception_type, message)
        self.record.outcome = outcome
        self.end_action = EndAction.END_STREAM

    def _violation(self, message: str) -> None:
        self._send_exception(ViolationError.exception_type, message, Outcome.VIOLATION)

    def _input_finished(self, now: float) -> None:
        self.record.input_closed = True
        if self._stalled:
            return
        outcome = Outcome.COMPLETED if self._grammar.session_ended else Outcome.INPUT_CLOSED
        self._finish(outcome, now)

    def _finish(self, outcome: Outcome, now: float) -> None:
        self._pump(now)
        if self.ended:  # a fault fired while flushing
            return
        self.record.outcome = outcome
        self.end_action = EndAction.END_STREAM


def describe(record: StreamRecord) -> dict[str, Any]:
    """A JSON-friendly summary of a record (for logs and the CLI)."""
    return {
        "index": record.index,
        "model": record.model_id,
        "outcome": record.outcome.value if record.outcome else None,
        "error": None
        if record.error is None
        else {"type": record.error.error_type, "message": record.error.message},
        "inputs": len(record.input_events),
        "outputs": len(record.output_events),
    }
