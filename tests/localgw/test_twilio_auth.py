"""The local gateway's stand-in for the authorizer's Twilio check, with the twilio package."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from novakit.call import twilio_signature
from novakit.localgw.auth import twilio_signature_accepted

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
