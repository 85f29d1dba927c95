"""The conformance suite: AWS's documented event shapes, sent with the raw SDK to the emulator."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.contract
