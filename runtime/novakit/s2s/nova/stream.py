"""Thin adapter over the SDK: one ``InvokeModelWithBidirectionalStream`` call.

Each stream gets its own SDK client (its own HTTP/2 connection, closed with the stream) and a
credentials snapshot; its events are signed by ``ChainedEventSigner`` (signing.py). Every wait
on the network is bounded by the options' timeouts, except waiting for the model's next event,
which is legitimately open-ended (the stream itself is cut by Bedrock after ~8 minutes at
most).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from smithy_aws_core.identity import AWSCredentialsIdentity

from ..errors import ProviderError
from .credentials import pinned_resolver
from .faults import to_provider_error
from .options import NovaOptions
from .signing import ChainedSigV4AuthScheme
from .transport import BedrockTransport

log = logging.getLogger(__name__)


class BedrockStream:
    """Send event JSON bytes, receive event JSON bytes; errors become ``ProviderError``."""

    def __init__(
        self,
        client: AsyncBedrockRuntimeClient,
        stream: Any,
        options: NovaOptions,
        transport: BedrockTransport | None = None,
    ):
        self._client = client
        self._stream = stream
        self._options = options
        self._transport = transport
        self._receiver: Any = None
        self._send_deadline: asyncio.Timeout | None = None
        self._input_closed = False
        self._closed = False

    @classmethod
    async def open(
        cls, model_id: str, options: NovaOptions, identity: AWSCredentialsIdentity
    ) -> BedrockStream:
        transport = BedrockTransport(ca_bundle=options.ca_bundle)
        config_args: dict[str, Any] = {
            "region": options.region,
            "transport": transport,
            "aws_credentials_identity_resolver": pinned_resolver(identity),
            "auth_schemes": {
                ChainedSigV4AuthScheme.scheme_id: ChainedSigV4AuthScheme(service="bedrock")
            },
        }
        if options.base_url:
            config_args["endpoint_uri"] = options.base_url
        client: AsyncBedrockRuntimeClient | None = None
        try:
            async with asyncio.timeout(options.open_timeout):
                config = await AsyncBedrockRuntimeConfig.resolve(**config_args)
                client = AsyncBedrockRuntimeClient(config)
                stream = await client.invoke_model_with_bidirectional_stream(
                    InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
                )
        except BaseException as exc:  # also cancellation: never leak the connection
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(options.close_timeout):
                        await client.close()
            await transport.end_body_writers(options.close_timeout)
            if isinstance(exc, Exception):
                raise _fail("opening the stream", exc) from exc
            raise
        return cls(client, stream, options, transport)

    async def send(self, payload: bytes) -> None:
        """Send one event (its JSON bytes); one send at a time per stream."""
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=payload)
        )
        try:
            async with asyncio.timeout(self._options.send_timeout) as deadline:
                self._send_deadline = deadline
                await self._stream.input_stream.send(chunk)
        except Exception as exc:
            raise _fail("sending", exc) from exc
        finally:
            self._send_deadline = None

    def abort_send(self) -> None:
        """Make a send in progress give up now (it raises a ``timeout`` ProviderError).

        Once Bedrock has ended a stream (RST_STREAM, a dropped connection), the SDK takes no
        more input and a send would wait for ``send_timeout``; whoever learns first that the
        stream is gone (usually the receive side) cuts it short."""
        deadline = self._send_deadline
        if deadline is not None and not deadline.expired():
            deadline.reschedule(asyncio.get_running_loop().time())

    async def accepted(self) -> None:
        """Wait (bounded) for Bedrock's response headers: a rejected request (bad signature,
        access denied, unknown model) raises here. Call after sending the opening events, since
        a server may hold its response until input arrives."""
        if self._receiver is not None:
            return
        try:
            async with asyncio.timeout(self._options.open_timeout):
                _, self._receiver = await self._stream.await_output()
        except Exception as exc:
            raise _fail("opening the stream", exc) from exc

    async def receive(self) -> bytes | None:
        """The next output event's JSON bytes, or ``None`` when Bedrock ended the stream."""
        await self.accepted()
        try:
            event = await self._receiver.receive()
        except Exception as exc:
            raise _fail("receiving", exc) from exc
        if event is None:
            return None
        value = getattr(event, "value", None)
        data = getattr(value, "bytes_", None)
        if not isinstance(data, bytes):
            log.debug("ignoring output union member %s", type(event).__name__)
            return b""
        return data

    async def close_input(self) -> None:
        """Close our side (the SDK sends the final signed empty frame); bounded, idempotent."""
        if self._input_closed:
            return
        self._input_closed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._options.close_timeout):
                await self._stream.input_stream.close()

    async def aclose(self, *, input_done: bool = False) -> None:
        """Release the connection; idempotent, bounded, never raises. ``input_done``: Bedrock
        already ended the stream, so nothing more is written to it."""
        if self._closed:
            return
        self._closed = True
        self.abort_send()
        if input_done:
            self._input_closed = True
        await self.close_input()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._options.close_timeout):
                if self._receiver is not None:
                    await self._receiver.close()
                await self._client.close()
        if self._transport is not None:
            # awscrt's body writer outlives a stream Bedrock ended: end it, never leak it.
            await self._transport.end_body_writers(self._options.close_timeout)


def _fail(doing: str, exc: BaseException) -> ProviderError:
    # The SDK wraps transport failures in OSError("Failed to write/read ..."): the cause says why.
    root = exc.__cause__ if type(exc) is OSError and exc.__cause__ is not None else exc
    error = to_provider_error(root)
    log.debug("bedrock stream failed while %s: %r", doing, exc)
    return error
