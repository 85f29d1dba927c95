"""The WebSocket API: HTTP_PROXY over a V1 VPC link to the bridge's NLB, the contract headers,
routes, the authorizer on $connect only, a throttled stage, access logs without tokens."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from stacks.websocket_gateway import ACCESS_LOG_FORMAT

COMMON = {
    "integration.request.header.x-connection-id": "context.connectionId",
    "integration.request.header.x-request-id": "context.requestId",
    "integration.request.header.x-route-key": "context.routeKey",
    "integration.request.header.x-source-ip": "context.identity.sourceIp",
    "integration.request.header.x-stage": "context.stage",
    "integration.request.header.x-connected-at": "context.connectedAt",
}
PATHS = {"$connect": "/ws/connect", "$default": "/ws/message", "$disconnect": "/ws/disconnect"}


def integration_for(default, route_key):
    integration = default.stack.gateway.integrations[route_key]
    return default.raw["Resources"][default.resolve(integration.ref)["Ref"]]["Properties"]


@pytest.mark.parametrize("route_key", ["$connect", "$default", "$disconnect"])
def test_each_route_is_an_http_proxy_over_the_vpc_link(default, route_key):
    props = integration_for(default, route_key)
    vpc_link = default.resolve(default.stack.gateway.vpc_link.vpc_link_id)
    nlb_dns = default.resolve(default.stack.bridge.load_balancer.load_balancer_dns_name)
    assert props["IntegrationType"] == "HTTP_PROXY"
    assert props["ConnectionType"] == "VPC_LINK"
    assert props["ConnectionId"] == vpc_link
    assert props["IntegrationMethod"] == "POST"
    assert props["IntegrationUri"] == {
        "Fn::Join": ["", ["http://", nlb_dns, f":8080{PATHS[route_key]}"]]
    }
    expected = dict(COMMON)
    if route_key == "$connect":
        expected["integration.request.header.x-principal-id"] = "context.authorizer.principalId"
        # What an OpenAI Realtime client names with ?model=, reported back to it.
        expected["integration.request.header.x-requested-model"] = "route.request.querystring.model"
    secret = default.resolve(default.stack.gateway_secret.secret.secret_arn)
    # The secret as a static value, resolved by CloudFormation: never in the template itself.
    expected["integration.request.header.x-gateway-secret"] = {
        "Fn::Join": ["", ["'{{resolve:secretsmanager:", secret, ":SecretString:current::}}'"]]
    }
    assert props["RequestParameters"] == expected


def test_three_integrations_and_routes(default):
    default.template.resource_count_is("AWS::ApiGatewayV2::Integration", 3)
    default.template.resource_count_is("AWS::ApiGatewayV2::Route", 3)
    routes = {
        r["Properties"]["RouteKey"] for r in default.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert routes == {"$connect", "$default", "$disconnect"}


def test_vpc_link_is_v1_and_targets_the_bridge_nlb(default):
    links = default.resources("AWS::ApiGateway::VpcLink")
    assert len(links) == 1
    (link,) = links.values()
    nlb = default.resolve(default.stack.bridge.load_balancer.load_balancer_arn)
    assert link["Properties"]["TargetArns"] == [nlb]
    default.template.resource_count_is("AWS::ApiGatewayV2::VpcLink", 0)
    default.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Scheme": "internal", "Type": "network"},
    )


def test_stage_deploys_after_every_route(default):
    stage_id = default.resolve(default.stack.gateway.stage.ref)["Ref"]
    depends = default.raw["Resources"][stage_id]["DependsOn"]
    for route in default.stack.gateway.routes.values():
        assert default.resolve(route.ref)["Ref"] in depends


def test_authorizer_on_connect_only(default):
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in default.resources("AWS::ApiGatewayV2::Route").values()
    }
    authorizer = default.resolve(default.stack.auth.authorizer.ref)
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert routes["$connect"]["AuthorizerId"] == authorizer
    for key in ("$default", "$disconnect"):
        assert routes[key]["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in routes[key]
    default.template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "REQUEST",
            # The realtime stage takes a Bearer header as well as ?token=: the function decides
            # (API Gateway would refuse unseen a connect lacking any listed source).
            "IdentitySource": ["context.connectionId"],
        },
    )
    function = default.raw["Resources"][
        default.resolve(default.stack.auth.function.function_name)["Ref"]
    ]
    assert function["Properties"]["Environment"]["Variables"]["BEARER_STAGES"] == "realtime"


def test_without_a_bearer_stage_a_connect_needs_the_token_before_the_function_runs():
    from stacks.connect_auth import identity_source

    assert identity_source(()) == ["route.request.querystring.token"]
    assert identity_source(("realtime",)) == ["context.connectionId"]


def test_each_client_protocol_has_a_stage_like_the_v1_stage(default):
    stages = {
        s["Properties"]["StageName"]: s["Properties"]
        for s in default.resources("AWS::ApiGatewayV2::Stage").values()
    }
    assert set(stages) == {"live", "realtime"}
    live, realtime = stages["live"], stages["realtime"]
    # the same throttling (frames and $connect), logging and access log as the v1 stage
    for name in ("ApiId", "AutoDeploy", "DefaultRouteSettings", "RouteSettings"):
        assert realtime[name] == live[name], name
    assert realtime["AccessLogSettings"] == live["AccessLogSettings"]
    assert realtime["AccessLogSettings"]["Format"] == ACCESS_LOG_FORMAT
    assert realtime["DefaultRouteSettings"]["ThrottlingRateLimit"] == 2500
    assert realtime["RouteSettings"]["$connect"]["ThrottlingRateLimit"] == 50
    # routes (and their authorizer) belong to the API: every stage has the same ones
    assert len(default.resources("AWS::ApiGatewayV2::Route")) == 3


def test_the_stage_is_in_every_access_log_line():
    assert json.loads(ACCESS_LOG_FORMAT)["stage"] == "$context.stage"


def test_only_this_apis_authorizer_may_invoke_the_function(default):
    api = default.resolve(default.stack.gateway.api.ref)
    authorizer = default.resolve(default.stack.auth.authorizer.ref)
    default.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {
                "Fn::Join": [
                    "",
                    Match.array_with([api, "/authorizers/", authorizer]),
                ]
            },
        },
    )


def test_stage_is_throttled_and_logs_errors_without_request_data(default):
    default.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "live",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": 2500,
                "ThrottlingBurstLimit": 5000,
                "LoggingLevel": "ERROR",
                "DataTraceEnabled": False,
            },
            "AccessLogSettings": {"Format": ACCESS_LOG_FORMAT, "DestinationArn": Match.any_value()},
        },
    )


def test_connect_has_its_own_lower_throttle(default):
    for stage in default.resources("AWS::ApiGatewayV2::Stage").values():
        _connect_has_its_own_lower_throttle(stage)


def _connect_has_its_own_lower_throttle(stage):
    connect = stage["Properties"]["RouteSettings"]["$connect"]
    assert (connect["ThrottlingRateLimit"], connect["ThrottlingBurstLimit"]) == (50, 100)
    assert connect["LoggingLevel"] == "ERROR" and connect["DataTraceEnabled"] is False
    defaults = stage["Properties"]["DefaultRouteSettings"]
    assert connect["ThrottlingRateLimit"] < defaults["ThrottlingRateLimit"]


def test_the_authorizer_has_reserved_concurrency(default):
    function = default.stack.auth.function
    resource = default.raw["Resources"][default.resolve(function.function_name)["Ref"]]
    assert resource["Properties"]["ReservedConcurrentExecutions"] == 10


def test_access_log_format_cannot_carry_a_token():
    fields = json.loads(ACCESS_LOG_FORMAT)
    text = ACCESS_LOG_FORMAT.lower()
    assert "querystring" not in text
    assert "token" not in text
    assert "header" not in text
    assert "$context.connectionId" in fields.values()
    assert "$context.status" in fields.values()


def test_the_account_logging_role_is_kept_after_teardown(default):
    account = default.resources("AWS::ApiGateway::Account")
    (resource,) = account.values()
    assert resource["DeletionPolicy"] == "Retain"


def test_a_rotation_pins_the_integrations_to_a_version_of_the_secret(synth, two_tools):
    version = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    pinned = synth("pinned", tools=two_tools, nag=False, gateway_secret_version=version)
    secret = pinned.resolve(pinned.stack.gateway_secret.secret.secret_arn)
    for route_key in PATHS:
        header = integration_for(pinned, route_key)["RequestParameters"][
            "integration.request.header.x-gateway-secret"
        ]
        assert header == {
            "Fn::Join": [
                "",
                ["'{{resolve:secretsmanager:", secret, f":SecretString:current::{version}}}}}'"],
            ]
        }
