"""Who may connect and who may call ``@connections``.

* ``$connect`` stands in for the Lambda REQUEST authorizer: with a token configured, the client
  must present it as ``?token=...`` (browsers cannot set headers on a WebSocket handshake) or,
  on the stages that allow it, as ``Authorization: Bearer ...`` (what OpenAI Realtime SDKs send).
* On the phone stage, ``$connect`` stands in for the authorizer's Twilio check: with an auth
  token configured, the handshake must carry Twilio's ``X-Twilio-Signature`` for the URL it
  requested, verified by the official ``twilio`` package.
* ``@connections`` requires SigV4 (service ``execute-api``) when credentials are configured,
  checked by the emulator's verifier, the same code that checks Bedrock's requests.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Iterable

__all__ = [
    "SignatureRejectedError",
    "bearer_token",
    "token_accepted",
    "twilio_signature_accepted",
    "twilio_stream_url",
    "verify_management_signature",
]

SERVICE = "execute-api"


def token_accepted(expected: str | None, presented: str | None) -> bool:
    """Whether a handshake passes the authorizer; no configured token admits everyone."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def twilio_stream_url(
    path: str, *, host: str, secure: bool, forwarded_proto: str | None, public_url: str | None
) -> str:
    """The stream URL Twilio signed for a handshake at ``path``: ``public_url`` (the address
    Twilio was given) when set, else rebuilt from the handshake, wss when it came over TLS or
    through a proxy that terminated TLS (``X-Forwarded-Proto: https``, as ngrok sends)."""
    if public_url is not None:
        return public_url + path
    proto = (forwarded_proto or "").split(",")[0].strip().lower()
    scheme = "wss" if secure or proto in ("https", "wss") else "ws"
    return f"{scheme}://{host}{path}"


def twilio_signature_accepted(auth_token: str | None, url: str, signature: str | None) -> bool:
    """Whether a phone stream's handshake is Twilio's: ``signature`` (``X-Twilio-Signature``)
    signs ``url`` (a handshake has no parameters) under ``auth_token``; no configured token
    admits everyone, as ``token_accepted`` does."""
    if auth_token is None:
        return True
    if not signature:
        return False
    from twilio.request_validator import RequestValidator  # the local stack's set has it

    return bool(RequestValidator(auth_token).validate(url, {}, signature))


class SignatureRejectedError(Exception):
    """A management request whose SigV4 signature does not verify."""


def verify_management_signature(
    method: str,
    raw_path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    credentials: tuple[str, str],
    region: str,
    now: datetime.datetime,
) -> None:
    """Raise ``SignatureRejectedError`` (with the service's reason) unless the request verifies."""
    # Imported here: the emulator package also loads its HTTP/2 server, which only a gateway
    # that checks signatures needs.
    from novakit.emulator.sigv4 import Credentials, SigV4Error, verify_request

    access_key_id, secret_access_key = credentials
    try:
        verify_request(
            method,
            raw_path,
            headers,
            credentials=[Credentials(access_key_id, secret_access_key)],
            region=region,
            now=now,
            service=SERVICE,
            body=body,
        )
    except SigV4Error as exc:
        raise SignatureRejectedError(f"{exc.error_type}: {exc.message}") from exc
