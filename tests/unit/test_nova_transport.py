"""The Bedrock transport shares awscrt's resources across streams and keeps its CA on copies."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import inspect
from pathlib import Path

import pytest
import trustme
from smithy_http.aio.crt import AWSCRTHTTPClient

from novakit.s2s.nova.transport import BedrockTransport, tls_context


def test_fields_match_the_base_client() -> None:
    # The transport sets the base class's fields itself (to skip building a TLS context it
    # would replace): an SDK upgrade that adds or renames one must fail here, not at runtime.
    own = {"ca_bundle", "body_writers"}
    assert set(vars(BedrockTransport())) - own == set(vars(AWSCRTHTTPClient()))


def test_streams_share_one_bootstrap_and_tls_context() -> None:
    first, second = BedrockTransport(), BedrockTransport()
    assert first._client_bootstrap is second._client_bootstrap
    assert first._tls_ctx is second._tls_ctx
    assert first._connections is not second._connections  # each stream its own connection


def test_a_ca_bundle_has_its_own_context_and_survives_the_sdk_copy(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    transport = BedrockTransport(ca_bundle=str(bundle))
    copied = copy.deepcopy(transport)
    assert isinstance(copied, BedrockTransport)
    assert copied.ca_bundle == str(bundle)
    assert copied._tls_ctx is transport._tls_ctx is tls_context(str(bundle))
    assert copied._tls_ctx is not BedrockTransport()._tls_ctx


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(FileNotFoundError, match="missing.pem"):
        BedrockTransport(ca_bundle=str(missing))
    # Not cached: once the file exists, the same path works.
    trustme.CA().cert_pem.write_to_path(str(missing))
    assert BedrockTransport(ca_bundle=str(missing))._tls_ctx is tls_context(str(missing))


def test_the_crt_stream_is_handed_over_where_the_transport_looks_for_it() -> None:
    # smithy-http is pinned: an upgrade that renames the hook would leave writers unretrieved.
    assert inspect.iscoroutinefunction(AWSCRTHTTPClient._await_response)
    assert "_await_response" in inspect.getsource(AWSCRTHTTPClient.send)


async def test_body_writers_are_retrieved_and_ended() -> None:
    transport = BedrockTransport()
    sdk_copy = copy.deepcopy(transport)  # what the SDK uses
    assert sdk_copy.body_writers is transport.body_writers

    class Stream:
        def __init__(self, writer: asyncio.Task[None]) -> None:
            self._writer = writer

    async def fails() -> None:
        raise RuntimeError("2080 (AWS_ERROR_HTTP_STREAM_HAS_COMPLETED)")

    async def waits() -> None:
        await asyncio.Event().wait()

    failed, waiting = asyncio.create_task(fails()), asyncio.create_task(waits())
    for writer in (failed, waiting):
        with contextlib.suppress(Exception):  # the base class then reads the fake's status
            await sdk_copy._await_response(Stream(writer))
    assert transport.body_writers == [failed, waiting]
    await transport.end_body_writers(1.0)
    assert waiting.cancelled() and failed.done()
    assert transport.body_writers == []
    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        del failed, waiting
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert seen == []
