"""The HTTP/2 transport for Bedrock's bidirectional stream.

The SDK's default transport (aiohttp) cannot stream both ways, so the awscrt client is always
passed explicitly. CRT negotiates HTTP/2 only over TLS (ALPN ``h2``); private endpoints and the
emulator need their own CA, which ``AWSCRTHTTPClient`` (smithy-http 0.6) offers no option for:
this subclass swaps its TLS context. The SDK deep-copies its config (and so the transport) when a
client is set up, and the base class's ``__deepcopy__`` would return a plain client, dropping the
CA, so the copy is overridden too.

Every stream has its own client, so by default each one would start its own CRT event loop
group (an I/O thread and a resolver thread) and build a TLS context (loading the trust store)
twice, at about 9 ms of CPU each. A bridge holds hundreds of streams: they share awscrt's
process-wide bootstrap, whose group has a thread per core, and one TLS context per CA bundle
(docs/performance.md: less memory and CPU per session, two threads fewer per session).

The response body is flow-controlled. By default awscrt keeps every stream's receive window
open and hands each DATA frame to Python from its own thread, queued until the SDK reads it:
whenever the model sends faster than the session consumes (a busy process, a stream being
closed while its last answers still arrive), the queue grows without bound and the process
keeps the memory. Here each stream's window is ``STREAM_WINDOW`` bytes and is reopened only by
what the SDK has read, so no stream holds more than that unread.

awscrt writes a stream's request body from a task of its own. Once Bedrock has ended the stream
(an exception, a reset) its next write fails with AWS_ERROR_HTTP_STREAM_HAS_COMPLETED, and
nothing awaits that task: asyncio would log "Task exception was never retrieved" for each failed
stream, and a writer still waiting for input would stay pending for ever. The transport keeps
each writer (``body_writers``) and retrieves its outcome; the stream cancels those still running
when it is released (``BedrockStream.aclose``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator
from typing import Any, Self

from awscrt import io as crt_io
from awscrt.aio.http import AIOHttpClientConnectionUnified, AIOHttpClientStreamUnified
from smithy_core.interfaces import URI
from smithy_http.aio.crt import (
    AWSCRTHTTPClient,
    AWSCRTHTTPClientConfig,
    AWSCRTHTTPResponse,
    _AWSCRTEventLoop,
)

#: Bytes of response body a stream may hold unread (its HTTP/2 receive window). Output audio
#: is about 64 KB a second of event JSON: this is seconds of it, and one window per round trip
#: is far more than the model sends.
STREAM_WINDOW = 256 * 1024

log = logging.getLogger(__name__)


class _ProcessEventLoop(_AWSCRTEventLoop):
    """awscrt's process-wide bootstrap in the shape the smithy client takes."""

    def _initialize_default_loop(self) -> crt_io.ClientBootstrap:
        return crt_io.ClientBootstrap.get_or_create_static_default()


@functools.cache
def shared_event_loop() -> _AWSCRTEventLoop:
    return _ProcessEventLoop()


@functools.cache
def tls_context(ca_bundle: str | None) -> crt_io.ClientTlsContext:
    """One client TLS context per trust store (the system's, or a PEM bundle)."""
    options = crt_io.TlsContextOptions()
    if ca_bundle is not None:
        options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
    return crt_io.ClientTlsContext(options)


class BedrockTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` on the shared CRT resources, optionally trusting a CA bundle."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        # The base initializer would build a TLS context of its own (about 9 ms of CPU, and
        # once more per deep copy) only to have it replaced: its fields are set here instead
        # (smithy-http is pinned; a test checks that the fields still match the base class's).
        self._config = AWSCRTHTTPClientConfig()
        self._eventloop = shared_event_loop()
        self._client_bootstrap = self._eventloop.bootstrap
        self._tls_ctx = tls_context(ca_bundle)
        self._socket_options = crt_io.SocketOptions()
        self._connections = {}
        self._closed = False
        self.ca_bundle = ca_bundle
        # awscrt's request-body writer tasks; shared with the deep copy the SDK makes, so that
        # whoever made this transport can end them.
        self.body_writers: list[asyncio.Task[Any]] = []

    def __deepcopy__(self, memo: Any) -> Self:
        copy = type(self)(ca_bundle=self.ca_bundle)
        copy.body_writers = self.body_writers
        return copy

    async def _build_new_connection(self, url: URI) -> AIOHttpClientConnectionUnified:
        if url.scheme != "https":  # no HTTP/2 without TLS: nothing streams here
            return await super()._build_new_connection(url)
        tls = self._tls_ctx.new_connection_options()
        tls.set_server_name(url.host)
        tls.set_alpn_list(["h2", "http/1.1"])
        return await AIOHttpClientConnectionUnified.new(
            bootstrap=self._client_bootstrap,
            host_name=url.host,
            port=url.port or self._HTTPS_PORT,
            socket_options=self._socket_options,
            tls_connection_options=tls,
            manual_window_management=True,
            initial_window_size=STREAM_WINDOW,
        )

    async def _await_response(self, stream: AIOHttpClientStreamUnified) -> AWSCRTHTTPResponse:
        # The one place the smithy client hands over the CRT stream, before anything can fail.
        writer = getattr(stream, "_writer", None)
        if isinstance(writer, asyncio.Task):
            writer.add_done_callback(_retrieve)
            self.body_writers.append(writer)
        response = await super()._await_response(stream)
        return _WindowedResponse(status=response.status, fields=response.fields, stream=stream)

    async def end_body_writers(self, grace: float) -> None:
        """Cancel the writers still running (the stream is being released) and wait for them,
        bounded; their outcome is retrieved either way."""
        writers, self.body_writers[:] = list(self.body_writers), []
        running = [w for w in writers if not w.done()]
        for writer in running:
            writer.cancel()
        if running:
            await asyncio.wait(running, timeout=grace)


class _WindowedResponse(AWSCRTHTTPResponse):
    """A response body that reopens its stream's window by what has been read."""

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        stream = self._stream
        while chunk := await stream.get_next_response_chunk():
            stream.update_window(len(chunk))
            yield chunk


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A writer's outcome is read, so that asyncio does not report it as never retrieved: once
    the stream has ended, a failed write is expected and says nothing new."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.debug("the request body writer ended: %r", error)
