"""ChainedEventSigner signs stream events exactly as the SDK's AsyncEventSigner does."""

from __future__ import annotations

import datetime
import types
from collections.abc import Iterator

import aws_sdk_signers.signers as sdk_signers
import pytest
from aws_sdk_signers import AsyncEventSigner
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage
from smithy_core import URI
from smithy_http import Field, Fields
from smithy_http.aio import HTTPRequest

from novakit.s2s.nova.signing import ChainedEventSigner, ChainedSigV4AuthScheme

IDENTITY = AWSCredentialsIdentity(access_key_id="AKIDEXAMPLE", secret_access_key="s3cr3t")
OTHER = AWSCredentialsIdentity(access_key_id="AKIDEXAMPLE", secret_access_key="0ther")
PROPERTIES = {"region": "us-east-1", "service": "bedrock"}
SEED = b"a" * 64

# Two events in one second, one a little later, then two across midnight (new signing key).
TIMES = [
    datetime.datetime(2026, 11, 27, 23, 59, 58, 123456, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 27, 23, 59, 58, 999999, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 27, 23, 59, 59, 1000, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 28, 0, 0, 0, 500, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 28, 0, 0, 1, 777000, tzinfo=datetime.UTC),
]


def events() -> Iterator[EventMessage]:
    for n, body in enumerate([b'{"event":{"audioInput":{}}}', b"", b"x" * 4096, b"{}", b"z"]):
        yield EventMessage(
            headers={":event-type": "chunk", ":message-type": "event", ":n": str(n)},
            payload=body,
        )


def frozen_sdk_clock(monkeypatch: pytest.MonkeyPatch, times: list[datetime.datetime]) -> None:
    ticks = iter(times)

    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:
            return next(ticks)

    shim = types.SimpleNamespace(datetime=Clock, UTC=datetime.UTC)
    monkeypatch.setattr(sdk_signers, "datetime", shim)


async def sign_all(signer: object, identities: list[AWSCredentialsIdentity]) -> list[bytes]:
    out = []
    for event, identity in zip(events(), identities, strict=False):
        signed = await signer.sign(event=event, identity=identity, properties=PROPERTIES)  # type: ignore[attr-defined]
        out.append(signed.encode())
    final = await signer.sign_empty(
        event=EventMessage(), identity=identities[-1], properties=PROPERTIES
    )  # type: ignore[attr-defined]
    out.append(final.encode())
    return out


async def test_the_same_bytes_as_the_sdk_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    times = [*TIMES, TIMES[-1] + datetime.timedelta(seconds=1)]
    identities = [IDENTITY] * 5
    frozen_sdk_clock(monkeypatch, times)
    sdk = AsyncEventSigner(initial_signature=SEED, event_encoder_cls=EventHeaderEncoder)
    ticks = iter(times)
    ours = ChainedEventSigner(initial_signature=SEED, clock=lambda: next(ticks))
    expected = await sign_all(sdk, identities)
    assert await sign_all(ours, identities) == expected
    assert len(set(expected)) == len(expected)


async def test_a_new_secret_gets_a_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The key cache is keyed on the secret too: a signer given other credentials must not
    # reuse the first key (a stream never changes credentials, but a wrong cache must not hide).
    identities = [IDENTITY, OTHER, IDENTITY, OTHER, OTHER]
    times = [*TIMES, TIMES[-1]]
    frozen_sdk_clock(monkeypatch, times)
    sdk = AsyncEventSigner(initial_signature=SEED, event_encoder_cls=EventHeaderEncoder)
    ticks = iter(times)
    ours = ChainedEventSigner(initial_signature=SEED, clock=lambda: next(ticks))
    assert await sign_all(ours, identities) == await sign_all(sdk, identities)


async def test_nothing_is_signed_after_the_closing_frame() -> None:
    signer = ChainedEventSigner(initial_signature=SEED)
    await signer.sign_empty(event=EventMessage(), identity=IDENTITY, properties=PROPERTIES)
    with pytest.raises(RuntimeError, match="closing frame"):
        await signer.sign(
            event=EventMessage(payload=b"{}"), identity=IDENTITY, properties=PROPERTIES
        )


async def test_the_closing_frame_must_be_empty() -> None:
    signer = ChainedEventSigner(initial_signature=SEED)
    with pytest.raises(ValueError, match="no headers and no payload"):
        await signer.sign_empty(
            event=EventMessage(payload=b"x"), identity=IDENTITY, properties=PROPERTIES
        )


def opening_request(authorization: str | None) -> HTTPRequest:
    fields = Fields()
    if authorization is not None:
        fields.set_field(Field(name="Authorization", values=[authorization]))
    return HTTPRequest(
        destination=URI(host="bedrock-runtime.us-east-1.amazonaws.com"),
        method="POST",
        fields=fields,
        body=b"",
    )


async def test_the_auth_scheme_chains_on_the_opening_signature() -> None:
    seed = "0123456789abcdef" * 4
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/bedrock/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={seed}"
    )
    scheme = ChainedSigV4AuthScheme(service="bedrock")
    signer = scheme.event_signer(request=opening_request(auth))
    when = TIMES[0]
    expected_signer = ChainedEventSigner(initial_signature=seed.encode(), clock=lambda: when)
    signer._clock = lambda: when
    event = await signer.sign(
        event=EventMessage(payload=b"{}"), identity=IDENTITY, properties=PROPERTIES
    )
    expected = await expected_signer.sign(
        event=EventMessage(payload=b"{}"), identity=IDENTITY, properties=PROPERTIES
    )
    assert event.encode() == expected.encode()


def test_an_unsigned_opening_request_is_refused() -> None:
    scheme = ChainedSigV4AuthScheme(service="bedrock")
    with pytest.raises(ValueError, match="no SigV4 signature"):
        scheme.event_signer(request=opening_request("Bearer token"))
