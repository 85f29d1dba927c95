"""The bridge service: ARM64 Fargate from runtime/Dockerfile, the container contract, NLB health
checks and draining, rollback on failed deployments, autoscaling, the session directory."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from novakit.bridge.directory import RECORD_TTL_SECONDS
from stacks.bridge_service import processes_for
from stacks.session_directory import PARTITION_KEY, TTL_ATTRIBUTE

DIRECTORY_TTL_ATTRIBUTE = "expires_at"
assert RECORD_TTL_SECONDS > 2 * 3600  # outlives API Gateway's 2-hour connection limit


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
        "NOVAKIT_PROCESSES",
    }
    assert env["NOVAKIT_PORT"] == "8080"
    assert env["NOVAKIT_MODEL_ID"] == "amazon.nova-2-sonic-v1:0"
    assert env["NOVAKIT_VOICE"] == "matthew"
    assert env["NOVAKIT_BATCH_MS"] == "100"
    assert env["NOVAKIT_MAX_SESSIONS"] == "20"
    assert env["NOVAKIT_PROCESSES"] == "1"  # 1024 CPU units: one process, as always
    assert env["NOVAKIT_LOG_LEVEL"] == "INFO"
    assert env["NOVAKIT_METRICS_SERVICE"] == "Novakit"
    assert env["NOVAKIT_DIRECTORY_TABLE"] == default.resolve(
        default.stack.directory.table.table_name
    )
    assert env["NOVAKIT_CONNECTIONS_URL"] == {
        "Fn::Join": [
            "",
            # {stage}: the bridge answers each connection through its own stage
            ["https://", api, ".execute-api.us-east-1.", {"Ref": "AWS::URLSuffix"}, "/{stage}"],
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


def service_properties(synth):
    (service,) = synth.resources("AWS::ECS::Service").values()
    return service["Properties"]


def test_autoscaling_owns_the_task_count(default):
    # A DesiredCount would reset a scaled-out service to min_tasks on every deploy.
    assert "DesiredCount" not in service_properties(default)
    default.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 1, "MaxCapacity": 4, "ScalableDimension": "ecs:service:DesiredCount"},
    )


def test_step_scaling_adds_tasks_when_free_session_slots_run_low(default):
    steps = [
        p["Properties"]
        for p in default.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyType"] == "StepScaling"
    ]
    (policy,) = steps
    config = policy["StepScalingPolicyConfiguration"]
    assert config["AdjustmentType"] == "ChangeInCapacity"
    assert config["Cooldown"] == 60
    adjustments = sorted(
        config["StepAdjustments"], key=lambda a: a.get("MetricIntervalLowerBound", -1e9)
    )
    # Relative to the alarm's threshold of 5 free slots: none left adds two, a few adds one.
    assert adjustments == [
        {"MetricIntervalUpperBound": -5, "ScalingAdjustment": 2},
        {"MetricIntervalLowerBound": -5, "MetricIntervalUpperBound": 0, "ScalingAdjustment": 1},
    ]
    (alarm,) = [
        a["Properties"]
        for a in default.resources("AWS::CloudWatch::Alarm").values()
        if "free session slots" in json.dumps(a["Properties"])
    ]
    assert alarm["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 1, 1)
    expression = next(m for m in alarm["Metrics"] if "Expression" in m)
    assert expression["Expression"] == "FILL(tasks, 1) * (20 - FILL(sessions, 0))"
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert by_id["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert by_id["tasks"]["MetricStat"]["Period"] == 60
    assert by_id["sessions"]["MetricStat"]["Metric"]["MetricName"] == "SessionsActive"
    assert by_id["sessions"]["MetricStat"]["Stat"] == "Average"


@pytest.mark.parametrize(
    ("cpu", "processes"), [(256, 1), (512, 1), (1024, 1), (2048, 2), (4096, 4)]
)
def test_one_bridge_process_per_vcpu(cpu, processes):
    assert processes_for(cpu) == processes


def test_a_two_vcpu_task_runs_two_processes_that_share_its_sessions_cap(synth, two_tools):
    bigger = synth("cpu2048", tools=two_tools, nag=False, task_cpu=2048, task_memory_mib=4096)
    task, definition = container(bigger)
    assert (task["Cpu"], task["Memory"]) == ("2048", "4096")
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    # one process per vCPU, each with half of the task's 20 sessions, on ports 8081 and 8082
    assert (env["NOVAKIT_PROCESSES"], env["NOVAKIT_MAX_SESSIONS"]) == ("2", "10")
    assert env["NOVAKIT_RELAY_PORT"] == "8081"
    assert definition["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    bridge = bigger.stack.bridge
    tasks = bigger.resolve(bridge.security_group.security_group_id)
    nlb = bigger.resolve(bridge.load_balancer_security_group.security_group_id)
    ports = sorted(
        (json.dumps(rule["SourceSecurityGroupId"]), rule["FromPort"], rule["ToPort"])
        for rule in ingress_rules(bigger, tasks)
    )
    # the NLB reaches the shared port only; other tasks reach it and each process's own port
    assert ports == sorted(
        [
            (json.dumps(nlb), 8080, 8080),
            (json.dumps(tasks), 8080, 8080),
            (json.dumps(tasks), 8081, 8082),
        ]
    )
    # SessionsActive is per process: free slots count every process of every task
    (alarm,) = [
        a["Properties"]
        for a in bigger.resources("AWS::CloudWatch::Alarm").values()
        if "free session slots" in json.dumps(a["Properties"])
    ]
    expression = next(m for m in alarm["Metrics"] if "Expression" in m)
    assert expression["Expression"] == "FILL(tasks, 1) * 2 * (10 - FILL(sessions, 0))"
    bigger.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "CustomizedMetricSpecification": Match.object_like(
                        {"MetricName": "SessionsActive", "Statistic": "Average"}
                    ),
                    "TargetValue": 7,
                }
            )
        },
    )


def test_high_availability_in_one_switch(synth, two_tools, default):
    ha = synth("ha", tools=two_tools, ha=True)
    ha.template.resource_count_is("AWS::EC2::NatGateway", 2)
    ha.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 2, "MaxCapacity": 4}
    )
    service = service_properties(ha)
    assert "DesiredCount" not in service
    assert service["AvailabilityZoneRebalancing"] == "ENABLED"
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    subnets = service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
    assert len(subnets) == 2  # one private subnet in each of two zones
    assert service_properties(default)["AvailabilityZoneRebalancing"] == "DISABLED"
    # cdk.json's min_tasks=1 and nat_gateways=1 do not undo ha=true.
    from stacks import Settings

    settings = Settings.from_context(
        {"region": "us-east-1", "min_tasks": 1, "nat_gateways": 1, "ha": "true", "max_tasks": 1}
    )
    assert (settings.task_range, settings.nat_gateway_count) == ((2, 2), 2)


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


def table_properties(synth):
    (table,) = synth.resources("AWS::DynamoDB::GlobalTable").values()
    return table["Properties"]


def test_session_directory_table_keeps_live_sessions_only(default):
    default.template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    # The bridge writes expires_at on every record (novakit.bridge.directory).
    assert TTL_ATTRIBUTE == DIRECTORY_TTL_ATTRIBUTE == "expires_at"
    props = table_properties(default)
    # No point-in-time recovery: histories must not outlive their sessions by 35 days.
    for replica in props["Replicas"]:
        assert "PointInTimeRecoverySpecification" not in replica
    assert "PointInTimeRecovery" not in json.dumps(props)
    # Encrypted at rest with the key DynamoDB owns (no KMS key, no charge).
    assert props["SSESpecification"] == {"SSEEnabled": False}
    assert all("SSESpecification" not in r for r in props["Replicas"])
    assert default.resources("AWS::KMS::Key").keys() <= {
        default.resolve(default.stack.observability.topic_key.key_id)["Ref"]
    }


def test_a_customer_key_encrypts_the_directory_when_asked_for(synth, two_tools):
    keyed = synth("customer-key", tools=two_tools, directory_customer_key=True)
    props = table_properties(keyed)
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    (replica,) = props["Replicas"]
    key_arn = keyed.resolve(keyed.stack.directory.key.key_arn)
    assert replica["SSESpecification"] == {"KMSMasterKeyId": key_arn}
    key = keyed.raw["Resources"][keyed.resolve(keyed.stack.directory.key.key_id)["Ref"]]
    assert key["Properties"]["EnableKeyRotation"] is True


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


def test_interface_endpoints_are_optional_and_carry_bedrock_only(synth, two_tools):
    with_endpoints = synth("endpoints", tools=two_tools, nag=False, interface_endpoints="true")
    interface = [
        json.dumps(e["Properties"]["ServiceName"])
        for e in with_endpoints.resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert len(interface) == 1 and "bedrock-runtime" in interface[0]


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
