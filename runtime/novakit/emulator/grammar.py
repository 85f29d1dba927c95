"""Nova Sonic's input event grammar as a state machine, sans I/O.

``parse_event`` turns the JSON carried by one input chunk into an ``InputEvent``; ``InputGrammar``
checks it against the session so far and either accepts it (returning what the conversation engine
needs to know about it) or raises ``ViolationError``. Bedrock answers a violation with a
``validationException`` on the stream and ends it, so a violation carries that exception name and
a message that names the event and the field.

Where AWS's own documents disagree the grammar accepts every documented form (docs/nova-fidelity.md
lists each rule with its source): a SYSTEM prompt or a history block with ``interactive`` true or
false, ``toolSpec.inputSchema.json`` as a JSON string or a JSON object. History is whatever USER or
ASSISTANT text comes before the audio content opens; once audio flows, interactive USER text is a
live (typed) turn. Fields Bedrock does not know in sessionStart and promptStart are refused in
Bedrock's words (``INVALID_INPUT``), as Bedrock reportedly refuses a flat
``sessionStart.endpointingSensitivity``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "HISTORY_TEXT_LIMIT",
    "HISTORY_TOTAL_LIMIT",
    "INPUT_EVENTS",
    "INPUT_SAMPLE_RATES",
    "INVALID_INPUT",
    "MODELS",
    "NOVA_2_SONIC",
    "NOVA_SONIC",
    "Accepted",
    "ContentInfo",
    "ContentKind",
    "InputEvent",
    "InputGrammar",
    "ModelInfo",
    "ViolationError",
    "parse_event",
]

NOVA_2_SONIC = "amazon.nova-2-sonic-v1:0"
NOVA_SONIC = "amazon.nova-sonic-v1:0"
HISTORY_TEXT_LIMIT = 1024  # bytes per textInput of a history block
HISTORY_TOTAL_LIMIT = 40 * 1024  # bytes of history text in all
OUTPUT_SAMPLE_RATES = (8000, 16000, 24000)
INPUT_SAMPLE_RATES = (8000, 16000, 24000)  # both input-event pages (v1 and Nova 2)
# Bedrock's message for a malformed event (reported: livekit/agents#6200 quotes it for a flat
# sessionStart.endpointingSensitivity).
INVALID_INPUT = "Invalid input request, please fix your input and try again."
# The fields each opening event may carry (AWS's input-event pages); anything else is refused.
_KNOWN_FIELDS: Mapping[str, frozenset[str]] = {
    "sessionStart": frozenset({"inferenceConfiguration", "turnDetectionConfiguration"}),
    "sessionStart.inferenceConfiguration": frozenset({"maxTokens", "topP", "temperature"}),
    "sessionStart.turnDetectionConfiguration": frozenset({"endpointingSensitivity"}),
    "promptStart": frozenset(
        {
            "promptName",
            "textOutputConfiguration",
            "audioOutputConfiguration",
            "toolUseOutputConfiguration",
            "toolConfiguration",
        }
    ),
    "promptStart.toolConfiguration": frozenset({"tools", "toolChoice"}),
}
INPUT_EVENTS = (
    "sessionStart",
    "promptStart",
    "contentStart",
    "textInput",
    "audioInput",
    "toolResult",
    "contentEnd",
    "promptEnd",
    "sessionEnd",
)
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    nova2: bool  # turn detection settings, interactive text and speaking first
    voices: frozenset[str]


MODELS: Mapping[str, ModelInfo] = {
    NOVA_2_SONIC: ModelInfo(
        NOVA_2_SONIC,
        nova2=True,
        voices=frozenset(
            {
                "matthew",
                "tiffany",
                "amy",
                "olivia",
                "lupe",
                "carlos",
                "ambre",
                "florian",
                "lennart",
                "beatrice",
                "lorenzo",
                "tina",
                "carolina",
                "leo",
                "kiara",
                "arjun",
            }
        ),
    ),
    NOVA_SONIC: ModelInfo(
        NOVA_SONIC,
        nova2=False,
        voices=frozenset(
            {
                "matthew",
                "tiffany",
                "amy",
                "lupe",
                "carlos",
                "ambre",
                "florian",
                "greta",
                "lennart",
                "beatrice",
                "lorenzo",
            }
        ),
    ),
}


class ViolationError(Exception):
    """An input event Bedrock would reject; the stream ends with ``exception_type``.

    ``bedrock_words`` puts Bedrock's own sentence (``INVALID_INPUT``) first, for refusals whose
    message third parties have reported; the emulator's detail follows it.
    """

    exception_type = "validationException"

    def __init__(self, event: str, message: str, *, bedrock_words: bool = False) -> None:
        text = f"{event}: {message}"
        if bedrock_words:
            text = f"{INVALID_INPUT} ({text})"
        super().__init__(text)
        self.event = event
        self.message = text


@dataclass(frozen=True)
class InputEvent:
    """One input event: ``{"event": {name: body}}``; ``audio`` is the decoded PCM of audioInput."""

    name: str
    body: Mapping[str, Any]
    audio: bytes = b""


class ContentKind(StrEnum):
    SYSTEM = "system"  # TEXT, role SYSTEM
    SPEECH_PROMPT = "speech_prompt"  # TEXT, role SYSTEM_SPEECH (Nova 2), after the system prompt
    HISTORY = "history"  # TEXT, USER/ASSISTANT, before the audio content
    USER_TEXT = "user_text"  # TEXT, USER, interactive, once audio flows (Nova 2)
    AUDIO = "audio"  # AUDIO, USER, interactive
    TOOL = "tool"  # TOOL result

    @property
    def wire_type(self) -> str:
        """The content's ``type`` on the wire."""
        return {ContentKind.AUDIO: "AUDIO", ContentKind.TOOL: "TOOL"}.get(self, "TEXT")


