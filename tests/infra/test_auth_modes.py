"""$connect authentication modes: Cognito, IAM, and an open endpoint only behind a loud flag."""

from __future__ import annotations

import pytest

from stacks import SettingsError
from tests.infra.conftest import REGION


def connect_route(synth):
    for route in synth.resources("AWS::ApiGatewayV2::Route").values():
        if route["Properties"]["RouteKey"] == "$connect":
            return route["Properties"]
    raise AssertionError("no $connect route")


def connect_headers(synth):
    integration = synth.stack.gateway.integrations["$connect"]
    props = synth.raw["Resources"][synth.resolve(integration.ref)["Ref"]]["Properties"]
    return props["RequestParameters"]


def test_cognito_mode(synth, two_tools):
    # A concrete account too: cdk-nag finding ids then carry it instead of a reference.
    cognito = synth("cognito", tools=two_tools, account="111122223333", auth_mode="cognito")
    route = connect_route(cognito)
    assert route["AuthorizationType"] == "CUSTOM"
    cognito.template.resource_count_is("AWS::Cognito::UserPool", 1)
    # only the gateway secret (API Gateway to the bridge): no shared client token
    cognito.template.resource_count_is("AWS::SecretsManager::Secret", 1)
    cognito.template.has_resource_properties(
        "AWS::Cognito::UserPoolClient", {"GenerateSecret": False}
    )
    auth = cognito.stack.auth
    env = cognito.raw["Resources"][cognito.resolve(auth.function.function_name)["Ref"]]
    variables = env["Properties"]["Environment"]["Variables"]
    assert variables["AUTH_MODE"] == "cognito"
    assert variables["USER_POOL_ID"] == cognito.resolve(auth.user_pool.user_pool_id)
    assert variables["CLIENT_ID"] == cognito.resolve(auth.user_pool_client.user_pool_client_id)
    outputs = cognito.raw["Outputs"]
    assert {"UserPoolId", "UserPoolClientId", "GetTokenCommand", "TalkCommand"} <= set(outputs)
    assert "initiate-auth" in str(outputs["GetTokenCommand"])


def test_iam_mode(synth, two_tools):
    iam = synth("iam", tools=two_tools, auth_mode="iam")
    route = connect_route(iam)
    assert route["AuthorizationType"] == "AWS_IAM"
    assert "AuthorizerId" not in route
    iam.template.resource_count_is("AWS::ApiGatewayV2::Authorizer", 0)
    assert connect_headers(iam)["integration.request.header.x-principal-id"] == (
        "context.identity.userArn"
    )
    assert "TalkCommand" not in iam.raw["Outputs"]
    permission = str(iam.raw["Outputs"]["ConnectPermission"]["Value"])
    assert f":execute-api:{REGION}:" in permission and "/live/$connect" in permission


def test_open_endpoint_only_with_the_flag(synth, two_tools):
    with pytest.raises(SettingsError, match="allow_unauthenticated"):
        synth("open-refused", tools=two_tools, auth_mode="none")
    opened = synth("open", tools=two_tools, auth_mode="none", allow_unauthenticated=True)
    assert connect_route(opened)["AuthorizationType"] == "NONE"
    assert "integration.request.header.x-principal-id" not in connect_headers(opened)
    assert opened.raw["Description"].startswith("UNAUTHENTICATED ENDPOINT")
    assert "WARNING" in opened.raw["Outputs"]["Unauthenticated"]["Value"]
    assert "--token" not in str(opened.raw["Outputs"]["TalkCommand"])
    opened.template.resource_count_is("AWS::ApiGatewayV2::Authorizer", 0)
    opened.template.resource_count_is("AWS::SecretsManager::Secret", 1)  # the gateway secret
