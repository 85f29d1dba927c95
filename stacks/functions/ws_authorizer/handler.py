"""WebSocket ``$connect`` authorizer (API Gateway Lambda REQUEST authorizer).

The client puts its token in the query string (browsers cannot set headers on a WebSocket):
``wss://.../live?token=...``. On the stages named in ``BEARER_STAGES`` (comma-separated: the
OpenAI Realtime stage) it may send ``Authorization: Bearer <token>`` instead, as the OpenAI SDKs
do; the query string wins when both are there. Modes (``AUTH_MODE``):

- ``secret``: the token must equal the shared secret in Secrets Manager (``SECRET_ARN``).
- ``cognito``: the token is a Cognito access token of this user pool and app client
  (``USER_POOL_ID``, ``CLIENT_ID``); Cognito itself checks signature, expiry and revocation.
  A token whose shape already rules it out (not a JWT, too long, not RS256 with a key id,
  expired, another pool, client or token use) is refused without calling Cognito, so a flood
  of junk tokens costs no Cognito calls.

Phone calls (``TWILIO_STAGE``, set when the stack is deployed with ``-c twilio=true``): Twilio
cannot put a token in a stream URL, but it signs the WebSocket handshake. On that stage the
``X-Twilio-Signature`` header must verify, with the official ``twilio`` package's
``RequestValidator`` (bundled with this function), against the stream URL the incoming-call
webhook gave Twilio (``TWILIO_STREAM_URL``) and the account's auth token, read from Secrets
Manager (``TWILIO_SECRET_ARN``) and cached like the shared secret. Other stages never accept a
Twilio signature, and the Twilio stage never accepts a token.

Only the standard library and boto3 (both in the Lambda runtime), and the ``twilio`` package's
request validator for phone calls. Tokens and signatures are never logged,
and neither is the secret: the AWS SDK loggers are capped at WARNING (botocore logs response
bodies at DEBUG, Secrets Manager's included). Anything that cannot be read (a token too long,
not base64, JSON nested too deep) is a Deny, never an error.

Rotation: the secret's AWSCURRENT and AWSPENDING values are accepted. They are cached while the
function is warm, for at most ``SECRET_CACHE_SECONDS``; a token that matches neither refreshes
the cache at once (a just-rotated secret works on the next try), at most once every
``SECRET_REFRESH_SECONDS``, so a flood of bad tokens costs one Secrets Manager read per interval.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import time
from typing import Any

import boto3

# How long an old secret can still be accepted after a rotation, per warm function.
SECRET_CACHE_SECONDS = 30
# A token that matches no cached value re-reads the secret, at most this often.
SECRET_REFRESH_SECONDS = 5
# Cognito access tokens are a few KB at most; anything longer is refused unread.
MAX_TOKEN_CHARS = 8192
# Cognito access tokens are about 1 KB; anything far longer is not one.
MAX_TOKEN_LENGTH = 4096

for _sdk_logger in ("botocore", "boto3", "urllib3"):
    if logging.getLogger(_sdk_logger).level < logging.WARNING:
        logging.getLogger(_sdk_logger).setLevel(logging.WARNING)

clock = time.monotonic  # (tests move it)
# secret ARN -> (fetched at, accepted values): AWSCURRENT, and AWSPENDING during a rotation.
_secret_cache: dict[str, tuple[float, tuple[str, ...]]] = {}


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    token = presented_token(event)
    method_arn = event["methodArn"]
    mode = os.environ["AUTH_MODE"]
    stage = (event.get("requestContext") or {}).get("stage")
    try:
        if os.environ.get("TWILIO_STAGE") and stage == os.environ["TWILIO_STAGE"]:
            mode = "twilio"
            principal = check_twilio(header(event, "X-Twilio-Signature"))
        else:
            principal = authorize(token, mode)
    except Exception as exc:  # an error is a refusal (403), not a 500 that invites retries
        print(
            json.dumps(
                {"level": "ERROR", "message": "authorizer failed", "error": type(exc).__name__}
            )
        )
        principal = None
    if principal is None:
        print(json.dumps({"level": "INFO", "message": "connect refused", "mode": mode}))
        # API Gateway turns an explicit Deny into a 403 on the WebSocket handshake.
        return policy("anonymous", "Deny", method_arn)
    return policy(principal, "Allow", method_arn)


def presented_token(event: dict[str, Any]) -> str:
    """The query string's ``token``, else, on a stage that allows it, the Bearer header's."""
    token = (event.get("queryStringParameters") or {}).get("token")
    if token:
        return str(token)
    stage = (event.get("requestContext") or {}).get("stage")
    allowed = {s for s in os.environ.get("BEARER_STAGES", "").split(",") if s}
    if stage not in allowed:
        return ""
    headers = event.get("headers") or {}
    authorization = next(
        (v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"), ""
    )
    scheme, _, value = str(authorization or "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def policy(principal: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": {"authMode": os.environ["AUTH_MODE"]},
    }


def authorize(token: object, mode: str) -> str | None:
    """The principal for ``token``, or None to refuse it."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return check_secret(token) if mode == "secret" else check_cognito(token)


