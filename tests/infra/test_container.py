"""The bridge image: hadolint-clean, the container contract, and pins that match the lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.infra.conftest import REPO

DOCKERFILE = REPO / "runtime" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_clean():
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_container_contract():
    found = instructions()
    kinds = [kind for kind, _ in found]
    assert found[0] == ("FROM", "python:3.12-slim-bookworm")
    assert ("CMD", '["novakit", "bridge"]') in found
    assert ("EXPOSE", "8080") in found
    assert "HEALTHCHECK" not in kinds
    user = [value for kind, value in found if kind == "USER"]
    assert user and user[-1] not in ("root", "0")
    installs = " ".join(value for kind, value in found if kind == "RUN")
    assert "--no-deps --requirement requirements/runtime.txt" in installs
    assert "emulator" not in installs


def test_build_context_sends_only_what_the_image_needs():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {line[1:] for line in rules if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "requirements/runtime.txt",
        "runtime/Dockerfile",
        "runtime/novakit/",
    }


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_runtime_pins_are_the_locked_versions_of_the_package_dependencies():
    runtime = pins(REPO / "requirements" / "runtime.txt")
    locked = pins(REPO / "requirements" / "lock.txt")
    assert runtime.items() <= locked.items()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in runtime, name
    # Infrastructure and test tools stay out of the image.
    for dev_only in ("aws-cdk-lib", "pytest", "cdk-nag", "h2", "trustme"):
        assert dev_only not in runtime