_TEXT_KINDS = (
    ContentKind.SYSTEM,
    ContentKind.SPEECH_PROMPT,
    ContentKind.HISTORY,
    ContentKind.USER_TEXT,
)


@dataclass(frozen=True)
class ContentInfo:
    name: str
    kind: ContentKind
    role: str
    tool_use_id: str | None = None


@dataclass(frozen=True)
class Accepted:
    """An accepted event and, for content events, the content it belongs to."""

    event: InputEvent
    content: ContentInfo | None = None


def parse_event(raw: bytes) -> InputEvent:
    """Parse the JSON of one input chunk; audioInput's base64 is decoded here, once."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViolationError("event", f"malformed JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("event"), dict):
        raise ViolationError("event", 'the chunk must be a JSON object {"event": {...}}')
    inner = document["event"]
    if len(inner) != 1:
        raise ViolationError("event", f"expected exactly one event, got {sorted(inner) or 'none'}")
    ((name, body),) = inner.items()
    if name not in INPUT_EVENTS:
        raise ViolationError(name, f"unknown event type '{name}'")
    if not isinstance(body, dict):
        raise ViolationError(name, "the event body must be a JSON object")
    audio = b""
    if name == "audioInput":
        content = body.get("content")
        if not isinstance(content, str):
            raise ViolationError(name, "content must be a base64 string")
        try:
            audio = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ViolationError(name, f"content is not valid base64 ({exc})") from exc
        if len(audio) % 2:
            raise ViolationError(name, "content must hold whole 16-bit samples (odd byte count)")
    return InputEvent(name=name, body=body, audio=audio)


# -- field checks -------------------------------------------------------------


def _get(body: Mapping[str, Any], event: str, path: str, kind: type | tuple[type, ...]) -> Any:
    """The value at a dotted path; a ViolationError naming the field if missing or mistyped."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ViolationError(event, f"{path} is required")
        value = value[part]
    # bool is an int in Python but never a valid number here.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ViolationError(event, f"{path} has the wrong type (got {json.dumps(value)})")
    if not isinstance(value, kind):
        raise ViolationError(event, f"{path} has the wrong type (got {json.dumps(value)[:80]})")
    return value


def _opt(body: Mapping[str, Any], event: str, path: str, kind: type | tuple[type, ...]) -> Any:
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return _get(body, event, path, kind)


def _one_of(body: Mapping[str, Any], event: str, path: str, allowed: tuple[Any, ...]) -> Any:
    value = _get(body, event, path, tuple({type(a) for a in allowed}))
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise ViolationError(event, f"{path} must be one of {choices} (got {json.dumps(value)})")
    return value


def _name(body: Mapping[str, Any], event: str, path: str) -> str:
    value: str = _get(body, event, path, str)
    if not value:
        raise ViolationError(event, f"{path} must not be empty")
    return value


