"""Mapping what the SDK raises to stable error codes."""

import pytest
from aws_sdk_bedrock_runtime.models import (
    AccessDeniedException,
    ModelStreamErrorException,
    ThrottlingException,
    ValidationException,
)
from smithy_aws_event_stream.exceptions import ChecksumMismatch
from smithy_core.exceptions import CallError

from novakit.s2s.nova.faults import to_provider_error


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (ThrottlingException(message="slow down"), "throttled", True),
        (ModelStreamErrorException(message="boom"), "model_stream_error", True),
        (AccessDeniedException(message="no"), "access_denied", False),
        (ValidationException(message="bad event"), "validation", False),
        (ValidationException(message="idle (InternalErrorCode=531)"), "idle_timeout", True),
        (
            CallError(
                message="Unknown error for operation x - status: 403 - id: "
                "com.amazonaws.bedrockruntime#InvalidSignatureException"
            ),
            "bad_credentials",
            False,
        ),
        (
            CallError(message="Unknown error for operation x - status: 403 - id: a#Weird"),
            "access_denied",
            False,
        ),
        (
            CallError(message="Unknown error for operation x - status: 503"),
            "service_unavailable",
            True,
        ),
        (CallError(message="Unknown error - status: 429"), "throttled", True),
        (ChecksumMismatch(1, 2), "bad_event", True),
        (TimeoutError(), "timeout", True),
        (ConnectionResetError("reset"), "connection", True),
        (RuntimeError("bug"), "internal", False),
    ],
)
def test_mapping(exc, code, retryable):
    error = to_provider_error(exc)
    assert (error.code, error.retryable) == (code, retryable)
    assert error.message
