"""``novakit COMMAND -h``: each command names itself, and every option says what it does."""

from __future__ import annotations

import argparse
import contextlib
import io

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
