"""Nova Sonic's event grammar as a pure state machine: no sockets, no SDK.

Input side: methods return the JSON bytes of the events to send, in order (``opening_events``,
``audio_event``, ``text_events``, ``tool_result_events``, ``closing_events``). Output side:
``receive(payload)`` takes the JSON bytes of one event from Bedrock and returns the
``novakit.s2s`` events it means. The asyncio session only moves bytes between this object, the
SDK and the caller.

Turn end: Bedrock's documents do not say which event ends an assistant turn, and servers differ:
the last FINAL text ``contentEnd`` with END_TURN, the last AUDIO ``contentEnd`` with END_TURN (its
FINAL text then following with PARTIAL_TURN), ``completionEnd``, or an interruption. The turn ends
at the first of: a FINAL text END_TURN; an AUDIO END_TURN once every SPECULATIVE text of the turn
has had its FINAL text (so that the words of what was spoken come before ``TURN_END``);
``completionEnd``; an interruption. It ends once: later signals for it are ignored.

Barge-in: Bedrock has no interrupt input event. It signals that the user spoke over the model
with an ASSISTANT ``textOutput`` whose content is ``{ "interrupted" : true }`` and/or a
``contentEnd`` with ``stopReason: INTERRUPTED``. Either becomes one ``INTERRUPTED`` event per
turn; the JSON is never surfaced as speech, and audio still arriving for that turn is dropped.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Message, ToolChoice, ToolDefinition, ToolResult
from ..errors import UnsupportedError
from ..events import Event, ToolCall, Usage
from .models import INPUT_SAMPLE_RATE, NovaModel

log = logging.getLogger(__name__)

TEXT_INPUT_LIMIT = 1024  # bytes of UTF-8 per textInput event
HISTORY_LIMIT = 40 * 1024  # bytes of UTF-8 across all history textInputs


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What one Bedrock stream is opened with."""

    model: NovaModel
    voice: str
    instructions: str
    tools: Sequence[ToolDefinition] = ()
    tool_choice: ToolChoice | None = None
    speech_instructions: str | None = None  # the SYSTEM_SPEECH prompt (Nova 2)
    output_sample_rate: int = 24000
    input_sample_rate: int = INPUT_SAMPLE_RATE
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7
    endpointing_sensitivity: str | None = None
    history: Sequence[Message] = ()


