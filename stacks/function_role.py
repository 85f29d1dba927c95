"""A Lambda function's log group and a role that may write to that group only (instead of the
managed basic-execution policy, which reaches every log group): what every function of the
stack starts from before its own grants."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct


def role_with_own_logs(
    scope: Construct,
    *,
    logs_id: str,
    role_id: str,
    description: str,
    retention: logs.RetentionDays,
) -> tuple[logs.LogGroup, iam.Role]:
    log_group = logs.LogGroup(
        scope, logs_id, retention=retention, removal_policy=RemovalPolicy.DESTROY
    )
    role = iam.Role(
        scope,
        role_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    return log_group, role
