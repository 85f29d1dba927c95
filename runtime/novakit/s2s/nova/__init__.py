"""The Amazon Nova Sonic provider: Bedrock's ``InvokeModelWithBidirectionalStream`` through the
official ``aws-sdk-bedrock-runtime`` SDK over the awscrt HTTP/2 transport.

``Config.extra`` keys are documented on ``NovaOptions``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config, Message
from ..session import Engine
from .credentials import CredentialSource, credential_source
from .models import MODELS, NOVA_2_SONIC, NOVA_SONIC_V1, NovaModel
from .options import NovaOptions, validate_for_nova
from .protocol import NovaProtocol, StreamSettings
from .session import NovaSession

__all__ = [
    "MODELS",
    "NOVA_2_SONIC",
    "NOVA_SONIC_V1",
    "NovaEngine",
    "NovaModel",
    "NovaOptions",
    "NovaProtocol",
    "NovaSession",
    "StreamSettings",
    "create_provider",
]


class NovaEngine(Engine):
    """Starts Nova Sonic sessions; shares one refreshing credential source between them."""

    name = "nova"

    def __init__(self, config: Config, credentials: CredentialSource | None = None) -> None:
        self.config = config
        self.options = NovaOptions.from_extra(config.extra)
        validate_for_nova(config, self.options)
        self._credentials = credentials or credential_source(self.options)

    def create_session(self, config: Config, history: Sequence[Message]) -> NovaSession:
        options = self.options if config.extra == self.config.extra else None
        options = options or NovaOptions.from_extra(config.extra)
        model = validate_for_nova(config, options)
        return NovaSession(config, history, options, model, self._credentials)


def create_provider(config: Config) -> NovaEngine:
    """The registry's factory for ``s2s.new("nova", config)``."""
    return NovaEngine(config)
