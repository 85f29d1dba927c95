"""SigV4 signing of the stream's events, with the signing key derived once a day.

Every event a client sends on ``InvokeModelWithBidirectionalStream`` is wrapped in an outer
message carrying ``:date`` and ``:chunk-signature``; each signature chains on the one before,
starting from the opening request's. The SDK's ``AsyncEventSigner`` derives the SigV4 signing
key again for every event (four HMAC-SHA256 rounds), takes an ``asyncio.Lock`` and encodes the
``:date`` header through a general encoder, for every 32 ms of a caller's audio.
``ChainedEventSigner`` produces the same bytes (a test checks it against the SDK's signer) with
one HMAC per event, the key and the timestamp cached (``novakit.sigv4``), and keeps the GIL
while it hashes; ``python -m bench micro`` compares the two.

Signing does not await anything, so one event's signature is computed without interleaving
with another's: the chain stays ordered without a lock.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import struct
from binascii import hexlify
from collections.abc import Callable
from typing import Any

from aws_sdk_signers import SigV4SigningProperties
from smithy_aws_core.auth import SigV4AuthScheme
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_http.aio.interfaces import HTTPRequest

from ...sigv4 import amz_date, hmac_sha256, sha256_hex, signing_key

_DATE_HEADER_PREFIX = b"\x05:date\x08"  # name length, name, type 8 (timestamp, int64 ms)
_SIGNATURE = re.compile(r"Signature=([0-9a-f]+)")


class ChainedEventSigner:
    """The SDK's event signer contract (``sign``, ``sign_empty``), one HMAC per event."""

    def __init__(
        self,
        *,
        initial_signature: bytes,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._prior_signature = initial_signature
        self._clock = clock
        self._finalized = False

    async def sign(
        self, *, event: Any, identity: AWSCredentialsIdentity, properties: SigV4SigningProperties
    ) -> Any:
        return self._sign(event, event.encode(), identity, properties, final=False)

    async def sign_empty(
        self, *, event: Any, identity: AWSCredentialsIdentity, properties: SigV4SigningProperties
    ) -> Any:
        """Sign the stream's closing frame (no headers, no payload); ends the chain."""
        if event.headers or event.payload:
            raise ValueError("the closing frame must have no headers and no payload")
        return self._sign(event, b"", identity, properties, final=True)

    def _sign(
        self,
        event: Any,
        payload: bytes,
        identity: AWSCredentialsIdentity,
        properties: SigV4SigningProperties,
        *,
        final: bool,
    ) -> Any:
        if self._finalized:
            raise RuntimeError("the stream's closing frame is signed: nothing follows it")
        now = self._clock()
        # The same millisecond value the event encoder will write for the header; the string
        # to sign names its second.
        millis = int(now.timestamp() * 1000)
        timestamp = amz_date(millis // 1000)
        day, region, service = timestamp[:8], properties["region"], properties["service"]
        key = signing_key(identity.secret_access_key, day, region, service)
        date_header = _DATE_HEADER_PREFIX + struct.pack("!q", millis)
        string_to_sign = (
            "AWS4-HMAC-SHA256-PAYLOAD\n"
            f"{timestamp}\n"
            f"{day}/{region}/{service}/aws4_request\n"
            f"{self._prior_signature.decode()}\n"
            f"{hashlib.sha256(date_header).hexdigest()}\n"
            f"{sha256_hex(payload)}"
        )
        signature = hmac_sha256(key, string_to_sign.encode())
        event.headers = {":date": now, ":chunk-signature": signature}
        event.payload = payload
        self._prior_signature = hexlify(signature)
        self._finalized = final
        return event


class ChainedSigV4AuthScheme(SigV4AuthScheme):
    """SigV4 for the opening request (the SDK's signer), ``ChainedEventSigner`` for events."""

    def event_signer(self, *, request: HTTPRequest) -> ChainedEventSigner:
        authorization = request.fields["Authorization"].as_string()
        match = _SIGNATURE.search(authorization)
        if match is None:
            raise ValueError("the opening request carries no SigV4 signature to chain events on")
        return ChainedEventSigner(initial_signature=match.group(1).encode())
