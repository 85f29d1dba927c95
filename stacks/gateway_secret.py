"""The per-stack secret that proves an integration request came from this stack's API Gateway.

API Gateway adds it to every integration request as a static header (``x-gateway-secret``);
the bridge refuses requests without it, and derives the key that signs relays between tasks
from it. It lives in Secrets Manager as JSON ``{"current": ..., "previous": ...}``:

- the integrations send ``current``, through a CloudFormation dynamic reference (resolved when
  the integration is created or changed; the template holds only the reference);
- the tasks get both values as environment variables from ECS (read by the task's execution
  role at start): ``NOVAKIT_GATEWAY_SECRET`` and ``NOVAKIT_GATEWAY_SECRET_PREVIOUS``, so during
  a rotation they accept the old value and the new one (docs/deploy.md, "The gateway secret").

``version_id`` pins the integrations to one version of the secret: changing it is what makes
CloudFormation resolve the reference again after a rotation.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from novakit.bridge.auth import GATEWAY_SECRET_HEADER

# Letters and digits: a header value, and a static value between API Gateway's single quotes.
SECRET_LENGTH = 48


class GatewaySecret(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, version_id: str = "") -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="novakit: the header API Gateway adds to every request to the bridge",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"previous": ""}),
                generate_string_key="current",
                exclude_punctuation=True,
                include_space=False,
                password_length=SECRET_LENGTH,
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        current = SecretValue.secrets_manager(
            self.secret.secret_arn, json_field="current", version_id=version_id or None
        )
        self.header_name = GATEWAY_SECRET_HEADER
        # A static request parameter: the value between single quotes.
        self.header_value = f"'{current.unsafe_unwrap()}'"
        self.container_secrets = {
            "NOVAKIT_GATEWAY_SECRET": ecs.Secret.from_secrets_manager(self.secret, "current"),
            "NOVAKIT_GATEWAY_SECRET_PREVIOUS": ecs.Secret.from_secrets_manager(
                self.secret, "previous"
            ),
        }
