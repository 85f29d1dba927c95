"""The session directory: which bridge task owns which WebSocket connection."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

PARTITION_KEY = "pk"  # novakit.bridge.directory: conn#{id} items and the tasks item
TTL_ATTRIBUTE = "expires_at"


class SessionDirectory(Construct):
    """A DynamoDB table keyed by connection id; entries expire through TTL.

    The entries describe live sessions only (owner task, history for adoption), so the table is
    deleted with the stack; point-in-time recovery still covers accidents while it runs.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
