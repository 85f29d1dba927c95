"""The $connect authorizer on the phone stage: Twilio's handshake signature, checked with the
official ``twilio`` package, signed here by that package's own ``compute_signature``."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from tests.infra.test_ws_authorizer import authorizer, effect  # noqa: F401 (fixture)

STREAM_URL = "wss://abc123.execute-api.us-east-1.amazonaws.com/twilio"
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
METHOD_ARN = "arn:aws:execute-api:us-east-1:111122223333:abc123/twilio/$connect"


@pytest.fixture
def phone(authorizer, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AUTH_MODE", "secret")
    monkeypatch.setenv("SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:shared")
    monkeypatch.setenv("TWILIO_STAGE", "twilio")
    monkeypatch.setenv("TWILIO_STREAM_URL", STREAM_URL)
    monkeypatch.setenv("TWILIO_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:twilio")
    authorizer.fake.secret = AUTH_TOKEN  # what Secrets Manager returns for either ARN
    return authorizer


def signed(url: str = STREAM_URL, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, {})


def connect(signature: str | None, *, stage: str = "twilio", token: str | None = None) -> dict:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return {
        "methodArn": METHOD_ARN.replace("/twilio/", f"/{stage}/"),
        "headers": headers,
        "queryStringParameters": {"token": token} if token is not None else None,
        "requestContext": {"stage": stage, "connectionId": "abc="},
    }


def test_a_good_signature_is_allowed(phone) -> None:
    answer = phone.handler(connect(signed()))
    assert effect(answer) == "Allow"
    assert answer["principalId"] == "twilio"


def test_header_names_are_matched_whatever_their_case(phone) -> None:
    request = connect(None)
    request["headers"]["x-twilio-signature"] = signed()
    assert effect(phone.handler(request)) == "Allow"


def test_a_missing_signature_is_refused(phone) -> None:
    assert effect(phone.handler(connect(None))) == "Deny"
    assert effect(phone.handler(connect(""))) == "Deny"


def test_a_tampered_signature_is_refused(phone) -> None:
    good = signed()
    tampered = ("A" if good[0] != "A" else "B") + good[1:]
    assert effect(phone.handler(connect(tampered))) == "Deny"
    assert effect(phone.handler(connect(signed(token="another-accounts-token")))) == "Deny"


@pytest.mark.parametrize(
    "other_url",
    [
        "wss://abc123.execute-api.us-east-1.amazonaws.com/live",  # another stage
        "wss://evil.example.com/twilio",  # another host
        "https://abc123.lambda-url.us-east-1.on.aws/",  # the webhook's URL
    ],
)
def test_a_signature_made_for_another_url_is_refused(phone, other_url: str) -> None:
    assert effect(phone.handler(connect(signed(other_url)))) == "Deny"


def test_the_webhooks_own_signature_replayed_on_the_stream_is_refused(phone) -> None:
    webhook = "https://abc123.lambda-url.us-east-1.on.aws/"
    params = {"CallSid": "CA" + "0" * 32, "From": "+15550100", "To": "+15550199"}
    replayed = RequestValidator(AUTH_TOKEN).compute_signature(webhook, params)
    assert effect(phone.handler(connect(replayed))) == "Deny"


def test_the_phone_stage_takes_no_token_and_other_stages_no_signature(phone) -> None:
    assert effect(phone.handler(connect(None, token=AUTH_TOKEN))) == "Deny"
    assert effect(phone.handler(connect(signed(), stage="live"))) == "Deny"
    # the live stage still takes its shared secret (the fake returns one value for every ARN)
    assert effect(phone.handler(connect(None, stage="live", token=AUTH_TOKEN))) == "Allow"


def test_a_token_being_changed_is_accepted_from_either_version(phone) -> None:
    phone.fake.pending = "new-token-being-rolled-out-000000"
    assert effect(phone.handler(connect(signed(token="new-token-being-rolled-out-000000")))) == (
        "Allow"
    )
    assert effect(phone.handler(connect(signed()))) == "Allow"


def test_the_signature_and_token_are_never_logged(phone, capsys) -> None:
    signature = signed()
    phone.handler(connect(signature))
    phone.handler(connect(signature[::-1]))
    out = capsys.readouterr()
    assert signature not in out.out + out.err
    assert signature[::-1] not in out.out + out.err
    assert AUTH_TOKEN not in out.out + out.err
