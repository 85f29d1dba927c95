"""The local gateway's settings, validated when created."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..bridge.dialects import BEARER_STAGES
from .limits import FRAME_LIMIT

__all__ = ["GatewayConfig", "public_base_url"]


@dataclass
class GatewayConfig:
    """How the local gateway listens, where it forwards, and which limits it enforces.

    Defaults are API Gateway's: 10 minutes idle, 2 hours per connection, 29 s integration
    timeout. ``handshake_timeout`` bounds how long a new connection may take to send its
    handshake (its first request's headers) before it is closed. ``outbound_buffer`` bounds
    the bytes queued for one client that is not reading; ``@connections`` posts beyond it get
    429 ``LimitExceededException``.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port (see ``LocalGateway.port``)
    backends: list[str] = field(default_factory=list)  # base URLs of the bridge processes
    stage: str = "local"
    # More stages of the same API, each served at /{name} with the same routes, authorizer and
    # limits (the client protocols of the bridge's other dialects: "realtime", "twilio").
    stages: tuple[str, ...] = ()
    # Stages whose clients may present the token as "Authorization: Bearer ..." (what OpenAI
    # Realtime SDKs send) as well as ?token=...
    bearer_stages: tuple[str, ...] = BEARER_STAGES
    token: str | None = None  # when set, clients must connect with ?token=...
    # The phone stage (``twilio``) takes no token: with this Twilio auth token set, a handshake
    # there must carry Twilio's X-Twilio-Signature for its URL, as the stack's authorizer checks;
    # without it, the phone stage is open, or refused when ``token`` is set (Twilio cannot send
    # a token).
    twilio_auth_token: str | None = None
    # Where Twilio connects when a proxy in front of this gateway terminates TLS (ngrok, a load
    # balancer): the scheme and host Twilio signed, e.g. "wss://abc.ngrok.app". None: the
    # handshake's own Host, and wss when it came over TLS or says X-Forwarded-Proto: https.
    twilio_public_url: str | None = None
    # Sent in x-gateway-secret with every integration request, as the stack's integration
    # request parameters send it (the bridge refuses requests without it). None: not sent.
    integration_secret: str | None = None
    principal: str = "local-user"  # x-principal-id of clients the token admitted
    credentials: tuple[str, str] | None = None  # (access key id, secret): SigV4 on @connections
    region: str = "us-east-1"
    idle_seconds: float = 600.0
    max_seconds: float = 7200.0
    integration_timeout: float = 29.0
    handshake_timeout: float = 10.0
    max_inflight_per_connection: int = 1
    outbound_buffer: int = 1024 * 1024  # bytes
    static_dir: Path | str | None = None
    # NLB-style target health checks (None: every backend always gets requests)
    health_path: str | None = None
    health_interval: float = 5.0
    unhealthy_threshold: int = 2
    # How requests are spread over healthy backends: in turn, or at random (as flow hashing
    # of many connections looks; ``spread_seed`` makes a run repeatable).
    spread: Literal["round_robin", "random"] = "round_robin"
    spread_seed: int | None = None
    # False: a new TCP connection for every integration request. Processes sharing a port
    # (SO_REUSEPORT) get connections, not requests, spread over them by the kernel; API
    # Gateway's fleet opens many connections, one kept-alive pool would open few.
    backend_keepalive: bool = True

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError("GatewayConfig.backends: at least one backend base URL is required")
        for url in self.backends:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"GatewayConfig.backends: {url!r} is not an http(s) base URL")
        if not self.stage or "/" in self.stage:
            raise ValueError(f"GatewayConfig.stage: {self.stage!r} must be one path segment")
        self.stages = tuple(self.stages)
        for name in self.stages:
            if not name or "/" in name or name.startswith("@") or name == self.stage:
                raise ValueError(
                    f"GatewayConfig.stages: {name!r} must be one path segment other than the"
                    f" stage {self.stage!r}"
                )
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"GatewayConfig.stages: {self.stages!r} names a stage twice")
        if self.twilio_auth_token == "":
            raise ValueError("GatewayConfig.twilio_auth_token: empty; use None for no check")
        if self.twilio_public_url is not None:
            self.twilio_public_url = public_base_url(self.twilio_public_url)
        if self.token == "":
            raise ValueError("GatewayConfig.token: an empty token would admit nobody; use None")
        if self.integration_secret == "":
            raise ValueError("GatewayConfig.integration_secret: empty; use None to send none")
        for name in ("idle_seconds", "max_seconds", "integration_timeout", "handshake_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GatewayConfig.{name} must be positive")
        if self.max_inflight_per_connection < 1:
            raise ValueError("GatewayConfig.max_inflight_per_connection must be at least 1")
        if self.outbound_buffer < FRAME_LIMIT:
            raise ValueError(
                f"GatewayConfig.outbound_buffer must hold one full frame ({FRAME_LIMIT} bytes)"
            )
        if self.static_dir is not None:
            self.static_dir = Path(self.static_dir)
            if not self.static_dir.is_dir():
                raise ValueError(f"GatewayConfig.static_dir: {self.static_dir} is not a directory")

    @property
    def static_root(self) -> Path | None:
        return None if self.static_dir is None else Path(self.static_dir)


def public_base_url(url: str) -> str:
    """``url`` as a base for stream URLs (no trailing slash); ValueError unless it is
    ws(s)://host[:port]."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not a ws(s)://host[:port] URL")
    return url.rstrip("/")
