"""Identifiers in API Gateway's shape: 16 characters, base64-like, ending in ``=``.

Real ids (``L0SM9cOFvHcCIhw=``) are base64 of 11 bytes. These use only letters and digits before
the padding so they never contain ``/`` or ``+``, which would need care in ``@connections`` paths;
the ``=`` is kept so clients are exercised on percent-encoding it as they must on AWS.
"""

from __future__ import annotations

import secrets
import string

__all__ = ["new_connection_id", "new_request_id"]

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 15  # characters before the "=" padding


def _new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH)) + "="


def new_connection_id() -> str:
    return _new_id()


def new_request_id() -> str:
    return _new_id()
