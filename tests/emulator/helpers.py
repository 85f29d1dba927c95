"""Shared helpers for the emulator tests: Nova input events, SDK-side signing, SDK clients.

Signing here uses the SDK's own signers (aws_sdk_signers), so the emulator's verification is
checked against an independent implementation rather than against itself.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any

from aws_sdk_signers import (
    URI,
    AsyncEventSigner,
    AsyncSigV4Signer,
    AWSCredentialIdentity,
    AWSRequest,
    Field,
    Fields,
)
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from novakit.emulator.grammar import NOVA_2_SONIC, InputEvent, parse_event

try:  # the provider package is being reorganised; accept either location
    from novakit.s2s.nova.transport import BedrockTransport
except ImportError:  # pragma: no cover
    from novakit.s2s.providers.nova.transport import BedrockTransport  # type: ignore[no-redef]

PROMPT = "prompt-1"
AUDIO = "audio-1"
SYSTEM = "system-1"
EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
AUDIO_INPUT_CONFIG = {
    "mediaType": "audio/lpcm",
    "sampleRateHertz": 16000,
    "sampleSizeBits": 16,
    "channelCount": 1,
    "audioType": "SPEECH",
    "encoding": "base64",
}


# -- input events (the JSON a client sends) ----------------------------------


def event(name: str, body: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"event": {name: body or {}}}).encode()


def session_start(sensitivity: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}
    }
    if sensitivity is not None:
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": sensitivity}
    return event("sessionStart", body)


def prompt_start(
    *, rate: int = 24000, voice: str = "matthew", tools: list[dict[str, Any]] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "promptName": PROMPT,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
        "toolUseOutputConfiguration": {"mediaType": "application/json"},
    }
    if tools is not None:
        body["toolConfiguration"] = {"tools": tools}
    return event("promptStart", body)


def tool_spec(name: str = "getWeather") -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {
        "toolSpec": {
            "name": name,
            "description": "Weather for a city",
            "inputSchema": {"json": json.dumps(schema)},
        }
    }


def text_content(name: str, role: str, text: str, *, interactive: bool = False) -> list[bytes]:
    return [
        event(
            "contentStart",
            {
                "promptName": PROMPT,
                "contentName": name,
                "type": "TEXT",
                "interactive": interactive,
                "role": role,
                "textInputConfiguration": {"mediaType": "text/plain"},
            },
        ),
        event("textInput", {"promptName": PROMPT, "contentName": name, "content": text}),
        event("contentEnd", {"promptName": PROMPT, "contentName": name}),
    ]


def audio_start(name: str = AUDIO) -> bytes:
    return event(
        "contentStart",
        {
            "promptName": PROMPT,
            "contentName": name,
            "type": "AUDIO",
            "interactive": True,
            "role": "USER",
            "audioInputConfiguration": AUDIO_INPUT_CONFIG,
        },
    )


def audio_inputs(pcm: bytes, *, chunk_bytes: int = 1024, name: str = AUDIO) -> Iterator[bytes]:
    """audioInput events of ``chunk_bytes`` (1024 bytes = 512 samples = 32 ms)."""
    for offset in range(0, len(pcm), chunk_bytes):
        content = base64.b64encode(pcm[offset : offset + chunk_bytes]).decode()
        yield event("audioInput", {"promptName": PROMPT, "contentName": name, "content": content})


def content_end(name: str = AUDIO) -> bytes:
    return event("contentEnd", {"promptName": PROMPT, "contentName": name})


def tool_result(tool_use_id: str, content: str, name: str = "tool-result-1") -> list[bytes]:
    return [
        event(
            "contentStart",
            {
                "promptName": PROMPT,
                "contentName": name,
                "type": "TOOL",
                "interactive": False,
                "role": "TOOL",
                "toolResultInputConfiguration": {
                    "toolUseId": tool_use_id,
                    "type": "TEXT",
                    "textInputConfiguration": {"mediaType": "text/plain"},
                },
            },
        ),
        event("toolResult", {"promptName": PROMPT, "contentName": name, "content": content}),
        event("contentEnd", {"promptName": PROMPT, "contentName": name}),
    ]


def opening(*, sensitivity: str | None = None, rate: int = 24000) -> list[bytes]:
    """sessionStart, promptStart, a system prompt and the audio contentStart."""
    return [
        session_start(sensitivity),
        prompt_start(rate=rate),
        *text_content(SYSTEM, "SYSTEM", "You are a helpful assistant."),
        audio_start(),
    ]


def closing() -> list[bytes]:
    return [content_end(AUDIO), event("promptEnd", {"promptName": PROMPT}), event("sessionEnd")]


def parsed(raw: bytes) -> InputEvent:
    return parse_event(raw)


# -- SDK-side signing (independent of the emulator's verifier) -------------------------


async def sign_request(
    *,
    model_id: str = NOVA_2_SONIC,
    access_key: str = "AKIDEMULATOR",
    secret: str = "emulator-secret",
    region: str = "us-east-1",
    service: str = "bedrock",
    date: datetime.datetime,
    authority: str = "127.0.0.1:8443",
    token: str | None = None,
) -> tuple[str, str, list[tuple[str, str]]]:
    """A request signed by the SDK's signer, as HTTP/2 (method, :path, header fields).

    The async signer is the one the client uses: it adds X-Amz-Content-SHA256 for event streams.
    """
    host, _, port = authority.partition(":")
    path = "/model/" + model_id.replace(":", "%3A") + "/invoke-with-bidirectional-stream"
    request = AWSRequest(
        destination=URI(host=host, port=int(port), path=path, query=""),
        method="POST",
        body=None,
        fields=Fields([Field(name="Content-Type", values=[EVENT_STREAM_TYPE])]),
    )
    identity = AWSCredentialIdentity(
        access_key_id=access_key, secret_access_key=secret, session_token=token
    )
    signed = await AsyncSigV4Signer().sign(
        request=request,
        identity=identity,
        properties={
            "region": region,
            "service": service,
            "date": date.strftime("%Y%m%dT%H%M%SZ"),
        },
    )
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path + "?"),  # the CRT transport sends the empty query
    ]
    headers += [(f.name.lower(), f.as_string()) for f in signed.fields]
    return "POST", path + "?", headers


def seed_of(headers: list[tuple[str, str]]) -> str:
    authorization = dict(headers)["authorization"]
    return authorization.rsplit("Signature=", 1)[1]


class FrameSigner:
    """Signs input chunks the way the SDK's event publisher does."""

    def __init__(
        self,
        seed: str,
        *,
        access_key: str = "AKIDEMULATOR",
        secret: str = "emulator-secret",
        region: str = "us-east-1",
    ) -> None:
        self._signer = AsyncEventSigner(
            initial_signature=seed.encode(), event_encoder_cls=EventHeaderEncoder
        )
        self._identity = AWSCredentialIdentity(access_key_id=access_key, secret_access_key=secret)
        self._properties: Any = {"region": region, "service": "bedrock"}

    async def chunk(self, event_json: bytes, *, event_type: str = "chunk") -> bytes:
        inner = EventMessage(
            headers={
                ":message-type": "event",
                ":event-type": event_type,
                ":content-type": "application/json",
            },
            payload=json.dumps({"bytes": base64.b64encode(event_json).decode()}).encode(),
        )
        outer = await self._signer.sign(
            event=inner, identity=self._identity, properties=self._properties
        )
        return outer.encode()

    async def final(self) -> bytes:
        outer = await self._signer.sign_empty(
            event=EventMessage(), identity=self._identity, properties=self._properties
        )
        return outer.encode()


