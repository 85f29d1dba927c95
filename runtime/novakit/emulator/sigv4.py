"""SigV4 verification for Bedrock's bidirectional stream (and plain signed requests), sans I/O.

Two checks, both done the way the service does them:

* the HTTP/2 request (``verify_request``): the canonical request is rebuilt from what arrived on the
  wire and its signature compared with the ``Authorization`` header. Over HTTP/2 the ``host`` the
  client signed travels as ``:authority``. The SDK signs the path with SigV4's non-S3 rule: the
  already URL-encoded path is encoded once more, so the model id's ``%3A`` becomes ``%253A`` in the
  canonical URI (``/model/amazon.nova-2-sonic-v1%253A0/invoke-with-bidirectional-stream``). The
  SDK also sends the path with an empty query (``...-stream?``); that canonicalises to an empty
  query string.
* the event chunks (``ChunkVerifier``): every input frame is an outer message with ``:date``
  (timestamp) and ``:chunk-signature`` (32 raw bytes) whose payload is the encoded inner message.
  Each signature chains on the previous one, starting from the request's signature (the seed), so
  a dropped, reordered or altered frame breaks the chain. A frame with an empty payload ends the
  input. String to sign::

      AWS4-HMAC-SHA256-PAYLOAD\\n<YYYYMMDDTHHMMSSZ of :date>\\n<scope>\\n<prior signature hex>\\n
      <sha256 hex of the encoded :date header>\\n<sha256 hex of the payload>

  The scope's date is the chunk's own date (a stream that crosses midnight UTC changes key).

``verify_request`` also checks ordinary signed requests with a body (the local API Gateway's
``@connections`` API, service ``execute-api``): pass the ``body`` as received and the canonical
request uses ``X-Amz-Content-SHA256`` when the client sent it, else the body's SHA-256.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from .eventstream import Message, encode_headers

__all__ = [
    "EVENT_STREAM_PAYLOAD",
    "MAX_CLOCK_SKEW",
    "UNSIGNED_PAYLOAD",
    "ChunkSignatureError",
    "ChunkVerifier",
    "Credentials",
    "RequestAuth",
    "SigV4Error",
    "canonical_request",
    "signing_key",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EVENT_STREAM_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True)
class Credentials:
    """A key pair the emulator accepts (and, when set, the session token it must come with)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class SigV4Error(Exception):
    """A request the service refuses before streaming: HTTP status plus ``x-amzn-errortype``."""

    def __init__(self, error_type: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


class ChunkSignatureError(Exception):
    """An input frame whose envelope or chained signature does not verify."""


@dataclass(frozen=True)
class RequestAuth:
    """What a verified request establishes for its event stream."""

    credentials: Credentials
    region: str
    service: str
    seed_signature: str  # hex; the first chunk chains on it
    amz_date: datetime.datetime


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 key: HMAC chain over date (YYYYMMDD), region, service and "aws4_request"."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(k, safe=""), quote(v, safe="")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request, rebuilt from the wire form of a request.

    ``raw_path`` is the path and query as received (HTTP/2 ``:path``, HTTP/1.1 request target),
    still percent-encoded; it is encoded again here, as SigV4 does for every service but S3.
    """
    path, _, query = raw_path.partition("?")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/"),
            _canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _parse_amz_date(value: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.strptime(value, _TIMESTAMP_FORMAT)
    except ValueError as exc:
        raise SigV4Error(
            "IncompleteSignatureException", f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ", 400
        ) from exc
    return parsed.replace(tzinfo=datetime.UTC)


def _wire_fields(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header fields by lower-case name, ``:authority`` as ``host``, other pseudo-headers out."""
    fields: dict[str, str] = {}
    for name, value in headers:
        field_name = name.lower()
        if field_name == ":authority":
            field_name = "host"
        elif field_name.startswith(":"):
            continue
        # Repeated fields are signed as one comma-separated value.
        previous = fields.get(field_name)
        fields[field_name] = value if previous is None else f"{previous},{value}"
    return fields


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def _parse_authorization(fields: Mapping[str, str]) -> _Authorization:
    authorization = fields.get("authorization")
    if authorization is None:
        raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(authorization.strip())
    if match is None:
        raise SigV4Error(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "with algorithm AWS4-HMAC-SHA256.",
            400,
        )
    credential = match["credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request":
        raise SigV4Error(
            "IncompleteSignatureException",
            f"Credential {match['credential']!r} is not AKID/DATE/REGION/SERVICE/aws4_request.",
            400,
        )
    signed_headers = match["signed"].split(";")
    if signed_headers != sorted(signed_headers) or "host" not in signed_headers:
        raise SigV4Error(
            "IncompleteSignatureException",
            "SignedHeaders must be sorted, lower case and include 'host'.",
            400,
        )
    return _Authorization(
        access_key=credential[0],
        date=credential[1],
        region=credential[2],
        service=credential[3],
        signed_headers=signed_headers,
        signature=match["signature"],
    )


def _check_time(
    amz_date_text: str, scope_date: str, now: datetime.datetime, max_skew: datetime.timedelta
) -> datetime.datetime:
    amz_date = _parse_amz_date(amz_date_text)
    if scope_date != amz_date_text[:8]:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date_text[:8]}', from '{amz_date_text}'.",
        )
    if abs(now - amz_date) > max_skew:
        stamp = now.strftime(_TIMESTAMP_FORMAT)
        raise SigV4Error(
            "InvalidSignatureException",
            f"Signature expired: {amz_date_text} is now earlier than "
            f"{(now - max_skew).strftime(_TIMESTAMP_FORMAT)} ({stamp} - 15 min.)"
            if amz_date < now
            else f"Signature not yet current: {amz_date_text} is still later than "
            f"{(now + max_skew).strftime(_TIMESTAMP_FORMAT)} ({stamp} + 15 min.)",
        )
    return amz_date


