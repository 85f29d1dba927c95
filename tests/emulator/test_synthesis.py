"""The emulator's voice: eSpeak NG from the wheel, at the session's output rate."""

from __future__ import annotations

import numpy as np
import pytest

from novakit.emulator.synthesis import ESPEAK_VOICES, Synthesizer, espeak_voice


@pytest.fixture(scope="module")
def synthesizer() -> Synthesizer:
    return Synthesizer()


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_speech_comes_at_the_output_rate_with_a_spoken_length(
    synthesizer: Synthesizer, rate: int
) -> None:
    pcm = synthesizer.speak("The Lyon shop is open today.", rate)
    seconds = len(pcm) / 2 / rate
    assert 1.0 < seconds < 3.5  # six words at 175 words a minute, plus pauses
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 500  # audible, as a VAD hears it


def test_the_same_text_is_as_long_and_longer_text_is_longer(synthesizer: Synthesizer) -> None:
    short = synthesizer.speak("Hello.", 16000)
    # eSpeak NG keeps a little state between sentences: a few milliseconds either way.
    assert abs(len(synthesizer.speak("Hello.", 16000)) - len(short)) <= 2 * 160
    assert len(synthesizer.speak("Hello, and welcome to the shop.", 16000)) > len(short) * 2


def test_female_and_male_voices_differ_and_every_nova_voice_speaks(
    synthesizer: Synthesizer,
) -> None:
    assert espeak_voice("tiffany").endswith("+f3") and espeak_voice("matthew").endswith("+m3")
    assert synthesizer.speak("Hello.", 16000, "tiffany") != synthesizer.speak(
        "Hello.", 16000, "matthew"
    )
    for voice in ESPEAK_VOICES:
        assert synthesizer.speak("Bonjour.", 8000, voice)


def test_an_unknown_voice_id_speaks_american_english() -> None:
    assert espeak_voice("nobody") == "en-us+m3"
