"""Map what the SDK and the network raise to ``ProviderError`` with a stable code.

Retryable means a fresh stream with the same settings may work (docs/nova-sonic-protocol.md,
"Limits and continuation"); final errors are bugs in what was sent or account/model problems.
"""

from __future__ import annotations

import asyncio
import re

from ..errors import ProviderError

# Errors outside Bedrock's model (e.g. InvalidSignatureException) reach us as a generic smithy
# CallError whose message carries the HTTP status and the error shape id.
_UNMODELED = re.compile(r"status: (?P<status>\d{3})(?: - id: [\w.]+#(?P<name>\w+))?")

# Exception class name (SDK modeled errors, and error types in HTTP responses) -> (code, retryable)
_BY_NAME: dict[str, tuple[str, bool]] = {
    "ThrottlingException": ("throttled", True),
    "ServiceQuotaExceededException": ("quota_exceeded", True),
    "ModelTimeoutException": ("model_timeout", True),
    "ModelStreamErrorException": ("model_stream_error", True),
    "ModelNotReadyException": ("model_not_ready", True),
    "ModelErrorException": ("model_error", True),
    "InternalServerException": ("internal_error", True),
    "ServiceUnavailableException": ("service_unavailable", True),
    "AccessDeniedException": ("access_denied", False),
    "UnrecognizedClientException": ("bad_credentials", False),
    "InvalidSignatureException": ("bad_credentials", False),
    "ExpiredTokenException": ("expired_credentials", True),
    "ResourceNotFoundException": ("model_not_found", False),
    "ValidationException": ("validation", False),
}


def to_provider_error(exc: BaseException) -> ProviderError:
    """The ``ProviderError`` that ``exc`` means (``exc`` is kept as its cause by callers)."""
    if isinstance(exc, ProviderError):
        return exc
    message = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    for cls in type(exc).__mro__:
        known = _BY_NAME.get(cls.__name__)
        if known is not None:
            code, retryable = known
            if code == "validation" and "531" in message:
                # InternalErrorCode=531: the stream was idle too long; a new one is fine.
                return ProviderError("idle_timeout", message, retryable=True)
            return ProviderError(code, message, retryable=retryable)
    unmodeled = _UNMODELED.search(message)
    if unmodeled is not None:
        known = _BY_NAME.get(unmodeled["name"] or "")
        if known is not None:
            return ProviderError(known[0], message, retryable=known[1])
        return _by_status(int(unmodeled["status"]), message)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ProviderError("timeout", message, retryable=True)
    if isinstance(exc, ConnectionError | OSError):
        return ProviderError("connection", message, retryable=True)
    if type(exc).__name__ in ("AwsCrtError", "_CRTTimeoutError"):
        return ProviderError("connection", message, retryable=True)
    if any(cls.__name__ == "EventError" for cls in type(exc).__mro__):
        # smithy_aws_event_stream's framing errors (bad CRC, bad lengths, bad headers)
        return ProviderError("bad_event", message, retryable=True)
    return ProviderError("internal", f"{type(exc).__name__}: {message}", retryable=False)


def _by_status(status: int, message: str) -> ProviderError:
    if status == 429:
        return ProviderError("throttled", message, retryable=True)
    if status in (401, 403):
        return ProviderError("access_denied", message, retryable=False)
    if status == 404:
        return ProviderError("model_not_found", message, retryable=False)
    if status >= 500:
        return ProviderError("service_unavailable", message, retryable=True)
    return ProviderError("validation", message, retryable=False)
