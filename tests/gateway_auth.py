"""What every test that talks to a bridge uses to be API Gateway (or a peer task): the secret the
test bridges are given, and the headers built from it. One place, so a test that forgets the
secret fails with 403 instead of passing for the wrong reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from novakit.bridge.auth import GATEWAY_SECRET_HEADER, RelayAuth

# At least 32 printable characters, as the bridge requires.
GATEWAY_SECRET = "test-gateway-secret-0123456789abcdefABCDEF"
SECRET_ENV = {"NOVAKIT_GATEWAY_SECRET": GATEWAY_SECRET}


def gateway_headers(connection_id: str, **headers: str) -> dict[str, str]:
    """An integration request's headers as the stack's request parameters send them."""
    return {GATEWAY_SECRET_HEADER: GATEWAY_SECRET, "x-connection-id": connection_id, **headers}


def relay_auth(secret: str = GATEWAY_SECRET, clock: Callable[[], float] = time.time) -> RelayAuth:
    return RelayAuth.from_secrets((secret,), clock=clock)


def signed(
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str = GATEWAY_SECRET,
    clock: Callable[[], float] = time.time,
) -> dict[str, str]:
    """``headers`` plus the signature a peer task adds to a relayed ``POST path``."""
    return {**headers, **relay_auth(secret, clock).sign("POST", path, headers, body)}
