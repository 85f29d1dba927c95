"""Alarms on what hurts a conversation, a dashboard, and the outputs a person needs."""

from __future__ import annotations

from aws_cdk.assertions import Match

from stacks.observability import BRIDGE_METRICS


def alarms_by_id(synth):
    return {
        name: synth.raw["Resources"][synth.resolve(alarm.alarm_name)["Ref"]]["Properties"]
        for name, alarm in synth.stack.observability.alarms.items()
    }


def test_alarms_exist(default):
    assert set(default.stack.observability.alarms) == {
        "BridgeErrors",
        "TimeToFirstAudio",
        "ToolFailures",
        "IntegrationErrors",
        "ExecutionErrors",
        "ClientErrorsAndThrottles",
        "UnhealthyBridgeTasks",
        "NoHealthyTasks",
        "TaskRestarts",
        "SessionsRefused",
        "BedrockErrors",
        "BedrockThrottles",
        "DirectoryThrottles",
        "AuthorizerErrors",
        "ToolFunctionErrors",
        "ToolThrottles",
    }
    for name, alarm in alarms_by_id(default).items():
        # Silence is no fault, except where silence means no healthy target.
        expected = "breaching" if name == "NoHealthyTasks" else "notBreaching"
        assert alarm["TreatMissingData"] == expected, name
        assert alarm["AlarmDescription"]


def test_every_alarm_in_the_template_has_an_action(default):
    """Including the alarms CDK makes for scaling: an alarm nobody hears is not an alarm."""
    alarms = default.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(default.stack.observability.alarms) + 1  # + step scaling
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions"), logical_id


def test_alarms_notify_one_topic_without_alarm_email(default):
    topic = default.resolve(default.stack.observability.topic.topic_arn)
    for name, alarm in alarms_by_id(default).items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name
    default.template.resource_count_is("AWS::SNS::Subscription", 0)
    assert default.raw["Outputs"]["AlarmTopicArn"]["Value"] == topic