def _only_known(body: Mapping[str, Any], event: str) -> None:
    """Refuse fields Bedrock does not know, at every level listed in ``_KNOWN_FIELDS``."""
    for where, known in _KNOWN_FIELDS.items():
        head, _, path = where.partition(".")
        if head != event:
            continue
        value: Any = body
        for part in path.split(".") if path else ():
            value = value.get(part) if isinstance(value, Mapping) else None
        if not isinstance(value, Mapping):
            continue
        unknown = sorted(set(value) - known)
        if unknown:
            raise ViolationError(
                event,
                f"unknown field {where}.{unknown[0]} (known: {', '.join(sorted(known))})",
                bedrock_words=True,
            )


# -- the state machine --------------------------------------------------------


@dataclass
class _Open:
    info: ContentInfo
    inputs: int = 0


@dataclass
class _Prompt:
    name: str
    used_names: set[str] = field(default_factory=set)
    contents_started: int = 0
    had_system: bool = False
    had_history: bool = False
    had_audio: bool = False  # an AUDIO content has started: history is over, text is live
    history_bytes: int = 0
    open: dict[str, _Open] = field(default_factory=dict)


class _State(StrEnum):
    NEW = "new"
    SESSION = "session"
    PROMPT = "prompt"
    PROMPT_ENDED = "prompt_ended"
    ENDED = "ended"


