"""Logging for the local gateway: one logger, the connection id in each record, no secrets.

Records go to the ``novakit.localgw`` logger with ``extra={"connection_id": ...}`` where one
applies, so a JSON formatter can index them. The client's token travels in the query string
(browsers cannot set headers on a WebSocket handshake); every URL is logged with it as ``***``.
"""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

__all__ = ["AccessLogger", "log", "redact"]

log = logging.getLogger("novakit.localgw")

_SECRET_PARAM = re.compile(r"(?i)([?&](?:token|x-amz-signature|x-amz-security-token)=)[^&#\s]*")


def redact(url: str) -> str:
    """``url`` with the values of secret query parameters replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", url)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, with secrets redacted (the default logs the raw request line)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms",
            request.method,
            redact(request.path_qs),
            response.status,
            time * 1000,
            extra={"remote": request.remote},
        )