def check_secret(token: str) -> str | None:
    secret_arn = os.environ["SECRET_ARN"]
    if _matches(token, accepted_secrets(secret_arn)):
        return "shared-secret"
    # Perhaps the secret was rotated since the cache was filled: look again (rate-limited).
    fresh = accepted_secrets(secret_arn, refresh=True)
    if fresh is not None and _matches(token, fresh):
        return "shared-secret"
    return None


def header(event: dict[str, Any], name: str) -> str:
    """A request header, whatever case the client wrote its name in."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return ""


def check_twilio(signature: str) -> str | None:
    """``twilio`` when ``signature`` is Twilio's for the stream URL under the account's auth
    token (AWSCURRENT, or AWSPENDING while the token is being changed)."""
    if not signature or len(signature) > MAX_TOKEN_CHARS:
        return None
    from twilio.request_validator import RequestValidator  # bundled with this function

    url = os.environ["TWILIO_STREAM_URL"]
    secret_arn = os.environ["TWILIO_SECRET_ARN"]

    def valid(tokens: tuple[str, ...] | None) -> bool:
        # Every value is tried, so the time taken does not tell which one matched.
        found = False
        for auth_token in tokens or ():
            # Twilio signs a WebSocket handshake as a request without parameters.
            found |= bool(RequestValidator(auth_token).validate(url, {}, signature))
        return found

    if valid(accepted_secrets(secret_arn)) or valid(accepted_secrets(secret_arn, refresh=True)):
        return "twilio"
    return None


def _matches(token: str, accepted: tuple[str, ...] | None) -> bool:
    # Compare with every value, so the time taken does not tell which one matched.
    found = False
    for value in accepted or ():
        found |= hmac.compare_digest(token.encode(), value.encode())
    return found


def accepted_secrets(secret_arn: str, *, refresh: bool = False) -> tuple[str, ...] | None:
    """The cached values, read again when stale or, with ``refresh``, when not read within
    ``SECRET_REFRESH_SECONDS``; None when the cache was not refreshed as asked."""
    now = clock()
    cached = _secret_cache.get(secret_arn)
    age = now - cached[0] if cached is not None else float("inf")
    if refresh and age < SECRET_REFRESH_SECONDS:
        return None
    if cached is None or refresh or age > SECRET_CACHE_SECONDS:
        cached = (now, _read_secret(secret_arn))
        _secret_cache[secret_arn] = cached
    return cached[1]


def _read_secret(secret_arn: str) -> tuple[str, ...]:
    client = boto3.client("secretsmanager")
    values = [client.get_secret_value(SecretId=secret_arn)["SecretString"]]
    try:
        pending = client.get_secret_value(SecretId=secret_arn, VersionStage="AWSPENDING")
    except Exception:  # no rotation in progress (ResourceNotFoundException)
        pending = None
    if pending is not None and pending.get("SecretString") not in (None, values[0]):
        values.append(pending["SecretString"])
    return tuple(v for v in values if v)


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
    except (ValueError, RecursionError):  # not base64 or JSON, or nested too deep to read
        return None
    return value if isinstance(value, dict) else None
