"""The bridge service: ARM64 Fargate from runtime/Dockerfile, the container contract, NLB health
checks and draining, rollback on failed deployments, autoscaling, the session directory."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from stacks.session_directory import PARTITION_KEY, TTL_ATTRIBUTE


def container(default):
    (task,) = default.resources("AWS::ECS::TaskDefinition").values()
    (definition,) = task["Properties"]["ContainerDefinitions"]
    return task["Properties"], definition


def test_task_is_arm64_fargate_with_the_configured_size(default):
    task, _ = container(default)
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert task["TaskRoleArn"] == default.resolve(default.stack.bridge.task_role.role_arn)


def test_image_is_built_from_runtime_dockerfile_for_arm64(default):
    manifest = json.loads((default.outdir / "Novakit.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerFile"] == "runtime/Dockerfile"
    assert image["source"]["platform"] == "linux/arm64"


def test_container_environment_contract(default):
    _, definition = container(default)
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    api = default.resolve(default.stack.gateway.api.ref)
    assert set(env) == {
        "NOVAKIT_PORT",
        "NOVAKIT_CONNECTIONS_URL",
        "NOVAKIT_DIRECTORY_TABLE",
        "NOVAKIT_MODEL_ID",
        "NOVAKIT_VOICE",
        "NOVAKIT_BATCH_MS",
        "NOVAKIT_MAX_SESSIONS",
        "NOVAKIT_LOG_LEVEL",
        "NOVAKIT_TOOLS",
        "NOVAKIT_METRICS_SERVICE",
        "NOVAKIT_DRAIN_SECONDS",
    }
    assert env["NOVAKIT_PORT"] == "8080"
    assert env["NOVAKIT_MODEL_ID"] == "amazon.nova-2-sonic-v1:0"
    assert env["NOVAKIT_VOICE"] == "matthew"
    assert env["NOVAKIT_BATCH_MS"] == "100"
    assert env["NOVAKIT_MAX_SESSIONS"] == "20"
    assert env["NOVAKIT_LOG_LEVEL"] == "INFO"
    assert env["NOVAKIT_METRICS_SERVICE"] == "Novakit"
    assert env["NOVAKIT_DIRECTORY_TABLE"] == default.resolve(
        default.stack.directory.table.table_name
    )
    assert env["NOVAKIT_CONNECTIONS_URL"] == {
        "Fn::Join": [
            "",
            ["https://", api, ".execute-api.us-east-1.", {"Ref": "AWS::URLSuffix"}, "/live"],
        ]
    }
    assert definition["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    assert definition["StopTimeout"] == 120
    # Sessions get to end within the stop timeout, before ECS kills the task.
    assert int(env["NOVAKIT_DRAIN_SECONDS"]) < definition["StopTimeout"]
    assert definition["LogConfiguration"]["LogDriver"] == "awslogs"


def test_instructions_are_passed_only_when_set(synth, two_tools):
    with_instructions = synth(
        "instructions", tools=two_tools, nag=False, instructions="You are a ship's cook."
    )
    _, definition = container(with_instructions)
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    assert env["NOVAKIT_INSTRUCTIONS"] == "You are a ship's cook."


def test_service_rolls_back_failed_deployments_and_keeps_capacity(default):
    default.template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DeploymentConfiguration": {
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                "MinimumHealthyPercent": 100,
                "MaximumPercent": 200,
            },
            "NetworkConfiguration": {
                "AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})
            },
            "LoadBalancers": [
                Match.object_like({"ContainerName": "bridge", "ContainerPort": 8080})
            ],
        },
    )
    default.template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


def test_nlb_checks_health_and_drains_sessions(default):
    default.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Port": 8080,
            "Protocol": "TCP",
            "TargetType": "ip",
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPath": "/health",
            "HealthCheckPort": "8080",
            "TargetGroupAttributes": Match.array_with(
                [{"Key": "deregistration_delay.timeout_seconds", "Value": "120"}]
            ),
        },
    )
    default.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener", {"Port": 8080, "Protocol": "TCP"}
    )


def ingress_rules(synthesized, group_id):
    """Every inbound rule of a security group: inline, and standalone ingress resources."""
    (logical,) = [
        k
        for k, v in synthesized.resources("AWS::EC2::SecurityGroup").items()
        if {"Fn::GetAtt": [k, "GroupId"]} == group_id
    ]
    group = synthesized.raw["Resources"][logical]["Properties"]
    rules = list(group.get("SecurityGroupIngress", []))
    rules += [
        r["Properties"]
        for r in synthesized.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == group_id
    ]
    return rules


def test_tasks_accept_the_bridge_port_from_the_nlb_and_each_other_only(default):
    bridge = default.stack.bridge
    tasks = default.resolve(bridge.security_group.security_group_id)
    nlb = default.resolve(bridge.load_balancer_security_group.security_group_id)
    rules = ingress_rules(default, tasks)
    # No address range is trusted: being in the VPC is not enough to reach the bridge.
    for rule in rules:
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), rule
    sources = sorted(
        (json.dumps(rule["SourceSecurityGroupId"]), rule["IpProtocol"], rule["FromPort"])
        for rule in rules
    )
    assert sources == sorted([(json.dumps(nlb), "tcp", 8080), (json.dumps(tasks), "tcp", 8080)])
    assert all(rule["ToPort"] == 8080 for rule in rules)


def test_the_nlb_has_a_security_group_that_admits_only_the_vpc_link(default):
    bridge = default.stack.bridge
    nlb_group = default.resolve(bridge.load_balancer_security_group.security_group_id)
    (balancer,) = default.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    props = balancer["Properties"]
    assert props["SecurityGroups"] == [nlb_group]
    # API Gateway's VPC link arrives through PrivateLink, exempt from the group's inbound rules
    # (API Gateway's addresses are not published); nothing else may come in.
    assert props["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"
    assert ingress_rules(default, nlb_group) == []
    (logical,) = [
        k
        for k, v in default.resources("AWS::EC2::SecurityGroup").items()
        if {"Fn::GetAtt": [k, "GroupId"]} == nlb_group
    ]
    egress = list(default.raw["Resources"][logical]["Properties"].get("SecurityGroupEgress", []))
    egress += [
        r["Properties"]
        for r in default.resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == nlb_group
    ]
    tasks = default.resolve(bridge.security_group.security_group_id)
    assert [(e.get("DestinationSecurityGroupId"), e["FromPort"]) for e in egress] == [(tasks, 8080)]


def test_the_tasks_get_the_gateway_secret_from_secrets_manager(default):
    _, definition = container(default)
    secret = default.resolve(default.stack.gateway_secret.secret.secret_arn)
    values = {s["Name"]: s["ValueFrom"] for s in definition["Secrets"]}
    assert values == {
        "NOVAKIT_GATEWAY_SECRET": {"Fn::Join": ["", [secret, ":current::"]]},
        "NOVAKIT_GATEWAY_SECRET_PREVIOUS": {"Fn::Join": ["", [secret, ":previous::"]]},
    }
    generator = [
        s["Properties"]["GenerateSecretString"]
        for s in default.resources("AWS::SecretsManager::Secret").values()
        if s["Properties"].get("Description", "").startswith("novakit: the header")
    ]
    assert generator == [
        {
            "SecretStringTemplate": '{"previous": ""}',
            "GenerateStringKey": "current",
            "ExcludePunctuation": True,
            "IncludeSpace": False,
            "PasswordLength": 48,
        }
    ]


def test_autoscaling_on_cpu_and_sessions(default):
    default.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 1, "MaxCapacity": 4}
    )
    default.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
                    },
                    "TargetValue": 60,
                }
            )
        },
    )
    default.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "CustomizedMetricSpecification": {
                        "MetricName": "SessionsActive",
                        "Namespace": "Novakit",
                        "Dimensions": [{"Name": "Service", "Value": "Novakit"}],
                        "Statistic": "Average",
                    },
                    "TargetValue": 14,
                }
            )
        },
    )


def test_session_directory_table(default):
    default.template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "BillingMode": "PAY_PER_REQUEST",
            "Replicas": [
                Match.object_like(
                    {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
                )
            ],
        },
    )
    assert TTL_ATTRIBUTE == "expires_at"


def test_network_has_two_azs_nat_and_a_dynamodb_endpoint_but_no_execute_api_endpoint(default):
    default.template.resource_count_is("AWS::EC2::NatGateway", 1)
    subnets = default.resources("AWS::EC2::Subnet")
    assert len(subnets) == 4  # public + private in each of two AZs
    endpoints = [
        json.dumps(e["Properties"]["ServiceName"])
        for e in default.resources("AWS::EC2::VPCEndpoint").values()
    ]
    assert any("dynamodb" in e for e in endpoints)
    assert not any("execute-api" in e for e in endpoints)


def test_interface_endpoints_are_optional(synth, two_tools):
    with_endpoints = synth("endpoints", tools=two_tools, nag=False, interface_endpoints="true")
    names = [
        json.dumps(e["Properties"]["ServiceName"])
        for e in with_endpoints.resources("AWS::EC2::VPCEndpoint").values()
    ]
    assert any("bedrock-runtime" in n for n in names)
    assert not any("execute-api" in n for n in names)


def test_a_retired_model_is_deployed_only_with_the_explicit_setting(synth, two_tools):
    retired = synth(
        "retired-model",
        tools=two_tools,
        nag=False,
        model_id="amazon.nova-sonic-v1:0",
        allow_retired_model="true",
    )
    _, definition = container(retired)
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    assert env["NOVAKIT_MODEL_ID"] == "amazon.nova-sonic-v1:0"
    assert env["NOVAKIT_ALLOW_RETIRED_MODEL"] == "1"
