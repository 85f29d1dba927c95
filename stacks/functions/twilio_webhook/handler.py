"""Twilio's incoming-call webhook (a Lambda function URL): answers a call with TwiML that
connects it to the agent over Media Streams.

Twilio POSTs the call's details as a form (``CallSid``, ``From``, ``To``, ...) and signs the
request (``X-Twilio-Signature``, HMAC of the URL and the sorted parameters under the account's
auth token). The signature is checked with the official ``twilio`` package's
``RequestValidator`` (bundled with this function), the token read from Secrets Manager
(``TWILIO_SECRET_ARN``), cached while warm and never logged. A request that does not verify
gets 403 and no TwiML.

The answer, built with the ``twilio`` package's ``VoiceResponse``: an optional ``<Say>``
greeting, then ``<Connect><Stream url="wss://.../twilio">`` (``TWILIO_STREAM_URL``) with
``<Parameter>``s: the call's SID, the caller and the number called, and the voice and
instructions configured for that number (``TWILIO_NUMBERS``, a JSON object keyed by the called
number, ``"*"`` for any other; values ``greeting``, ``voice``, ``instructions``). Twilio then
opens the stream, whose handshake the ``$connect`` authorizer checks.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any
from urllib.parse import parse_qsl

import boto3
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

# How long a read auth token is used before it is read again (a rotated token works soon).
TOKEN_CACHE_SECONDS = 60
# Twilio allows 500 characters per <Parameter> name and value together.
MAX_PARAMETER_CHARS = 500
MAX_BODY_BYTES = 64 * 1024

for _sdk_logger in ("botocore", "boto3", "urllib3"):
    if logging.getLogger(_sdk_logger).level < logging.WARNING:
        logging.getLogger(_sdk_logger).setLevel(logging.WARNING)

clock = time.monotonic  # (tests move it)
_token_cache: dict[str, tuple[float, tuple[str, ...]]] = {}


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    context_http = (event.get("requestContext") or {}).get("http") or {}
    if context_http.get("method", "POST") != "POST":
        return _plain(405, "POST only")
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    if len(body) > MAX_BODY_BYTES:
        return _plain(413, "too large")
    params = dict(parse_qsl(body, keep_blank_values=True))
    signature = _header(event, "X-Twilio-Signature")
    if not signature or not _verified(request_url(event), params, signature):
        print(json.dumps({"level": "INFO", "message": "webhook refused: signature"}))
        return _plain(403, "forbidden")
    print(json.dumps({"level": "INFO", "message": "call answered", "call": params.get("CallSid")}))
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/xml"},
        "body": twiml(params, numbers()),
    }


def request_url(event: dict[str, Any]) -> str:
    """The URL Twilio requested (and signed): the function URL, path and query included."""
    domain = (event.get("requestContext") or {}).get("domainName") or _header(event, "Host")
    url = f"https://{domain}{event.get('rawPath') or '/'}"
    query = event.get("rawQueryString")
    return f"{url}?{query}" if query else url


def twiml(params: dict[str, str], numbers: dict[str, dict[str, str]]) -> str:
    """The TwiML for a call: greeting, then the stream to the agent with its parameters, then
    ``<Hangup/>``: when the bridge closes the stream (the agent ended the call), Twilio goes on
    with the TwiML after ``<Connect>``, and this ends the call."""
    called = params.get("To", "")
    config = numbers.get(called) or numbers.get("*") or {}
    response = VoiceResponse()
    greeting = config.get("greeting") or os.environ.get("TWILIO_GREETING", "")
    if greeting:
        response.say(greeting)
    connect = Connect()
    stream = connect.stream(url=os.environ["TWILIO_STREAM_URL"])
    values = {
        "callSid": params.get("CallSid", ""),
        "caller": params.get("From", ""),
        "called": called,
        "voice": config.get("voice", ""),
        "instructions": config.get("instructions", ""),
    }
    for name, value in values.items():
        if value:
            stream.parameter(name=name, value=value[: MAX_PARAMETER_CHARS - len(name)])
    response.append(connect)
    response.hangup()
    return str(response)


def numbers() -> dict[str, dict[str, str]]:
    """Per called number: greeting, voice, instructions (``TWILIO_NUMBERS``)."""
    raw = os.environ.get("TWILIO_NUMBERS") or "{}"
    value = json.loads(raw)
    return {str(k): {str(n): str(v) for n, v in c.items()} for k, c in value.items()}


def _verified(url: str, params: dict[str, str], signature: str) -> bool:
    secret_arn = os.environ["TWILIO_SECRET_ARN"]
    for refresh in (False, True):
        tokens = _auth_tokens(secret_arn, refresh=refresh)
        found = False
        for token in tokens:
            found |= bool(RequestValidator(token).validate(url, params, signature))
        if found:
            return True
    return False


def _auth_tokens(secret_arn: str, *, refresh: bool) -> tuple[str, ...]:
    now = clock()
    cached = _token_cache.get(secret_arn)
    if cached is not None and not refresh and now - cached[0] < TOKEN_CACHE_SECONDS:
        return cached[1]
    if cached is not None and refresh and now - cached[0] < 5:
        return ()  # read again at most every 5 s, however many forged requests arrive
    client = boto3.client("secretsmanager")
    values = [client.get_secret_value(SecretId=secret_arn)["SecretString"]]
    try:
        pending = client.get_secret_value(SecretId=secret_arn, VersionStage="AWSPENDING")
        values.append(pending["SecretString"])
    except Exception:  # no new token being rolled out
        pass
    tokens = tuple(v for v in dict.fromkeys(values) if v)
    _token_cache[secret_arn] = (now, tokens)
    return tokens


def _header(event: dict[str, Any], name: str) -> str:
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return ""


def _plain(status: int, text: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": text}
