"""The $connect authorizer function, run locally with a stand-in for boto3."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import time
import types

import pytest

from stacks.connect_auth import AUTHORIZER_CODE

METHOD_ARN = "arn:aws:execute-api:us-east-1:111122223333:abc123/live/$connect"


class FakeClients:
    def __init__(self) -> None:
        self.secret = "s3cret-token"
        self.pending: str | None = None  # AWSPENDING, during a rotation
        self.unavailable = False  # Secrets Manager fails every call
        self.valid_access_tokens: set[str] = set()
        self.secret_reads = 0  # reads of AWSCURRENT
        self.cognito_calls = 0

    def client(self, name: str):
        clients = self

        class SecretsManager:
            def get_secret_value(self, SecretId, VersionStage="AWSCURRENT"):  # noqa: N803
                if clients.unavailable:
                    raise RuntimeError("ThrottlingException")
                if VersionStage == "AWSPENDING":
                    if clients.pending is None:
                        raise RuntimeError("ResourceNotFoundException")
                    return {"SecretString": clients.pending}
                clients.secret_reads += 1
                return {"SecretString": clients.secret}

        class CognitoIdp:
            def get_user(self, AccessToken):  # noqa: N803
                clients.cognito_calls += 1
                if AccessToken not in clients.valid_access_tokens:
                    raise RuntimeError("NotAuthorizedException")
                return {"Username": "someone"}

        return {"secretsmanager": SecretsManager, "cognito-idp": CognitoIdp}[name]()


@pytest.fixture
def authorizer(monkeypatch):
    fake = FakeClients()
    monkeypatch.setitem(sys.modules, "boto3", types.SimpleNamespace(client=fake.client))
    spec = importlib.util.spec_from_file_location("ws_authorizer", AUTHORIZER_CODE / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.fake = fake
    return module


def event(token: str | None) -> dict:
    params = {"token": token} if token is not None else None
    return {"methodArn": METHOD_ARN, "queryStringParameters": params}


def effect(answer: dict) -> str:
    return answer["policyDocument"]["Statement"][0]["Effect"]


def test_shared_secret(authorizer, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "secret")
    monkeypatch.setenv("SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x")
    allowed = authorizer.handler(event("s3cret-token"))
    assert effect(allowed) == "Allow"
    assert allowed["principalId"] == "shared-secret"
    assert allowed["policyDocument"]["Statement"][0]["Resource"] == METHOD_ARN
    assert effect(authorizer.handler(event("wrong"))) == "Deny"
    assert effect(authorizer.handler(event(""))) == "Deny"
    assert effect(authorizer.handler(event(None))) == "Deny"
    # The secret is read once and cached while the function is warm.
    assert authorizer.fake.secret_reads == 1


def jwt(claims: dict, header: dict | None = None) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = {"kid": "key-1", "alg": "RS256"} if header is None else header
    return f"{part(header)}.{part(claims)}.signature"


def test_cognito_access_token(authorizer, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "cognito")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("USER_POOL_ID", "us-east-1_pool")
    monkeypatch.setenv("CLIENT_ID", "client123")
    claims = {
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
        "client_id": "client123",
        "token_use": "access",
        "sub": "user-sub-1",
        "exp": time.time() + 3600,
    }
    good = jwt(claims)
    authorizer.fake.valid_access_tokens.add(good)
    allowed = authorizer.handler(event(good))
    assert effect(allowed) == "Allow"
    assert allowed["principalId"] == "user-sub-1"

    # Right claims, but Cognito does not vouch for it (forged, expired or revoked).
    forged = jwt({**claims, "sub": "someone-else"})
    assert effect(authorizer.handler(event(forged))) == "Deny"
    # Valid at Cognito, but for another pool, client or an id token.
    for other in (
        {**claims, "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"},
        {**claims, "client_id": "another-client"},
        {**claims, "token_use": "id"},
    ):
        token = jwt(other)
        authorizer.fake.valid_access_tokens.add(token)
        assert effect(authorizer.handler(event(token))) == "Deny"
    assert effect(authorizer.handler(event("not-a-jwt"))) == "Deny"


def test_cognito_tokens_ruled_out_by_their_shape_never_reach_cognito(authorizer, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "cognito")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("USER_POOL_ID", "us-east-1_pool")
    monkeypatch.setenv("CLIENT_ID", "client123")
    claims = {
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
        "client_id": "client123",
        "token_use": "access",
        "sub": "user-sub-1",
        "exp": time.time() + 3600,
    }
    junk = [
        "not-a-jwt",
        "a.b.c",
        jwt(claims, header={"alg": "none", "kid": "key-1"}),
        jwt(claims, header={"alg": "HS256", "kid": "key-1"}),
        jwt(claims, header={"alg": "RS256"}),
        jwt({**claims, "exp": time.time() - 1}),
        jwt({k: v for k, v in claims.items() if k != "exp"}),
        jwt({**claims, "exp": "tomorrow"}),
        jwt({**claims, "client_id": "another-client"}),
        jwt({**claims, "padding": "x" * 5000}),
    ]
    for token in junk:
        authorizer.fake.valid_access_tokens.add(token)  # even if Cognito would say yes
        assert effect(authorizer.handler(event(token))) == "Deny", token[:60]
    assert authorizer.fake.cognito_calls == 0
    good = jwt(claims)
    authorizer.fake.valid_access_tokens.add(good)
    assert effect(authorizer.handler(event(good))) == "Allow"
    assert authorizer.fake.cognito_calls == 1


def stage_event(stage: str, headers: dict[str, str], token: str | None = None) -> dict:
    return {
        **event(token),
        "methodArn": METHOD_ARN.replace("/live/", f"/{stage}/"),
        "requestContext": {"stage": stage},
        "headers": headers,
    }


@pytest.mark.parametrize(
    ("case", "allowed"),
    [
        (("realtime", {"Authorization": "Bearer s3cret-token"}, None), True),
        (("realtime", {"authorization": "bearer s3cret-token"}, None), True),  # any case
        (("realtime", {"Authorization": "Bearer wrong"}, None), False),
        (("realtime", {"Authorization": "Basic s3cret-token"}, None), False),
        (("realtime", {}, "s3cret-token"), True),
        (("realtime", {"Authorization": "Bearer s3cret-token"}, "wrong"), False),  # query wins
        # an empty ?token= is no token: the header is read (as the local gateway does)
        (("realtime", {"Authorization": "Bearer s3cret-token"}, ""), True),
        (("realtime", {}, ""), False),
        # stages not in BEARER_STAGES (the v1 stage) take the query string only
        (("live", {"Authorization": "Bearer s3cret-token"}, None), False),
        (("live", {}, "s3cret-token"), True),
        (("live", {"Authorization": "Bearer s3cret-token"}, ""), False),
    ],
)
def test_a_bearer_header_on_the_stages_that_take_it(authorizer, monkeypatch, case, allowed):
    monkeypatch.setenv("AUTH_MODE", "secret")
    monkeypatch.setenv("SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x")
    monkeypatch.setenv("BEARER_STAGES", "realtime,twilio")
    answer = authorizer.handler(stage_event(*case))
    assert effect(answer) == ("Allow" if allowed else "Deny")
