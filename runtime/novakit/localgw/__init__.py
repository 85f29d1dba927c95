"""A local stand-in for an API Gateway WebSocket API in front of the session bridge.

Real WebSocket clients connect to it; each handshake and text frame becomes an HTTP integration
request to a backend, exactly as API Gateway's HTTP_PROXY integration sends it through the VPC
link (``POST /ws/connect``, ``/ws/message``, ``/ws/disconnect`` with the context in ``x-*``
headers); backends answer clients through the ``@connections`` management API on the same port.
API Gateway's limits apply (32 KB frames, no binary frames, idle and duration timeouts), traffic
is metered the way it is billed, and ``static_dir`` serves the browser client::

    config = GatewayConfig(backends=["http://127.0.0.1:9000"], token="dev")
    async with LocalGateway(config) as gw:
        ...  # clients: gw.url + "?token=dev"; bridge: NOVAKIT_CONNECTIONS_URL=gw.management_url
        print(gw.stats.totals.units)

Layout: ``limits``, ``ids``, ``metering``, ``integration`` and ``static`` are pure rules;
``auth`` (token and SigV4), ``backends`` (round-robin HTTP client), ``connection`` (one client),
``management`` (``@connections``) and ``server`` (``LocalGateway``) are the aiohttp adapter;
``cli`` is ``python -m novakit.localgw``. See docs/localgw.md.
"""

from .config import GatewayConfig
from .integration import ConnectionContext, IntegrationRequest, RouteKey
from .limits import FRAME_LIMIT, Close, CloseCode
from .metering import ConnectionStats, GatewayStats, Traffic, message_units
from .server import LocalGateway

__all__ = [
    "FRAME_LIMIT",
    "Close",
    "CloseCode",
    "ConnectionContext",
    "ConnectionStats",
    "GatewayConfig",
    "GatewayStats",
    "IntegrationRequest",
    "LocalGateway",
    "RouteKey",
    "Traffic",
    "message_units",
]
