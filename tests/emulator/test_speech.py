"""The emulator's voice is deterministic, and its speech detector's energy is exact."""

from __future__ import annotations

import hashlib
import math
from array import array

from novakit.emulator.speech import rms, silence, synthesize, tone

# The voice of this revision: a change to the synthesizer shows here before it shows as a
# puzzling difference in a conversation test.
VOICE = "096de3b6fad0f952d3ab4bc4ddda4dd34e3e96848c420bc31c3ed12998177601"


def test_the_same_text_gives_the_same_bytes_every_time() -> None:
    text = "I heard utterance 12, it was fine."
    first = synthesize(text, 24000)
    assert hashlib.sha256(first).hexdigest() == VOICE
    synthesize("Something else entirely, at another rate.", 16000)
    assert synthesize(text, 24000) == first  # cached syllables are copied, never changed


def test_duration_follows_the_words() -> None:
    short, long = synthesize("Yes.", 16000), synthesize("Yes, certainly, tomorrow morning.", 16000)
    assert 0.3 < len(short) / 32000 < len(long) / 32000 < 3.0


def test_rms_is_the_root_mean_square() -> None:
    samples = array("h", [3000, -4000, 0, 12000])
    expected = math.sqrt((3000**2 + 4000**2 + 12000**2) / 4)
    assert rms(samples.tobytes()) == expected
    assert rms(silence(0.02)) == 0.0
    assert rms(b"") == 0.0
    assert 0.5 * 8000 < rms(tone(0.1, amplitude=8000)) < 8000  # a voiced wave, not a square
