"""One Lambda function per tool folder, and the manifest the bridge reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import novakit
from novakit.tools import ToolSpec
from stacks.function_role import role_with_own_logs

# Tools run on the bridge's Python, so a handler tested under `novakit dev` runs the same way.
TOOL_RUNTIME = lambda_.Runtime.PYTHON_3_12
TOOL_PYTHON = "3.12"
# The manylinux platform tags pip may choose wheels for. Lambda's Python 3.12 runs on Amazon
# Linux 2023 (glibc 2.34), which runs every one of these; packages now publish 2_28 wheels only
# (numpy 2.x among them), and offering just manylinux2014 made pip refuse them, or fall back to
# an old release that still had a 2014 wheel.
ARM64_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")
# Powertools goes into every function at the version the tests run (requirements/lock.txt),
# copied from the build environment: no layer version to keep in step by hand.
POWERTOOLS_DISTRIBUTION = "aws-lambda-powertools"
# What novakit.tools.powertools uses: schema validation, and X-Ray tracing when the SDK is there.
POWERTOOLS_EXTRAS = ("validation", "tracer")
LAMBDA_RUNTIME_PROVIDES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._ -]+\])?\s*===?\s*[^\s,;*]+$")


@dataclass(frozen=True)
class ToolFunctionsProps:
    tools: list[ToolSpec]
    region: str
    log_retention: logs.RetentionDays
    metrics_namespace: str


# Tool handlers import `novakit.tools.powertools` (standard library + Powertools only); each
# function gets that one module, not the rest of novakit.
HELPER_MODULE = Path(novakit.__file__).parent / "tools" / "powertools.py"
HELPER_PACKAGE_DOC = '"""The part of novakit a tool function needs (bundled by the stack)."""\n'


@jsii.implements(ILocalBundling)
class ToolBundling:
    """Builds a tool's code without Docker: Powertools at the tested version, its
    ``requirements.txt`` (if any) installed by pip as manylinux ARM64 wheels for the Lambda's
    Python, the tool folder, and novakit's tool helper module.

    Requirements must be pinned (``name==version``) and only binary wheels are accepted
    (``--only-binary=:all:``): a package without an ARM64 wheel for that version stops the
    synthesis with pip's message instead of quietly becoming another version.
    """

    def __init__(self, tool: ToolSpec, helper_module: Path = HELPER_MODULE) -> None:
        self.tool = tool
        self.helper_module = helper_module

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        out = Path(output_dir)
        vendor_distribution(POWERTOOLS_DISTRIBUTION, out)
        requirements = self.tool.requirements
        if requirements is not None and requirement_lines(requirements):
            unpinned = unpinned_requirements(requirements)
            if unpinned:
                raise RuntimeError(
                    f"tool {self.tool.name}: pin every requirement in {requirements} to one "
                    f"version (name==version), so the function gets what was tested: {unpinned}"
                )
            command = pip_install_command(requirements, out)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(
                    f"tool {self.tool.name}: could not bundle {requirements} "
                    f"(ARM64 wheels for Python {TOOL_PYTHON} are needed):\n{result.stderr[-2000:]}"
                )
        shutil.copytree(
            self.tool.folder,
            out,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
        )
        helpers = out / "novakit" / "tools"
        helpers.mkdir(parents=True, exist_ok=True)
        (out / "novakit" / "__init__.py").write_text(HELPER_PACKAGE_DOC)
        (helpers / "__init__.py").write_text(HELPER_PACKAGE_DOC)
        shutil.copy(self.helper_module, helpers / self.helper_module.name)
        return True


def requirement_lines(requirements: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line]


def unpinned_requirements(requirements: Path) -> list[str]:
    return [line for line in requirement_lines(requirements) if not _PINNED.match(line)]


def powertools_version() -> str:
    """The Powertools version bundled into every tool function: the build environment's."""
    return metadata.version(POWERTOOLS_DISTRIBUTION)


