"""Hypothesis profiles for the property-based (fuzz) tests of this package.

``NOVAKIT_FUZZ_PROFILE`` picks one:

- ``default`` (what ``make test`` runs): a bounded sample per property, so that the whole fuzz
  suite stays within seconds on a busy machine;
- ``fuzz`` (``make fuzz``): at least 100,000 cases in all, for a deliberate hunt.

No deadline in either: a busy CI machine makes single examples slow, and a slow example is not a
bug here (hangs are caught by pytest-timeout). Under CI (``CI`` set) the example database is off
and Hypothesis keeps its other files (a Unicode table cache) in the temporary directory, so
nothing is written into the checkout; locally they live in ``.hypothesis/`` (git-ignored) and the
database replays the failures it found first.

Also a bridge on loopback with the test secret and no model behind it: enough for the checks
that happen before a session is touched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from novakit.bridge.app import Bridge, serving
from novakit.bridge.connections import Unsigned
from novakit.bridge.settings import BridgeSettings

from ..gateway_auth import GATEWAY_SECRET

if os.environ.get("CI"):
    # Hypothesis reads this when it first writes a file, after this module is imported.
    os.environ.setdefault(
        "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "novakit-hypothesis")
    )

#: Examples per property under ``fuzz``: 17 properties, two of which exhaust small input spaces
#: (sizes around a limit) early, so the total stays above 100,000.
FUZZ_EXAMPLES_PER_PROPERTY = 7_500

_COMMON = {
    "deadline": None,
    # Generated frames are large on purpose (sizes around the 32 KB limit).
    "suppress_health_check": (HealthCheck.too_slow, HealthCheck.data_too_large),
    **({"database": None} if os.environ.get("CI") else {}),
    "print_blob": True,
}

settings.register_profile("default", max_examples=150, **_COMMON)
settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES_PER_PROPERTY, **_COMMON)
settings.load_profile(os.environ.get("NOVAKIT_FUZZ_PROFILE", "default"))


@pytest.fixture
async def bridge_url() -> AsyncIterator[str]:
    settings = BridgeSettings(
        connections_url="http://127.0.0.1:9",
        host="127.0.0.1",
        port=0,
        gateway_secrets=(GATEWAY_SECRET,),
    )
    bridge = Bridge(settings, signer=Unsigned())
    async with serving(bridge) as url:
        yield url
