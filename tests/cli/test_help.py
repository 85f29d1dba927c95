"""``novakit COMMAND -h``: each command names itself, and every option says what it does."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

from novakit import cli
from novakit.emulator import cli as emulator_cli
from novakit.localgw import cli as gateway_cli
from novakit.talk import build_parser as talk_parser

COMMANDS = ["bridge", "gateway", "emulator", "talk", "new-tool", "dev"]


def help_text(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        cli.main([command, "-h"])
    assert exit_.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_names_itself_in_its_usage(command: str) -> None:
    assert help_text(command).startswith(f"usage: novakit {command} ")


def parsers() -> list[argparse.ArgumentParser]:
    top = cli.build_parser()
    (commands,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return [
        top,
        commands.choices["dev"],
        gateway_cli.build_parser(),
        emulator_cli.build_parser(),
        talk_parser(),
    ]


@pytest.mark.parametrize("parser", parsers(), ids=lambda p: p.prog)
def test_every_option_has_help(parser: argparse.ArgumentParser) -> None:
    silent = [
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]
    assert silent == []


ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_spell_the_command_one_way() -> None:
    """``novakit ...`` everywhere; README says once that it is ``.venv/bin/novakit``."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    other = [
        f"{page.name}:{number}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if re.search(r"\.venv/bin/novakit|python -m novakit", line)
    ]
    assert len(other) == 1 and other[0].startswith("README.md:")


def string_constants(path: Path) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_messages_say_make_deploy_not_cdk_deploy() -> None:
    sources = [*(ROOT / "runtime" / "novakit").rglob("*.py"), *(ROOT / "stacks").glob("*.py")]
    saying = [
        path.relative_to(ROOT).as_posix()
        for path in sources
        for text in string_constants(path)
        if re.search(r"(?<!npx )\bcdk deploy\b", text)
    ]
    assert saying == []
