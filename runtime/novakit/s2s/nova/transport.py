"""The HTTP/2 transport for Bedrock's bidirectional stream.

The SDK's default transport (aiohttp) cannot stream both ways, so the awscrt client is always
passed explicitly. CRT negotiates HTTP/2 only over TLS (ALPN ``h2``); private endpoints and the
emulator need their own CA, which ``AWSCRTHTTPClient`` (smithy-http 0.6) offers no option for:
this subclass swaps its TLS context. The SDK deep-copies its config (and so the transport) when a
client is set up, and the base class's ``__deepcopy__`` would return a plain client, dropping the
CA, so the copy is overridden too.
"""

from __future__ import annotations

from typing import Any, Self

from awscrt import io as crt_io
from smithy_http.aio.crt import AWSCRTHTTPClient


class BedrockTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` that optionally trusts an extra CA bundle (PEM file)."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        if ca_bundle is not None:
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
            self._tls_ctx = crt_io.ClientTlsContext(options)

    def __deepcopy__(self, memo: Any) -> Self:
        return type(self)(ca_bundle=self.ca_bundle)
