"""Pre-flight for ``make deploy``: what would make the deploy fail minutes in, checked in seconds.

Credentials and account, a Docker engine that can build the linux/arm64 bridge image, the CDK
bootstrap stack in the target Region, access to the chosen model in Bedrock, and room for the
authorizer's reserved concurrency. Each failure says what to do about it.

    python -m stacks.preflight [-c key=value ...]   (the same -c options as make deploy's CDK_ARGS)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stacks.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_STACK = "CDKToolkit"
# aws-cdk-lib's templates need bootstrap version 6 or newer.
MIN_BOOTSTRAP_VERSION = 6
# Lambda keeps this much of the account's concurrency unreserved.
MIN_UNRESERVED_CONCURRENCY = 100
DOCKER_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or what to do

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def run_command(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        check=False,
        timeout=DOCKER_TIMEOUT_SECONDS,
    )


def check_credentials(sts: Any) -> tuple[Check, str | None]:
    try:
        identity = sts.get_caller_identity()
    except Exception as exc:
        return (
            Check(
                "credentials",
                False,
                f"no usable AWS credentials ({_reason(exc)}). Configure them (aws configure, "
                "aws sso login, or AWS_PROFILE=...) until `aws sts get-caller-identity` works.",
            ),
            None,
        )
    account = identity["Account"]
    return Check("credentials", True, f"account {account} as {identity['Arn']}"), account


def check_docker(run: Runner = run_command) -> Check:
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}} {{.Architecture}}"])
    except FileNotFoundError:
        return Check(
            "docker",
            False,
            "the docker command is not installed: install Docker (or a compatible engine); "
            "make deploy builds the bridge image from runtime/Dockerfile.",
        )
    except subprocess.TimeoutExpired:
        return Check("docker", False, "docker info did not answer: restart the Docker engine.")
    if info.returncode != 0:
        return Check(
            "docker",
            False,
            "the Docker engine is not running (or this user may not use it): start Docker "
            "Desktop or `sudo systemctl start docker`, and add yourself to the docker group. "
            f"docker said: {info.stderr.strip()[-300:]}",
        )
    version, _, architecture = info.stdout.strip().partition(" ")
    if architecture in ("aarch64", "arm64"):
        return Check("docker", True, f"engine {version} on {architecture}: builds arm64 natively")
    try:
        builders = run(["docker", "buildx", "ls"])
    except (FileNotFoundError, subprocess.TimeoutExpired):
        builders = subprocess.CompletedProcess([], 1, "", "docker buildx did not answer")
    if builders.returncode == 0 and "linux/arm64" in builders.stdout:
        return Check("docker", True, f"engine {version} on {architecture}, emulating linux/arm64")
    return Check(
        "docker",
        False,
        f"the engine on {architecture or 'this host'} cannot build linux/arm64 images: install "
        "QEMU emulation once (docker run --privileged --rm tonistiigi/binfmt --install arm64).",
    )


def check_bootstrap(cloudformation: Any, region: str) -> Check:
    fix = f'run `make bootstrap CDK_ARGS="-c region={region}"` once for this account and Region'
    try:
        (stack,) = cloudformation.describe_stacks(StackName=BOOTSTRAP_STACK)["Stacks"]
    except Exception as exc:
        if "does not exist" in str(exc):
            return Check("bootstrap", False, f"no {BOOTSTRAP_STACK} stack in {region}: {fix}.")
        return Check("bootstrap", False, f"could not read {BOOTSTRAP_STACK} ({_reason(exc)}).")
    status = stack["StackStatus"]
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
        return Check("bootstrap", False, f"{BOOTSTRAP_STACK} is {status} in {region}: {fix}.")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    version = int(outputs.get("BootstrapVersion", "0"))
    if version < MIN_BOOTSTRAP_VERSION:
        return Check(
            "bootstrap",
            False,
            f"{BOOTSTRAP_STACK} in {region} is version {version}, older than "
            f"{MIN_BOOTSTRAP_VERSION}: {fix} (it upgrades in place).",
        )
    return Check("bootstrap", True, f"{BOOTSTRAP_STACK} version {version} in {region}")


def check_model_access(bedrock: Any, model_id: str, region: str) -> Check:
    console = f"https://{region}.console.aws.amazon.com/bedrock/home?region={region}#/modelaccess"
    try:
        answer = bedrock.get_foundation_model_availability(modelId=model_id)
    except Exception as exc:
        return Check(
            "model access",
            False,
            f"could not ask Bedrock about {model_id} in {region} ({_reason(exc)}); the "
            "deploying identity needs bedrock:GetFoundationModelAvailability, or check access "
            f"by hand: {console}",
        )
    problems = []
    if answer.get("regionAvailability") != "AVAILABLE":
        problems.append(f"{model_id} is not offered in {region} (deploy with -c region=...)")
    if answer.get("authorizationStatus") != "AUTHORIZED":
        problems.append("this account is not authorized for the model (an SCP or IAM deny?)")
    if answer.get("entitlementAvailability") != "AVAILABLE":
        problems.append(f"the account has no access to the model yet: request it at {console}")
    agreement = (answer.get("agreementAvailability") or {}).get("status")
    if agreement not in (None, "AVAILABLE"):
        problems.append(f"the model's agreement is {agreement}: accept it at {console}")
    if problems:
        return Check("model access", False, "; ".join(problems) + ".")
    return Check("model access", True, f"{model_id} available in {region}")


def check_lambda_concurrency(lambda_client: Any, reserve: int) -> Check:
    if reserve == 0:
        return Check("lambda concurrency", True, "no reserved concurrency asked for")
    try:
        settings = lambda_client.get_account_settings()["AccountLimit"]
    except Exception as exc:
        return Check("lambda concurrency", False, f"could not read the limits ({_reason(exc)}).")
    unreserved = settings["UnreservedConcurrentExecutions"]
    if unreserved - reserve < MIN_UNRESERVED_CONCURRENCY:
        return Check(
            "lambda concurrency",
            False,
            f"reserving {reserve} for the authorizer would leave {unreserved - reserve} of "
            f"{settings['ConcurrentExecutions']} unreserved, and Lambda keeps at least "
            f"{MIN_UNRESERVED_CONCURRENCY}: ask for a higher Lambda concurrency quota "
            "(Service Quotas), or deploy with -c authorizer_concurrency=0.",
        )
    return Check("lambda concurrency", True, f"{unreserved} unreserved, {reserve} to reserve")


def run_checks(settings: Settings, session: Any, run: Runner = run_command) -> list[Check]:
    """Every check, in the order a person fixes them. Without credentials, the checks that
    need AWS are not tried."""
    credentials, account = check_credentials(session.client("sts", region_name=settings.region))
    checks = [credentials, check_docker(run)]
    if account is None:
        return checks
    region = settings.region
    checks.append(check_bootstrap(session.client("cloudformation", region_name=region), region))
    checks.append(
        check_model_access(session.client("bedrock", region_name=region), settings.model_id, region)
    )
    if settings.auth_mode.value in ("secret", "cognito"):
        checks.append(
            check_lambda_concurrency(
                session.client("lambda", region_name=region), settings.authorizer_concurrency
            )
        )
    return checks


def parse_cdk_args(args: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """``-c key=value`` / ``--context key=value`` pairs and ``--profile`` from cdk options."""
    context: dict[str, str] = {}
    profile = None
    items = list(args)
    for index, item in enumerate(items):
        value = items[index + 1] if index + 1 < len(items) else ""
        if item in ("-c", "--context") and "=" in value:
            key, _, text = value.partition("=")
            context[key] = text
        elif item.startswith("--context="):
            key, _, text = item.removeprefix("--context=").partition("=")
            context[key] = text
        elif item == "--profile":
            profile = value
        elif item.startswith("--profile="):
            profile = item.removeprefix("--profile=")
    return context, profile


def settings_for(args: Sequence[str], default_region: str | None) -> tuple[Settings, str | None]:
    cli, profile = parse_cdk_args(args)
    context = json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {})
    settings = Settings.from_context({**context, **cli})
    if "region" not in cli and not os.environ.get("CDK_DEFAULT_REGION") and default_region:
        # cdk deploys to the shell's Region when none is given; so does the pre-flight.
        settings = replace(settings, region=default_region)
        settings.check()
    return settings, profile


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cli_profile = parse_cdk_args(args)[1]
        session = boto3.Session(profile_name=cli_profile)
        settings, _ = settings_for(args, session.region_name)
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    print(f"novakit pre-flight: stack {settings.stack_name} in {settings.region}")
    checks = run_checks(settings, session)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    if failed:
        print(
            f"{len(failed)} problem(s) to fix before deploying "
            "(make deploy SKIP_PREFLIGHT=1 skips this check)."
        )
        return 1
    return 0


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    raise SystemExit(main())
