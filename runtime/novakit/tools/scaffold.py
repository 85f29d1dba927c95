"""``novakit new-tool NAME``: a new tool folder with a manifest, a handler and its test."""

from __future__ import annotations

import json
from pathlib import Path

from .manifest import NAME_PATTERN, ToolManifestError, load_tool

HANDLER = '''"""{name}: {description}"""

from __future__ import annotations

from typing import Any

from novakit.tools.powertools import Call, ToolError, logger, summary, voice_tool


@voice_tool
def handler(params: dict[str, Any], call: Call) -> dict[str, Any]:
    # params is the model's input, already checked against input_schema in tool.json.
    query = params["query"]
    # What the user said stays out of the logs: summary() gives its type, size and fingerprint.
    logger.info("{name} called", extra={{"query": summary(query)}})
    if query.strip().lower() == "nothing":
        # What the model should tell the user when the tool cannot help.
        raise ToolError("there is nothing to look up")
    # Return anything JSON-serialisable: the model reads it and answers in its own words.
    return {{"query": query, "answer": f"{name} received {{query!r}}"}}
'''

TEST = '''"""Tests of the {name} tool, through the same Lambda event the bridge sends."""

from pathlib import Path

from novakit.bridge.tools import LocalContext, load_handler

handler = load_handler(Path(__file__).with_name("handler.py"))


def event(**params: object) -> dict[str, object]:
    return {{"version": "1", "tool": "{name}", "toolUseId": "test-1", "input": params}}


def test_it_answers() -> None:
    answer = handler(event(query="hello"), LocalContext("{name}", 10))
    assert answer == {{"result": {{"query": "hello", "answer": "{name} received 'hello'"}}}}


def test_it_says_when_it_cannot_help() -> None:
    answer = handler(event(query="nothing"), LocalContext("{name}", 10))
    assert answer == {{"error": "there is nothing to look up"}}


def test_invalid_input_is_refused_with_the_field_named() -> None:
    answer = handler(event(query=42), LocalContext("{name}", 10))
    assert answer["error"].startswith("invalid input (query)")
'''


def new_tool(name: str, root: Path, description: str = "") -> Path:
    """Create ``root/name/`` (tool.json, handler.py, test_<name>.py); returns the folder."""
    if not NAME_PATTERN.fullmatch(name):
        raise ToolManifestError(
            f"{name!r} is not a valid tool name: start with a lowercase letter, then lowercase"
            " letters, digits or '_' (at most 64 characters)"
        )
    folder = root / name
    if folder.exists():
        raise ToolManifestError(f"{folder} already exists")
    description = description or f"Describe what {name} does and when the model should use it."
    spoken = name.replace("_", " ")
    manifest = {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What the user asked for."}},
            "required": ["query"],
        },
        "timeout_s": 10,
        "memory_mb": 256,
        # What users say to call it: the local emulator (make dev) recognizes these phrases
        # and calls the tool with the {slot} words; the model on AWS never sees them.
        "examples": [f"ask {spoken} about {{query}}", f"use {spoken} for {{query}}"],
    }
    folder.mkdir(parents=True)
    (folder / "tool.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (folder / "handler.py").write_text(
        HANDLER.format(name=name, description=description), encoding="utf-8"
    )
    (folder / f"test_{name}.py").write_text(TEST.format(name=name), encoding="utf-8")
    load_tool(folder)  # the scaffold must itself be a valid tool
    return folder


def main(argv: list[str]) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="novakit new-tool",
        description="Create tools/NAME/ with tool.json, handler.py and a test.",
    )
    parser.add_argument("name", help="tool name: lowercase letters, digits and _")
    parser.add_argument("--dir", type=Path, default=Path("tools"), help="tools folder (tools)")
    parser.add_argument("--description", default="", help="what the model reads about it")
    args = parser.parse_args(argv)
    try:
        folder = new_tool(args.name, args.dir, args.description)
    except ToolManifestError as exc:
        print(f"novakit new-tool: {exc}", file=sys.stderr)
        return 2
    print(f"created {folder}/: tool.json, handler.py, test_{args.name}.py")
    print(f"next: edit {folder}/tool.json (description, input_schema) and handler.py;")
    print("      `make dev` serves it, `make test` runs its test, `make deploy` ships it.")
    return 0
