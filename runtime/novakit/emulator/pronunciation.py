"""Pronunciations of slot values from eSpeak NG, for the recognizer's dictionary.

Place names are where PocketSphinx's dictionary and a speaker most often disagree ("Lyon" as
"lee-on" or "lie-on"), and some are not in it at all. eSpeak NG's letter-to-sound rules give a
second opinion: its English phonemes, mapped here to the dictionary's phone set (ARPAbet), become
an alternative pronunciation of the word.
"""

from __future__ import annotations

import ctypes
import re

__all__ = ["arpabet", "espeak_phonemes"]

# eSpeak NG's English phoneme mnemonics -> ARPAbet, longest first when tokenizing.
_PHONES = {
    "aI@": "AY ER",
    "aU@": "AW ER",
    "aI3": "AY ER",
    "i@3": "IY ER",
    "A@": "AA R",
    "e@": "EH R",
    "i@": "IH R",
    "O@": "AO R",
    "o@": "AO R",
    "U@": "UH R",
    "3:": "ER",
    "@L": "AH L",
    "aI": "AY",
    "aU": "AW",
    "eI": "EY",
    "OI": "OY",
    "oU": "OW",
    "A:": "AA",
    "i:": "IY",
    "u:": "UW",
    "O:": "AO",
    "a#": "AH",
    "aa": "AE",
    "tS": "CH",
    "dZ": "JH",
    "3": "ER",
    "a": "AE",
    "A": "AA",
    "@": "AH",
    "e": "EH",
    "E": "EH",
    "i": "IY",
    "I": "IH",
    "0": "AA",
    "O": "AO",
    "U": "UH",
    "V": "AH",
    "u": "UW",
    "o": "OW",
    "T": "TH",
    "D": "DH",
    "S": "SH",
    "Z": "ZH",
    "N": "NG",
    "h": "HH",
    "j": "Y",
    "r": "R",
    "R": "R",
    "l": "L",
    "w": "W",
    "x": "K",
    **{c: c.upper() for c in "pbtdkgfvszmn"},
}
_TOKEN = re.compile("|".join(sorted(map(re.escape, _PHONES), key=len, reverse=True)) + "|.")


def arpabet(phonemes: str) -> str:
    """ARPAbet for eSpeak NG phoneme mnemonics (stress and length marks dropped)."""
    return " ".join(_PHONES[t] for t in _TOKEN.findall(phonemes) if t in _PHONES)


def espeak_phonemes(lib: ctypes.CDLL, word: str) -> str:
    """eSpeak NG's phonemes for ``word`` in the current voice (the caller holds its lock)."""
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int,
        ctypes.c_int,
    ]
    text = ctypes.c_char_p(word.encode("utf-8"))
    parts: list[str] = []
    while text.value:
        out = lib.espeak_TextToPhonemes(ctypes.byref(text), 1, 0)
        if not out:
            break
        parts.append(out.decode("utf-8", "replace"))
    return " ".join(parts)
