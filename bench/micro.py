"""Microbenchmarks of the bridge's per-frame work, no sockets: what each step costs in
microseconds of one core. They are the floor under the end-to-end figures and, unlike them,
steady on a shared machine (each is the best of five repeats).

- ``parse_audio_frame``: one client audio frame (32 ms or 100 ms of PCM) from JSON to PCM;
- ``encode_audio_frame``: one 100 ms output frame (24 kHz) from PCM to JSON;
- ``sign_botocore`` / ``sign_cached``: SigV4 of one ``@connections`` post of that frame, by
  botocore's ``SigV4Auth`` (as the bridge did) and by the bridge's cached-key signer;
- ``sign_event_sdk`` / ``sign_event_chained``: signing one 32 ms audio event for Bedrock's
  stream, by the SDK's ``AsyncEventSigner`` and by the kit's ``ChainedEventSigner``;
- ``metrics_observe``: one latency observation.
"""

from __future__ import annotations

import base64
import json
import timeit
from collections.abc import Callable
from typing import Any

from aws_sdk_signers import AsyncEventSigner
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from novakit.bridge.connections import SigV4Signer
from novakit.bridge.metrics import Metrics
from novakit.bridge.protocol import encode_audio, parse_client_frame
from novakit.s2s.nova.models import NOVA_2_SONIC
from novakit.s2s.nova.protocol import NovaProtocol, StreamSettings
from novakit.s2s.nova.signing import ChainedEventSigner

from .common import save

URL = "https://abc123.execute-api.us-east-1.amazonaws.com/prod/@connections/Ab1CdE2fGh3%3D"


def _best_us(function: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def _botocore_sign(credentials: Credentials, body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=URL, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _completed(coroutine: Any) -> Any:
    """The result of a coroutine that never suspends (a signer's uncontended path)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def _event_signing() -> dict[str, Callable[[], Any]]:
    identity = AWSCredentialsIdentity(access_key_id="AKIDBENCH", secret_access_key="bench-secret")
    properties = {"region": "us-east-1", "service": "bedrock"}
    protocol = NovaProtocol(StreamSettings(model=NOVA_2_SONIC, voice="matthew", instructions=""))
    payload = protocol.audio_event(bytes(1024))
    seed = b"0" * 64
    sdk = AsyncEventSigner(initial_signature=seed, event_encoder_cls=EventHeaderEncoder)
    chained = ChainedEventSigner(initial_signature=seed)

    def sign_with(signer: Any) -> Callable[[], Any]:
        def sign() -> Any:
            event = EventMessage(headers={":event-type": "chunk"}, payload=payload)
            return _completed(signer.sign(event=event, identity=identity, properties=properties))

        return sign

    return {"sign_event_sdk_us": sign_with(sdk), "sign_event_chained_us": sign_with(chained)}


def measure() -> dict[str, float]:
    frame_32 = json.dumps(
        {"type": "audio", "seq": 1, "data": base64.b64encode(bytes(1024)).decode()}
    ).encode()
    frame_100 = json.dumps(
        {"type": "audio", "seq": 1, "data": base64.b64encode(bytes(3200)).decode()}
    ).encode()
    pcm = bytes(4800)  # 100 ms at 24 kHz
    body = encode_audio(7, pcm, 24000).encode()
    credentials = Credentials("AKIDBENCH", "bench-secret", "bench-session-token")
    signer = SigV4Signer("us-east-1", credentials)
    metrics = Metrics()
    results = {
        "parse_audio_frame_32ms_us": _best_us(lambda: parse_client_frame(frame_32), 20000),
        "parse_audio_frame_100ms_us": _best_us(lambda: parse_client_frame(frame_100), 20000),
        "encode_audio_frame_100ms_us": _best_us(lambda: encode_audio(7, pcm, 24000), 20000),
        "sign_botocore_us": _best_us(lambda: _botocore_sign(credentials, body), 2000),
        "sign_cached_us": _best_us(lambda: signer.sign("POST", URL, body), 20000),
        **{name: _best_us(sign, 5000) for name, sign in _event_signing().items()},
        "metrics_observe_us": _best_us(lambda: metrics.observe("InputLatencyMs", 1.234), 100000),
    }
    return {name: round(value, 2) for name, value in results.items()}


async def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"per_call": measure()}
    results["path"] = str(save("micro", results))
    return results