def vendor_distribution(
    name: str, target: Path, extras: tuple[str, ...] = POWERTOOLS_EXTRAS
) -> list[str]:
    """Copy an installed distribution, with the dependencies it needs for ``extras``, into
    ``target`` as the build environment has them; returns the distributions copied.

    Python files only: a compiled extension built for the build machine would not load on
    Lambda's ARM64 (the one here, wrapt's, has a pure-Python fallback). Distributions the
    Lambda runtime provides (boto3 and its dependencies) are left out.
    """
    copied: list[str] = []
    pending = [(name, extras)]
    while pending:
        wanted, wanted_extras = pending.pop()
        dist = metadata.distribution(wanted)
        dist_name = canonicalize_name(dist.metadata["Name"])
        if dist_name in copied or dist_name in LAMBDA_RUNTIME_PROVIDES:
            continue
        copied.append(dist_name)
        for file in dist.files or ():
            parts = file.parts
            if parts[0].endswith((".dist-info", ".data")) or ".." in parts:
                continue
            if "__pycache__" in parts or file.suffix in (".pyc", ".pyi", ".so", ".pyd"):
                continue
            destination = target.joinpath(*parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(file.locate())), destination)
        for text in dist.requires or ():
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(
                marker.evaluate({"extra": extra}) for extra in ("", *wanted_extras)
            ):
                pending.append((requirement.name, tuple(requirement.extras)))
    return copied


def pip_install_command(requirements: Path, target: Path) -> list[str]:
    platforms = [arg for tag in ARM64_PLATFORMS for arg in ("--platform", tag)]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        TOOL_PYTHON,
        "--only-binary=:all:",
    ]


class ToolFunctions(Construct):
    """A function per tool: ARM64, Powertools bundled, its own log group and role.

    Each role may write its own logs and do what its tool.json ``iam_statements`` grant:
    nothing else, and never Bedrock (the manifest loader refuses Bedrock actions).
    """

    def __init__(self, scope: Construct, construct_id: str, props: ToolFunctionsProps) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        self.tools = list(props.tools)
        for tool in self.tools:
            self.functions[tool.name] = self._function(tool, props)

    def _function(self, tool: ToolSpec, props: ToolFunctionsProps) -> lambda_.Function:
        scope = Construct(self, f"Tool-{tool.name}")
        log_group, role = role_with_own_logs(
            scope,
            logs_id="Logs",
            role_id="Role",
            description=f"novakit tool {tool.name}: its own logs and its tool.json statements",
            retention=props.log_retention,
        )
        for statement in tool.iam_statements:
            # Reasons for any "*" are required and checked by the manifest loader.
            role.add_to_policy(
                iam.PolicyStatement(actions=statement["actions"], resources=statement["resources"])
            )
        code = lambda_.Code.from_asset(
            str(tool.folder),
            # The hash of what is deployed, so a change to the helper module redeploys too.
            asset_hash_type=AssetHashType.OUTPUT,
            bundling=BundlingOptions(
                # Never pulled: local bundling always succeeds or raises.
                image=DockerImage.from_registry("unused-local-bundling"),
                local=ToolBundling(tool),
            ),
        )
        environment = {
            "POWERTOOLS_SERVICE_NAME": tool.name,
            "POWERTOOLS_METRICS_NAMESPACE": props.metrics_namespace,
            **tool.environment,
        }
        function = lambda_.Function(
            scope,
            "Function",
            description=tool.description[:256],
            runtime=TOOL_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=code,
            timeout=Duration.seconds(tool.timeout_s),
            memory_size=tool.memory_mb,
            environment=environment,
            role=role,
            log_group=log_group,
        )
        return function

    def manifest_json(self, stack: Stack) -> str:
        """``NOVAKIT_TOOLS``: what the model is told about each tool, plus how to call it."""
        entries = [
            {
                **tool.declaration(),
                "function_arn": self.functions[tool.name].function_arn,
                "timeout_s": tool.timeout_s,
            }
            for tool in self.tools
        ]
        return stack.to_json_string(entries)

    @property
    def function_arns(self) -> list[str]:
        return [self.functions[tool.name].function_arn for tool in self.tools]
