"""Engine and session configuration, validated when it is built.

``Config`` holds what every provider understands; ``extra`` holds provider-specific settings
(for Nova Sonic: ``region``, ``base_url``, ``ca_bundle``, inference settings; see the provider's
docs). Providers validate ``extra`` and their own limits (voices, rates) when an engine is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

DEFAULT_MODEL = "amazon.nova-2-sonic-v1:0"
COMMON_SAMPLE_RATES = frozenset({8000, 16000, 22050, 24000, 44100, 48000})
_TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool the model may call: ``input_schema`` is a JSON Schema for an object."""

    name: str
    description: str
    input_schema: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} must start with a letter and use only letters, digits,"
                " '_' or '-' (at most 64 characters)"
            )
        if not self.description.strip():
            raise ConfigError(f"tool {self.name!r}: description is empty; the model needs it")
        _check_object_schema(self.name, self.input_schema)

    def schema_json(self) -> str:
        """The input schema as a JSON string (how Bedrock wants it)."""
        return json.dumps(self.input_schema, separators=(",", ":"), sort_keys=True)


def _check_object_schema(tool: str, schema: Mapping[str, Any]) -> None:
    if not isinstance(schema, Mapping):
        raise ConfigError(f"tool {tool!r}: input_schema must be a JSON Schema object (a mapping)")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tool {tool!r}: input_schema is not JSON-serialisable: {exc}") from exc
    if schema.get("type") != "object":
        raise ConfigError(f'tool {tool!r}: input_schema must have "type": "object"')
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or not all(
        isinstance(p, Mapping) for p in properties.values()
    ):
        raise ConfigError(f"tool {tool!r}: input_schema.properties must map names to schemas")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ConfigError(f"tool {tool!r}: input_schema.required must be a list of names")
    missing = [r for r in required if r not in properties]
    if missing:
        raise ConfigError(
            f"tool {tool!r}: input_schema.required names undefined properties: {missing}"
        )


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Which tool the model must call at the start of its answer: ``auto`` (it decides, the
    default), ``any`` (at least one of the tools), or ``tool`` (the one named ``name``).
    ``Config.tool_choice`` also takes the strings ``"auto"`` and ``"any"``."""

    mode: str = "auto"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "any", "tool"):
            raise ConfigError(f"tool_choice mode must be auto, any or tool, not {self.mode!r}")
        if (self.mode == "tool") != (self.name is not None):
            raise ConfigError("tool_choice names a tool with mode 'tool', and only then")

    @classmethod
    def tool(cls, name: str) -> ToolChoice:
        return cls("tool", name)


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text content of a tool result (often JSON the model reads)."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The answer to a ``TOOL_CALL``; ``is_error`` marks a failure the model can talk about.

    An error's content is the plain sentence: the provider wraps it for its model.
    """

    call_id: str
    content: Sequence[TextPart] = ()
    is_error: bool = False

    def text(self) -> str:
        return "".join(part.text for part in self.content)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of conversation history (``role`` is ``"user"`` or ``"assistant"``)."""

    role: str
    text: str

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise ConfigError(f"history role must be 'user' or 'assistant', not {self.role!r}")


@dataclass(frozen=True, slots=True)
class Config:
    """What an engine starts sessions with; each field can be overridden per session."""

    model: str = DEFAULT_MODEL
    instructions: str = ""
    tools: Sequence[ToolDefinition] = ()
    voice: str = "matthew"
    input_sample_rate: int = 16000
    output_sample_rate: int = 24000
    # None: the provider's default (the model decides, as with "auto").
    tool_choice: ToolChoice | str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is empty")
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        for name in ("input_sample_rate", "output_sample_rate"):
            rate = getattr(self, name)
            if rate not in COMMON_SAMPLE_RATES:
                raise ConfigError(
                    f"{name}={rate!r} is not a supported rate; use one of "
                    f"{sorted(COMMON_SAMPLE_RATES)}"
                )
        for tool in self.tools:
            if not isinstance(tool, ToolDefinition):
                raise ConfigError(f"tools must be ToolDefinition objects, got {type(tool)!r}")
        names = [t.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"tool names must be unique; repeated: {duplicates}")
        choice = self.tool_choice
        if isinstance(choice, str):
            if choice not in ("auto", "any"):
                raise ConfigError(
                    f"tool_choice={choice!r}: use 'auto', 'any' or ToolChoice.tool(name)"
                )
            choice = ToolChoice(choice)
            object.__setattr__(self, "tool_choice", choice)
        if choice is not None:
            if not isinstance(choice, ToolChoice):
                raise ConfigError(f"tool_choice must be a ToolChoice, not {type(choice)!r}")
            if choice.mode != "auto" and not self.tools:
                raise ConfigError(f"tool_choice {choice.mode!r} needs tools to choose from")
            if choice.mode == "tool" and choice.name not in names:
                raise ConfigError(
                    f"tool_choice names {choice.name!r}, which is not one of the tools {names}"
                )

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown session options: {sorted(unknown)}")
        return replace(self, **changes)
