"""Infrastructure cost per session-minute, from measured message counts and capacity.

Prices are AWS's published on-demand list prices for us-east-1 (N. Virginia), as listed on
the API Gateway, Fargate, Lambda and VPC pricing pages in 2025; they are parameters here so that
a reader can put in their Region's and today's. Not counted: Bedrock itself (per token, and by
far the largest part of a conversation's cost), the Network Load Balancer and VPC link (per
hour, not per session), CloudWatch logs and metrics, data transfer out to the internet.

The NAT gateway is counted: every byte of audio the bridge streams to Bedrock, gets back, and
posts to ``@connections`` passes through it and is billed per GB processed. A bedrock-runtime
interface endpoint (``-c interface_endpoints=true``) takes the Bedrock part off the NAT at a
lower per-GB price but an hourly charge per Availability Zone; ``endpoint_break_even`` says
from how many session-minutes a month it pays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Prices:
    source: str = (
        "AWS on-demand list prices, us-east-1, from the API Gateway, Fargate and Lambda"
        " pricing pages as published in 2025"
    )
    # API Gateway WebSocket APIs: messages (metered in 32 KB units; first billion a month)
    # and connection minutes.
    apigw_per_million_messages: float = 1.00
    apigw_per_million_connection_minutes: float = 0.25
    # Fargate, Linux/x86: per vCPU-hour and per GB-hour.
    fargate_per_vcpu_hour: float = 0.04048
    fargate_per_gb_hour: float = 0.004445
    # Lambda, x86: per million requests and per GB-second.
    lambda_per_million_requests: float = 0.20
    lambda_per_gb_second: float = 0.0000166667
    # NAT gateway data processing, and an interface endpoint (per AZ-hour, per GB processed).
    nat_per_gb: float = 0.045
    endpoint_per_az_hour: float = 0.01
    endpoint_per_gb: float = 0.01


@dataclass(frozen=True)
class Assumptions:
    """What the cost depends on besides the measured figures."""

    # The bridge task: 1 vCPU and 2 GB (Fargate's smallest size with a whole vCPU), run at
    # this share of the sessions it can carry (headroom for bursts and deployments).
    task_vcpu: float = 1.0
    task_gb: float = 2.0
    utilization: float = 0.7
    # Lambda: the $connect authorizer once per connection; tool calls.
    session_minutes: float = 3.0  # average conversation length
    authorizer_ms: float = 50.0
    authorizer_mb: int = 128
    tool_calls_per_minute: float = 1.0
    tool_ms: float = 300.0
    tool_mb: int = 256
    # Audio on the NAT: the microphone streams to Bedrock all the time (16 kHz PCM16); the
    # agent speaks this many seconds a minute (24 kHz PCM16), which comes back from Bedrock and
    # goes out again to @connections. Both legs carry base64 in JSON events.
    input_rate_hz: int = 16_000
    output_rate_hz: int = 24_000
    agent_speech_seconds_per_minute: float = 30.0
    base64_overhead: float = 4 / 3
    # JSON event envelopes, event-stream framing and TLS records around the base64 payload.
    bedrock_framing: float = 1.10
    connections_framing: float = 1.05
    availability_zones: int = 2
    hours_per_month: float = 730.0


PRICES = Prices()
ASSUMPTIONS = Assumptions()
GIB = 1024**3


def nat_gib_per_session_minute(
    assume: Assumptions = ASSUMPTIONS, *, speech_seconds: float | None = None
) -> dict[str, float]:
    """GiB through the NAT per session-minute, by leg."""
    speech = assume.agent_speech_seconds_per_minute if speech_seconds is None else speech_seconds
    pcm_in = 60 * assume.input_rate_hz * 2
    pcm_out = speech * assume.output_rate_hz * 2
    to_bedrock = pcm_in * assume.base64_overhead * assume.bedrock_framing
    from_bedrock = pcm_out * assume.base64_overhead * assume.bedrock_framing
    to_connections = pcm_out * assume.base64_overhead * assume.connections_framing
    return {
        "to_bedrock": to_bedrock / GIB,
        "from_bedrock": from_bedrock / GIB,
        "to_connections": to_connections / GIB,
    }


def per_session_minute(
    units_in: float,
    units_out: float,
    sessions_per_vcpu: float,
    *,
    prices: Prices = PRICES,
    assume: Assumptions = ASSUMPTIONS,
    speech_seconds: float | None = None,
    bedrock_endpoint: bool = False,
) -> dict[str, float]:
    """USD per session-minute: ``units_*`` are metered API Gateway messages per session-minute
    each way; ``sessions_per_vcpu`` is what one vCPU of the bridge carries (measured);
    ``speech_seconds`` the agent's audio per minute (measured, else the assumption). With
    ``bedrock_endpoint``, the Bedrock legs go through the interface endpoint instead of the NAT
    (its hourly charge is per month, not per session: see ``endpoint_break_even``)."""
    api_gateway = (units_in + units_out) * prices.apigw_per_million_messages / 1e6
    api_gateway += prices.apigw_per_million_connection_minutes / 1e6
    sessions_per_task = max(1.0, sessions_per_vcpu * assume.task_vcpu * assume.utilization)
    task_per_minute = (
        assume.task_vcpu * prices.fargate_per_vcpu_hour
        + assume.task_gb * prices.fargate_per_gb_hour
    ) / 60
    fargate = task_per_minute / sessions_per_task
    authorizer = (
        prices.lambda_per_million_requests / 1e6
        + assume.authorizer_mb / 1024 * assume.authorizer_ms / 1000 * prices.lambda_per_gb_second
    ) / assume.session_minutes
    tools = assume.tool_calls_per_minute * (
        prices.lambda_per_million_requests / 1e6
        + assume.tool_mb / 1024 * assume.tool_ms / 1000 * prices.lambda_per_gb_second
    )
    legs = nat_gib_per_session_minute(assume, speech_seconds=speech_seconds)
    bedrock_gib = legs["to_bedrock"] + legs["from_bedrock"]
    if bedrock_endpoint:
        network = bedrock_gib * prices.endpoint_per_gb + legs["to_connections"] * prices.nat_per_gb
    else:
        network = (bedrock_gib + legs["to_connections"]) * prices.nat_per_gb
    total = api_gateway + fargate + authorizer + tools + network
    return {
        "api_gateway": round(api_gateway, 7),
        "fargate": round(fargate, 7),
        "lambda": round(authorizer + tools, 7),
        "network": round(network, 7),
        "total": round(total, 7),
    }


def endpoint_break_even(
    *, prices: Prices = PRICES, assume: Assumptions = ASSUMPTIONS
) -> dict[str, float]:
    """Session-minutes a month from which the bedrock-runtime interface endpoint costs less
    than sending the Bedrock legs through the NAT."""
    legs = nat_gib_per_session_minute(assume)
    saved = (legs["to_bedrock"] + legs["from_bedrock"]) * (
        prices.nat_per_gb - prices.endpoint_per_gb
    )
    monthly = prices.endpoint_per_az_hour * assume.availability_zones * assume.hours_per_month
    return {
        "endpoint_usd_per_month": round(monthly, 2),
        "saved_usd_per_session_minute": round(saved, 7),
        "break_even_session_minutes_per_month": round(monthly / saved),
    }


def describe() -> dict[str, Any]:
    return {
        "prices": asdict(PRICES),
        "assumptions": asdict(ASSUMPTIONS),
        "nat_gib_per_session_minute": nat_gib_per_session_minute(),
        "bedrock_endpoint": endpoint_break_even(),
    }