def decode_output(data: bytes) -> list[tuple[str, Any]]:
    """Response-body bytes as (event name or ``!exception-type``, body) pairs."""
    from novakit.emulator.eventstream import Decoder

    result: list[tuple[str, Any]] = []
    for message in Decoder().feed(data):
        payload = json.loads(message.payload)
        if message.headers[":message-type"] == "exception":
            result.append((f"!{message.headers[':exception-type']}", payload))
            continue
        ((name, body),) = json.loads(base64.b64decode(payload["bytes"]))["event"].items()
        result.append((name, body))
    return result


# -- the real SDK against a running emulator ---------------------------------------------


class SdkStream:
    """One bidirectional stream opened by the real SDK client, with bounded awaits."""

    def __init__(self, client: Any, stream: Any) -> None:
        self.client = client
        self.stream = stream
        self._receiver: Any = None
        self.sent: list[str] = []  # names of the events sent, in order

    async def send(self, raw: bytes) -> None:
        from aws_sdk_bedrock_runtime.models import (
            BidirectionalInputPayloadPart,
            InvokeModelWithBidirectionalStreamInputChunk,
        )

        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=raw)
        )
        await asyncio.wait_for(self.stream.input_stream.send(chunk), 5)
        self.sent.append(next(iter(json.loads(raw)["event"])))

    async def receiver(self) -> Any:
        if self._receiver is None:
            _, self._receiver = await asyncio.wait_for(self.stream.await_output(), 5)
        return self._receiver

    async def receive(self) -> tuple[str, dict[str, Any]] | None:
        receiver = await self.receiver()
        out = await asyncio.wait_for(receiver.receive(), 5)
        if out is None:
            return None
        ((name, body),) = json.loads(out.value.bytes_)["event"].items()
        return name, body

    async def close_input(self) -> None:
        await asyncio.wait_for(self.stream.input_stream.close(), 5)

    async def close(self) -> None:
        await asyncio.wait_for(self.client.close(), 5)


async def open_sdk_stream(
    endpoint: str,
    ca_path: str,
    *,
    access_key: str = "AKIDEMULATOR",
    secret: str = "emulator-secret",
    region: str = "us-east-1",
    model_id: str = NOVA_2_SONIC,
    client: Any = None,
) -> SdkStream:
    """Open a stream the way the project's Bedrock client does (awscrt transport, CA bundle)."""
    from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
    from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
    from aws_sdk_bedrock_runtime.models import InvokeModelWithBidirectionalStreamOperationInput
    from smithy_aws_core.identity import AWSCredentialsIdentity, StaticCredentialsResolver

    if client is None:
        config = await AsyncBedrockRuntimeConfig.resolve(
            region=region,
            endpoint_uri=endpoint,
            transport=BedrockTransport(ca_bundle=ca_path),
            aws_credentials_identity_resolver=StaticCredentialsResolver(
                AWSCredentialsIdentity(access_key_id=access_key, secret_access_key=secret)
            ),
        )
        client = AsyncBedrockRuntimeClient(config)
    stream = await asyncio.wait_for(
        client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
        ),
        5,
    )
    return SdkStream(client, stream)
