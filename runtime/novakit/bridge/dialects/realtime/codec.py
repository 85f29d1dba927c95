"""The OpenAI Realtime protocol (GA event names) as a bridge codec, one per connection.

In: client events (``session.update``, ``input_audio_buffer.append``, ``conversation.item.create``,
``response.create``, ...) become the session's frames (``ClientStart``, ``ClientAudio``,
``ClientText``, ``ClientToolResult``, ``ClientInterrupt``), or an immediate reply
(``ClientReply``), or a refusal: a :class:`~.config.RealtimeError` that the session sends back
as Realtime's ``error`` event and the conversation goes on.

Out: the session's output becomes Realtime server events. A *response* opens at the assistant's
first output after a user turn (``response.created``, then an assistant message item with one
audio content part), carries ``response.output_audio.delta`` (batched below 32 KB by the v1
batcher's logic) and ``response.output_audio_transcript.delta``, shows tool calls as
``function_call`` items, and closes with ``response.done``: ``completed`` at the turn's end, with
the usage Nova reported for it, or ``cancelled`` on barge-in. Each user turn becomes a user
message item with its transcript.

Every event is ASCII JSON whose first keys are ``type`` then ``event_id`` (``evt_{tag}_{n}``,
``n`` counting the connection's events): the ordered sender classifies queued events by prefix
and orders audio after a barge-in by ``n``.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from novakit import g711
from novakit.s2s.events import ToolCall, Usage

from ...batching import OutboundBatcher
from ...protocol import (
    MAX_FRAME_BYTES,
    MAX_TEXT_CHARS,
    ClearReason,
    ClientAudio,
    ClientFrame,
    ClientInterrupt,
    ClientRefusal,
    ClientReply,
    ClientStart,
    ClientText,
    ClientToolResult,
    ErrorCode,
    FrameRef,
    ProtocolError,
    SessionState,
    ToolStatus,
)
from ..base import FrameKinds
from .config import RealtimeError, SessionConfig, read_session_update

__all__ = ["KINDS", "RealtimeCodec"]

# How long a finished response waits for the usage Nova reports after its turn ends before
# response.done goes without it (Nova's usage event follows the turn's last content).
USAGE_WAIT_SECONDS: Final = 1.0
# Deployment tool calls remembered, to acknowledge a client that answers one anyway.
MAX_SERVER_CALLS: Final = 64
# The largest input_audio_buffer.append chunk that fits API Gateway's frame, in bytes of audio.
_APPEND_ENVELOPE: Final = len('{"type":"input_audio_buffer.append","event_id":"","audio":""}') + 64
MAX_APPEND_AUDIO_BYTES: Final = (MAX_FRAME_BYTES - _APPEND_ENVELOPE) // 4 * 3

_DECODER: Final = json.JSONDecoder()
# UTF-8 JSON, as OpenAI's server and SDKs write it: a non-ASCII character costs 2-4 bytes, not
# the 6 (12 for an emoji) of an ASCII escape. API Gateway counts bytes, so sizes are measured
# in bytes (``_size``). A lone surrogate (valid JSON input, not UTF-8) is written escaped.
_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_ASCII: Final = json.JSONEncoder(separators=(",", ":")).encode
# Fields a closing event repeats from the deltas before it: cut when the event would not fit.
_REPEATED_FIELDS: Final = frozenset({"transcript", "arguments", "output"})
_AUDIO_DELTA: Final = "response.output_audio.delta"
_ORDER: Final = re.compile(r'"event_id":"evt_[0-9a-f]+_(\d+)"')
# (error code of the session core) -> (Realtime error type, code)
_ERROR_KINDS: Final[Mapping[ErrorCode, tuple[str, str]]] = {
    ErrorCode.BAD_JSON: ("invalid_request_error", "invalid_json"),
    ErrorCode.BAD_FRAME: ("invalid_request_error", "invalid_value"),
    ErrorCode.UNKNOWN_TYPE: ("invalid_request_error", "unknown_event"),
    ErrorCode.TOO_LARGE: ("invalid_request_error", "frame_too_large"),
    ErrorCode.BAD_AUDIO: ("invalid_request_error", "invalid_audio"),
    ErrorCode.OUT_OF_ORDER: ("invalid_request_error", "out_of_order"),
    ErrorCode.NOT_STARTED: ("invalid_request_error", "session_not_started"),
    ErrorCode.ALREADY_STARTED: ("invalid_request_error", "session_already_started"),
    ErrorCode.RATE_LIMITED: ("invalid_request_error", "rate_limited"),
    ErrorCode.SESSION_FAILED: ("server_error", "session_failed"),
    ErrorCode.SESSION_ENDED: ("invalid_request_error", "session_ended"),
    ErrorCode.TOOL_FAILED: ("server_error", "tool_failed"),
    ErrorCode.INTERNAL: ("server_error", "internal_error"),
}


class EventTooLargeError(ValueError):
    """A server event that cannot fit a frame, even with its repeated text cut."""


def _order(frame: str) -> int:
    match = _ORDER.search(frame, 0, 120)
    if match is None:
        raise ValueError("not a Realtime event of this codec: no event_id in its first characters")
    return int(match.group(1))


KINDS: Final = FrameKinds(
    is_audio=lambda frame: frame.startswith(f'{{"type":"{_AUDIO_DELTA}"'),
    order=_order,
    is_pong=lambda frame: False,  # Realtime has no ping
    # every error event is non-fatal: a fatal fault ends the connection, which the client sees
    is_nonfatal_error=lambda frame: frame.startswith('{"type":"error"'),
    clear_first=False,
)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(slots=True)
class _Item:
    """An output item of the open response: the assistant's message, or a function call."""

    id: str
    output_index: int
    kind: str  # "message" or "function_call"
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    transcript_parts: list[str] = field(default_factory=list)
    final_parts: list[str] = field(default_factory=list)
    speculative: int = 0  # speculative texts sent as deltas and not yet matched by a final

    def as_json(self, status: str) -> dict[str, Any]:
        if self.kind == "function_call":
            return {
                "id": self.id,
                "object": "realtime.item",
                "type": "function_call",
                "status": status,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments,
            }
        content = (
            [{"type": "output_audio", "transcript": self.transcript()}]
            if status != "in_progress"
            else []
        )
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def transcript(self) -> str:
        return " ".join(self.final_parts) if self.final_parts else "".join(self.transcript_parts)


