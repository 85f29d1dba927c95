"""The Makefile: ``make help`` names every target, and make dev's lock is what the stack needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def phony_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    (line,) = re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    return set(line.split())


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_help_lists_every_target_and_only_those() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listed = set(re.findall(r"^make ([\w-]+)", out, flags=re.MULTILINE))
    assert listed == phony_targets()
    text = (ROOT / "Makefile").read_text()
    for target in listed:
        assert re.search(rf"^{re.escape(target)}:", text, flags=re.MULTILINE), target


def pins(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        if line and not line.startswith("#"):
            package, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", package).lower()] = version
    return out


def test_the_local_stack_installs_a_subset_of_the_lock_at_its_versions() -> None:
    lock, stack, runtime = pins("lock.txt"), pins("dev-stack.txt"), pins("runtime.txt")
    assert all(lock.get(name) == version for name, version in stack.items())
    assert runtime.items() <= stack.items()  # the runtime, and more
    # The emulator's speech and the tools' Powertools; none of the development set.
    assert {"pocketsphinx", "espeakng-loader", "aws-lambda-powertools"} <= stack.keys()
    assert not {"pytest", "mypy", "ruff", "aws-cdk-lib", "playwright", "moto"} & stack.keys()
    assert len(stack) < len(lock) / 2
