"""WebSocket ``$connect`` authorizer (API Gateway Lambda REQUEST authorizer).

The client puts its token in the query string (browsers cannot set headers on a WebSocket):
``wss://.../live?token=...``. API Gateway refuses a connect without ``token`` before calling
this function. Modes (``AUTH_MODE``):

- ``secret``: the token must equal the shared secret in Secrets Manager (``SECRET_ARN``).
- ``cognito``: the token is a Cognito access token of this user pool and app client
  (``USER_POOL_ID``, ``CLIENT_ID``); Cognito itself checks signature, expiry and revocation.
  A token whose shape already rules it out (not a JWT, too long, not RS256 with a key id,
  expired, another pool, client or token use) is refused without calling Cognito, so a flood
  of junk tokens costs no Cognito calls.

Only the standard library and boto3 (both in the Lambda runtime). Tokens are never logged.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import time
from typing import Any

import boto3

SECRET_CACHE_SECONDS = 300
# Cognito access tokens are about 1 KB; anything far longer is not one.
MAX_TOKEN_LENGTH = 4096

# (fetched at, value): one fetch per warm function per SECRET_CACHE_SECONDS.
_secret_cache: dict[str, tuple[float, str]] = {}


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token") or ""
    method_arn = event["methodArn"]
    mode = os.environ["AUTH_MODE"]
    principal = check_secret(token) if mode == "secret" else check_cognito(token)
    if principal is None:
        print(json.dumps({"level": "INFO", "message": "connect refused", "mode": mode}))
        # API Gateway turns an explicit Deny into a 403 on the WebSocket handshake.
        return policy("anonymous", "Deny", method_arn)
    return policy(principal, "Allow", method_arn)


def policy(principal: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"authMode": os.environ["AUTH_MODE"]},
    }


def check_secret(token: str) -> str | None:
    expected = shared_secret()
    if token and hmac.compare_digest(token.encode(), expected.encode()):
        return "shared-secret"
    return None


def shared_secret() -> str:
    secret_arn = os.environ["SECRET_ARN"]
    now = time.monotonic()
    cached = _secret_cache.get(secret_arn)
    if cached is None or now - cached[0] > SECRET_CACHE_SECONDS:
        client = boto3.client("secretsmanager")
        cached = (now, client.get_secret_value(SecretId=secret_arn)["SecretString"])
        _secret_cache[secret_arn] = cached
    return cached[1]


def check_cognito(token: str, now: float | None = None) -> str | None:
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    header = unverified_part(token, 0)
    claims = unverified_part(token, 1)
    if header is None or claims is None:
        return None
    # Cognito signs with RS256 and names its key: anything else is not its token.
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
        return None
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires <= (time.time() if now is None else now):
        return None
    region = os.environ["AWS_REGION"]
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{os.environ['USER_POOL_ID']}"
    if (
        claims.get("iss") != issuer
        or claims.get("client_id") != os.environ["CLIENT_ID"]
        or claims.get("token_use") != "access"
    ):
        return None
    # GetUser accepts only a valid, unexpired, unrevoked access token: that is the signature
    # check, done by Cognito, so no JWT library has to be bundled.
    try:
        boto3.client("cognito-idp").get_user(AccessToken=token)
    except Exception:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) and subject else None


def unverified_claims(token: str) -> dict[str, Any] | None:
    return unverified_part(token, 1)


def unverified_part(token: str, index: int) -> dict[str, Any] | None:
    """The JSON object in part ``index`` of a three-part JWT (0: header, 1: claims)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4))
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
