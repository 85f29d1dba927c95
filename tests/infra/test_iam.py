"""Least privilege, pinned exactly: what the bridge's task role may do, what tool roles may not."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import REGION


def statements_of(synth, role) -> list[dict[str, Any]]:
    role_ref = synth.resolve(role.role_name)
    found = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if role_ref in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_task_role_policy_exactly(default):
    stack = default.stack
    api = default.resolve(stack.gateway.api.ref)
    tools = stack.tools.functions
    statements = {s["Sid"]: s for s in statements_of(default, stack.bridge.task_role)}

    assert set(statements) == {
        "InvokeNovaSonic",
        "ManageThisApisConnections",
        "InvokeTools",
        "SessionDirectory",
        "OwnScaleInProtection",
    }
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements.values())

    nova = statements["InvokeNovaSonic"]
    assert nova["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithBidirectionalStream"]
    assert nova["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":bedrock:{REGION}::foundation-model/amazon.nova-2-sonic-v1:0",
            ],
        ]
    }

    connections = statements["ManageThisApisConnections"]
    assert connections["Action"] == "execute-api:ManageConnections"
    assert connections["Resource"] == [
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    f":execute-api:{REGION}:",
                    {"Ref": "AWS::AccountId"},
                    ":",
                    api,
                    f"/{stage}/{method}/@connections/*",
                ],
            ]
        }
        # every stage's connections: each client protocol has its own stage
        for stage in ("live", "realtime")
        for method in ("POST", "GET", "DELETE")
    ]

    invoke = statements["InvokeTools"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert as_list(invoke["Resource"]) == [
        default.resolve(tools[name].function_arn) for name in ("lookup_order", "weather")
    ]

    table = statements["SessionDirectory"]
    assert table["Action"] == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ]
    assert table["Resource"] == default.resolve(stack.directory.table.table_arn)

    # The ECS agent sets scale-in protection with the task role's credentials: this cluster's
    # tasks only.
    protection = statements["OwnScaleInProtection"]
    assert protection["Action"] == ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    cluster = default.resolve(stack.bridge.cluster.cluster_name)
    assert protection["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":ecs:{REGION}:",
                {"Ref": "AWS::AccountId"},
                ":task/",
                cluster,
                "/*",
            ],
        ]
    }


def test_a_customer_key_is_usable_by_the_task_role_only_when_asked_for(synth, two_tools, default):
    assert not any(
        s["Sid"] == "SessionDirectoryKey"
        for s in statements_of(default, default.stack.bridge.task_role)
    )
    keyed = synth("customer-key", tools=two_tools, directory_customer_key=True)
    statements = {s["Sid"]: s for s in statements_of(keyed, keyed.stack.bridge.task_role)}
    key = statements["SessionDirectoryKey"]
    assert key["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    assert key["Resource"] == keyed.resolve(keyed.stack.directory.key.key_arn)


def test_task_role_has_no_managed_policies(default):
    role = default.raw["Resources"][
        default.resolve(default.stack.bridge.task_role.role_name)["Ref"]
    ]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "Policies" not in role["Properties"]


def test_tool_roles_get_their_logs_and_their_statements_only(default):
    functions = default.stack.tools.functions
    for name, function in functions.items():
        statements = statements_of(default, function.role)
        actions = [a for s in statements for a in as_list(s["Action"])]
        assert not [a for a in actions if a.lower().startswith("bedrock")], name
        assert statements[0] == {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": default.resolve(
                default.stack.tools.functions[name].log_group.log_group_arn
            ),
        }
    weather = statements_of(default, functions["weather"].role)
    assert weather[1] == {
        "Action": "ssm:GetParameter",
        "Effect": "Allow",
        "Resource": "arn:aws:ssm:us-east-1:111122223333:parameter/weather-key",
    }
    assert len(statements_of(default, functions["lookup_order"].role)) == 1


def test_nothing_bedrock_outside_the_task_role(default):
    task_policy = default.resolve(
        default.stack.bridge.task_role.node.find_child("DefaultPolicy").node.default_child.ref
    )["Ref"]
    for logical_id, policy in default.resources("AWS::IAM::Policy").items():
        if logical_id == task_policy:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any("bedrock" in a.lower() for a in as_list(statement["Action"])), logical_id


# The only "*" resources in the stack, and why AWS requires them.
STAR_RESOURCE_EXCEPTIONS = {
    "ecr:GetAuthorizationToken": "no resource-level permissions (ECS pulls the bridge image)",
}


def star_statements(synth) -> list[tuple[str, list[str]]]:
    found = []
    for logical_id, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "*" in as_list(statement["Resource"]):
                found.append((logical_id, as_list(statement["Action"])))
    return found


def test_no_star_resource_without_a_documented_exception(default):
    found = star_statements(default)
    assert found, "the execution role's GetAuthorizationToken should be the one exception"
    for logical_id, actions in found:
        assert set(actions) <= set(STAR_RESOURCE_EXCEPTIONS), (logical_id, actions)


def test_no_role_uses_a_managed_policy_except_api_gateways_logging_role(default):
    for logical_id, role in default.resources("AWS::IAM::Role").items():
        managed = role["Properties"].get("ManagedPolicyArns", [])
        if managed:
            assert "ApiGatewayLogsRole" in logical_id
            assert len(managed) == 1
            assert "AmazonAPIGatewayPushToCloudWatchLogs" in str(managed[0])
