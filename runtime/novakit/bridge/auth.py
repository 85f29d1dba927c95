"""Who may call the bridge: API Gateway (a per-stack secret header) and peer tasks (signed relays).

Pure code, no I/O: the bridge's middleware (``app.py``) and the relay (``cluster.py``) use it.

**API Gateway.** Every integration request carries ``x-gateway-secret``: a static header the
stack's integration request parameters add (the local gateway adds it the same way). The bridge
accepts the current secret and, during a rotation, the previous one; the comparison takes the
same time whatever the value presented.

**Peers.** A task relaying a frame to the session's owner (or handing a session over) signs the
request: HMAC-SHA256, with a key derived from each configured secret under its own label, over
the method, path, timestamp, the headers the receiver acts on (connection id, principal,
hand-over) and the body's SHA-256. The receiver refuses a missing or wrong signature, and a
timestamp outside its window (stale or from the future). The sender signs once per configured
secret, so tasks of a fleet half way through a rotation still verify each other.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

GATEWAY_SECRET_HEADER = "x-gateway-secret"
# Every header of this family is the relay's own: honoured only on a request whose signature
# verifies, refused otherwise.
RELAY_HEADER_PREFIX = "x-novakit-"
RELAY_TIMESTAMP_HEADER = "x-novakit-timestamp"
RELAY_SIGNATURE_HEADER = "x-novakit-signature"
ADOPT_HEADER = "x-novakit-adopt"
# The headers whose values the receiver of a relay acts on; the signature covers them.
SIGNED_HEADERS = (
    "x-connection-id",
    "x-principal-id",
    "x-route-key",
    "x-stage",
    "x-request-id",
    "x-novakit-relayed",
    ADOPT_HEADER,
)
SIGNATURE_VERSION = "v1"
# Domain separation: the relay key is never the header value API Gateway sends.
RELAY_KEY_LABEL = b"novakit relay signing key v1"
MIN_SECRET_LENGTH = 32
DEFAULT_RELAY_WINDOW = 30.0
_MAX_SIGNATURES = 4  # one per configured secret; more is not a sender of this code


def secret_problems(secrets: Sequence[str], name: str) -> list[str]:
    """Why ``secrets`` cannot guard the bridge (empty when they can)."""
    problems = []
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters long")
        if not all(33 <= ord(char) <= 126 for char in secret):
            problems.append(f"{name} must be printable ASCII without spaces (a header value)")
    return problems


class GatewayAuth:
    """Checks the secret header of integration requests against the accepted secrets."""

    def __init__(self, secrets: Sequence[str], *, insecure: bool = False) -> None:
        if not secrets and not insecure:
            raise ValueError(
                "the bridge needs a gateway secret (NOVAKIT_GATEWAY_SECRET): without one anyone "
                "who reaches its port could drive sessions; for local use without a gateway, "
                "opt out explicitly with NOVAKIT_INSECURE_NO_GATEWAY_SECRET=1"
            )
        problems = secret_problems(secrets, "a gateway secret")
        if problems:
            raise ValueError("; ".join(problems))
        self._accepted = tuple(secret.encode("ascii") for secret in secrets)
        self.insecure = not secrets

    def accepts(self, presented: str | None) -> bool:
        if self.insecure:
            return True
        # Compared with every accepted secret, each in constant time: how long this takes does
        # not tell which secret, or how much of one, matched.
        value = (presented or "").encode("utf-8", "replace")
        matched = False
        for secret in self._accepted:
            matched |= hmac.compare_digest(value, secret)
        return matched


def relay_key(secret: str) -> bytes:
    return hmac.new(secret.encode("ascii"), RELAY_KEY_LABEL, hashlib.sha256).digest()


def canonical_request(
    method: str, path: str, timestamp: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """What a relay signature covers, one item a line (header values cannot hold newlines)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    lines = [SIGNATURE_VERSION, method.upper(), path, timestamp]
    lines += [f"{name}:{lowered.get(name, '')}" for name in SIGNED_HEADERS]
    lines.append(hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8", "replace")


@dataclass(frozen=True)
class RelayAuth:
    """Signs relays with every key and verifies them against any; ``window``: how far a
    timestamp may be from this task's clock, in seconds, either way."""

    keys: tuple[bytes, ...]
    window: float = DEFAULT_RELAY_WINDOW
    clock: Callable[[], float] = time.time

    @classmethod
    def from_secrets(
        cls,
        secrets: Sequence[str],
        window: float = DEFAULT_RELAY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> RelayAuth:
        return cls(tuple(relay_key(secret) for secret in secrets), window, clock)

    def sign(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """The headers to add to a relayed request (none without a key: the peer refuses it)."""
        if not self.keys:
            return {}
        timestamp = str(int(self.clock()))
        message = canonical_request(method, path, timestamp, headers, body)
        signatures = ",".join(
            f"{SIGNATURE_VERSION}={hmac.new(key, message, hashlib.sha256).hexdigest()}"
            for key in self.keys
        )
        return {RELAY_TIMESTAMP_HEADER: timestamp, RELAY_SIGNATURE_HEADER: signatures}

    def verify(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """``None`` when a peer holding one of the keys signed this request just now; otherwise
        why it is refused."""
        if not self.keys:
            return "relays need a gateway secret"
        lowered = {name.lower(): value for name, value in headers.items()}
        timestamp = lowered.get(RELAY_TIMESTAMP_HEADER, "")
        presented = lowered.get(RELAY_SIGNATURE_HEADER, "")
        if not presented or not timestamp:
            return "unsigned relay"
        if not timestamp.isdigit() or len(timestamp) > 12:
            return "malformed relay timestamp"
        skew = self.clock() - int(timestamp)
        if skew > self.window:
            return "stale relay timestamp"
        if skew < -self.window:
            return "relay timestamp in the future"
        message = canonical_request(method, path, timestamp, headers, body)
        expected = [
            hmac.new(key, message, hashlib.sha256).hexdigest().encode() for key in self.keys
        ]
        matched = False
        for item in presented.split(",")[:_MAX_SIGNATURES]:
            version, _, value = item.strip().partition("=")
            if version != SIGNATURE_VERSION:
                continue
            candidate = value.encode("utf-8", "replace")
            for digest in expected:
                matched |= hmac.compare_digest(candidate, digest)
        return None if matched else "bad relay signature"