def split_utf8(text: str, limit: int = TEXT_INPUT_LIMIT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-8 bytes, preferring spaces as cuts."""
    pieces: list[str] = []
    rest = text
    while len(rest.encode()) > limit:
        encoded = rest.encode()[:limit]
        cut = len(encoded.decode(errors="ignore"))  # never split a character
        space = rest.rfind(" ", 0, cut)
        if space > cut // 2:
            cut = space + 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def prepare_history(messages: Sequence[Message], limit: int = HISTORY_LIMIT) -> list[Message]:
    """Make history acceptable to Nova, keeping the most recent conversation.

    Policy, in order: empty turns are dropped; consecutive turns of one role are merged (Nova
    wants USER and ASSISTANT to alternate); the oldest turns are dropped whole until the total
    is within ``limit`` UTF-8 bytes; if the newest turn alone is over ``limit`` only its end is
    kept (cut at a space); finally leading ASSISTANT turns are dropped, since history must begin
    with USER. Dropping message by message and then the leading ASSISTANT one amounts to
    dropping whole exchanges, oldest first. Splitting into textInputs of at most 1 KB happens
    when the events are built."""
    merged: list[Message] = []
    for message in messages:
        text = message.text.strip()
        if not text:
            continue
        if merged and merged[-1].role == message.role:
            merged[-1] = Message(message.role, f"{merged[-1].text} {text}")
        else:
            merged.append(Message(message.role, text))
    total = sum(len(m.text.encode()) for m in merged)
    while len(merged) > 1 and total > limit:
        total -= len(merged.pop(0).text.encode())
    if merged and total > limit:
        merged[0] = Message(merged[0].role, _keep_end(merged[0].text, limit))
    while merged and merged[0].role != "user":
        merged.pop(0)
    return merged


def _keep_end(text: str, limit: int) -> str:
    """The end of ``text`` in at most ``limit`` UTF-8 bytes, starting at a word if one fits."""
    encoded = text.encode()
    tail = encoded[len(encoded) - limit :].decode(errors="ignore")
    space = tail.find(" ")
    if 0 <= space < len(tail) // 2:
        tail = tail[space + 1 :]
    return tail


@dataclass(slots=True)
class _Content:
    kind: str  # TEXT | AUDIO | TOOL
    role: str  # USER | ASSISTANT | TOOL
    final: bool = True
    muted: bool = False


@dataclass(slots=True)
class _Turn:
    """The assistant turn in progress: ended by TURN_END or INTERRUPTED, never both.

    An interrupted turn stays current until the user's next input, so that assistant content
    Bedrock still sends for it is recognised as leftovers (muted), not as a new turn."""

    ended: bool = False
    interrupted: bool = False
    audio_contents: set[str] = field(default_factory=set)
    speculative: int = 0  # SPECULATIVE text contents begun
    finals: int = 0  # FINAL text contents ended
    audio_ended_turn: bool = False  # an AUDIO content ended END_TURN
    # Ended by that AUDIO with no SPECULATIVE text to wait for: a FINAL text that follows it
    # (before any other content) is still this turn's, not the start of another.
    final_may_trail: bool = False

    def spoken_in_full(self) -> bool:
        """The audio said the turn is over and the words of all it spoke have come."""
        return self.audio_ended_turn and self.finals >= self.speculative


class NovaProtocol:
    """Builds input events and interprets output events for one Bedrock stream."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.prompt_name = str(uuid.uuid4())
        self.audio_content_name = str(uuid.uuid4())
        self._audio_prefix = (
            f'{{"event":{{"audioInput":{{"promptName":"{self.prompt_name}",'
            f'"contentName":"{self.audio_content_name}","content":"'
        ).encode()
        self._contents: dict[str, _Content] = {}
        self._turn: _Turn | None = None
        self._tool_uses: dict[str, ToolCall] = {}
        self._awaiting_results: set[str] = set()
        self._prompt_open = False
        self._audio_open = False
        self._unknown: set[str] = set()  # output event names met that this code does not know

    # ---- input ---------------------------------------------------------------------------

    def opening_events(self) -> list[bytes]:
        """sessionStart, promptStart, system prompt, history, and the open audio content."""
        return self.setup_events() + self.start_events()

    def setup_events(self) -> list[bytes]:
        """sessionStart, promptStart and the system prompt: all a stream opened ahead of use
        (a rollover's next stream) is sent until it takes over."""
        s = self.settings
        session_start: dict[str, Any] = {
            "inferenceConfiguration": {
                "maxTokens": s.max_tokens,
                "topP": s.top_p,
                "temperature": s.temperature,
            }
        }
        if s.endpointing_sensitivity and s.model.turn_detection:
            session_start["turnDetectionConfiguration"] = {
                "endpointingSensitivity": s.endpointing_sensitivity
            }
        prompt_start: dict[str, Any] = {
            "promptName": self.prompt_name,
            "textOutputConfiguration": {"mediaType": "text/plain"},
            "audioOutputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": s.output_sample_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "voiceId": s.voice,
                "encoding": "base64",
                "audioType": "SPEECH",
            },
        }
        if s.tools:
            prompt_start["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
            prompt_start["toolConfiguration"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t.name,
                            "description": t.description,
                            "inputSchema": {"json": t.schema_json()},
                        }
                    }
                    for t in s.tools
                ]
            }
            if s.tool_choice is not None:
                choice = s.tool_choice
                prompt_start["toolConfiguration"]["toolChoice"] = (
                    {"tool": {"name": choice.name}} if choice.mode == "tool" else {choice.mode: {}}
                )
        events = [_event("sessionStart", session_start), _event("promptStart", prompt_start)]
        events += self._text_block("SYSTEM", s.instructions, interactive=False)
        if s.speech_instructions and s.model.speech_prompt:
            # Nova 2's speech prompt: after the system prompt, before any history.
            events += self._text_block("SYSTEM_SPEECH", s.speech_instructions, interactive=False)
        self._prompt_open = True
        return events

    def start_events(self, history: Sequence[Message] | None = None) -> list[bytes]:
        """The conversation so far (``history``, default the settings' history, cleaned by
        ``prepare_history``), then the long-lived audio content; after ``setup_events``."""
        events: list[bytes] = []
        chosen = self.settings.history if history is None else history
        for message in prepare_history(chosen):
            events += self._text_block(message.role.upper(), message.text, interactive=False)
        events.append(
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": self.audio_content_name,
                    "type": "AUDIO",
                    "interactive": True,
                    "role": "USER",
                    "audioInputConfiguration": {
                        "mediaType": "audio/lpcm",
                        "sampleRateHertz": self.settings.input_sample_rate,
                        "sampleSizeBits": 16,
                        "channelCount": 1,
                        "audioType": "SPEECH",
                        "encoding": "base64",
                    },
                },
            )
        )
        self._audio_open = True
        return events

    def audio_event(self, pcm: bytes) -> bytes:
        """One audioInput event for a piece of PCM16 mono at the input rate (built without a
        JSON encoder: this runs ~31 times a second per session)."""
        return self._audio_prefix + base64.b64encode(pcm) + b'"}}}'

    def text_events(self, text: str) -> list[bytes]:
        """Typed user input during the voice session (Nova 2 only)."""
        if not self.settings.model.interactive_text:
            raise UnsupportedError(
                f"{self.settings.model.model_id} does not accept typed text during a voice"
                " session; use amazon.nova-2-sonic-v1:0"
            )
        if not text.strip():
            raise ValueError("text is empty")
        self._user_input()
        return self._text_block("USER", text, interactive=True)

    def tool_result_events(self, result: ToolResult) -> list[bytes]:
        """contentStart, toolResult, contentEnd: to be sent together, without interleaving."""
        if result.call_id not in self._awaiting_results:
            known = ", ".join(sorted(self._awaiting_results)) or "none"
            raise ValueError(
                f"no tool call {result.call_id!r} is waiting for a result (waiting: {known})"
            )
        self._awaiting_results.discard(result.call_id)
        content_name = str(uuid.uuid4())
        return [
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": content_name,
                    "interactive": False,
                    "type": "TOOL",
                    "role": "TOOL",
                    "toolResultInputConfiguration": {
                        "toolUseId": result.call_id,
                        "type": "TEXT",
                        "textInputConfiguration": {"mediaType": "text/plain"},
                    },
                },
            ),
            _event(
                "toolResult",
                {
                    "promptName": self.prompt_name,
                    "contentName": content_name,
                    "content": tool_result_json(result),
                },
            ),
            _event("contentEnd", {"promptName": self.prompt_name, "contentName": content_name}),
        ]

    def closing_events(self) -> list[bytes]:
        """contentEnd (audio, if open), promptEnd (if started), sessionEnd: the orderly close."""
        events = []
        if self._audio_open:
            events.append(
                _event(
                    "contentEnd",
                    {"promptName": self.prompt_name, "contentName": self.audio_content_name},
                )
            )
        if self._prompt_open:
            events.append(_event("promptEnd", {"promptName": self.prompt_name}))
        events.append(_event("sessionEnd", {}))
        self._audio_open = self._prompt_open = False
        return events

    @property
    def pending_tool_calls(self) -> frozenset[str]:
        """Tool call ids announced to the caller and not answered yet."""
        return frozenset(self._awaiting_results)

    def _text_block(self, role: str, text: str, *, interactive: bool) -> list[bytes]:
        content_name = str(uuid.uuid4())
        events = [
            _event(
                "contentStart",
                {
                    "promptName": self.prompt_name,
                    "contentName": content_name,
                    "type": "TEXT",
                    "interactive": interactive,
                    "role": role,
                    "textInputConfiguration": {"mediaType": "text/plain"},
                },
            )
        ]
        for piece in split_utf8(text):
            events.append(
                _event(
                    "textInput",
                    {"promptName": self.prompt_name, "contentName": content_name, "content": piece},
                )
            )
        events.append(
            _event("contentEnd", {"promptName": self.prompt_name, "contentName": content_name})
        )
        return events

    # ---- output --------------------------------------------------------------------------

    def interrupt(self) -> None:
        """The caller stopped the assistant: end the turn and mute the rest of its audio."""
        self._interrupt("client")

    def receive(self, payload: bytes) -> list[Event]:
        """Interpret one output event (the JSON bytes Bedrock sent).

        Raises ``MalformedEventError`` for an event that cannot be read (not JSON, not one
        event, a field of the wrong type): it names the event and what was wrong, never the
        content, so that the caller can log it and skip it while the stream goes on. An event
        of a name this code does not know is ignored (logged once per stream)."""
        try:
            message = json.loads(payload)
        except ValueError:
            raise MalformedEventError("?", "not JSON") from None
        event = message.get("event") if isinstance(message, dict) else None
        if not isinstance(event, dict) or len(event) != 1:
            raise MalformedEventError("?", 'not of the form {"event": {"<name>": {...}}}')
        ((name, body),) = event.items()
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            if name not in self._unknown:
                self._unknown.add(name)
                log.info("ignoring output event %s, unknown to this version", name[:64])
            return []
        if not isinstance(body, dict):
            raise MalformedEventError(name, f"its body is {_json_type(body)}, not an object")
        try:
            events: list[Event] = handler(body)
        except _BadFieldError as bad:
            raise MalformedEventError(name, str(bad)) from None
        except (TypeError, ValueError, AttributeError, LookupError, OverflowError) as exc:
            # A reading this module did not foresee: still one event lost, not the session.
            raise MalformedEventError(name, f"unreadable ({type(exc).__name__})") from None
        return events

    def _on_completionStart(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        return []

    def _on_completionEnd(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        # A server that makes each answer a completion ends the turn here; one with a
        # session-wide completion sends it at the end, when a turn still open is over too.
        if _text(body, "stopReason") == "INTERRUPTED":
            return self._interrupt("barge_in")
        return self._end_turn()

    def _on_contentStart(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        content_id = _text(body, "contentId")
        kind = _text(body, "type")
        role = _text(body, "role")
        final = True
        fields = _text(body, "additionalModelFields")
        if fields:
            try:
                stage = json.loads(fields)
            except ValueError:
                raise _BadFieldError("additionalModelFields is not JSON") from None
            if not isinstance(stage, dict):
                raise _BadFieldError("additionalModelFields is not a JSON object")
            final = stage.get("generationStage", "FINAL") != "SPECULATIVE"
        content = _Content(kind, role, final)
        self._contents[content_id] = content
        if role == "ASSISTANT":
            turn = self._turn
            trailing = turn is not None and turn.final_may_trail and kind == "TEXT" and final
            if turn is None or (turn.ended and not turn.interrupted and not trailing):
                self._turn = turn = _Turn()
            turn.final_may_trail = False
            content.muted = turn.interrupted
            if kind == "AUDIO":
                turn.audio_contents.add(content_id)
            elif kind == "TEXT" and not final:
                turn.speculative += 1
        elif role == "USER":
            # Only an interrupted turn is closed by user input: Bedrock may send the barge-in
            # marker for a turn after the new user content has begun.
            self._user_input()
            if self._turn is not None:
                self._turn.final_may_trail = False
        return []

    def _user_input(self) -> None:
        if self._turn is not None and self._turn.interrupted:
            self._turn = None

    def _on_textOutput(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        content = self._contents.get(_text(body, "contentId"))
        text = _text(body, "content")
        role = _text(body, "role") or (content.role if content else "")
        if role == "ASSISTANT" and _is_interrupted_marker(text):
            return self._interrupt("barge_in")
        if role == "USER":
            return [Event.transcript(text)] if text else []
        if content is not None and content.muted:
            return []  # leftovers of an interrupted turn
        final = content.final if content else True
        return [Event.text_output(text, final=final)] if text else []

    def _on_audioOutput(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        content = self._contents.get(_text(body, "contentId"))
        data = _text(body, "content")
        if content is not None and content.muted:
            return []
        try:
            pcm = base64.b64decode(data, validate=True)
        except ValueError:
            raise _BadFieldError("content is not base64") from None
        if len(pcm) % 2:
            raise _BadFieldError("content is not whole 16-bit samples")
        return [Event.audio_output(pcm, self.settings.output_sample_rate)] if pcm else []

    def _on_toolUse(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        call_id = _text(body, "toolUseId")
        name = _text(body, "toolName")
        raw = body.get("content") or "{}"
        if not isinstance(raw, str | dict):
            raise _BadFieldError(f"content is {_json_type(raw)}, not a JSON string")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else dict(raw)
            if not isinstance(arguments, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError, RecursionError):
            # The arguments are the user's words: logged by size only.
            log.warning("tool %s sent non-object arguments (%d characters)", name[:64], len(raw))
            arguments = {"_raw": raw}
        self._tool_uses[call_id] = ToolCall(call_id, name, arguments)
        return []

    def _on_contentEnd(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        content_id = _text(body, "contentId")
        stop = _text(body, "stopReason")
        content = self._contents.pop(content_id, None)
        if stop == "INTERRUPTED":
            return self._interrupt("barge_in")
        if stop == "TOOL_USE" or (content is not None and content.kind == "TOOL"):
            calls = list(self._tool_uses.values())
            self._tool_uses.clear()
            self._awaiting_results.update(c.call_id for c in calls)
            return [Event.tool(c) for c in calls]
        turn = self._turn
        if content is None or content.role != "ASSISTANT" or content.muted or turn is None:
            return []
        if content.kind == "TEXT" and content.final:
            turn.finals += 1
            if stop == "END_TURN" or turn.spoken_in_full():
                return self._end_turn()
        elif content.kind == "AUDIO" and stop == "END_TURN":
            turn.audio_ended_turn = True
            if turn.spoken_in_full():
                turn.final_may_trail = turn.speculative == 0
                return self._end_turn()
        return []

    def _end_turn(self) -> list[Event]:
        turn = self._turn
        if turn is None or turn.ended:
            return []
        turn.ended = True
        return [Event.turn_end()]

    def _on_usageEvent(self, body: dict[str, Any]) -> list[Event]:  # noqa: N802
        total = _object(_object(body, "details"), "total", "details.total")
        given = _object(total, "input", "details.total.input")
        taken = _object(total, "output", "details.total.output")
        usage = Usage(
            input_speech_tokens=_count(given, "speechTokens"),
            input_text_tokens=_count(given, "textTokens"),
            output_speech_tokens=_count(taken, "speechTokens"),
            output_text_tokens=_count(taken, "textTokens"),
            total_tokens=_count(body, "totalTokens"),
        )
        return [Event.usage_event(usage)]

    def _interrupt(self, reason: str) -> list[Event]:
        turn = self._turn
        if turn is None or turn.ended:
            return []
        turn.ended = turn.interrupted = True
        for content_id in turn.audio_contents:
            if content_id in self._contents:
                self._contents[content_id].muted = True
        return [Event.interrupted(reason)]


def tool_result_json(result: ToolResult) -> str:
    """The toolResult content: the result text if it is a JSON object, else wrapped in one."""
    text = result.text()
    if result.is_error:
        return json.dumps({"error": text or "the tool failed"})
    try:
        if isinstance(json.loads(text), dict):
            return text
    except ValueError:
        pass
    return json.dumps({"result": text})


def _is_interrupted_marker(text: str) -> bool:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return False
    try:
        value = json.loads(stripped)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("interrupted") is True


class MalformedEventError(ValueError):
    """An output event that cannot be read. Its message names the event and what was wrong,
    never the event's content (which may carry what the user said)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name[:64]  # a name is Bedrock's choice: bounded in logs
        self.problem = problem
        super().__init__(f"{self.name}: {problem}")


class _BadFieldError(ValueError):
    """A field of an output event has the wrong type (the message says which, not its value)."""


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def _text(body: dict[str, Any], name: str) -> str:
    """A string field ("" when absent or null)."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadFieldError(f"{name} is {_json_type(value)}, not a string")
    return value


def _object(body: dict[str, Any], name: str, path: str | None = None) -> dict[str, Any]:
    """An object field ({} when absent or null)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadFieldError(f"{path or name} is {_json_type(value)}, not an object")
    return value


def _count(body: dict[str, Any], name: str) -> int:
    """A token count (0 when absent)."""
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadFieldError(f"{name} is {_json_type(value)}, not a count")
    return value


def _event(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"event": {name: body}}, separators=(",", ":")).encode()
