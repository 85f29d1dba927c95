"""SigV4 verification against requests and chunks signed by the SDK's own signers."""

from __future__ import annotations

import datetime

import pytest

from novakit.emulator.eventstream import Message, decode_message
from novakit.emulator.sigv4 import (
    ChunkSignatureError,
    ChunkVerifier,
    Credentials,
    RequestAuth,
    SigV4Error,
    canonical_request,
    verify_request,
)

from .helpers import FrameSigner, event, seed_of, sign_request

NOW = datetime.datetime(2025, 11, 25, 10, 55, 10, tzinfo=datetime.UTC)
CREDS = (Credentials("AKIDEMULATOR", "emulator-secret"),)


def verify(headers: list[tuple[str, str]], path: str, **overrides: object) -> RequestAuth:
    kwargs: dict[str, object] = {"credentials": CREDS, "region": "us-east-1", "now": NOW}
    kwargs.update(overrides)
    return verify_request("POST", path, headers, **kwargs)  # type: ignore[arg-type]


async def test_valid_request_yields_the_seed_signature() -> None:
    _, path, headers = await sign_request(date=NOW)
    auth = verify(headers, path)
    assert auth.seed_signature == seed_of(headers)
    assert auth.credentials.access_key_id == "AKIDEMULATOR"
    assert auth.region == "us-east-1"
    assert auth.service == "bedrock"


async def test_canonical_uri_double_encodes_the_model_id() -> None:
    canonical = canonical_request(
        "POST",
        "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream?",
        {"host": "h"},
        ["host"],
        "STREAMING-AWS4-HMAC-SHA256-EVENTS",
    )
    method, uri, query, *_ = canonical.split("\n")
    assert (method, uri, query) == (
        "POST",
        "/model/amazon.nova-2-sonic-v1%253A0/invoke-with-bidirectional-stream",
        "",
    )


async def test_wrong_secret_is_an_invalid_signature() -> None:
    _, path, headers = await sign_request(date=NOW, secret="not-the-secret")
    with pytest.raises(SigV4Error) as err:
        verify(headers, path)
    assert (err.value.status, err.value.error_type) == (403, "InvalidSignatureException")
    assert "signature we calculated does not match" in err.value.message


async def test_unknown_access_key() -> None:
    _, path, headers = await sign_request(date=NOW, access_key="AKIDUNKNOWN")
    with pytest.raises(SigV4Error) as err:
        verify(headers, path)
    assert (err.value.status, err.value.error_type) == (403, "UnrecognizedClientException")


async def test_wrong_region_in_scope() -> None:
    _, path, headers = await sign_request(date=NOW, region="us-west-2")
    with pytest.raises(SigV4Error, match="scoped to a valid region, not 'us-west-2'") as err:
        verify(headers, path)
    assert err.value.error_type == "InvalidSignatureException"


async def test_wrong_service_in_scope() -> None:
    _, path, headers = await sign_request(date=NOW, service="s3")
    with pytest.raises(SigV4Error, match="correct service: 'bedrock'"):
        verify(headers, path)


@pytest.mark.parametrize("minutes", [-16, 16])
async def test_clock_skew_beyond_fifteen_minutes(minutes: int) -> None:
    _, path, headers = await sign_request(date=NOW + datetime.timedelta(minutes=minutes))
    with pytest.raises(SigV4Error, match="Signature (expired|not yet current)") as err:
        verify(headers, path)
    assert err.value.error_type == "InvalidSignatureException"


async def test_skew_within_fifteen_minutes_is_fine() -> None:
    _, path, headers = await sign_request(date=NOW - datetime.timedelta(minutes=14))
    verify(headers, path)


async def test_tampered_path_or_header() -> None:
    _, path, headers = await sign_request(date=NOW)
    with pytest.raises(SigV4Error, match="does not match"):
        verify(headers, path.replace("nova-2-sonic", "nova-sonic"))
    changed = [(k, "other.example:1" if k == ":authority" else v) for k, v in headers]
    with pytest.raises(SigV4Error, match="does not match"):
        verify(changed, path)


async def test_session_token_is_required_when_configured() -> None:
    creds = (Credentials("AKIDEMULATOR", "emulator-secret", "token-1"),)
    _, path, headers = await sign_request(date=NOW, token="token-1")
    verify(headers, path, credentials=creds)
    _, path, headers = await sign_request(date=NOW)
    with pytest.raises(SigV4Error) as err:
        verify(headers, path, credentials=creds)
    assert err.value.error_type == "UnrecognizedClientException"