class InputGrammar:
    """Accepts or rejects input events in order; see the module docstring."""

    def __init__(self, model: ModelInfo) -> None:
        self.model = model
        self._state = _State.NEW
        self._prompt: _Prompt | None = None
        self._pending_tools: set[str] = set()
        self._answered_tools: set[str] = set()

    @property
    def session_ended(self) -> bool:
        return self._state is _State.ENDED

    @property
    def prompt_name(self) -> str | None:
        return self._prompt.name if self._prompt else None

    def expect_tool_result(self, tool_use_id: str) -> None:
        """Record a tool use the model emitted: one toolResult may now answer it."""
        self._pending_tools.add(tool_use_id)

    def accept(self, event: InputEvent) -> Accepted:
        if self._state is _State.ENDED:
            raise ViolationError(event.name, "no events may follow sessionEnd")
        handler = getattr(self, f"_on_{event.name}")
        result: Accepted = handler(event)
        return result

    # session / prompt ---------------------------------------------------------------------------

    def _on_sessionStart(self, event: InputEvent) -> Accepted:  # noqa: N802
        if self._state is not _State.NEW:
            raise ViolationError(event.name, "the session has already started")
        body, name = event.body, event.name
        _only_known(body, name)
        if _opt(body, name, "inferenceConfiguration", dict) is not None:
            max_tokens = _opt(body, name, "inferenceConfiguration.maxTokens", int)
            if max_tokens is not None and max_tokens < 1:
                raise ViolationError(name, "inferenceConfiguration.maxTokens must be positive")
            for key in ("topP", "temperature"):
                value = _opt(body, name, f"inferenceConfiguration.{key}", (int, float))
                if value is not None and not 0 <= value <= 1:
                    raise ViolationError(name, f"inferenceConfiguration.{key} must be in [0, 1]")
        if "turnDetectionConfiguration" in body:
            if not self.model.nova2:
                raise ViolationError(
                    name, f"turnDetectionConfiguration is not supported by {self.model.model_id}"
                )
            _one_of(
                body,
                name,
                "turnDetectionConfiguration.endpointingSensitivity",
                ("HIGH", "MEDIUM", "LOW"),
            )
        self._state = _State.SESSION
        return Accepted(event)

    def _on_promptStart(self, event: InputEvent) -> Accepted:  # noqa: N802
        body, name = event.body, event.name
        if self._state is _State.NEW:
            raise ViolationError(name, "sessionStart must come first")
        if self._state is _State.PROMPT:
            raise ViolationError(name, f"prompt '{self.prompt_name}' is already open")
        if self._state is _State.PROMPT_ENDED:
            raise ViolationError(name, "the prompt has ended; only sessionEnd may follow")
        _only_known(body, name)
        prompt_name = _name(body, name, "promptName")
        if _opt(body, name, "textOutputConfiguration", dict) is not None:
            _one_of(body, name, "textOutputConfiguration.mediaType", ("text/plain",))
        audio = "audioOutputConfiguration"
        _get(body, name, audio, dict)
        _one_of(body, name, f"{audio}.mediaType", ("audio/lpcm",))
        _one_of(body, name, f"{audio}.sampleRateHertz", OUTPUT_SAMPLE_RATES)
        _one_of(body, name, f"{audio}.sampleSizeBits", (16,))
        _one_of(body, name, f"{audio}.channelCount", (1,))
        _one_of(body, name, f"{audio}.encoding", ("base64",))
        if _opt(body, name, f"{audio}.audioType", str) is not None:
            _one_of(body, name, f"{audio}.audioType", ("SPEECH",))
        voice = _get(body, name, f"{audio}.voiceId", str)
        if voice not in self.model.voices:
            raise ViolationError(
                name,
                f"{audio}.voiceId '{voice}' is not a voice of {self.model.model_id} "
                f"({', '.join(sorted(self.model.voices))})",
            )
        if _opt(body, name, "toolUseOutputConfiguration", dict) is not None:
            _one_of(body, name, "toolUseOutputConfiguration.mediaType", ("application/json",))
        if _opt(body, name, "toolConfiguration", dict) is not None:
            self._check_tools(body, name)
        self._prompt = _Prompt(prompt_name)
        self._state = _State.PROMPT
        return Accepted(event)

    def _check_tools(self, body: Mapping[str, Any], name: str) -> None:
        tools = _get(body, name, "toolConfiguration.tools", list)
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            where = f"toolConfiguration.tools[{i}]"
            if not isinstance(tool, dict):
                raise ViolationError(name, f"{where} must be an object")
            tool_name = _name(tool, name, "toolSpec.name")
            if not _TOOL_NAME_RE.match(tool_name):
                raise ViolationError(
                    name, f"{where}.toolSpec.name '{tool_name}' must match [a-zA-Z0-9_-]{{1,64}}"
                )
            if tool_name in seen:
                raise ViolationError(name, f"{where}.toolSpec.name '{tool_name}' is declared twice")
            seen.add(tool_name)
            _get(tool, name, "toolSpec.description", str)
            # The input-events page and AWS's samples give a JSON string, the Nova 2
            # tool-configuration page a JSON object: both are accepted.
            schema = _opt(tool, name, "toolSpec.inputSchema.json", (str, dict))
            if schema is None:
                raise ViolationError(
                    name,
                    f"{where}.toolSpec.inputSchema.json is required "
                    "(a JSON string or a JSON object)",
                )
            if isinstance(schema, str):
                try:
                    schema = json.loads(schema)
                except json.JSONDecodeError as exc:
                    raise ViolationError(
                        name, f"{where}.toolSpec.inputSchema.json is not valid JSON ({exc})"
                    ) from exc
            if not isinstance(schema, dict):
                raise ViolationError(
                    name, f"{where}.toolSpec.inputSchema.json must encode a JSON object"
                )
        self._check_tool_choice(body, name, seen)

    @staticmethod
    def _check_tool_choice(body: Mapping[str, Any], name: str, declared: set[str]) -> None:
        # {"auto": {}} | {"any": {}} | {"tool": {"name": ...}} (the tool-choice pages); the
        # choice is not acted on (a script decides which tool is called).
        choice = _opt(body, name, "toolConfiguration.toolChoice", dict)
        if choice is None:
            return
        where = "toolConfiguration.toolChoice"
        if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            raise ViolationError(
                name, f"{where} must have exactly one of auto, any or tool", bedrock_words=True
            )
        ((mode, value),) = choice.items()
        if not isinstance(value, dict):
            raise ViolationError(name, f"{where}.{mode} must be an object", bedrock_words=True)
        if mode != "tool":
            if value:
                raise ViolationError(name, f"{where}.{mode} takes no fields", bedrock_words=True)
            if mode == "any" and not declared:
                raise ViolationError(name, f"{where}.any needs at least one tool")
            return
        tool = _get(body, name, f"{where}.tool.name", str)
        if set(value) != {"name"}:
            raise ViolationError(name, f"{where}.tool takes only name", bedrock_words=True)
        if tool not in declared:
            raise ViolationError(name, f"{where}.tool.name '{tool}' is not a declared tool")

    def _on_promptEnd(self, event: InputEvent) -> Accepted:  # noqa: N802
        prompt = self._require_prompt(event)
        if prompt.open:
            still = ", ".join(f"'{n}'" for n in prompt.open)
            raise ViolationError(
                event.name, f"content {still} is still open (send contentEnd first)"
            )
        if not self.model.nova2 and not prompt.had_audio:
            # Nova Sonic v1 answers speech only: a prompt without audio is reported refused.
            raise ViolationError(
                event.name,
                f"a prompt to {self.model.model_id} must carry an AUDIO content",
                bedrock_words=True,
            )
        self._state = _State.PROMPT_ENDED
        return Accepted(event)

    def _on_sessionEnd(self, event: InputEvent) -> Accepted:  # noqa: N802
        if self._state is _State.NEW:
            raise ViolationError(event.name, "sessionStart must come first")
        if self._state is _State.PROMPT:
            raise ViolationError(
                event.name, f"prompt '{self.prompt_name}' is still open (send promptEnd first)"
            )
        self._state = _State.ENDED
        return Accepted(event)

    def _require_prompt(self, event: InputEvent) -> _Prompt:
        if self._state is _State.NEW:
            raise ViolationError(event.name, "sessionStart must come first")
        if self._prompt is None or self._state is not _State.PROMPT:
            raise ViolationError(event.name, "no prompt is open (send promptStart first)")
        prompt_name = _name(event.body, event.name, "promptName")
        if prompt_name != self._prompt.name:
            raise ViolationError(
                event.name,
                f"promptName '{prompt_name}' does not match the open prompt '{self._prompt.name}'",
            )
        return self._prompt

    # contents -------------------------------------------------------------------------------------

    def _on_contentStart(self, event: InputEvent) -> Accepted:  # noqa: N802
        prompt = self._require_prompt(event)
        body, name = event.body, event.name
        content_name = _name(body, name, "contentName")
        if content_name in prompt.used_names:
            raise ViolationError(
                name, f"contentName '{content_name}' was already used in this prompt"
            )
        for other in prompt.open.values():
            if other.info.kind is not ContentKind.AUDIO:
                raise ViolationError(
                    name,
                    f"content '{other.info.name}' is still open; text and tool contents must be "
                    "sent whole, without interleaving",
                )
        content_type = _one_of(body, name, "type", ("TEXT", "AUDIO", "TOOL"))
        interactive = _get(body, name, "interactive", bool)
        role = _get(body, name, "role", str)

        tool_use_id: str | None = None
        if content_type == "TEXT":
            kind = self._text_kind(prompt, name, role, interactive)
            _one_of(body, name, "textInputConfiguration.mediaType", ("text/plain",))
        elif content_type == "AUDIO":
            kind = ContentKind.AUDIO
            if role != "USER" or not interactive:
                raise ViolationError(name, "AUDIO content must have role USER and interactive true")
            if any(o.info.kind is ContentKind.AUDIO for o in prompt.open.values()):
                raise ViolationError(name, "an AUDIO content is already open")
            cfg = "audioInputConfiguration"
            _get(body, name, cfg, dict)
            _one_of(body, name, f"{cfg}.mediaType", ("audio/lpcm",))
            _one_of(body, name, f"{cfg}.sampleRateHertz", INPUT_SAMPLE_RATES)
            _one_of(body, name, f"{cfg}.sampleSizeBits", (16,))
            _one_of(body, name, f"{cfg}.channelCount", (1,))
            _one_of(body, name, f"{cfg}.encoding", ("base64",))
            if _opt(body, name, f"{cfg}.audioType", str) is not None:
                _one_of(body, name, f"{cfg}.audioType", ("SPEECH",))
            prompt.had_audio = True
        else:
            kind = ContentKind.TOOL
            if role != "TOOL" or interactive:
                raise ViolationError(name, "TOOL content must have role TOOL and interactive false")
            cfg = "toolResultInputConfiguration"
            tool_use_id = _name(body, name, f"{cfg}.toolUseId")
            _one_of(body, name, f"{cfg}.type", ("TEXT",))
            _one_of(body, name, f"{cfg}.textInputConfiguration.mediaType", ("text/plain",))
            if tool_use_id in self._answered_tools:
                raise ViolationError(
                    name, f"{cfg}.toolUseId '{tool_use_id}' has already been answered"
                )
            if tool_use_id not in self._pending_tools:
                raise ViolationError(
                    name, f"{cfg}.toolUseId '{tool_use_id}' is not a pending tool use"
                )
            self._pending_tools.discard(tool_use_id)
            self._answered_tools.add(tool_use_id)

        info = ContentInfo(content_name, kind, role, tool_use_id)
        prompt.used_names.add(content_name)
        prompt.contents_started += 1
        prompt.open[content_name] = _Open(info)
        return Accepted(event, info)

    def _text_kind(self, prompt: _Prompt, event: str, role: str, interactive: bool) -> ContentKind:
        # AWS's Nova 2 samples send the system prompt with interactive true, its pages with
        # false; the chat-history page sends history with true, the input-events page with
        # false. The flag decides nothing before audio flows: the position does.
        if role == "SYSTEM":
            if prompt.had_system or prompt.contents_started:
                raise ViolationError(event, "the SYSTEM prompt must come first and only once")
            prompt.had_system = True
            return ContentKind.SYSTEM
        if role == "SYSTEM_SPEECH":
            if not self.model.nova2:
                raise ViolationError(
                    event, f"role SYSTEM_SPEECH is not supported by {self.model.model_id}"
                )
            if not prompt.had_system or prompt.had_history or prompt.had_audio:
                raise ViolationError(
                    event, "a SYSTEM_SPEECH prompt must follow the SYSTEM prompt, before history"
                )
            return ContentKind.SPEECH_PROMPT
        if role not in ("USER", "ASSISTANT"):
            raise ViolationError(
                event,
                f"role {role} is not valid for TEXT (SYSTEM, SYSTEM_SPEECH, USER, ASSISTANT)",
            )
        if not prompt.had_audio:
            if not prompt.had_history and role != "USER":
                raise ViolationError(event, "the first history content must have role USER")
            prompt.had_history = True
            return ContentKind.HISTORY
        if role == "USER" and interactive:
            if not self.model.nova2:
                raise ViolationError(
                    event, f"interactive TEXT input is not supported by {self.model.model_id}"
                )
            return ContentKind.USER_TEXT
        if not interactive:
            raise ViolationError(event, "history must come before audio or live text")
        raise ViolationError(
            event, "live TEXT input must have role USER (ASSISTANT text is history only)"
        )

    def _open_content(self, event: InputEvent, expected: ContentKind | None) -> _Open:
        prompt = self._require_prompt(event)
        content_name = _name(event.body, event.name, "contentName")
        current = prompt.open.get(content_name)
        if current is None:
            raise ViolationError(event.name, f"contentName '{content_name}' is not an open content")
        if expected is not None:
            kinds = _TEXT_KINDS if expected is ContentKind.HISTORY else (expected,)
            if current.info.kind not in kinds:
                raise ViolationError(
                    event.name,
                    f"contentName '{content_name}' is of type {current.info.kind.wire_type}, "
                    f"not {'TEXT' if expected is ContentKind.HISTORY else expected.wire_type}",
                )
        for other in prompt.open.values():
            if other is not current and other.info.kind is not ContentKind.AUDIO:
                raise ViolationError(
                    event.name,
                    f"content '{other.info.name}' is open; its events must not be interleaved "
                    "with others",
                )
        return current

    def _on_textInput(self, event: InputEvent) -> Accepted:  # noqa: N802
        current = self._open_content(event, ContentKind.HISTORY)
        text = _get(event.body, event.name, "content", str)
        if current.info.kind is ContentKind.HISTORY:
            size = len(text.encode("utf-8"))
            if size > HISTORY_TEXT_LIMIT:
                raise ViolationError(
                    event.name,
                    f"content of a history textInput is {size} bytes; the limit is "
                    f"{HISTORY_TEXT_LIMIT} (split it into several textInputs)",
                )
            assert self._prompt is not None
            self._prompt.history_bytes += size
            if self._prompt.history_bytes > HISTORY_TOTAL_LIMIT:
                raise ViolationError(
                    event.name,
                    f"history totals {self._prompt.history_bytes} bytes; the limit is "
                    f"{HISTORY_TOTAL_LIMIT}",
                )
        current.inputs += 1
        return Accepted(event, current.info)

    def _on_audioInput(self, event: InputEvent) -> Accepted:  # noqa: N802
        current = self._open_content(event, ContentKind.AUDIO)
        current.inputs += 1
        return Accepted(event, current.info)

    def _on_toolResult(self, event: InputEvent) -> Accepted:  # noqa: N802
        current = self._open_content(event, ContentKind.TOOL)
        _get(event.body, event.name, "content", str)
        if current.inputs:
            raise ViolationError(event.name, "a TOOL content carries exactly one toolResult")
        current.inputs += 1
        return Accepted(event, current.info)

    def _on_contentEnd(self, event: InputEvent) -> Accepted:  # noqa: N802
        current = self._open_content(event, None)
        kind = current.info.kind
        if kind is ContentKind.TOOL and not current.inputs:
            raise ViolationError(
                event.name, f"TOOL content '{current.info.name}' has no toolResult"
            )
        if kind in _TEXT_KINDS and not current.inputs:
            raise ViolationError(event.name, f"TEXT content '{current.info.name}' has no textInput")
        assert self._prompt is not None
        del self._prompt.open[current.info.name]
        return Accepted(event, current.info)
