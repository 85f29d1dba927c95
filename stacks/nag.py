"""cdk-nag (AwsSolutions pack) on the stack, and every finding the design accepts, with why.

Each acknowledgment names one finding on one construct; anything new fails ``cdk synth``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aws_cdk import Acknowledgment, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks.settings import AuthMode

if TYPE_CHECKING:
    from stacks.voice_agent_stack import VoiceAgentStack

PYTHON_RUNTIME_REASON = (
    "Python 3.12 is the project's Python: the bridge, the local runner and the tests run it, "
    "so a handler behaves the same everywhere; Lambda supports it until 2028."
)


def check_with_nag(stack: VoiceAgentStack) -> None:
    Validations.of(stack).add_plugins(AwsSolutionsChecks(stack, verbose=True))
    acknowledge_accepted_findings(stack)


def acknowledge_accepted_findings(stack: VoiceAgentStack) -> None:
    gateway, bridge, auth = stack.gateway, stack.bridge, stack.auth

    for route_key in ("$default", "$disconnect"):
        _ack(
            gateway.routes[route_key],
            "AwsSolutions-APIG4",
            "WebSocket APIs authorize on $connect only; API Gateway delivers frames and the "
            "disconnect only for connections whose $connect was authorized.",
        )
    if gateway.logging_role is not None:
        _ack(
            gateway.logging_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The policy AWS documents for API Gateway's account-level CloudWatch role.",
        )

    task_policy = bridge.task_role.node.find_child("DefaultPolicy")
    for arn in gateway.manage_connections_arns:
        _ack(
            task_policy,
            f"AwsSolutions-IAM5[Resource::{nag_value(stack, arn)}]",
            "@connections/{connectionId} of this API and stage only: connection ids exist only "
            "at run time, so the last path segment is a wildcard.",
        )
    _ack(
        task_policy,
        f"AwsSolutions-IAM5[Resource::{nag_value(stack, bridge.protection_tasks_arn)}]",
        "Scale-in protection of this cluster's tasks: each task sets its own through the ECS "
        "agent, and task ids exist only at run time, so the last path segment is a wildcard.",
    )
    execution_role = bridge.task_definition.execution_role
    assert execution_role is not None
    _ack(
        execution_role.node.find_child("DefaultPolicy"),
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken supports no resource-level permissions; AWS requires '*'. "
        "Image pulls are limited to the asset repository.",
    )
    _ack(
        bridge.task_definition,
        "AwsSolutions-ECS2",
        "The environment holds configuration only (model id, voice, URLs, table name, tool "
        "manifest); the bridge gets no credentials this way, its task role signs requests.",
    )
    _ack(
        bridge.load_balancer,
        "AwsSolutions-ELB2",
        "NLB access logs cover TLS listeners only; this TCP listener carries the VPC link's "
        "requests, which the WebSocket stage's access log records one by one.",
    )
    _ack(
        stack.gateway_secret.secret,
        "AwsSolutions-SMG4",
        "The gateway secret is rotated by hand, in order: the tasks learn the new value before "
        "API Gateway sends it (docs/deploy.md); a rotation function cannot order the two.",
    )
    if auth.secret is not None:
        _ack(
            auth.secret,
            "AwsSolutions-SMG4",
            "The quick-start shared token: rotating it breaks every client that holds it, so it "
            "is rotated by hand (docs/deploy.md); use auth_mode=cognito for per-user tokens.",
        )
    if auth.user_pool is not None:
        _ack(
            auth.user_pool,
            "AwsSolutions-COG8",
            "The Plus feature plan (threat protection) is billed per monthly active user; the "
            "pool is private (no self sign-up), and Plus can be chosen in Cognito at any time.",
        )
        _ack(
            auth.user_pool,
            "AwsSolutions-COG2",
            "Users are created by an administrator and sign in from scripts with "
            "USER_PASSWORD_AUTH to get a connect token; MFA can be required in Cognito when "
            "clients implement the challenge.",
        )
    if stack.settings.auth_mode is AuthMode.NONE:
        _ack(
            gateway.routes["$connect"],
            "AwsSolutions-APIG4",
            "Deployed open on purpose: auth_mode=none is refused unless "
            "allow_unauthenticated=true is also given.",
        )
    if auth.function is not None:
        _ack(auth.function, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)
    if stack.phone is not None:
        _ack(
            stack.phone.auth_token,
            "AwsSolutions-SMG4",
            "It holds the Twilio account's auth token, which Twilio issues: it is changed in "
            "Twilio's console, then put here (docs/phone.md); no function here could rotate it.",
        )
        _ack(stack.phone.webhook, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)
    if stack.web_client is not None:
        _acknowledge_web_client(stack)
    for function in stack.tools.functions.values():
        _ack(function, "AwsSolutions-L1", PYTHON_RUNTIME_REASON)


def _acknowledge_web_client(stack: VoiceAgentStack) -> None:
    web = stack.web_client
    assert web is not None
    static_site = (
        "The bucket holds the browser client's static files only (no user data) and is read "
        "only by CloudFront; conversations go to the WebSocket API, whose access log records "
        "every connect and frame."
    )
    _ack(web.bucket, "AwsSolutions-S1", static_site)
    _ack(web.distribution, "AwsSolutions-CFR3", static_site)
    _ack(
        web.distribution,
        "AwsSolutions-CFR4",
        "The default *.cloudfront.net certificate cannot pin a TLS minimum; a custom domain "
        "with an ACM certificate is needed for that (docs/deploy.md).",
    )
    _ack(
        web.distribution,
        "AwsSolutions-CFR1",
        "Voice agents serve whoever their owner lets connect; geo restriction is a per-deployment "
        "choice.",
    )
    _ack(
        web.distribution,
        "AwsSolutions-CFR2",
        "A static page with no server side; the WebSocket API it talks to is throttled and "
        "authenticated. WAF (billed per rule and request) can be attached per deployment.",
    )
    # CDK's own BucketDeployment function copies the site from the CDK asset bucket into the
    # site bucket and invalidates the distribution.
    deployment = next(
        child
        for child in stack.node.children
        if child.node.id.startswith("Custom::CDKBucketDeployment")
    )
    helper = (
        "CDK's BucketDeployment helper: it copies the site from the CDK asset bucket into the "
        "site bucket and invalidates the distribution; its policy is scoped to those two buckets "
        "(CloudFront invalidations take no resource ARN)."
    )
    role = deployment.node.find_child("ServiceRole")
    _ack(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        helper,
    )
    policy = role.node.find_child("DefaultPolicy").node.default_child
    assert policy is not None
    for finding in wildcard_findings(stack, policy):
        _ack(role, finding, helper)
    _ack(deployment, "AwsSolutions-L1", helper + " Its runtime is chosen by CDK.")


def wildcard_findings(stack: Stack, policy: IConstruct) -> list[str]:
    """The IAM5 finding ids cdk-nag reports for a policy's wildcard actions and resources."""
    document = stack.resolve(policy.policy_document)  # type: ignore[attr-defined]
    findings: list[str] = []
    for statement in document["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            if "*" in action:
                findings.append(f"AwsSolutions-IAM5[Action::{action}]")
        for resource in resources if isinstance(resources, list) else [resources]:
            name = _flatten(resource)
            if "*" in name:
                findings.append(f"AwsSolutions-IAM5[Resource::{name}]")
    return list(dict.fromkeys(findings))


def _ack(construct: IConstruct, finding: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def nag_value(stack: Stack, value: str) -> str:
    """A (tokenized) string the way cdk-nag prints it in finding ids: references as ``<Ref>``,
    attributes as ``<Resource.Attribute>``."""
    return _flatten(stack.resolve(value))


def _flatten(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Join" in node:
        separator, parts = node["Fn::Join"]
        return str(separator).join(_flatten(part) for part in parts)
    if isinstance(node, dict) and "Ref" in node:
        return f"<{node['Ref']}>"
    if isinstance(node, dict) and isinstance(node.get("Fn::Sub"), str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", node["Fn::Sub"])
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{resource}.{attribute}>"
    raise ValueError(f"cannot name {node!r} the way cdk-nag does")
