"""The emulator's ears: 16 kHz speech to words with PocketSphinx.

The English acoustic model, dictionary and language model ship inside the ``pocketsphinx``
wheel: nothing is downloaded. Recognition is guided first by a JSGF grammar compiled when the
emulator starts from the tools' example phrases (slots expanded to their spoken values), the
built-in conversational phrases and polite openers, with the slot values' words also
pronounced as eSpeak NG's rules say (place names are where the dictionary and speakers disagree
most, and some are not in it); the grammar decodes an utterance in a few
hundredths of a second. When the grammar finds no complete phrase, the general English language
model decodes the utterance instead (about a third of real time, and less reliable).

A grammar always hears *some* phrase of its own, so speech outside it can be heard as the
nearest example; that limit is measured by ``python -m bench speech``.

Pure digital silence confuses the model's features (the log of zero energy), so a low,
fixed pseudo-random noise is added to every utterance, and every decode starts from the same
cepstral mean (``SPEECH_CEPSTRAL_MEAN``). The decoder still adapts a little from one utterance
to the next, as a live recognizer does: a new recognizer hears the same audio in the same order
the same way, but one utterance may be heard differently after others.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .matching import Vocabulary, words

__all__ = ["OPENERS", "Heard", "Recognizer"]

log = logging.getLogger(__name__)

INPUT_RATE = 16000
OPENERS = (
    "could you tell me",
    "can you tell me",
    "please tell me",
    "tell me",
    "please",
    "i would like to know",
    "do you know",
)
PAD_SECONDS = 0.3
LANGUAGE_MODEL_SECONDS = 8.0  # of an utterance, at most, decoded by the language model
GRAMMAR_BEAM = 1e-80
GRAMMAR_WORD_BEAM = 1e-53
_NOISE_LSB = 10  # about -70 dBFS: below any voice, above digital silence
_ALTERNATIVE = 9  # the index of an added pronunciation (the dictionary's own stop lower)
# Every utterance starts from this cepstral mean (a typical one of speech through this model),
# not from the mean the previous utterance left (which may be another stream's).
SPEECH_CEPSTRAL_MEAN = "51.6,-4.6,-6.3,24.3,-11.2,0.06,8.25,-12.05,3.81,-16.5,-0.63,1.47,-4.44"
_RULE_SAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class Heard:
    text: str
    by: str  # "grammar", "language model", or "" when nothing was heard


class Recognizer:
    """``hear(pcm)`` for one utterance at a time (the decoder is shared, so a lock guards it)."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        phrases: Iterable[str] = (),
        *,
        fallback: bool = True,
        pronounce: Callable[[str], str] | None = None,
    ) -> None:
        from pocketsphinx import Decoder

        # Two decoders, as their searches want different settings. The grammar's: wide beams
        # (a small search, so cheap; narrow ones lose the right phrase in a long list of
        # places), and no filler words (silences, noises) between its words: with them the
        # short words of a fast phrase ("is it in") lose to silence and no phrase completes.
        # The language model's: the model's defaults (wide beams there cost seconds).
        self._decoder = Decoder(
            loglevel="FATAL",
            lm=None,
            fsgusefiller=False,
            beam=GRAMMAR_BEAM,
            pbeam=GRAMMAR_BEAM,
            wbeam=GRAMMAR_WORD_BEAM,
        )
        self._lm_decoder = Decoder(loglevel="FATAL") if fallback else None
        self._lock = threading.Lock()
        self.fallback = fallback
        if pronounce is not None:
            self._add_pronunciations(vocabulary, pronounce)
        self.grammar, self._complete = self._compile(vocabulary, phrases)
        if self.grammar is not None:
            self._decoder.add_jsgf_string("novakit", self.grammar)
            self._decoder.activate_search("novakit")
        # A decoder's first utterance sets up state that later ones reuse: do it now, so the
        # first user is heard as every later one is.
        warm_up = np.zeros(INPUT_RATE // 2, dtype="<i2").tobytes()
        for decoder in (self._decoder if self.grammar is not None else None, self._lm_decoder):
            if decoder is not None:
                self._decode(decoder, warm_up)

    # -- the grammar ----------------------------------------------------------

    def _add_pronunciations(self, vocabulary: Vocabulary, pronounce: Callable[[str], str]) -> None:
        """Slot values' words, as ``pronounce`` says them: a new word, or an alternative."""
        decoder = self._decoder
        words_of_values = {
            w for values in vocabulary.rules.values() for v in values for w in v.split()
        }
        for word in sorted(words_of_values):
            phones = pronounce(word)
            if not phones:
                continue
            known = decoder.lookup_word(word)
            if known is None:
                decoder.add_word(word, phones, False)
            elif known != phones and decoder.lookup_word(f"{word}(2)") != phones:
                decoder.add_word(f"{word}({_ALTERNATIVE})", phones, False)

    def _known(self, text: str) -> bool:
        return all(self._decoder.lookup_word(w) is not None for w in text.split())

    def _compile(
        self, vocabulary: Vocabulary, phrases: Iterable[str]
    ) -> tuple[str | None, re.Pattern[str] | None]:
        """The JSGF grammar, and a regex that accepts exactly its complete phrases."""
        rules: dict[str, list[str]] = {}
        for name, values in vocabulary.rules.items():
            spoken = [v for v in values if v and self._known(v)]
            if spoken:
                rules[_RULE_SAFE.sub("_", name)] = spoken
        alternatives: list[tuple[str, str]] = []  # (JSGF, regex)
        dropped: list[str] = []
        for phrase in vocabulary.phrases:
            jsgf_parts: list[str] = []
            regex_parts: list[str] = []
            for token in phrase:
                if token.startswith("<"):
                    rule = _RULE_SAFE.sub("_", token[1:-1])
                    if rule not in rules:
                        break
                    jsgf_parts.append(f"<{rule}>")
                    regex_parts.append(f"(?:{'|'.join(map(re.escape, rules[rule]))})")
                elif self._known(token):
                    jsgf_parts.append(token)
                    regex_parts.append(re.escape(token))
                else:
                    break
            else:
                alternatives.append((" ".join(jsgf_parts), " ".join(regex_parts)))
                continue
            dropped.append(" ".join(phrase))
        for text in phrases:
            said = " ".join(words(text))
            if said and self._known(said):
                alternatives.append((said, re.escape(said)))
        if dropped:
            log.info(
                "phrases left to the language model (words not in its dictionary): %s",
                dropped,
            )
        if not alternatives:
            return None, None
        alternatives = list(dict.fromkeys(alternatives))
        openers = [o for o in OPENERS if self._known(o)]
        lines = ["#JSGF V1.0;", "grammar novakit;"]
        body = " | ".join(a for a, _ in alternatives)
        lines.append(f"public <utterance> = [<opener>] ( {body} ) [please];")
        lines.append(f"<opener> = {' | '.join(openers)};")
        for name, alternatives_of_rule in rules.items():
            lines.append(f"<{name}> = {' | '.join(alternatives_of_rule)};")
        opener_re = "|".join(map(re.escape, openers))
        pattern = f"^(?:(?:{opener_re}) )?(?:{'|'.join(r for _, r in alternatives)})(?: please)?$"
        return "\n".join(lines) + "\n", re.compile(pattern)

    # -- hearing --------------------------------------------------------------

    def hear(self, pcm: bytes) -> Heard:
        """The words of one utterance (16-bit mono PCM at 16 kHz)."""
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if samples.size < INPUT_RATE // 10:
            return Heard("", "")
        # The grammar search needs some silence before the first word: an utterance cut close
        # gets it. (Added after the last word, a pause tends to be heard as "please".)
        pad = np.zeros(round(PAD_SECONDS * INPUT_RATE), dtype="<i2")
        samples = np.concatenate([pad, samples])
        noise = np.random.default_rng(0).integers(-_NOISE_LSB, _NOISE_LSB + 1, samples.size)
        audio = np.clip(samples.astype(np.int32) + noise, -32768, 32767).astype("<i2").tobytes()
        with self._lock:
            if self.grammar is not None:
                text = self._decode(self._decoder, audio)
                assert self._complete is not None
                if text and self._complete.match(text):
                    return Heard(text, "grammar")
            if self._lm_decoder is None:
                return Heard("", "")
            # The language model takes about a third of real time, in the emulator's event loop:
            # it hears the start of a long utterance only, so no stream waits long for another.
            limit = round((PAD_SECONDS + LANGUAGE_MODEL_SECONDS) * INPUT_RATE) * 2
            text = self._decode(self._lm_decoder, audio[:limit])
            return Heard(text, "language model" if text else "")

    @staticmethod
    def _decode(decoder: Any, audio: bytes) -> str:
        decoder.start_utt()
        decoder.set_cmn(SPEECH_CEPSTRAL_MEAN)
        decoder.process_raw(audio, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return " ".join(words(hypothesis.hypstr)) if hypothesis is not None else ""
