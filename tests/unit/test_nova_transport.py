"""The Bedrock transport shares awscrt's resources across streams and keeps its CA on copies."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import trustme
from smithy_http.aio.crt import AWSCRTHTTPClient

from novakit.s2s.nova.transport import BedrockTransport, tls_context


def test_fields_match_the_base_client() -> None:
    # The transport sets the base class's fields itself (to skip building a TLS context it
    # would replace): an SDK upgrade that adds or renames one must fail here, not at runtime.
    assert set(vars(BedrockTransport())) - {"ca_bundle"} == set(vars(AWSCRTHTTPClient()))


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
