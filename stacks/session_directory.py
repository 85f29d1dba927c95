"""The session directory: which bridge task owns which WebSocket connection."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

PARTITION_KEY = "pk"  # novakit.bridge.directory: conn#{id} items and the tasks item
TTL_ATTRIBUTE = "expires_at"


class SessionDirectory(Construct):
    """A DynamoDB table keyed by connection id; every record carries an expiry (TTL).

    The records describe live sessions only (owner task, history for adoption): they expire
    hours after the session, the table is deleted with the stack and has no point-in-time
    recovery, because nothing in it is meant to outlive a conversation. Encrypted at rest with
    a key DynamoDB owns (no charge), or with a customer managed key (``customer_key``) where a
    policy asks for one.
    """

    def __init__(self, scope: Construct, construct_id: str, *, customer_key: bool = False) -> None:
        super().__init__(scope, construct_id)
        self.key: kms.Key | None = None
        encryption = dynamodb.TableEncryptionV2.dynamo_owned_key()
        if customer_key:
            self.key = kms.Key(
                self,
                "Key",
                description="novakit session directory (live sessions only)",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.DESTROY,
            )
            encryption = dynamodb.TableEncryptionV2.customer_managed_key(self.key)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            billing=dynamodb.Billing.on_demand(),
            encryption=encryption,
            removal_policy=RemovalPolicy.DESTROY,
        )
