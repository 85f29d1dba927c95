"""The Realtime session configuration as Nova Sonic can honour it: audio formats, voices, turn
detection, tools. ``session.update`` is read into a :class:`SessionConfig` here, and the
configuration in force is written back in ``session.created`` / ``session.updated``.

Anything the client asks for that Nova cannot do is refused field by field (a
:class:`RealtimeError` naming the ``param``); the rest of the update still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from novakit.s2s.config import ToolDefinition
from novakit.s2s.errors import ConfigError
from novakit.s2s.nova.models import MODELS

from ...protocol import ErrorCode, FrameRef, ProtocolError

__all__ = [
    "FORMATS",
    "NOVA_VOICES",
    "OPENAI_VOICES",
    "AudioFormat",
    "RealtimeError",
    "SessionConfig",
    "read_session_update",
]


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A Realtime audio format: its wire name, the PCM rate the model works at, and whether the
    samples travel as G.711 bytes (one a sample) rather than PCM16."""

    type: str
    rate: int
    g711: str | None = None  # "ulaw" or "alaw"

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate} if self.g711 is None else {"type": self.type}


#: Realtime's formats. Nova Sonic takes and speaks 8 and 24 kHz itself: no resampling.
FORMATS: Final[Mapping[str, AudioFormat]] = {
    "audio/pcm": AudioFormat("audio/pcm", 24000),
    "audio/pcmu": AudioFormat("audio/pcmu", 8000, "ulaw"),
    "audio/pcma": AudioFormat("audio/pcma", 8000, "alaw"),
}
PCM: Final = FORMATS["audio/pcm"]

#: Every voice of a Nova Sonic model (the model in use checks its own list when it starts).
NOVA_VOICES: Final[frozenset[str]] = frozenset().union(*(m.voices for m in MODELS.values()))

#: OpenAI's voice names, each mapped to the Nova Sonic voice closest in register (English).
OPENAI_VOICES: Final[Mapping[str, str]] = {
    "alloy": "tiffany",
    "ash": "matthew",
    "ballad": "matthew",
    "coral": "amy",
    "echo": "matthew",
    "sage": "olivia",
    "shimmer": "tiffany",
    "verse": "matthew",
    "marin": "tiffany",
    "cedar": "matthew",
}

# Realtime's semantic VAD eagerness -> Nova's endpointing sensitivity (HIGH ends turns sooner).
_EAGERNESS: Final = {"high": "HIGH", "medium": "MEDIUM", "auto": "MEDIUM", "low": "LOW"}
_SENSITIVITY_TO_EAGERNESS: Final = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}
# Nova's pauses at each sensitivity (about 1.5 / 1.75 / 2 s): server VAD's silence_duration_ms
# picks the closest one at least as long.
_SILENCE_MS: Final = (("HIGH", 1500), ("MEDIUM", 1750), ("LOW", 2000))


