"""The shared SigV4 primitives give the standard results."""

from __future__ import annotations

import hashlib

import pytest

from novakit.sigv4 import hmac_sha256, sha256_hex, signing_key


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4094, 4095, 100_000])
def test_sha256_in_pieces_is_sha256(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_signing_key_of_the_aws_documentation_example() -> None:
    # "Examples of how to derive a signing key for Signature Version 4", AWS General Reference.
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_hmac_sha256_rfc4231_case_2() -> None:
    digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
