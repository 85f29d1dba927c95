"""Map what the SDK and the network raise to ``ProviderError`` with a stable code.

Retryable means a fresh stream with the same settings may work (docs/nova-sonic-protocol.md,
"Limits and continuation"); final errors are bugs in what was sent or account/model problems.
"""

from __future__ import annotations

import asyncio

from ..errors import ProviderError

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
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ProviderError("timeout", message, retryable=True)
    if isinstance(exc, ConnectionError | OSError):
        return ProviderError("connection", message, retryable=True)
    if type(exc).__name__ in ("AwsCrtError", "_CRTTimeoutError"):
        return ProviderError("connection", message, retryable=True)
    if type(exc).__name__ in ("EventError", "InvalidEventError", "ChecksumMismatchError"):
        return ProviderError("bad_event", message, retryable=True)
    return ProviderError("internal", f"{type(exc).__name__}: {message}", retryable=False)