async def test_missing_or_garbled_authorization() -> None:
    _, path, headers = await sign_request(date=NOW)
    bare = [(k, v) for k, v in headers if k != "authorization"]
    with pytest.raises(SigV4Error) as err:
        verify(bare, path)
    assert err.value.error_type == "MissingAuthenticationTokenException"
    garbled = [*bare, ("authorization", "AWS4-HMAC-SHA256 Credential=x")]
    with pytest.raises(SigV4Error) as err:
        verify(garbled, path)
    assert (err.value.status, err.value.error_type) == (400, "IncompleteSignatureException")


# -- the chunk chain -------------------------------------------------------------------------


def auth_for(headers: list[tuple[str, str]], path: str) -> RequestAuth:
    return verify(headers, path)


async def signed_frames(seed: str, count: int, **signer: str) -> list[bytes]:
    frame_signer = FrameSigner(seed, **signer)
    frames = [await frame_signer.chunk(event("sessionStart", {"n": i})) for i in range(count)]
    return [*frames, await frame_signer.final()]


async def test_chunk_chain_verifies_and_ends_on_the_empty_frame() -> None:
    _, path, headers = await sign_request(date=datetime.datetime.now(datetime.UTC))
    auth = verify(headers, path, now=datetime.datetime.now(datetime.UTC))
    verifier = ChunkVerifier(auth)
    frames = await signed_frames(auth.seed_signature, 3)
    payloads = [verifier.verify(decode_message(f)) for f in frames]
    assert all(p for p in payloads[:3])
    assert payloads[3] is None
    assert verifier.finished
    # The payload is the encoded inner chunk message.
    inner = decode_message(payloads[0] or b"")
    assert inner.headers[":event-type"] == "chunk"
    with pytest.raises(ChunkSignatureError, match="after the final"):
        verifier.verify(decode_message(frames[0]))


async def test_tampered_payload_breaks_the_chain() -> None:
    auth = RequestAuth(CREDS[0], "us-east-1", "bedrock", "ab" * 32, NOW)
    frames = await signed_frames(auth.seed_signature, 2)
    first = decode_message(frames[0])
    tampered = Message(first.headers, first.payload.replace(b"chunk", b"chunK"))
    with pytest.raises(ChunkSignatureError, match="mismatch on frame 1"):
        ChunkVerifier(auth).verify(tampered)


async def test_frames_signed_with_another_key_fail() -> None:
    auth = RequestAuth(CREDS[0], "us-east-1", "bedrock", "ab" * 32, NOW)
    frames = await signed_frames(auth.seed_signature, 1, secret="other-secret")
    with pytest.raises(ChunkSignatureError):
        ChunkVerifier(auth).verify(decode_message(frames[0]))


async def test_wrong_region_or_seed_fails() -> None:
    auth = RequestAuth(CREDS[0], "us-east-1", "bedrock", "ab" * 32, NOW)
    frames = await signed_frames(auth.seed_signature, 1, region="eu-west-1")
    with pytest.raises(ChunkSignatureError):
        ChunkVerifier(auth).verify(decode_message(frames[0]))
    frames = await signed_frames("cd" * 32, 1)
    with pytest.raises(ChunkSignatureError):
        ChunkVerifier(auth).verify(decode_message(frames[0]))


async def test_reordered_chunks_fail() -> None:
    auth = RequestAuth(CREDS[0], "us-east-1", "bedrock", "ab" * 32, NOW)
    frames = await signed_frames(auth.seed_signature, 3)
    verifier = ChunkVerifier(auth)
    verifier.verify(decode_message(frames[0]))
    with pytest.raises(ChunkSignatureError, match="frame 2"):
        verifier.verify(decode_message(frames[2]))


async def test_envelope_headers_are_checked() -> None:
    auth = RequestAuth(CREDS[0], "us-east-1", "bedrock", "ab" * 32, NOW)
    with pytest.raises(ChunkSignatureError, match=":date"):
        ChunkVerifier(auth).verify(Message({":chunk-signature": b"x" * 32}, b"p"))
    with pytest.raises(ChunkSignatureError, match="32-byte"):
        ChunkVerifier(auth).verify(Message({":date": NOW, ":chunk-signature": b"x"}, b"p"))
    with pytest.raises(ChunkSignatureError, match="unexpected envelope"):
        ChunkVerifier(auth).verify(
            Message({":date": NOW, ":chunk-signature": b"x" * 32, "extra": 1}, b"p")
        )
