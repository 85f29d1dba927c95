"""Phone calls (``-c twilio=true``): the Twilio account's auth token in Secrets Manager, the
incoming-call webhook (a Lambda function URL answering TwiML), and the bundle of the official
``twilio`` package's modules that the webhook and the ``$connect`` authorizer use.

The ``twilio`` stage itself is one of the API's stages (same routes, integration and
authorizer); the authorizer checks Twilio's handshake signature on it (functions/ws_authorizer).
"""

from __future__ import annotations

import json
import shutil
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
    RemovalPolicy,
)
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.function_role import role_with_own_logs

WEBHOOK_CODE = Path(__file__).parent / "functions" / "twilio_webhook"
# What the functions import from the twilio package: the request validator and TwiML. Copied
# from the build environment's installed package (the version the tests run), without the REST
# client and its dependencies (50 MB that neither function loads).
TWILIO_MODULES = ("twilio/__init__.py", "twilio/request_validator.py", "twilio/twiml/")


def twilio_files() -> list[tuple[Path, str]]:
    """``(installed file, path in the bundle)`` for every module in ``TWILIO_MODULES``."""
    files = []
    for file in metadata.distribution("twilio").files or ():
        path = file.as_posix()
        if file.suffix == ".py" and any(
            path == wanted or (wanted.endswith("/") and path.startswith(wanted))
            for wanted in TWILIO_MODULES
        ):
            files.append((Path(str(file.locate())), path))
    if not any(path == "twilio/request_validator.py" for _, path in files):
        raise RuntimeError("the twilio package is not installed (pip install -r requirements.txt)")
    return files


@jsii.implements(ILocalBundling)
class TwilioBundling:
    """A function folder plus the twilio package's validator and TwiML modules, without Docker."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        out = Path(output_dir)
        shutil.copytree(
            self.folder, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        for source, path in twilio_files():
            destination = out / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        return True


def code_with_twilio(folder: Path) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(folder),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry("unused-local-bundling"),
            local=TwilioBundling(folder),
        ),
    )


@dataclass(frozen=True)
class PhoneCallsProps:
    #: The stream URL the webhook gives Twilio (``wss://{api}.execute-api.../twilio``).
    stream_url: str
    log_retention: logs.RetentionDays
    greeting: str = ""
    #: Per called number (``"*"``: any other): ``greeting``, ``voice``, ``instructions``.
    numbers: dict[str, dict[str, str]] | None = None


class PhoneCalls(Construct):
    """The auth token's secret and the incoming-call webhook."""

    def __init__(self, scope: Construct, construct_id: str, props: PhoneCallsProps) -> None:
        super().__init__(scope, construct_id)
        # The stack cannot know the account's auth token: it starts as a random value (no
        # signature verifies) until the team puts the token in (docs/phone.md).
        self.auth_token = secretsmanager.Secret(
            self,
            "TwilioAuthToken",
            description="novakit: the Twilio account's auth token (put yours in: docs/phone.md)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=32, exclude_punctuation=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_group, role = role_with_own_logs(
            self,
            logs_id="WebhookLogs",
            role_id="WebhookRole",
            description="novakit Twilio webhook: its own logs and the auth token, nothing else",
            retention=props.log_retention,
        )
        self.webhook = lambda_.Function(
            self,
            "Webhook",
            description="novakit: answers Twilio's incoming calls with <Connect><Stream>",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=code_with_twilio(WEBHOOK_CODE),
            timeout=Duration.seconds(10),
            memory_size=256,
            environment={
                "TWILIO_SECRET_ARN": self.auth_token.secret_arn,
                "TWILIO_STREAM_URL": props.stream_url,
                "TWILIO_GREETING": props.greeting,
                "TWILIO_NUMBERS": json.dumps(props.numbers or {}),
            },
            # A flood of forged webhooks cannot take the account's Lambda concurrency.
            reserved_concurrent_executions=10,
            role=role,
            log_group=log_group,
        )
        self.auth_token.grant_read(self.webhook)
        # Twilio cannot sign with AWS credentials: the function checks Twilio's own signature.
        self.webhook_url = self.webhook.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
