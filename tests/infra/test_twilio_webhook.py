"""The incoming-call webhook function, run locally with a stand-in for Secrets Manager: Twilio's
signature checked by the ``twilio`` package, the TwiML read back and rebuilt with it."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

WEBHOOK_CODE = Path(__file__).resolve().parents[2] / "stacks" / "functions" / "twilio_webhook"
DOMAIN = "abcdefghij.lambda-url.us-east-1.on.aws"
URL = f"https://{DOMAIN}/"
STREAM_URL = "wss://abc123.execute-api.us-east-1.amazonaws.com/twilio"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
CALL = {
    "AccountSid": "AC" + "1" * 32,
    "CallSid": "CA" + "2" * 32,
    "From": "+15550100",
    "To": "+15550199",
    "CallStatus": "ringing",
    "Direction": "inbound",
}


@pytest.fixture
def webhook(monkeypatch):
    reads: list[str] = []

    class SecretsManager:
        def get_secret_value(self, SecretId, VersionStage="AWSCURRENT"):  # noqa: N803
            if VersionStage == "AWSPENDING":
                raise RuntimeError("ResourceNotFoundException")
            reads.append(SecretId)
            return {"SecretString": AUTH_TOKEN}

    monkeypatch.setitem(
        sys.modules, "boto3", types.SimpleNamespace(client=lambda name: SecretsManager())
    )
    monkeypatch.setenv("TWILIO_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:twilio")
    monkeypatch.setenv("TWILIO_STREAM_URL", STREAM_URL)
    monkeypatch.delenv("TWILIO_GREETING", raising=False)
    monkeypatch.delenv("TWILIO_NUMBERS", raising=False)
    spec = importlib.util.spec_from_file_location("twilio_webhook", WEBHOOK_CODE / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.reads = reads
    return module


def post(params: dict[str, str], signature: str | None, *, encoded: bool = True) -> dict:
    body = urlencode(params)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return {
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"domainName": DOMAIN, "http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(body.encode()).decode() if encoded else body,
        "isBase64Encoded": encoded,
    }


def sign(params: dict[str, str], url: str = URL, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def rebuilt(twiml: str) -> str:
    """The TwiML read back, then built again with the twilio package from what was read."""
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    response = VoiceResponse()
    for child in root:
        if child.tag == "Say":
            response.say(child.text)
        elif child.tag == "Connect":
            connect = Connect()
            [stream] = list(child)
            assert stream.tag == "Stream"
            built = connect.stream(url=stream.get("url"))
            for parameter in stream:
                assert parameter.tag == "Parameter"
                built.parameter(name=parameter.get("name"), value=parameter.get("value"))
            response.append(connect)
        elif child.tag == "Hangup":
            response.hangup()
        else:
            raise AssertionError(f"unexpected TwiML verb {child.tag}")
    return str(response)


def parameters(twiml: str) -> dict[str, str]:
    stream = ET.fromstring(twiml).find("Connect/Stream")
    assert stream is not None
    return {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


def test_a_signed_call_is_connected_to_the_stream_with_its_parameters(webhook) -> None:
    answer = webhook.handler(post(CALL, sign(CALL)))
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "text/xml"
    twiml = answer["body"]
    assert rebuilt(twiml) == twiml
    stream = ET.fromstring(twiml).find("Connect/Stream")
    assert stream is not None and stream.get("url") == STREAM_URL
    assert parameters(twiml) == {
        "callSid": CALL["CallSid"],
        "caller": CALL["From"],
        "called": CALL["To"],
    }
    assert ET.fromstring(twiml).find("Say") is None
    # When the bridge closes the stream (the agent hung up), what follows <Connect> ends the call.
    assert [child.tag for child in ET.fromstring(twiml)] == ["Connect", "Hangup"]


def test_a_plain_body_is_read_too(webhook) -> None:
    assert webhook.handler(post(CALL, sign(CALL), encoded=False))["statusCode"] == 200


def test_greeting_voice_and_instructions_per_called_number(webhook, monkeypatch) -> None:
    numbers = {
        CALL["To"]: {"greeting": "Thanks for calling the bakery.", "voice": "tiffany"},
        "*": {"greeting": "Hello.", "instructions": "Answer in one sentence."},
    }
    monkeypatch.setenv("TWILIO_NUMBERS", json.dumps(numbers))
    twiml = webhook.handler(post(CALL, sign(CALL)))["body"]
    assert rebuilt(twiml) == twiml
    root = ET.fromstring(twiml)
    assert [child.tag for child in root] == ["Say", "Connect", "Hangup"]  # greeting first
    assert root.find("Say").text == "Thanks for calling the bakery."
    assert parameters(twiml)["voice"] == "tiffany"
    other = {**CALL, "To": "+15550111"}
    twiml = webhook.handler(post(other, sign(other)))["body"]
    assert ET.fromstring(twiml).find("Say").text == "Hello."
    assert parameters(twiml)["instructions"] == "Answer in one sentence."


def test_unsigned_tampered_and_replayed_requests_get_no_twiml(webhook) -> None:
    assert webhook.handler(post(CALL, None))["statusCode"] == 403
    tampered = {**CALL, "From": "+15550666"}
    assert webhook.handler(post(tampered, sign(CALL)))["statusCode"] == 403
    other_url = sign(CALL, url="https://other.lambda-url.us-east-1.on.aws/")
    assert webhook.handler(post(CALL, other_url))["statusCode"] == 403
    wrong_token = sign(CALL, token="another-accounts-token-0000000000")
    assert webhook.handler(post(CALL, wrong_token))["statusCode"] == 403
    assert "Response" not in webhook.handler(post(CALL, None))["body"]


def test_forged_requests_cost_bounded_secret_reads(webhook) -> None:
    for _ in range(20):
        webhook.handler(post(CALL, "forged"))
    assert len(webhook.reads) <= 2
