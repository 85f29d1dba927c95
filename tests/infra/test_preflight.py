"""make deploy's pre-flight: each failure is found and says what to do. AWS answers come from
moto (STS, CloudFormation) and botocore's Stubber (Bedrock and Lambda, which moto lacks)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stacks import Settings
from stacks.preflight import (
    check_bootstrap,
    check_credentials,
    check_docker,
    check_lambda_concurrency,
    check_model_access,
    main,
    parse_cdk_args,
    run_checks,
)

REGION = "us-east-1"
MODEL = "amazon.nova-2-sonic-v1:0"
AVAILABLE = {
    "modelId": MODEL,
    "agreementAvailability": {"status": "AVAILABLE"},
    "authorizationStatus": "AUTHORIZED",
    "entitlementAvailability": "AVAILABLE",
    "regionAvailability": "AVAILABLE",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def bootstrap_stack(version: str = "27") -> None:
    template = {
        "Resources": {
            "Version": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": "/cdk-bootstrap/hnb659fds/version",
                    "Type": "String",
                    "Value": version,
                },
            }
        },
        "Outputs": {"BootstrapVersion": {"Value": version}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="CDKToolkit", TemplateBody=json.dumps(template)
    )


def stubbed(service: str, method: str, answer: dict[str, Any] | None, error: str = "") -> Any:
    client = boto3.client(service, region_name=REGION)
    stubber = Stubber(client)
    if answer is not None:
        stubber.add_response(method, answer)
    else:
        stubber.add_client_error(method, service_error_code=error, service_message="no")
    stubber.activate()
    return client


def lambda_limits(total: int, unreserved: int) -> Any:
    return stubbed(
        "lambda",
        "get_account_settings",
        {
            "AccountLimit": {
                "TotalCodeSize": 80530636800,
                "CodeSizeUnzipped": 262144000,
                "CodeSizeZipped": 52428800,
                "ConcurrentExecutions": total,
                "UnreservedConcurrentExecutions": unreserved,
            },
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
        },
    )


def docker(*answers: tuple[int, str, str] | type[Exception]):
    calls: list[list[str]] = []
    queue = list(answers)

    def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(command))
        answer = queue.pop(0)
        if isinstance(answer, type):
            raise answer("docker")
        code, out, err = answer
        return subprocess.CompletedProcess(list(command), code, out, err)

    return run, calls


def test_credentials_name_the_account(aws: None) -> None:
    check, account = check_credentials(boto3.client("sts", region_name=REGION))
    assert check.ok and account == "123456789012"
    assert "account 123456789012" in check.detail


def test_missing_credentials_say_how_to_get_them() -> None:
    sts = stubbed("sts", "get_caller_identity", None, "ExpiredToken")
    check, account = check_credentials(sts)
    assert not check.ok and account is None
    assert "ExpiredToken" in check.detail and "aws sts get-caller-identity" in check.detail


def test_bootstrap_present_missing_and_old(aws: None) -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    missing = check_bootstrap(cloudformation, REGION)
    assert not missing.ok
    assert 'make bootstrap CDK_ARGS="-c region=us-east-1"' in missing.detail
    bootstrap_stack("5")
    old = check_bootstrap(cloudformation, REGION)
    assert not old.ok and "version 5, older than 6" in old.detail
    cloudformation.delete_stack(StackName="CDKToolkit")
    bootstrap_stack("27")
    assert check_bootstrap(cloudformation, REGION).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entitlementAvailability": "NOT_AVAILABLE"}, "request it at https://us-east-1.console"),
        ({"authorizationStatus": "NOT_AUTHORIZED"}, "not authorized for the model"),
        ({"regionAvailability": "NOT_AVAILABLE"}, "not offered in us-east-1"),
        ({"agreementAvailability": {"status": "PENDING"}}, "agreement is PENDING"),
    ],
)
def test_model_access_problems(change: dict[str, Any], message: str) -> None:
    bedrock = stubbed("bedrock", "get_foundation_model_availability", {**AVAILABLE, **change})
    check = check_model_access(bedrock, MODEL, REGION)
    assert not check.ok and message in check.detail


def test_model_access_granted_and_unaskable() -> None:
    bedrock = stubbed("bedrock", "get_foundation_model_availability", AVAILABLE)
    assert check_model_access(bedrock, MODEL, REGION).ok
    denied = stubbed("bedrock", "get_foundation_model_availability", None, "AccessDeniedException")
    check = check_model_access(denied, MODEL, REGION)
    assert not check.ok
    assert "bedrock:GetFoundationModelAvailability" in check.detail
    assert "modelaccess" in check.detail


def test_reserved_concurrency_needs_room() -> None:
    assert check_lambda_concurrency(lambda_limits(1000, 1000), 10).ok
    small = check_lambda_concurrency(lambda_limits(10, 10), 10)
    assert not small.ok
    assert "leave 0 of 10 unreserved" in small.detail
    assert "-c authorizer_concurrency=0" in small.detail
    assert check_lambda_concurrency(lambda_limits(10, 10), 0).ok


def test_docker_not_installed_not_running_and_without_arm64() -> None:
    run, _ = docker(FileNotFoundError)
    assert "not installed" in check_docker(run).detail
    run, _ = docker((1, "", "Cannot connect to the Docker daemon"))
    check = check_docker(run)
    assert not check.ok and "not running" in check.detail and "Cannot connect" in check.detail
    run, calls = docker((0, "27.3.1 x86_64", ""), (0, "default docker\n  linux/amd64", ""))
    check = check_docker(run)
    assert not check.ok and "tonistiigi/binfmt --install arm64" in check.detail
    assert calls[1] == ["docker", "buildx", "ls"]


def test_docker_arm64_native_or_emulated() -> None:
    run, calls = docker((0, "27.3.1 aarch64", ""))
    assert check_docker(run).ok and len(calls) == 1
    run, _ = docker((0, "27.3.1 x86_64", ""), (0, "default\n linux/amd64, linux/arm64", ""))
    check = check_docker(run)
    assert check.ok and "emulating linux/arm64" in check.detail


def test_all_checks_in_order(aws: None) -> None:
    bootstrap_stack()
    clients = {
        "bedrock": stubbed("bedrock", "get_foundation_model_availability", AVAILABLE),
        "lambda": lambda_limits(1000, 1000),
    }

    class Session:
        def client(self, name: str, region_name: str) -> Any:
            return clients.get(name) or boto3.client(name, region_name=region_name)

    run, _ = docker((0, "27.3.1 aarch64", ""))
    checks = run_checks(Settings.from_context({"region": REGION}), Session(), run)
    assert [c.name for c in checks] == [
        "credentials",
        "docker",
        "bootstrap",
        "model access",
        "lambda concurrency",
    ]
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]


def test_without_credentials_only_local_checks_run() -> None:
    class Session:
        def client(self, name: str, region_name: str) -> Any:
            assert name == "sts", "no other AWS call without credentials"
            return stubbed("sts", "get_caller_identity", None, "InvalidClientTokenId")

    run, _ = docker((0, "27.3.1 aarch64", ""))
    checks = run_checks(Settings.from_context({"region": REGION}), Session(), run)
    assert [(c.name, c.ok) for c in checks] == [("credentials", False), ("docker", True)]


def test_cdk_args_are_read_like_cdk_reads_them() -> None:
    context, profile = parse_cdk_args(
        [
            "-c",
            "region=us-west-2",
            "--context",
            "ha=true",
            "--context=voice=tiffany",
            "--profile",
            "dev",
        ]
    )
    assert context == {"region": "us-west-2", "ha": "true", "voice": "tiffany"}
    assert profile == "dev"


def test_bad_settings_fail_before_any_aws_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "region=eu-west-1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL settings:") and "not offered in eu-west-1" in out
