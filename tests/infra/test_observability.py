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
        "ToolFunctionErrors",
        "ToolThrottles",
    }
    for alarm in alarms_by_id(default).values():
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmDescription"]


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


def test_outputs_tell_how_to_connect(default):
    outputs = default.raw["Outputs"]
    assert {
        "WebSocketUrl",
        "SharedSecretArn",
        "GetTokenCommand",
        "TalkCommand",
        "DashboardUrl",
        "GatewaySecretArn",
    } <= set(outputs)
    url = outputs["WebSocketUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "wss://" and url[-1] == "/live"
    token = str(outputs["GetTokenCommand"]["Value"])
    assert "aws secretsmanager get-secret-value" in token
    talk = str(outputs["TalkCommand"]["Value"])
    assert "novakit talk wss://" in talk and "--mic --token" in talk
    assert "cloudwatch/home?region=us-east-1#dashboards:name=" in str(outputs["DashboardUrl"])
