"""Exceptions of the speech-to-speech API.

Every error a caller can act on has its own type; provider failures carry a stable ``code`` and
say whether opening a fresh stream could help (``retryable``).
"""

from __future__ import annotations


class S2SError(Exception):
    """Base class of every error raised by ``novakit.s2s``."""


class ConfigError(S2SError, ValueError):
    """A configuration value is missing, malformed or not supported by the provider."""


class ProviderNotFoundError(S2SError, LookupError):
    """No provider is registered under the requested name."""


class SessionClosedError(S2SError):
    """The session was used after it closed (by the caller or by a final error)."""


class FencedError(S2SError):
    """The caller no longer holds this conversation (its send guard said so, for example because
    another process took the conversation over): the session sends the model nothing more and
    closes."""


class UnsupportedError(S2SError):
    """The provider or model cannot do what was asked (for example typed text on Nova Sonic v1)."""


class ProviderError(S2SError):
    """The provider (or the network on the way to it) failed.

    ``code`` is stable and documented (``throttled``, ``model_timeout``, ``access_denied``, ...);
    ``retryable`` is true when a fresh stream with the same settings may succeed.
    """

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
