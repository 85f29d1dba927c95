"""One Lambda function per tool folder, and the manifest the bridge reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

import novakit
from novakit.tools import ToolSpec

# Tools run on the bridge's Python, so a handler tested under `novakit dev` runs the same way.
TOOL_RUNTIME = lambda_.Runtime.PYTHON_3_12
TOOL_PYTHON = "3.12"
# Powertools for AWS Lambda (Python) v3, published by AWS in every commercial Region.
POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python312-arm64"


def powertools_layer_arn(region: str, version: int) -> str:
    return f"arn:aws:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:{version}"


@dataclass(frozen=True)
class ToolFunctionsProps:
    tools: list[ToolSpec]
    region: str
    powertools_layer_version: int
    log_retention: logs.RetentionDays
    metrics_namespace: str


# Tool handlers import `novakit.tools.powertools` (standard library + Powertools only); each
# function gets that one module, not the rest of novakit.
HELPER_MODULE = Path(novakit.__file__).parent / "tools" / "powertools.py"
HELPER_PACKAGE_DOC = '"""The part of novakit a tool function needs (bundled by the stack)."""\n'


@jsii.implements(ILocalBundling)
class ToolBundling:
    """Builds a tool's code without Docker: its ``requirements.txt`` (if any) installed by pip
    as manylinux ARM64 wheels for the Lambda's Python, the tool folder, and novakit's tool
    helper module.

    Only binary wheels are accepted (``--only-binary=:all:``): a package that needs compiling
    cannot be built for Lambda here, and pip says which one it is.
    """

    def __init__(self, tool: ToolSpec, helper_module: Path = HELPER_MODULE) -> None:
        self.tool = tool
        self.helper_module = helper_module

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        out = Path(output_dir)
        requirements = self.tool.requirements
        if requirements is not None and requirement_lines(requirements):
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


def pip_install_command(requirements: Path, target: Path) -> list[str]:
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
        "--platform",
        "manylinux2014_aarch64",
        "--implementation",
        "cp",
        "--python-version",
        TOOL_PYTHON,
        "--only-binary=:all:",
    ]


class ToolFunctions(Construct):
    """A function per tool: ARM64, Powertools layer, its own log group and role.

    Each role may write its own logs and do what its tool.json ``iam_statements`` grant:
    nothing else, and never Bedrock (the manifest loader refuses Bedrock actions).
    """

    def __init__(self, scope: Construct, construct_id: str, props: ToolFunctionsProps) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        self.tools = list(props.tools)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            powertools_layer_arn(props.region, props.powertools_layer_version),
        )
        for tool in self.tools:
            self.functions[tool.name] = self._function(tool, layer, props)

    def _function(
        self, tool: ToolSpec, layer: lambda_.ILayerVersion, props: ToolFunctionsProps
    ) -> lambda_.Function:
        scope = Construct(self, f"Tool-{tool.name}")
        log_group = logs.LogGroup(
            scope, "Logs", retention=props.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"novakit tool {tool.name}: its own logs and its tool.json statements",
        )
        # Its own log group only (instead of the managed basic-execution policy on all groups).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
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
            layers=[layer],
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
