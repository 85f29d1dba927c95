"""The tool folder contract: ``tools/<name>/tool.json`` + ``handler.py`` become one tool.

Pure Python (no CDK), so the CDK stack, the bridge's local runner and ``novakit dev`` read the
same folders the same way and fail with the same messages.

``tool.json``::

    {
      "name": "get_time",                      # equals the folder name, [a-z][a-z0-9_]{0,63}
      "description": "What the model reads to decide when to call the tool.",
      "input_schema": {"type": "object", ...},  # JSON Schema of the tool's input
      "timeout_s": 10,                          # optional, 1..60
      "memory_mb": 256,                         # optional, 128..3008
      "environment": {"KEY": "value"},          # optional, handed to the function
      "iam_statements": [                       # optional, extra permissions of the function
        {"actions": ["dynamodb:GetItem"], "resources": ["arn:aws:dynamodb:..."]},
        {"actions": ["ec2:DescribeRegions"], "resources": ["*"],
         "reason": "DescribeRegions has no resource-level permissions"}
      ],
      "examples": ["what time is it in {timezone}"],  # optional, what users say (local emulator)
      "values": {"timezone": "timezones"},      # optional, spoken values of a {slot}
      "say": "It is {time} in {timezone}."      # optional, how the local emulator reads a result
    }

``examples``, ``values`` and ``say`` guide the local emulator's offline speech only (what it
recognizes, which tool it calls, how it reads the result); the model on AWS never sees them.

``handler.py`` defines ``handler(event, context)``; an optional ``requirements.txt`` lists the
packages bundled with the function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ToolManifestError", "ToolSpec", "discover_tools"]

MANIFEST_FILE = "tool.json"
HANDLER_FILE = "handler.py"
REQUIREMENTS_FILE = "requirements.txt"

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
TIMEOUT_RANGE = (1, 60)
MEMORY_RANGE = (128, 3008)
DEFAULT_TIMEOUT_S = 10
DEFAULT_MEMORY_MB = 256

_KNOWN_KEYS = frozenset(
    (
        "name",
        "description",
        "input_schema",
        "timeout_s",
        "memory_mb",
        "environment",
        "iam_statements",
        "examples",
        "values",
        "say",
    )
)
SLOT_PATTERN = re.compile(r"\{([^{}]*)\}")
MAX_EXAMPLES = 50
MAX_EXAMPLE_CHARS = 200
MAX_SAY_CHARS = 500
# The value lists the kit ships (novakit.emulator.slot_values): a slot may name one.
KIT_VALUE_LISTS = frozenset({"cities", "countries", "days", "times", "numbers", "timezones"})
_STATEMENT_KEYS = frozenset({"actions", "resources", "reason"})
# Knowledge base retrieval (no model invocation) is the one Bedrock action a tool may have.
_BEDROCK_ALLOWED = frozenset({"bedrock:retrieve"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Lambda refuses these names in a function's environment.
_RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


class ToolManifestError(ValueError):
    """A tool folder does not follow the contract; the message names the folder."""


_Fail = Callable[[str], ToolManifestError]


@dataclass(frozen=True)
class ToolSpec:
    """One tool, as declared by its folder."""

    name: str
    description: str
    input_schema: dict[str, Any]
    folder: Path
    timeout_s: int = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    environment: dict[str, str] = field(default_factory=dict)
    iam_statements: tuple[dict[str, Any], ...] = ()
    requirements: Path | None = None
    examples: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)
    say: str | None = None

    def declaration(self) -> dict[str, Any]:
        """What the model is told about the tool."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def discover_tools(root: Path) -> list[ToolSpec]:
    """Read every tool folder under ``root``, sorted by name.

    A missing ``root`` means no tools. Folders whose names start with ``.`` or ``_`` (caches,
    shared helpers) are skipped; any other folder must be a valid tool.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    specs: dict[str, ToolSpec] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        spec = load_tool(folder)
        if spec.name in specs:
            raise ToolManifestError(
                f"{folder}: tool name {spec.name!r} is already used by {specs[spec.name].folder}"
            )
        specs[spec.name] = spec
    return [specs[name] for name in sorted(specs)]


def load_tool(folder: Path) -> ToolSpec:
    """Read and check one tool folder."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ToolManifestError(f"{folder}: missing {MANIFEST_FILE}")
    if not (folder / HANDLER_FILE).is_file():
        raise ToolManifestError(
            f"{folder}: missing {HANDLER_FILE} (it must define handler(event, context))"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ToolManifestError(f"{folder}: {MANIFEST_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ToolManifestError(f"{folder}: {MANIFEST_FILE} must hold a JSON object")

    def fail(message: str) -> ToolManifestError:
        return ToolManifestError(f"{folder}: {MANIFEST_FILE}: {message}")

    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: {sorted(_KNOWN_KEYS)}")

    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise fail(f"name must match [a-z][a-z0-9_]{{0,63}}, got {name!r}")
    if name != folder.name:
        raise fail(f"name {name!r} must equal the folder name {folder.name!r}")

    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail("description must be a non-empty string")

    schema = raw.get("input_schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise fail('input_schema must be a JSON Schema object with "type": "object"')
    if "properties" in schema and not isinstance(schema["properties"], dict):
        raise fail("input_schema.properties must be an object")

    timeout_s = _int_in_range(raw, "timeout_s", DEFAULT_TIMEOUT_S, TIMEOUT_RANGE, fail)
    memory_mb = _int_in_range(raw, "memory_mb", DEFAULT_MEMORY_MB, MEMORY_RANGE, fail)
    environment = _environment(raw.get("environment"), fail)
    statements = _iam_statements(raw.get("iam_statements"), fail)
    examples = _examples(raw.get("examples"), schema, fail)
    values = _values(raw.get("values"), schema, fail)
    say = raw.get("say")
    if say is not None and (
        not isinstance(say, str) or not say.strip() or len(say) > MAX_SAY_CHARS
    ):
        raise fail(f"say must be a non-empty string of at most {MAX_SAY_CHARS} characters")

    requirements = folder / REQUIREMENTS_FILE
    return ToolSpec(
        name=name,
        description=description,
        input_schema=schema,
        folder=folder,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        environment=environment,
        iam_statements=statements,
        requirements=requirements if requirements.is_file() else None,
        examples=examples,
        values=values,
        say=say,
    )


def _int_in_range(
    raw: dict[str, Any],
    key: str,
    default: int,
    bounds: tuple[int, int],
    fail: _Fail,
) -> int:
    value = raw.get(key, default)
    low, high = bounds
    # bool is an int subclass; true/false is never a meant number here.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise fail(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _environment(value: Any, fail: _Fail) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("environment must be an object of string values")
    for key, item in value.items():
        if not _ENV_NAME.fullmatch(key):
            raise fail(f"environment name {key!r} is not a valid variable name")
        if key in _RESERVED_ENV:
            raise fail(f"environment name {key!r} is reserved by Lambda")
        if not isinstance(item, str):
            raise fail(f"environment value of {key!r} must be a string, got {item!r}")
    return dict(value)


def _iam_statements(value: Any, fail: _Fail) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail("iam_statements must be a list")
    statements: list[dict[str, Any]] = []
    for index, statement in enumerate(value):
        where = f"iam_statements[{index}]"
        if not isinstance(statement, dict):
            raise fail(f"{where} must be an object with actions and resources")
        unknown = sorted(set(statement) - _STATEMENT_KEYS)
        if unknown:
            raise fail(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_STATEMENT_KEYS)}")
        actions = statement.get("actions")
        resources = statement.get("resources")
        for key, items in (("actions", actions), ("resources", resources)):
            if (
                not isinstance(items, list)
                or not items
                or not all(isinstance(i, str) and i for i in items)
            ):
                raise fail(f"{where}.{key} must be a non-empty list of strings")
        assert isinstance(actions, list) and isinstance(resources, list)
        for action in actions:
            if action == "*" or ":" not in action:
                raise fail(f"{where}: action {action!r} must be service:Action, not all actions")
            # The bridge is the only caller of the model: a tool that invokes models could
            # bypass the session's guardrails and budget. Reading a knowledge base is allowed.
            if action.lower().startswith("bedrock:") and action.lower() not in _BEDROCK_ALLOWED:
                raise fail(
                    f"{where}: tools get no Bedrock permissions except "
                    f"{sorted(_BEDROCK_ALLOWED)} ({action!r})"
                )
        reason = statement.get("reason")
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise fail(f"{where}.reason must be a non-empty string")
        if "*" in resources and reason is None:
            raise fail(f'{where}: resource "*" needs a "reason" saying why no narrower ARN works')
        statements.append(
            {"actions": list(actions), "resources": list(resources)}
            | ({"reason": reason} if reason else {})
        )
    return tuple(statements)


def _examples(value: Any, schema: dict[str, Any], fail: _Fail) -> tuple[str, ...]:
    """Example utterances; each ``{slot}`` names a property, and together they fill the
    required ones (an example must be a complete call)."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_EXAMPLES:
        raise fail(f"examples must be a list of at most {MAX_EXAMPLES} strings")
    properties = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if isinstance(name, str)]
    for index, example in enumerate(value):
        where = f"examples[{index}]"
        if not isinstance(example, str) or not example.strip():
            raise fail(f"{where} must be a non-empty string")
        if len(example) > MAX_EXAMPLE_CHARS:
            raise fail(f"{where} is longer than {MAX_EXAMPLE_CHARS} characters")
        slots = SLOT_PATTERN.findall(example)
        for slot in slots:
            if slot not in properties:
                raise fail(f"{where}: {{{slot}}} is not a property of input_schema")
        if len(set(slots)) != len(slots):
            raise fail(f"{where}: a slot appears twice")
        missing = [name for name in required if name not in slots]
        if missing:
            raise fail(f"{where} must fill the required properties {missing} with {{slots}}")
    return tuple(value)


def _values(value: Any, schema: dict[str, Any], fail: _Fail) -> dict[str, Any]:
    """Spoken values per property: a kit list's name, a list of strings, or an object from
    what is said to the value the tool gets."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("values must be an object from property names to values")
    properties = schema.get("properties", {})
    for name, listed in value.items():
        where = f"values.{name}"
        if name not in properties:
            raise fail(f"{where}: {name!r} is not a property of input_schema")
        if isinstance(listed, str):
            if listed not in KIT_VALUE_LISTS:
                raise fail(f"{where}: no value list {listed!r}; lists: {sorted(KIT_VALUE_LISTS)}")
        elif isinstance(listed, list):
            if not listed or not all(isinstance(v, str) and v.strip() for v in listed):
                raise fail(f"{where} must be a non-empty list of strings")
        elif isinstance(listed, dict):
            if not listed or not all(isinstance(k, str) and k.strip() for k in listed):
                raise fail(f"{where} must map spoken words to values")
        else:
            raise fail(f"{where} must be a list name, a list of strings or an object")
    return dict(value)
