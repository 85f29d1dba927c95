"""The raw Bedrock SDK against the emulator: no project client code in between.

``aws_sdk_bedrock_runtime`` with the awscrt transport (HTTP/2 over TLS, ALPN h2) opens the stream
and carries every event; the only local piece is a transport that trusts the emulator's CA, which
the CRT client offers no option for. The suite must not import ``novakit.s2s`` (a test checks),
so that what it proves about the emulator does not rest on the provider it is meant to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Self

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from awscrt import io as crt_io
from smithy_aws_core.identity import AWSCredentialsIdentity, StaticCredentialsResolver
from smithy_http.aio.crt import AWSCRTHTTPClient

from novakit.emulator import DEFAULT_CREDENTIALS, Emulator

BOUND = 10.0  # seconds any one await may take


class TrustingTransport(AWSCRTHTTPClient):
    """The SDK's CRT transport, trusting one extra CA (the SDK deep-copies its transport)."""

    def __init__(self, ca_path: str) -> None:
        super().__init__()
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(ca_filepath=ca_path)
        self._tls_ctx = crt_io.ClientTlsContext(options)
        self.ca_path = ca_path

    def __deepcopy__(self, memo: Any) -> Self:
        return type(self)(self.ca_path)


@dataclass
class RawStream:
    """One bidirectional stream; a background task collects output until the stream ends."""

    client: AsyncBedrockRuntimeClient
    stream: Any
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: Exception | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    send_failed: bool = False

    def start_receiving(self) -> None:
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        try:
            _, receiver = await asyncio.wait_for(self.stream.await_output(), BOUND)
            while True:
                out = await receiver.receive()
                if out is None:
                    break
                ((name, body),) = json.loads(out.value.bytes_)["event"].items()
                self.outputs.append((name, body))
                self.changed.set()
        except Exception as exc:  # the modeled exception the stream ended with
            self.error = exc
        finally:
            self.ended.set()
            self.changed.set()

    async def send(self, event: dict[str, Any]) -> None:
        """Send one event; once a send fails (the stream ended), later ones are skipped."""
        if self.send_failed:
            return
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
        )
        try:
            await asyncio.wait_for(self.stream.input_stream.send(chunk), BOUND)
        except Exception:
            self.send_failed = True

    async def wait_for(self, predicate: Any, within: float = BOUND) -> bool:
        """Until ``predicate(outputs)`` holds (True) or the stream ends without it (False)."""
        async with asyncio.timeout(within):
            while True:
                if predicate(self.outputs):
                    return True
                if self.ended.is_set():
                    return False
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stream.input_stream.close(), BOUND)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), BOUND)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), BOUND)


async def open_raw_stream(emu: Emulator, model_id: str) -> RawStream:
    config = await AsyncBedrockRuntimeConfig.resolve(
        region=emu.config.region,
        endpoint_uri=emu.endpoint,
        transport=TrustingTransport(emu.ca_path),
        aws_credentials_identity_resolver=StaticCredentialsResolver(
            AWSCredentialsIdentity(
                access_key_id=DEFAULT_CREDENTIALS.access_key_id,
                secret_access_key=DEFAULT_CREDENTIALS.secret_access_key,
            )
        ),
    )
    client = AsyncBedrockRuntimeClient(config)
    stream = await asyncio.wait_for(
        client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
        ),
        BOUND,
    )
    raw = RawStream(client, stream)
    raw.start_receiving()
    return raw
