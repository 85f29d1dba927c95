"""The local gateway's stand-in for the authorizer's Twilio check, with the twilio package."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from novakit.call import twilio_signature
from novakit.localgw import GatewayConfig
from novakit.localgw.auth import twilio_signature_accepted, twilio_stream_url

URL = "ws://127.0.0.1:8080/twilio"
TOKEN = "0123456789abcdef0123456789abcdef"


def test_good_missing_tampered_and_other_url_signatures() -> None:
    good = twilio_signature(TOKEN, URL)
    assert good == RequestValidator(TOKEN).compute_signature(URL, {})
    assert twilio_signature_accepted(TOKEN, URL, good)
    assert not twilio_signature_accepted(TOKEN, URL, None)
    assert not twilio_signature_accepted(TOKEN, URL, "")
    assert not twilio_signature_accepted(
        TOKEN, URL, good[:-2] + ("A=" if good[-2] != "A" else "B=")
    )
    assert not twilio_signature_accepted(TOKEN, URL, twilio_signature(TOKEN, URL + "x"))
    assert not twilio_signature_accepted(TOKEN, URL, twilio_signature("other" + TOKEN, URL))


def test_no_configured_token_admits_everyone() -> None:
    assert twilio_signature_accepted(None, URL, None)


@pytest.mark.parametrize(
    ("secure", "forwarded_proto", "public_url", "signed"),
    [
        (False, None, None, "ws://127.0.0.1:8080/twilio"),
        (True, None, None, "wss://127.0.0.1:8080/twilio"),
        # a tunnel (ngrok) terminated Twilio's TLS and says so
        (False, "https", None, "wss://127.0.0.1:8080/twilio"),
        (False, "https, http", None, "wss://127.0.0.1:8080/twilio"),
        (False, "http", None, "ws://127.0.0.1:8080/twilio"),
        # the address Twilio was given wins over anything in the handshake
        (False, "http", "wss://abc.ngrok.app", "wss://abc.ngrok.app/twilio"),
    ],
)
def test_the_signed_url_is_the_one_twilio_connected_to(
    secure: bool, forwarded_proto: str | None, public_url: str | None, signed: str
) -> None:
    url = twilio_stream_url(
        "/twilio",
        host="127.0.0.1:8080",
        secure=secure,
        forwarded_proto=forwarded_proto,
        public_url=public_url,
    )
    assert url == signed


@pytest.mark.parametrize("url", ["https://abc.ngrok.app", "wss://abc.ngrok.app/twilio", "abc"])
def test_a_public_url_is_a_websocket_base_url(url: str) -> None:
    with pytest.raises(ValueError, match="ws"):
        GatewayConfig(backends=["http://127.0.0.1:1"], twilio_public_url=url)