def test_cloudwatch_may_use_the_topics_key(default):
    key = default.raw["Resources"][
        default.resolve(default.stack.observability.topic_key.key_id)["Ref"]
    ]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = key["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s.get("Sid") == "CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cloudwatch["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    (topic,) = default.resources("AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == default.resolve(
        default.stack.observability.topic_key.key_arn
    )


def test_aws_service_alarms_watch_the_right_resources(default):
    alarms = alarms_by_id(default)
    stack = default.stack
    for name, metric in (
        ("BedrockErrors", "InvocationServerErrors"),
        ("BedrockThrottles", "InvocationThrottles"),
    ):
        assert alarms[name]["Namespace"] == "AWS/Bedrock"
        assert alarms[name]["MetricName"] == metric
        assert alarms[name]["Dimensions"] == [
            {"Name": "ModelId", "Value": "amazon.nova-2-sonic-v1:0"}
        ]
    healthy = alarms["NoHealthyTasks"]
    assert (healthy["MetricName"], healthy["Statistic"]) == ("HealthyHostCount", "Minimum")
    assert (healthy["ComparisonOperator"], healthy["Threshold"]) == ("LessThanThreshold", 1)
    assert alarms["SessionsRefused"]["MetricName"] == "SessionsRefused"
    assert alarms["SessionsRefused"]["Threshold"] == 1

    def metric_names(alarm):
        return {
            m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
            for m in alarm["Metrics"]
            if "MetricStat" in m
        }

    table = default.resolve(stack.directory.table.table_name)
    assert metric_names(alarms["DirectoryThrottles"]) == {
        "ReadThrottleEvents": [{"Name": "TableName", "Value": table}],
        "WriteThrottleEvents": [{"Name": "TableName", "Value": table}],
    }
    authorizer = default.resolve(stack.auth.function.function_name)
    assert metric_names(alarms["AuthorizerErrors"]) == {
        "Errors": [{"Name": "FunctionName", "Value": authorizer}],
        "Throttles": [{"Name": "FunctionName", "Value": authorizer}],
    }
    restarts = metric_names(alarms["TaskRestarts"])
    assert set(restarts) == {"DesiredTaskCount", "RunningTaskCount"}
    assert alarms["TaskRestarts"]["EvaluationPeriods"] == 5


def test_bridge_alarms_read_the_bridges_emf_metrics(default):
    alarms = alarms_by_id(default)
    for name, metric in (
        ("BridgeErrors", "Errors"),
        ("TimeToFirstAudio", "TimeToFirstAudioMs"),
        ("ToolFailures", "ToolFailures"),
    ):
        assert alarms[name]["Namespace"] == "Novakit"
        assert alarms[name]["MetricName"] == metric
        assert alarms[name]["Dimensions"] == [{"Name": "Service", "Value": "Novakit"}]
    assert alarms["TimeToFirstAudio"]["ExtendedStatistic"] == "p90"
    assert alarms["TimeToFirstAudio"]["Threshold"] == 1500


def test_gateway_alarms_watch_5xx_and_throttles(default):
    alarms = alarms_by_id(default)
    api = default.resolve(default.stack.gateway.api.ref)
    for name, metric in (
        ("IntegrationErrors", "IntegrationError"),
        ("ExecutionErrors", "ExecutionError"),
        ("ClientErrorsAndThrottles", "ClientError"),
    ):
        assert alarms[name]["Namespace"] == "AWS/ApiGateway"
        assert alarms[name]["MetricName"] == metric
        assert alarms[name]["Dimensions"] == [
            {"Name": "ApiId", "Value": api},
            {"Name": "Stage", "Value": "live"},
        ]


def test_tool_function_alarms_sum_over_every_tool(default):
    alarms = alarms_by_id(default)
    for name in ("ToolFunctionErrors", "ToolThrottles"):
        expression = next(m for m in alarms[name]["Metrics"] if "Expression" in m)
        assert expression["Expression"] == "FILL(m0, 0) + FILL(m1, 0)"


def test_dashboard_shows_every_bridge_metric(default):
    (dashboard,) = default.resources("AWS::CloudWatch::Dashboard").values()
    body = str(default.resolve(dashboard["Properties"]["DashboardBody"]))
    for metric in BRIDGE_METRICS:
        assert metric in body
    assert "ConnectCount" in body and "IntegrationLatency" in body


def test_alarm_email_subscribes_to_an_encrypted_topic(synth, two_tools):
    with_email = synth("email", tools=two_tools, alarm_email="oncall@example.com")
    with_email.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )
    with_email.template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()}
    )
    topic = with_email.resolve(with_email.stack.observability.topic.topic_arn)
    for alarm in alarms_by_id(with_email).values():
        assert alarm["AlarmActions"] == [topic]
    with_email.template.resource_count_is("AWS::SNS::Topic", 1)


def test_outputs_tell_how_to_connect(default):
    outputs = default.raw["Outputs"]
    assert {
        "WebSocketUrl",
        "SharedSecretArn",
        "GetTokenCommand",
        "TalkCommand",
        "DashboardUrl",
        "GatewaySecretArn",
        "AlarmTopicArn",
    } <= set(outputs)
    url = outputs["WebSocketUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "wss://" and url[-1] == "/live"
    # the SDKs add /realtime to their base URL: the base is the API's, without a stage
    base = outputs["RealtimeBaseUrl"]["Value"]["Fn::Join"][1]
    assert base == url[:-1]
    token = str(outputs["GetTokenCommand"]["Value"])
    assert "aws secretsmanager get-secret-value" in token
    talk = str(outputs["TalkCommand"]["Value"])
    # Runs on a fresh machine after `make install`: the checkout's venv, no microphone needed.
    assert ".venv/bin/novakit talk wss://" in talk
    assert '--token "$(aws secretsmanager' in talk and '--text "Hello"' in talk
    assert "--mic" not in talk
    assert "cloudwatch/home?region=us-east-1#dashboards:name=" in str(outputs["DashboardUrl"])