@dataclass(slots=True)
class _Response:
    id: str
    items: list[_Item] = field(default_factory=list)
    message: _Item | None = None  # the assistant's message item, while its audio runs

    def as_json(self, status: str, **extra: Any) -> dict[str, Any]:
        done = status != "in_progress"
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "output": [
                i.as_json(
                    "completed"
                    if status == "completed" or i.kind == "function_call"
                    else "incomplete"
                )
                for i in self.items
            ]
            if done
            else [],
            "output_modalities": ["audio"],
            **extra,
        }


class RealtimeCodec(OutboundBatcher):
    """One Realtime connection: its client events in, its server events out."""

    __slots__ = (
        "_allow_instructions",
        "_client_calls",
        "_config",
        "_input_ms",
        "_input_seq",
        "_pending_done",
        "_pending_text",
        "_reported_usage",
        "_response",
        "_server_calls",
        "_started",
        "_tag",
        "_totals",
        "_user_item",
        "_voice_default",
    )

    def __init__(
        self,
        *,
        batch_ms: int,
        saved: Mapping[str, Any] | None = None,
        model: str = "",
        voice: str = "matthew",
        allow_client_instructions: bool = True,
    ) -> None:
        config = SessionConfig(model=model, voice=voice)
        if saved:
            config = SessionConfig.restored(saved.get("config", {}), config)
        super().__init__(sample_rate=config.output_format.rate, batch_ms=batch_ms)
        self.input_sample_rate = config.input_format.rate
        self._config = config
        self._voice_default = voice
        self._allow_instructions = allow_client_instructions
        self._tag = secrets.token_hex(3)
        # A resumed connection has started already: its session options were agreed.
        self._started = bool(saved)
        self._pending_text: list[str] = []  # typed user text waiting for response.create
        self._response: _Response | None = None
        # A finished response waiting for its usage: (its response.done maker, deadline)
        self._pending_done: tuple[_Response, float] | None = None
        self._totals: Usage | None = None  # Nova's running totals, last seen
        self._reported_usage = Usage()  # the totals when the last response.done went out
        self._user_item: str | None = None  # the user item speech_started announced
        self._input_ms = 0.0  # client audio received, in ms (audio_start_ms / audio_end_ms)
        self._input_seq = 0
        # Calls of the deployment's tools lately shown to the client (insertion ordered).
        self._server_calls: dict[str, None] = {}
        # Calls of the client's tools sent to it and not yet answered.
        self._client_calls: dict[str, None] = {}

    # -- in ----------------------------------------------------------------------------------

    def parse(self, body: bytes) -> Sequence[ClientFrame]:
        if len(body) > MAX_FRAME_BYTES:
            raise RealtimeError(
                "frame_too_large",
                f"the event is {len(body)} bytes; API Gateway's limit is {MAX_FRAME_BYTES} bytes"
                f" per frame: send input_audio_buffer.append chunks of at most"
                f" {MAX_APPEND_AUDIO_BYTES} bytes of audio",
                code=ErrorCode.TOO_LARGE,
            )
        try:
            event = _DECODER.decode(body.decode())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RealtimeError(
                "invalid_json", f"the event is not JSON: {exc}", code=ErrorCode.BAD_JSON
            ) from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise RealtimeError("invalid_value", "an event is a JSON object with a string 'type'")
        kind = event["type"][:64]
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = _HANDLERS.get(kind)
        if handler is None:
            refused = _REFUSED.get(kind)
            raise RealtimeError(
                "unsupported_event" if refused else "unknown_event",
                refused or f"unknown client event type {kind!r}",
                event=kind,
                event_id=event_id,
                code=ErrorCode.UNKNOWN_TYPE,
            )
        try:
            return handler(self, event, event_id)
        except EventTooLargeError:
            # The answer (an echo of the event) cannot fit a frame: the event is refused as a
            # whole, and the handler changed nothing (it changes state after encoding).
            raise RealtimeError(
                "invalid_value",
                f"the answer to this event would exceed API Gateway's {MAX_FRAME_BYTES}-byte"
                " frame limit: send shorter ids, descriptions or text",
                event=kind,
                event_id=event_id,
            ) from None

    def _refusal(
        self, code: str, message: str, event: str, event_id: str | None, param: str | None = None
    ) -> RealtimeError:
        return RealtimeError(code, message, event=event, event_id=event_id, param=param)

    def _start_if_needed(self) -> list[ClientFrame]:
        """The session's options, before the first frame that needs the model."""
        if self._started:
            return []
        self._started = True
        config = self._config
        return [
            ClientStart(
                voice=config.voice,
                instructions=config.instructions or None,
                input_sample_rate=config.input_format.rate,
                output_sample_rate=config.output_format.rate,
                client_tools=config.tool_definitions(),
                tool_choice=config.nova_tool_choice(),
                endpointing=config.endpointing,
            )
        ]

    def _on_session_update(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        updated, refusals = read_session_update(event.get("session"), self._config, event_id)
        frames: list[ClientFrame] = []
        if not self._allow_instructions and updated.instructions != self._config.instructions:
            # Refused here, with the event's id, so that session.updated shows what is in force.
            refusals.append(
                self._refusal(
                    "unsupported_value",
                    "this server does not let clients set instructions; it uses its own",
                    "session.update",
                    event_id,
                    "session.instructions",
                )
            )
            updated = replace(updated, instructions=self._config.instructions)
        if self._started and _model_options(updated) != _model_options(self._config):
            refusals.append(
                self._refusal(
                    "session_already_started",
                    "Nova Sonic fixes instructions, voice, audio formats, turn detection and"
                    " tools when the conversation starts; change them in the first"
                    " session.update, or reconnect",
                    "session.update",
                    event_id,
                )
            )
            updated = replace(updated, **_model_options(self._config))
        # Answered at once: the model session opens with these options at the first frame that
        # needs it (audio, or typed text), so clients may update several times before that.
        # Encoded before the options are kept: an answer too large leaves them unchanged.
        reply = self._event("session.updated", {"session": updated.as_json()})
        self._config = updated
        self.input_sample_rate = updated.input_format.rate
        frames.append(ClientReply(tuple(reply)))
        for refusal in refusals:
            frames.append(ClientRefusal(refusal))
        return frames

    def _on_append(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        data = event.get("audio")
        kind = "input_audio_buffer.append"
        if not isinstance(data, str) or not data:
            raise self._refusal(
                "invalid_value", "'audio' must be base64 audio", kind, event_id, "audio"
            )
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except ValueError as exc:
            raise RealtimeError(
                "invalid_audio",
                f"'audio' is not base64: {exc}",
                event=kind,
                event_id=event_id,
                param="audio",
                code=ErrorCode.BAD_AUDIO,
            ) from None
        audio_format = self._config.input_format
        if audio_format.g711 == "ulaw":
            pcm = g711.ulaw_to_pcm(raw)
        elif audio_format.g711 == "alaw":
            pcm = g711.alaw_to_pcm(raw)
        else:
            pcm = raw
        if not pcm or len(pcm) % 2:
            raise RealtimeError(
                "invalid_audio",
                f"'audio' holds {len(raw)} bytes: {audio_format.type} needs whole 16-bit samples",
                event=kind,
                event_id=event_id,
                param="audio",
                code=ErrorCode.BAD_AUDIO,
            )
        frames = self._start_if_needed()
        self._input_ms += len(pcm) * 500 / audio_format.rate
        frames.append(ClientAudio(self._next_input_seq(), pcm))
        return frames

    def _next_input_seq(self) -> int:
        # Realtime audio has no numbers: number it in arrival order for the session's sequencer.
        seq = self._input_seq
        self._input_seq += 1
        return seq

    def _on_commit(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        item = self._user_item or _new_id("item")
        self._user_item = item
        return [
            ClientReply(
                tuple(
                    self._event(
                        "input_audio_buffer.committed", {"previous_item_id": None, "item_id": item}
                    )
                )
            )
        ]

    def _on_clear(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        return [ClientReply(tuple(self._event("input_audio_buffer.cleared", {})))]

    def _on_item_create(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        kind = "conversation.item.create"
        item = event.get("item")
        if not isinstance(item, Mapping):
            raise self._refusal("invalid_value", "'item' must be an object", kind, event_id, "item")
        item_type = item.get("type")
        item_id = item.get("id") if isinstance(item.get("id"), str) else _new_id("item")
        if item_type == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id or not isinstance(output, str):
                raise self._refusal(
                    "invalid_value",
                    "a function_call_output needs 'call_id' and 'output' strings",
                    kind,
                    event_id,
                    "item",
                )
            shown = {
                "id": item_id,
                "object": "realtime.item",
                "type": "function_call_output",
                "status": "completed",
                "call_id": call_id,
                "output": output,
            }
            if call_id in self._server_calls:
                # A deployment tool's call, answered by the deployment already: a client that
                # answers it too is acknowledged, and the model is not told twice.
                return [ClientReply(tuple(self._added_and_done(shown)))]
            if call_id not in self._client_calls:
                # Refused before anything is acknowledged or started: a stray answer (sent
                # before any call, or twice) must not open the model with default options.
                raise self._refusal(
                    "invalid_value",
                    f"no call of a client tool is waiting for call_id {call_id[:64]!r}",
                    kind,
                    event_id,
                    "item.call_id",
                )
            reply = ClientReply(tuple(self._added_and_done(shown)))
            del self._client_calls[call_id]
            return [ClientToolResult(call_id, output), reply]
        if item_type == "message" and item.get("role") == "user":
            content = item.get("content")
            parts = content if isinstance(content, list) else []
            texts = [
                p.get("text")
                for p in parts
                if isinstance(p, Mapping) and p.get("type") == "input_text"
            ]
            if not parts or len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
                raise self._refusal(
                    "unsupported_value",
                    "a user message item may hold input_text parts only (audio goes through"
                    " input_audio_buffer.append; images are not supported)",
                    kind,
                    event_id,
                    "item.content",
                )
            text = "\n".join(t for t in texts if isinstance(t, str))
            if not text.strip() or len(text) > MAX_TEXT_CHARS:
                raise self._refusal(
                    "invalid_value",
                    "the text must have a visible character and at most"
                    f" {MAX_TEXT_CHARS} characters",
                    kind,
                    event_id,
                    "item.content",
                )
            shown = {
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": text}],
            }
            reply = ClientReply(tuple(self._added_and_done(shown)))
            self._pending_text.append(text)
            return [reply]
        raise self._refusal(
            "unsupported_value",
            "only user text messages and function_call_output items can be added: Nova Sonic"
            " takes system instructions in session.update and writes its own turns",
            kind,
            event_id,
            "item.type",
        )

    def _on_response_create(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        frames: list[ClientFrame] = []
        response = event.get("response")
        if isinstance(response, Mapping) and (
            any(
                response.get(k) is not None
                for k in ("instructions", "tools", "tool_choice", "audio", "input", "prompt")
            )
            or response.get("output_modalities") not in (None, ["audio"])
        ):
            frames.append(
                ClientRefusal(
                    self._refusal(
                        "unsupported_value",
                        "per-response options are not supported: Nova Sonic answers with the"
                        " session's",
                        "response.create",
                        event_id,
                        "response",
                    )
                )
            )
        if self._pending_text:
            text, self._pending_text = "\n".join(self._pending_text), []
            frames[:0] = [*self._start_if_needed(), ClientText(text[:MAX_TEXT_CHARS])]
        # Nothing typed: Nova answers every finished turn (and every tool result) by itself.
        return frames

    def _on_cancel(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        if self._response is None and event.get("type") == "response.cancel":
            # As OpenAI answers: the client learns its cancel was not acted on.
            raise self._refusal(
                "response_cancel_not_active",
                "there is no response in progress to cancel",
                "response.cancel",
                event_id,
            )
        return [ClientInterrupt()]

    def _on_truncate(self, event: dict[str, Any], event_id: str | None) -> list[ClientFrame]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise self._refusal(
                "invalid_value",
                "'item_id' must be a string",
                "conversation.item.truncate",
                event_id,
                "item_id",
            )
        audio_end_ms = (
            event.get("audio_end_ms") if isinstance(event.get("audio_end_ms"), int) else 0
        )
        return [
            ClientReply(
                tuple(
                    self._event(
                        "conversation.item.truncated",
                        {
                            "item_id": item_id,
                            "content_index": event.get("content_index", 0)
                            if isinstance(event.get("content_index"), int)
                            else 0,
                            "audio_end_ms": audio_end_ms,
                        },
                    )
                )
            )
        ]

    # -- out: events -------------------------------------------------------------------------

    def _event(self, kind: str, fields: Mapping[str, Any]) -> list[str]:
        """One numbered event after the buffered audio (``_emit`` keeps the order)."""
        return self._emit(lambda seq: [self._fitted(seq, kind, fields)])

    def _events(self, events: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Several numbered events, consecutive, after the buffered audio."""
        return self._emit(
            lambda seq: [self._fitted(seq + i, k, f) for i, (k, f) in enumerate(events)]
        )

    def _encode(self, seq: int, kind: str, fields: Mapping[str, Any]) -> str:
        head = f'{{"type":"{kind}","event_id":"evt_{self._tag}_{seq}"'
        body = _ENCODE(fields)
        if not body.isascii():
            try:
                body.encode()
            except UnicodeEncodeError:  # a lone surrogate: only its escape is valid UTF-8
                body = _ENCODE_ASCII(fields)
        return head + ("," + body[1:] if len(body) > 2 else "}")

    def _size(self, frame: str) -> int:
        return len(frame) if frame.isascii() else len(frame.encode())

    def _fitted(self, seq: int, kind: str, fields: Mapping[str, Any]) -> str:
        """The event, within the frame limit: a closing event repeats the transcript (or
        arguments, or output) its deltas carried; when that would not fit, the repeated text
        is cut, ending with an ellipsis. Anything else too large raises ValueError."""
        frame = self._encode(seq, kind, fields)
        if self._size(frame) <= self.max_frame_bytes:
            return frame
        longest = _longest_repeated(fields)
        keep = longest
        while keep > 0:
            keep //= 2
            frame = self._encode(seq, kind, _cut_repeated(fields, keep))
            if self._size(frame) <= self.max_frame_bytes:
                self.counters.truncated_messages += 1
                return frame
        raise EventTooLargeError(
            f"a {kind} event of {self._size(frame)} bytes exceeds max_frame_bytes="
            f"{self.max_frame_bytes}, even with its repeated text cut"
        )

    def _added_and_done(self, item: Mapping[str, Any]) -> list[str]:
        return self._events(
            [
                ("conversation.item.added", {"item": item}),
                ("conversation.item.done", {"item": item}),
            ]
        )

    def _session_json(self) -> dict[str, Any]:
        return self._config.as_json()

    # -- out: audio (the batcher's batching, Realtime's framing) --------------------------

    def _audio_overhead(self, sample_rate: int) -> int:
        ids = f"evt_{'0' * 6}_{2**53}"
        return len(
            f'{{"type":"{_AUDIO_DELTA}","event_id":"{ids}","response_id":"resp_{"0" * 16}",'
            f'"item_id":"item_{"0" * 16}","output_index":999,"content_index":0,"delta":""}}'
        )

    def _audio_frame(self, seq: int, pcm: memoryview, sample_rate: int) -> str:
        response = self._response
        assert response is not None and response.message is not None, "audio opens a response"
        audio_format = self._config.output_format
        if audio_format.g711 == "ulaw":
            data: bytes | memoryview = g711.pcm_to_ulaw(pcm)
        elif audio_format.g711 == "alaw":
            data = g711.pcm_to_alaw(pcm)
        else:
            data = pcm
        delta = binascii.b2a_base64(data, newline=False).decode("ascii")
        return (
            f'{{"type":"{_AUDIO_DELTA}","event_id":"evt_{self._tag}_{seq}",'
            f'"response_id":"{response.id}","item_id":"{response.message.id}",'
            f'"output_index":{response.message.output_index},"content_index":0,"delta":"{delta}"}}'
        )

    def audio(self, pcm: bytes, now: float) -> list[str]:
        frames = self._open_message(now)
        return frames + super().audio(pcm, now)

    # -- out: the response lifecycle -------------------------------------------------------

    def _open_response(self, now: float) -> list[str]:
        frames = self._finish_pending(now, with_usage=False)
        if self._response is not None:
            return frames
        self._response = _Response(_new_id("resp"))
        return frames + self._event(
            "response.created", {"response": self._response.as_json("in_progress")}
        )

    def _open_message(self, now: float) -> list[str]:
        frames = self._open_response(now)
        response = self._response
        assert response is not None
        if response.message is not None:
            return frames
        item = _Item(_new_id("item"), len(response.items), "message")
        response.items.append(item)
        response.message = item
        return frames + self._events(
            [
                *_item_events("added", response, item, "in_progress"),
                (
                    "response.content_part.added",
                    {
                        "response_id": response.id,
                        "item_id": item.id,
                        "output_index": item.output_index,
                        "content_index": 0,
                        "part": {"type": "audio", "transcript": ""},
                    },
                ),
            ]
        )

    def _close_message(self, status: str) -> list[tuple[str, Mapping[str, Any]]]:
        """The events that end the message item's audio (the caller numbers them)."""
        response = self._response
        if response is None or response.message is None:
            return []
        item, response.message = response.message, None
        where = {
            "response_id": response.id,
            "item_id": item.id,
            "output_index": item.output_index,
            "content_index": 0,
        }
        transcript = item.transcript()
        events: list[tuple[str, Mapping[str, Any]]] = [
            ("response.output_audio.done", where),
            ("response.output_audio_transcript.done", {**where, "transcript": transcript}),
            (
                "response.content_part.done",
                {**where, "part": {"type": "audio", "transcript": transcript}},
            ),
        ]
        return events + _item_events("done", response, item, status)

    def _done_event(
        self, response: _Response, status: str, reason: str | None, *, with_usage: bool
    ) -> tuple[str, Mapping[str, Any]]:
        extra: dict[str, Any] = {}
        if reason is not None:
            extra["status_details"] = {"type": status, "reason": reason}
        if with_usage and self._totals is not None:
            extra["usage"] = _usage_json(self._totals, self._reported_usage)
            self._reported_usage = self._totals
        return ("response.done", {"response": response.as_json(status, **extra)})

    def _finish_pending(self, now: float, *, with_usage: bool) -> list[str]:
        if self._pending_done is None:
            return []
        response, _ = self._pending_done
        self._pending_done = None
        return self._events([self._done_event(response, "completed", None, with_usage=with_usage)])

    def assistant_text(self, text: str, final: bool, now: float) -> list[str]:
        frames = self._open_message(now)
        response = self._response
        assert response is not None and response.message is not None
        item = response.message
        if final:
            item.final_parts.append(text)
            if item.speculative:
                item.speculative -= 1
                return frames
        else:
            item.speculative += 1
        # Speculative text comes before its audio (live captions); a final text without one is
        # sent too, so that the deltas add up to what was said.
        item.transcript_parts.append(text)
        where = {
            "response_id": response.id,
            "item_id": item.id,
            "output_index": item.output_index,
            "content_index": 0,
        }
        return frames + self._event(
            "response.output_audio_transcript.delta", {**where, "delta": text}
        )

    def transcript(self, text: str, now: float) -> list[str]:
        """The user's turn, as Nova heard it: a user message item with its transcript."""
        frames = self._finish_pending(now, with_usage=True)
        item_id = self._user_item or _new_id("item")
        events: list[tuple[str, Mapping[str, Any]]] = []
        end_ms = round(self._input_ms)
        if self._user_item is None:  # not announced by a barge-in already
            events.append(
                (
                    "input_audio_buffer.speech_started",
                    {"audio_start_ms": end_ms, "item_id": item_id},
                )
            )
        self._user_item = None
        audio = {"type": "input_audio", "transcript": None}
        heard = {"type": "input_audio", "transcript": text}
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user"}
        events += [
            ("input_audio_buffer.speech_stopped", {"audio_end_ms": end_ms, "item_id": item_id}),
            ("input_audio_buffer.committed", {"previous_item_id": None, "item_id": item_id}),
            (
                "conversation.item.added",
                {"item": {**item, "status": "completed", "content": [audio]}},
            ),
            (
                "conversation.item.input_audio_transcription.completed",
                {
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": 0},
                },
            ),
            (
                "conversation.item.done",
                {"item": {**item, "status": "completed", "content": [heard]}},
            ),
        ]
        return frames + self._events(events)

    def tool_call(self, call: ToolCall, now: float, *, on_client: bool) -> list[str]:
        frames = self._open_response(now)
        response = self._response
        assert response is not None
        # The words before the call are complete: their audio goes out, then the item closes.
        frames += self._take_audio(whole_frames_only=False)
        closing = self._close_message("completed")
        item = _Item(
            _new_id("item"),
            len(response.items),
            "function_call",
            call_id=call.call_id,
            name=call.name,
            arguments=json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False),
        )
        response.items.append(item)
        where = {
            "response_id": response.id,
            "item_id": item.id,
            "output_index": item.output_index,
            "call_id": item.call_id,
        }
        events = [*closing, *_item_events("added", response, item, "in_progress")]
        if on_client:
            # The arguments events are what clients run a function on: for the client's tools
            # only. A deployment tool runs in the bridge; the client sees its items.
            events += [
                ("response.function_call_arguments.delta", {**where, "delta": item.arguments}),
                (
                    "response.function_call_arguments.done",
                    {**where, "name": item.name, "arguments": item.arguments},
                ),
            ]
            self._client_calls[call.call_id] = None
            while len(self._client_calls) > MAX_SERVER_CALLS:
                del self._client_calls[next(iter(self._client_calls))]
        else:
            self._server_calls[call.call_id] = None
            while len(self._server_calls) > MAX_SERVER_CALLS:
                del self._server_calls[next(iter(self._server_calls))]
        events += _item_events("done", response, item, "completed")
        if on_client:
            # The client runs it: the response ends here, as Realtime's do before the client
            # answers with function_call_output; Nova's words after the result open the next.
            self._response = None
            events.append(self._done_event(response, "completed", None, with_usage=True))
        return frames + self._events(events)

    def tool(
        self,
        call_id: str,
        name: str,
        status: ToolStatus,
        now: float,
        *,
        ms: int | None = None,
        error: str | None = None,
        output: str | None = None,
    ) -> list[str]:
        """A deployment tool finished: its output, as the conversation item a client shows."""
        if status == "started":
            return []
        text = output if output is not None else json.dumps({"error": error or status})
        shown = {
            "id": _new_id("item"),
            "object": "realtime.item",
            "type": "function_call_output",
            "status": "completed",
            "call_id": call_id,
            "output": text[:MAX_FRAME_BYTES],  # then cut to the frame's bytes (``_fitted``)
        }
        return self._added_and_done(shown)

    def turn_end(self, now: float, usage: Usage | None = None) -> list[str]:
        response = self._response
        if response is None:
            return []
        frames = self._take_audio(whole_frames_only=False)  # the audio before its done events
        events = self._close_message("completed")
        self._response = None
        if events:
            frames += self._events(events)
        # response.done carries the turn's usage, which Nova reports just after the turn.
        self._pending_done = (response, now + USAGE_WAIT_SECONDS)
        return frames

    def usage_update(self, usage: Usage, now: float) -> list[str]:
        self._totals = usage
        return self._finish_pending(now, with_usage=True)

    def next_deadline(self) -> float | None:
        audio = super().next_deadline()
        if self._pending_done is None:
            return audio
        return self._pending_done[1] if audio is None else min(audio, self._pending_done[1])

    def due(self, now: float) -> list[str]:
        frames = super().due(now)
        if self._pending_done is not None and now >= self._pending_done[1]:
            frames += self._finish_pending(now, with_usage=True)
        return frames

    def flush(self, now: float) -> list[str]:
        return super().flush(now) + self._finish_pending(now, with_usage=True)

    def barge_in(self, reason: ClearReason, now: float) -> list[str]:
        """The assistant was interrupted: its unsent audio is dropped; the client is told the
        user spoke (for a barge-in) and that the response was cancelled, so it stops playback."""
        self._drop_buffer()
        frames = self._finish_pending(now, with_usage=True)
        events: list[tuple[str, Mapping[str, Any]]] = []
        if reason == "barge_in":
            self._user_item = self._user_item or _new_id("item")
            events.append(
                (
                    "input_audio_buffer.speech_started",
                    {"audio_start_ms": round(self._input_ms), "item_id": self._user_item},
                )
            )
        response = self._response
        if response is not None:
            events += self._close_message("incomplete")
            self._response = None
            why = "turn_detected" if reason == "barge_in" else "client_cancelled"
            events.append(self._done_event(response, "cancelled", why, with_usage=True))
        if not events:
            return frames
        seq = self._seq
        encoded = [self._fitted(seq + i, k, f) for i, (k, f) in enumerate(events)]
        self._seq += len(encoded)
        self._count_events(*encoded)
        return frames + encoded

    # -- out: the rest of the session's output ----------------------------------------------

    def greeting(self, connection_id: str, model: str, voice: str, now: float) -> list[str]:
        self._config = replace(self._config, model=self._config.model or model)
        return self._event("session.created", {"session": self._session_json()})

    def session(
        self,
        state: SessionState,
        connection_id: str,
        model: str,
        voice: str,
        now: float,
        *,
        reason: str | None = None,
    ) -> list[str]:
        if state == "draining":
            return self.error(
                ErrorCode.SESSION_ENDED,
                f"the server is going away soon: {reason}; reconnect",
                False,
                None,
                now,
            )
        # ready, resumed (session.updated answered each session.update already), reconnected,
        # ended: nothing the protocol has an event for
        return self._finish_pending(now, with_usage=True)

    def error(
        self,
        code: ErrorCode,
        message: str,
        fatal: bool,
        ref: FrameRef | None,
        now: float,
        *,
        realtime_code: str | None = None,
    ) -> list[str]:
        error_type, default_code = _ERROR_KINDS.get(code, ("server_error", "internal_error"))
        ref = ref or FrameRef()

        def encode(seq: int) -> str:
            return self._cut(
                lambda text: self._encode(
                    seq,
                    "error",
                    {
                        "error": {
                            "type": error_type,
                            "code": realtime_code or default_code,
                            "message": text,
                            "param": ref.param,
                            "event_id": ref.event_id,
                        }
                    },
                ),
                message,
            )

        return self._emit(lambda seq: [encode(seq)])

    def protocol_error(self, error: ProtocolError, now: float) -> list[str]:
        return self.error(
            error.code,
            error.message,
            error.fatal,
            error.ref,
            now,
            realtime_code=getattr(error, "realtime_code", None),
        )

    def pong(self, id: str | int | None, now: float) -> list[str]:
        return []  # no ping in Realtime

    def heard_fraction(self) -> float | None:
        return None  # a Realtime client says what it played with conversation.item.truncate

    def saved_state(self) -> Mapping[str, Any]:
        return {"config": self._config.saved()}


def _item_events(
    step: str, response: _Response, item: _Item, status: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """An output item ``added`` or ``done``: in the response, and in the conversation."""
    shown = item.as_json(status)
    where = {"response_id": response.id, "output_index": item.output_index, "item": shown}
    return [(f"response.output_item.{step}", where), (f"conversation.item.{step}", {"item": shown})]


def _longest_repeated(value: Any) -> int:
    """The length of the longest repeated-text field (``_REPEATED_FIELDS``) in ``value``."""
    if isinstance(value, Mapping):
        return max(
            (
                len(v) if k in _REPEATED_FIELDS and isinstance(v, str) else _longest_repeated(v)
                for k, v in value.items()
            ),
            default=0,
        )
    if isinstance(value, list):
        return max((_longest_repeated(v) for v in value), default=0)
    return 0


def _cut_repeated(value: Any, keep: int) -> Any:
    """``value`` with each repeated-text field longer than ``keep`` cut to it and an ellipsis."""
    if isinstance(value, Mapping):
        return {
            k: (v[:keep] + "…" if len(v) > keep else v)
            if k in _REPEATED_FIELDS and isinstance(v, str)
            else _cut_repeated(v, keep)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_cut_repeated(v, keep) for v in value]
    return value


def _model_options(config: SessionConfig) -> dict[str, Any]:
    """What the model session was opened with (fixed for the conversation)."""
    return {
        "instructions": config.instructions,
        "voice": config.voice,
        "input_format": config.input_format,
        "output_format": config.output_format,
        "tools": config.tools,
        "tool_choice": config.tool_choice,
        "turn_detection": config.turn_detection,
        "endpointing": config.endpointing,
    }


def _usage_json(totals: Usage, before: Usage) -> dict[str, Any]:
    """Nova's running totals since the last response, as Realtime's per-response usage."""
    audio_in = totals.input_speech_tokens - before.input_speech_tokens
    text_in = totals.input_text_tokens - before.input_text_tokens
    audio_out = totals.output_speech_tokens - before.output_speech_tokens
    text_out = totals.output_text_tokens - before.output_text_tokens
    return {
        "total_tokens": audio_in + text_in + audio_out + text_out,
        "input_tokens": audio_in + text_in,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": audio_in,
            "cached_tokens": 0,
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


Handler = Callable[[RealtimeCodec, dict[str, Any], "str | None"], list[ClientFrame]]

_HANDLERS: Final[Mapping[str, Handler]] = {
    "session.update": RealtimeCodec._on_session_update,
    "input_audio_buffer.append": RealtimeCodec._on_append,
    "input_audio_buffer.commit": RealtimeCodec._on_commit,
    "input_audio_buffer.clear": RealtimeCodec._on_clear,
    "conversation.item.create": RealtimeCodec._on_item_create,
    "conversation.item.truncate": RealtimeCodec._on_truncate,
    "response.create": RealtimeCodec._on_response_create,
    "response.cancel": RealtimeCodec._on_cancel,
    "output_audio_buffer.clear": RealtimeCodec._on_cancel,
}

#: Client events of the protocol that this server refuses, and why.
_REFUSED: Final[Mapping[str, str]] = {
    "conversation.item.delete": "conversation.item.delete is not supported: Nova Sonic keeps"
    " its own conversation, which items cannot be removed from",
    "conversation.item.retrieve": "conversation.item.retrieve is not supported: the server"
    " sends every item as conversation.item.done when it is complete",
}
