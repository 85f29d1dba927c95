"""The emulator's voice: text to speech with eSpeak NG, at the session's output rate.

eSpeak NG comes as a shared library with its voice data inside the ``espeakng-loader`` wheel (no
system package); it is driven through ctypes in synchronous mode, which hands the samples to a
callback. The library keeps global state and is not thread-safe, so one lock guards it and it
is initialised once per process. Its native rate (22050 Hz) is resampled with soxr to 8, 16 or
24 kHz. A Nova voice maps to an eSpeak NG voice of its locale and gender. The voice carries a
little state from one sentence to the next, so the same text may differ by a few milliseconds
between calls: the words, not the bytes, are what stays the same.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Mapping
from typing import Any

from ..voice import resample

__all__ = ["ESPEAK_VOICES", "Synthesizer", "espeak_voice"]

# Nova voice -> (eSpeak NG language, female).
ESPEAK_VOICES: Mapping[str, tuple[str, bool]] = {
    "matthew": ("en-us", False),
    "tiffany": ("en-us", True),
    "amy": ("en", True),
    "olivia": ("en", True),  # en-AU: eSpeak NG has no Australian English
    "lupe": ("es-419", True),
    "carlos": ("es-419", False),
    "ambre": ("fr", True),
    "florian": ("fr", False),
    "lennart": ("de", False),
    "greta": ("de", True),
    "tina": ("de", True),
    "beatrice": ("it", True),
    "lorenzo": ("it", False),
    "carolina": ("pt-br", True),
    "leo": ("pt-br", False),
    "kiara": ("en-us", True),  # en-IN/hi-IN voices: the emulator answers in English
    "arjun": ("en-us", False),
}
DEFAULT_WORDS_PER_MINUTE = 175

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE_PARAMETER = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def espeak_voice(nova_voice: str) -> str:
    """The eSpeak NG voice name for a Nova voice id (American English male if unknown)."""
    language, female = ESPEAK_VOICES.get(nova_voice.lower(), ("en-us", False))
    return f"{language}+f3" if female else f"{language}+m3"


class _Espeak:
    """The process's one eSpeak NG library handle."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG did not initialise (data at {data.decode()!r})")
        self.rate: int = rate
        self._lib = lib
        self._chunks: list[bytes] = []
        # Kept on the instance: ctypes must not free the callback while the library holds it.
        self._callback: Any = _CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice = b""

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # go on

    def phonemes(self, word: str) -> str:
        """eSpeak NG's American English phonemes for ``word`` (its ASCII mnemonics)."""
        from .pronunciation import espeak_phonemes

        with self._lock:
            self._lib.espeak_SetVoiceByName(b"en-us")
            self._voice = b"en-us"
            return espeak_phonemes(self._lib, word)

    def speak(self, text: str, voice: str, words_per_minute: int) -> bytes:
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            if voice.encode() != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValueError(f"eSpeak NG has no voice {voice!r}")
                self._voice = voice.encode()
            self._lib.espeak_SetParameter(_RATE_PARAMETER, words_per_minute, 0)
            self._chunks = []
            status = self._lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != 0:
                raise RuntimeError(f"eSpeak NG could not synthesize ({status})")
            pcm, self._chunks = b"".join(self._chunks), []
        return pcm


@functools.cache
def _engine() -> _Espeak:
    return _Espeak()


class Synthesizer:
    """``speak(text, rate, voice)``: 16-bit mono PCM of ``text`` spoken at ``rate`` Hz."""

    def __init__(self, *, words_per_minute: int = DEFAULT_WORDS_PER_MINUTE) -> None:
        self.words_per_minute = words_per_minute
        self._espeak = _engine()

    def pronounce(self, word: str) -> str:
        """ARPAbet phones of ``word`` by eSpeak NG's rules (for the recognizer's dictionary)."""
        from .pronunciation import arpabet

        return arpabet(self._espeak.phonemes(word))

    @property
    def native_rate(self) -> int:
        return self._espeak.rate

    def speak(
        self,
        text: str,
        rate: int,
        voice: str = "matthew",
        *,
        words_per_minute: int | None = None,
        espeak_voice_name: str | None = None,
    ) -> bytes:
        name = espeak_voice_name or espeak_voice(voice)
        pcm = self._espeak.speak(text, name, words_per_minute or self.words_per_minute)
        return resample(pcm, self._espeak.rate, rate, quality="MQ")