class RealtimeError(ProtocolError):
    """A refused client event or field, with the Realtime error ``code`` to send."""

    def __init__(
        self,
        realtime_code: str,
        message: str,
        *,
        event: str | None = None,
        event_id: str | None = None,
        param: str | None = None,
        code: ErrorCode = ErrorCode.BAD_FRAME,
    ) -> None:
        super().__init__(code, message, ref=FrameRef(event, None, event_id, param))
        self.realtime_code = realtime_code


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a Realtime client agreed to, in Realtime's terms and in Nova's."""

    model: str
    voice: str
    instructions: str = ""
    input_format: AudioFormat = PCM
    output_format: AudioFormat = PCM
    #: The Realtime function tools as declared (reported back as they came).
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: Any = "auto"
    #: The turn detection reported back; ``endpointing`` is what Nova is given (None: Nova's
    #: default, the deployment's setting).
    turn_detection: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "semantic_vad", "eagerness": "auto"}
    )
    endpointing: str | None = None

    def tool_definitions(self) -> tuple[ToolDefinition, ...]:
        return tuple(
            ToolDefinition(
                str(t["name"]), str(t.get("description") or t["name"]), t.get("parameters") or {}
            )
            for t in self.tools
        )

    def nova_tool_choice(self) -> str | None:
        """``tool_choice`` as ``ClientStart.tool_choice`` takes it: auto, any or a tool name."""
        choice = self.tool_choice
        if choice == "required":
            return "any"
        if isinstance(choice, Mapping):
            return str(choice.get("name"))
        return None  # auto: the model decides

    def as_json(self) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        return {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": self.input_format.as_json(),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(self.turn_detection),
                },
                "output": {
                    "format": self.output_format.as_json(),
                    "voice": self.voice,
                    "speed": 1.0,
                },
            },
            "tools": [dict(t) for t in self.tools],
            "tool_choice": self.tool_choice,
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
        }

    def saved(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "voice": self.voice,
            "instructions": self.instructions,
            "input_format": self.input_format.type,
            "output_format": self.output_format.type,
            "tools": [dict(t) for t in self.tools],
            "tool_choice": self.tool_choice,
            "turn_detection": dict(self.turn_detection),
            "endpointing": self.endpointing,
        }

    @classmethod
    def restored(cls, saved: Mapping[str, Any], default: SessionConfig) -> SessionConfig:
        """The configuration a previous owner saved (fields it lacks keep ``default``'s)."""
        try:
            return replace(
                default,
                model=str(saved.get("model", default.model)),
                voice=str(saved.get("voice", default.voice)),
                instructions=str(saved.get("instructions", default.instructions)),
                input_format=FORMATS[str(saved.get("input_format", default.input_format.type))],
                output_format=FORMATS[str(saved.get("output_format", default.output_format.type))],
                tools=tuple(saved.get("tools", ())),
                tool_choice=saved.get("tool_choice", "auto"),
                turn_detection=dict(saved.get("turn_detection", default.turn_detection)),
                endpointing=saved.get("endpointing"),
            )
        except (KeyError, TypeError, ValueError):
            return default


def read_session_update(
    session: object, current: SessionConfig, event_id: str | None
) -> tuple[SessionConfig, list[RealtimeError]]:
    """``current`` with the fields of a ``session.update``'s ``session`` applied, and a refusal
    for each field that could not be (those keep their value)."""
    refusals: list[RealtimeError] = []

    def refuse(code: str, param: str, message: str) -> None:
        refusals.append(
            RealtimeError(
                code, message, event="session.update", event_id=event_id, param=f"session.{param}"
            )
        )

    if not isinstance(session, Mapping):
        refuse("invalid_type", "", "'session' must be an object")
        return current, refusals
    config = current
    kind = session.get("type", "realtime")
    if kind != "realtime":
        refuse(
            "unsupported_value",
            "type",
            f"session type {kind!r} is not supported: this server runs speech-to-speech"
            " (type 'realtime') sessions only",
        )
        return current, refusals
    if "model" in session:
        model = session["model"]
        if isinstance(model, str) and model:
            config = replace(config, model=model)
        else:
            refuse("invalid_value", "model", "'model' must be a non-empty string")
    if "instructions" in session:
        text = session["instructions"]
        if isinstance(text, str):
            config = replace(config, instructions=text)
        else:
            refuse("invalid_type", "instructions", "'instructions' must be a string")
    modalities = session.get("output_modalities")
    if modalities is not None and modalities != ["audio"]:
        refuse(
            "unsupported_value",
            "output_modalities",
            "Nova Sonic always answers in speech (with its transcript): output_modalities"
            " must be ['audio']",
        )
    audio = session.get("audio")
    if audio is not None:
        config = _read_audio(audio, config, refuse)
    if "tools" in session:
        config = _read_tools(session["tools"], config, refuse)
    if "tool_choice" in session:
        config = _read_tool_choice(session["tool_choice"], config, refuse)
    for name in ("prompt", "tracing", "include"):
        if session.get(name) is not None:
            refuse("unsupported_value", name, f"'{name}' is not supported by this server")
    tokens = session.get("max_output_tokens")
    if tokens is not None and tokens != "inf":
        refuse(
            "unsupported_value",
            "max_output_tokens",
            "Nova Sonic's answers are not capped per response here; max_output_tokens must be"
            " 'inf'",
        )
    return config, refusals


def _read_audio(audio: object, config: SessionConfig, refuse: Any) -> SessionConfig:
    if not isinstance(audio, Mapping):
        refuse("invalid_type", "audio", "'audio' must be an object")
        return config
    for side in ("input", "output"):
        part = audio.get(side)
        if part is None:
            continue
        if not isinstance(part, Mapping):
            refuse("invalid_type", f"audio.{side}", f"'audio.{side}' must be an object")
            continue
        if part.get("format") is not None:
            found = _read_format(part["format"], f"audio.{side}.format", refuse)
            if found is not None and side == "input":
                config = replace(config, input_format=found)
            elif found is not None:
                config = replace(config, output_format=found)
    output = audio.get("output")
    if isinstance(output, Mapping):
        if output.get("voice") is not None:
            voice = _read_voice(output["voice"], refuse)
            if voice is not None:
                config = replace(config, voice=voice)
        speed = output.get("speed")
        if speed is not None and speed != 1:
            refuse(
                "unsupported_value",
                "audio.output.speed",
                "Nova Sonic speaks at its own pace: speed must be 1.0",
            )
    source = audio.get("input")
    if isinstance(source, Mapping):
        if "turn_detection" in source:
            config = _read_turn_detection(source["turn_detection"], config, refuse)
        if source.get("transcription") is not None:
            refuse(
                "unsupported_value",
                "audio.input.transcription",
                "the user's words are transcribed by Nova Sonic itself (events"
                " conversation.item.input_audio_transcription.completed); no transcription"
                " model can be chosen",
            )
    return config


def _read_format(value: object, param: str, refuse: Any) -> AudioFormat | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        refuse("invalid_type", param, f"'{param}' must be an object with a 'type'")
        return None
    found = FORMATS.get(value["type"])
    if found is None:
        refuse(
            "unsupported_value",
            f"{param}.type",
            f"audio format {value['type']!r} is not supported; use one of {', '.join(FORMATS)}",
        )
        return None
    rate = value.get("rate")
    if rate is not None and rate != found.rate:
        refuse(
            "unsupported_value",
            f"{param}.rate",
            f"{found.type} is {found.rate} Hz here, not {rate}",
        )
        return None
    return found


def _read_voice(value: object, refuse: Any) -> str | None:
    name = value.get("id") if isinstance(value, Mapping) else value
    if not isinstance(name, str) or not name:
        refuse("invalid_type", "audio.output.voice", "'voice' must be a voice name")
        return None
    if name in NOVA_VOICES:
        return name
    mapped = OPENAI_VOICES.get(name.lower())
    if mapped is not None:
        return mapped
    refuse(
        "unsupported_value",
        "audio.output.voice",
        f"voice {name!r} is not a Nova Sonic voice nor an OpenAI voice this server maps to one;"
        f" Nova voices: {', '.join(sorted(NOVA_VOICES))}",
    )
    return None


def _read_turn_detection(value: object, config: SessionConfig, refuse: Any) -> SessionConfig:
    param = "audio.input.turn_detection"
    if value is None:
        refuse(
            "unsupported_value",
            param,
            "Nova Sonic detects the end of each turn itself and cannot turn that off;"
            " use server_vad or semantic_vad",
        )
        return config
    if not isinstance(value, Mapping):
        refuse("invalid_type", param, f"'{param}' must be an object")
        return config
    kind = value.get("type")
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        sensitivity = _EAGERNESS.get(str(eagerness))
        if sensitivity is None:
            refuse(
                "invalid_value", f"{param}.eagerness", "eagerness must be low, medium, high or auto"
            )
            return config
        reported = {"type": "semantic_vad", "eagerness": eagerness}
    elif kind == "server_vad":
        silence = value.get("silence_duration_ms")
        if silence is None:
            sensitivity = "MEDIUM"
        elif isinstance(silence, int) and silence >= 0:
            sensitivity = next((s for s, ms in _SILENCE_MS if silence <= ms), "LOW")
        else:
            refuse("invalid_value", f"{param}.silence_duration_ms", "must be an integer of ms")
            return config
        reported = {
            "type": "server_vad",
            "silence_duration_ms": dict(_SILENCE_MS)[sensitivity],
        }
    else:
        refuse(
            "invalid_value",
            f"{param}.type",
            "turn_detection type must be server_vad or semantic_vad",
        )
        return config
    if value.get("create_response") is False or value.get("interrupt_response") is False:
        refuse(
            "unsupported_value",
            param,
            "Nova Sonic always answers a finished turn and always stops when interrupted:"
            " create_response and interrupt_response cannot be false",
        )
    return replace(config, turn_detection=reported, endpointing=sensitivity)


def _read_tools(value: object, config: SessionConfig, refuse: Any) -> SessionConfig:
    if not isinstance(value, list):
        refuse("invalid_type", "tools", "'tools' must be a list")
        return config
    kept: list[Mapping[str, Any]] = []
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            refuse(
                "unsupported_value",
                param,
                "only function tools are supported (no MCP servers)",
            )
            continue
        name, description = tool.get("name"), tool.get("description") or ""
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        declared = {
            "type": "function",
            "name": name,
            "description": description,
            "parameters": parameters,
        }
        try:
            if not isinstance(name, str) or not isinstance(description, str):
                raise TypeError("'name' and 'description' must be strings")
            ToolDefinition(name, description or name, parameters)
        except (ConfigError, TypeError) as exc:
            refuse("invalid_value", param, f"tool refused: {exc}")
            continue
        kept.append(declared)
    return replace(config, tools=tuple(kept))


def _read_tool_choice(value: object, config: SessionConfig, refuse: Any) -> SessionConfig:
    if value in ("auto", "required"):
        return replace(config, tool_choice=value)
    if isinstance(value, Mapping) and value.get("type") == "function":
        name = value.get("name")
        if any(t["name"] == name for t in config.tools):
            return replace(config, tool_choice={"type": "function", "name": name})
        refuse("invalid_value", "tool_choice.name", f"no declared function named {name!r}")
        return config
    refuse(
        "unsupported_value",
        "tool_choice",
        "tool_choice must be 'auto', 'required' or a function: Nova Sonic cannot be told not"
        " to use its tools ('none')",
    )
    return config
