"""Infrastructure cost per session-minute, from measured message counts and capacity.

Prices are AWS's published on-demand list prices for us-east-1 (N. Virginia), as listed on
the API Gateway, Fargate and Lambda pricing pages in 2025; they are parameters here so that a
reader can put in their Region's and today's. Not counted: Bedrock itself (per token, and by far
the largest part of a conversation's cost), the Network Load Balancer and VPC link (per hour, not
per session), CloudWatch logs and metrics, data transfer.
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


PRICES = Prices()
ASSUMPTIONS = Assumptions()


def per_session_minute(
    units_in: float,
    units_out: float,
    sessions_per_vcpu: float,
    *,
    prices: Prices = PRICES,
    assume: Assumptions = ASSUMPTIONS,
) -> dict[str, float]:
    """USD per session-minute: ``units_*`` are metered API Gateway messages per session-minute
    each way; ``sessions_per_vcpu`` is what one vCPU of the bridge carries (measured)."""
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
    total = api_gateway + fargate + authorizer + tools
    return {
        "api_gateway": round(api_gateway, 7),
        "fargate": round(fargate, 7),
        "lambda": round(authorizer + tools, 7),
        "total": round(total, 7),
    }


def describe() -> dict[str, Any]:
    return {"prices": asdict(PRICES), "assumptions": asdict(ASSUMPTIONS)}
