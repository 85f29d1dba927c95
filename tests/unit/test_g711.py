"""G.711 against the reference implementation CPython's audioop shipped (deprecated, still in
3.12): every byte decodes, and every 16-bit sample encodes, exactly as it does."""

from __future__ import annotations

import array
import sys
import warnings

import pytest

from novakit import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")

EVERY_BYTE = bytes(range(256))


def every_sample() -> bytes:
    values = array.array("h", range(-32768, 32768))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def test_mu_law_matches_the_reference_both_ways() -> None:
    assert g711.ulaw_to_pcm(EVERY_BYTE) == audioop.ulaw2lin(EVERY_BYTE, 2)
    assert g711.pcm_to_ulaw(every_sample()) == audioop.lin2ulaw(every_sample(), 2)


def test_a_law_matches_the_reference_both_ways() -> None:
    assert g711.alaw_to_pcm(EVERY_BYTE) == audioop.alaw2lin(EVERY_BYTE, 2)
    assert g711.pcm_to_alaw(every_sample()) == audioop.lin2alaw(every_sample(), 2)


def test_lengths_and_a_lone_odd_byte() -> None:
    assert len(g711.ulaw_to_pcm(b"\x00\xff\x7f")) == 6
    assert g711.pcm_to_ulaw(b"\x00\x01\x02") == g711.pcm_to_ulaw(b"\x00\x01")
    assert g711.pcm_to_alaw(memoryview(b"\x10\x00")) == audioop.lin2alaw(b"\x10\x00", 2)