def _payload_hash(declared: str | None, body: bytes | None) -> str:
    """The payload hash the canonical request ends with, checked against the body if any."""
    if body is None:
        if declared != EVENT_STREAM_PAYLOAD:
            raise SigV4Error(
                "InvalidSignatureException",
                f"X-Amz-Content-SHA256 must be {EVENT_STREAM_PAYLOAD} for an event stream.",
            )
        return declared
    actual = hashlib.sha256(body).hexdigest()
    if declared is None:
        return actual
    if declared not in (actual, UNSIGNED_PAYLOAD):
        raise SigV4Error(
            "InvalidSignatureException",
            "The provided x-amz-content-sha256 header does not match what was computed.",
            400,
        )
    return declared


def verify_request(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    *,
    credentials: Iterable[Credentials],
    region: str,
    now: datetime.datetime,
    service: str = "bedrock",
    max_skew: datetime.timedelta = MAX_CLOCK_SKEW,
    body: bytes | None = None,
) -> RequestAuth:
    """Verify a signed request; raise ``SigV4Error`` with the service's error type if it fails.

    ``headers`` are the header fields as received; HTTP/2's ``:authority`` stands in for ``host``.
    ``body`` is ``None`` for an event stream (whose frames carry their own signatures), else the
    request body as received.
    """
    fields = _wire_fields(headers)
    auth = _parse_authorization(fields)

    creds = {c.access_key_id: c for c in credentials}.get(auth.access_key)
    if creds is None or (
        creds.session_token is not None
        and fields.get("x-amz-security-token") != creds.session_token
    ):
        raise SigV4Error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    amz_date_text = fields.get("x-amz-date")
    if amz_date_text is None:
        raise SigV4Error(
            "IncompleteSignatureException", "Authorization requires the X-Amz-Date header.", 400
        )
    if auth.region != region:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{auth.region}'. "
            f"This endpoint serves '{region}'.",
        )
    if auth.service != service:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    amz_date = _check_time(amz_date_text, auth.date, now, max_skew)
    payload_hash = _payload_hash(fields.get("x-amz-content-sha256"), body)

    canonical = canonical_request(method, path, fields, auth.signed_headers, payload_hash)
    scope = f"{auth.date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date_text, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(creds.secret_access_key, auth.date, region, service)
    if not hmac.compare_digest(_hmac_hex(key, string_to_sign), auth.signature):
        raise SigV4Error("InvalidSignatureException", _SIGNATURE_MISMATCH)
    return RequestAuth(
        credentials=creds,
        region=region,
        service=service,
        seed_signature=auth.signature,
        amz_date=amz_date,
    )


class ChunkVerifier:
    """Checks the rolling signature of input frames and unwraps their payloads.

    ``verify`` returns the payload (the encoded inner message), or ``None`` for the final empty
    frame, after which any further frame is an error.
    """

    def __init__(self, auth: RequestAuth) -> None:
        self._auth = auth
        self._prior = auth.seed_signature
        self._keys: dict[str, bytes] = {}
        self.finished = False
        self.frames = 0

    def _key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            a = self._auth
            key = self._keys[day] = signing_key(
                a.credentials.secret_access_key, day, a.region, a.service
            )
        return key

    def verify(self, frame: Message) -> bytes | None:
        if self.finished:
            raise ChunkSignatureError("frame received after the final empty frame")
        date = frame.headers.get(":date")
        signature = frame.headers.get(":chunk-signature")
        if not isinstance(date, datetime.datetime):
            raise ChunkSignatureError("frame has no :date timestamp header")
        if not isinstance(signature, bytes) or len(signature) != 32:
            raise ChunkSignatureError("frame has no 32-byte :chunk-signature header")
        extra = set(frame.headers) - {":date", ":chunk-signature"}
        if extra:
            raise ChunkSignatureError(f"unexpected envelope headers {sorted(extra)}")

        stamp = date.astimezone(datetime.UTC).strftime(_TIMESTAMP_FORMAT)
        day = stamp[:8]
        scope = f"{day}/{self._auth.region}/{self._auth.service}/aws4_request"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                scope,
                self._prior,
                hashlib.sha256(encode_headers({":date": date})).hexdigest(),
                hashlib.sha256(frame.payload).hexdigest(),
            ]
        )
        expected = hmac.new(self._key(day), string_to_sign.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise ChunkSignatureError(
                f"chunk signature mismatch on frame {self.frames + 1} "
                "(altered, reordered or signed with other credentials)"
            )
        self._prior = expected.hex()
        self.frames += 1
        if not frame.payload:
            self.finished = True
            return None
        return frame.payload
