"""Synthesize stack variants once per test session (jsii start-up and synthesis are slow).

Each variant gets temporary tool and web folders, so the tests do not depend on what tools/
holds today, and the bridge image is staged from a small copy of what its Dockerfile needs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Quiet jsii's banner about the node version before aws_cdk starts it.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk import App, Environment, Validations
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from stacks import Settings, Sources, VoiceAgentStack
from stacks.nag import check_with_nag

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@dataclass
class Synthesized:
    stack: VoiceAgentStack
    template: Template
    raw: dict[str, Any]
    outdir: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.raw["Resources"].items() if v["Type"] == kind}

    def resolve(self, value: Any) -> Any:
        return self.stack.resolve(value)


def write_tool(root: Path, name: str, **manifest: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    body = {
        "name": name,
        "description": f"The {name} tool.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        **manifest,
    }
    (folder / "tool.json").write_text(json.dumps(body))
    (folder / "handler.py").write_text(
        "def handler(event, context):\n    return {'result': event['input']}\n"
    )
    return folder


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Dockerfile copies, without the rest of the repository (faster staging)."""
    root = tmp_path_factory.mktemp("image")
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(REPO / name, root / name)
    (root / "requirements").mkdir()
    shutil.copy(REPO / "requirements" / "runtime.txt", root / "requirements" / "runtime.txt")
    (root / "runtime").mkdir()
    shutil.copy(REPO / "runtime" / "Dockerfile", root / "runtime" / "Dockerfile")
    (root / "runtime" / "novakit").mkdir()
    (root / "runtime" / "novakit" / "__init__.py").write_text("")
    return root


@pytest.fixture(scope="session")
def two_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tools")
    write_tool(root, "lookup_order", timeout_s=20, memory_mb=512, environment={"TABLE": "orders"})
    weather = write_tool(
        root,
        "weather",
        iam_statements=[
            {
                "actions": ["ssm:GetParameter"],
                "resources": ["arn:aws:ssm:us-east-1:111122223333:parameter/weather-key"],
            }
        ],
    )
    # Exercises the Docker-free bundling path without reaching a package index.
    (weather / "requirements.txt").write_text("# no third-party packages yet\n")
    return root


@pytest.fixture(scope="session")
def web_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>novakit</title>")
    return root


@pytest.fixture(scope="session")
def synth(
    tmp_path_factory: pytest.TempPathFactory, image_context: Path
) -> Iterator[Callable[..., Synthesized]]:
    cache: dict[str, Synthesized] = {}

    def build(
        key: str,
        *,
        tools: Path,
        web: Path | None = None,
        account: str | None = None,
        nag: bool | str = True,
        **context: Any,
    ) -> Synthesized:
        if key in cache:
            return cache[key]
        outdir = tmp_path_factory.mktemp(f"cdk-{key}")
        app = App(outdir=str(outdir))
        settings = Settings.from_context({"region": REGION, **context})
        stack = VoiceAgentStack(
            app,
            settings.stack_name,
            settings=settings,
            sources=Sources(tools=tools, web=web or REPO / "web", image=image_context),
            env=Environment(account=account, region=settings.region),
        )
        if nag == "unacknowledged":
            Validations.of(stack).add_plugins(AwsSolutionsChecks(stack))
        elif nag:
            check_with_nag(stack)
        assembly = app.synth()
        raw = json.loads(
            Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path).read_text()
        )
        cache[key] = Synthesized(stack, Template.from_json(raw), raw, outdir)
        return cache[key]

    yield build


@pytest.fixture(scope="session")
def default(synth: Callable[..., Synthesized], two_tools: Path) -> Synthesized:
    """The quick-start deployment: shared-secret auth, two tools, cdk-nag on."""
    return synth("default", tools=two_tools)
