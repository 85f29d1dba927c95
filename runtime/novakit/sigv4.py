"""SigV4 primitives shared by the kit's two signers (Bedrock stream events, ``@connections``
posts): the signing key and the timestamp, each computed once and cached (a key changes once a
day, a timestamp once a second, and both signers sign per frame), and hashing that keeps the
GIL.

hashlib gives up the GIL while it hashes 2 KiB or more, and ``hmac.digest()`` always does. In a
bridge, awscrt's threads then take it, and the event loop waits behind their callbacks to get
it back: on one loaded core that wait costs more than the hash (A/B in docs/performance.md).
Hashing in smaller pieces, and HMAC through ``hmac.new``, keeps it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time

_GIL_RELEASED_FROM = 2048  # bytes; CPython's HASHLIB_GIL_MINSIZE


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def sha256_hex(data: bytes) -> str:
    if len(data) < _GIL_RELEASED_FROM:
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    view = memoryview(data)
    step = _GIL_RELEASED_FROM - 1
    for start in range(0, len(data), step):
        digest.update(view[start : start + step])
    return digest.hexdigest()


def amz_date(second: int) -> str:
    """``YYYYMMDDTHHMMSSZ`` for a Unix time in whole seconds."""
    return _amz_date(second)


@functools.lru_cache(maxsize=4)  # this second's, and a few around it
def _amz_date(second: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


@functools.lru_cache(maxsize=32)  # per secret (credentials rotate), day, Region and service
def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The SigV4 key for one day (``YYYYMMDD``), Region and service."""
    key = hmac_sha256(f"AWS4{secret}".encode(), day.encode())
    for part in (region, service, "aws4_request"):
        key = hmac_sha256(key, part.encode())
    return key
