"""The emulator's ears: 16 kHz speech to words with PocketSphinx.

The English acoustic model, dictionary and language model ship inside the ``pocketsphinx``
wheel: nothing is downloaded. Recognition is guided first by a JSGF grammar compiled when the
emulator starts from the tools' example phrases (slots expanded to their spoken values), the
built-in conversational phrases and polite openers, with the slot values' words also
pronounced as eSpeak NG's rules say (place names are where the dictionary and speakers disagree
most, and some are not in it), and a silence word allowed before and after a phrase (not
between its words). The grammar hears an utterance in two passes, one while it is spoken and
one, narrowed by the first, when the speaker pauses (see ``Listening``). When the grammar
finds no complete phrase,
the general English language model decodes the utterance instead (about a third of real time,
and less reliable).

A grammar always hears *some* phrase of its own, so speech outside it can be heard as the
nearest example; that limit is measured by ``python -m bench speech``.

Pure digital silence confuses the model's features (the log of zero energy), and so does the
near-silence of a synthetic voice between words, so a low, fixed pseudo-random noise (about
-50 dBFS) is added to every utterance, and every decode starts from the same
cepstral mean (``SPEECH_CEPSTRAL_MEAN``). The decoder still adapts a little from one utterance
to the next, as a live recognizer does: a new recognizer hears the same audio in the same order
the same way, but one utterance may be heard differently after others.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .matching import Vocabulary, edit_distance, words

__all__ = ["OPENERS", "Heard", "Listening", "Recognizer"]

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
PAD_SECONDS = 0.1
LANGUAGE_MODEL_SECONDS = 8.0  # of an utterance, at most, decoded by the language model
GRAMMAR_BEAM = 1e-80
GRAMMAR_WORD_BEAM = 1e-53
# How many of a slot's values the decode at a pause weighs: those whose pronunciation is
# nearest the value the first pass heard (see ``Listening``).
NEIGHBOURS = 20
# First-pass decoders at most (each holds its own acoustic model, ~37 MB, and takes ~0.25 s to
# create): utterances heard at the same time beyond them are decoded whole at the pause.
FIRST_PASSES = 4
# A word of the grammar that is silence (the model's SIL phone), heard only before and after a
# phrase: without it, the silence around a short phrase must be heard as one of its words.
SILENCE = "silence_"
_NOISE_LSB = 120  # about -50 dBFS: below any voice, above digital silence and hiss
_ALTERNATIVE = 9  # the index of an added pronunciation (the dictionary's own stop lower)
# Every utterance starts from this cepstral mean (a typical one of speech through this model),
# not from the mean the previous utterance left (which may be another stream's).
SPEECH_CEPSTRAL_MEAN = "51.6,-4.6,-6.3,24.3,-11.2,0.06,8.25,-12.05,3.81,-16.5,-0.63,1.47,-4.44"
_RULE_SAFE = re.compile(r"[^A-Za-z0-9_]")
_GRAMMAR_BYTES = 2 * round((PAD_SECONDS + 30.0) * INPUT_RATE)  # at most, heard by the grammar
_WARM_UP = bytes(INPUT_RATE)
_NOISE_PERIOD = 10 * INPUT_RATE  # half a second of digital silence


@dataclass(frozen=True)
class Heard:
    text: str
    by: str  # "grammar", "language model", or "" when nothing was heard


_QUESTION_WORDS = frozenset(["what", "when", "where", "which", "who", "how", "why"])
_AUXILIARIES = frozenset(["is", "are", "was", "were"])
_DETERMINERS = frozenset(["the", "a", "an", "my", "your", "our", "this", "that"])
# Words that end a subject ("the weather | like in ..."): prepositions and a few predicates.
_PREPOSITIONS = frozenset(["in", "on", "at", "about", "for", "of", "open", "like", "today"])


def embedded_question(phrase: Sequence[str]) -> tuple[str, ...] | None:
    """The question ``phrase`` as it is asked after "could you tell me" or "do you know": its
    verb after its subject ("what time is it in <city>" -> "what time it is in <city>", "when
    is the <city> shop open" -> "when the <city> shop is open"). None if it has no such verb
    or is not a question word's question."""
    if not phrase or phrase[0] not in _QUESTION_WORDS:
        return None
    for index in range(1, len(phrase) - 1):
        if phrase[index] not in _AUXILIARIES:
            continue
        after = phrase[index + 1]
        if after in ("it", "there"):
            end = index + 2
        elif after in _DETERMINERS:
            # The subject: the determiner, its noun and the words that name it before its
            # verb or preposition ("the <city> shop"); at most three words more.
            end = index + 2
            while end < len(phrase) and end - index <= 4 and phrase[end] not in _PREPOSITIONS:
                end += 1
            if end == len(phrase) or end == index + 2:
                return None
        else:
            return None
        return (*phrase[:index], *phrase[index + 1 : end], phrase[index], *phrase[end:])
    return None


def asked_for(phrase: Sequence[str]) -> tuple[str, ...] | None:
    """What "what is the ..." asks for, as it is asked after "tell me" or "do you know" ("what
    is the weather in <city>" -> "the weather in <city>"), or None for another kind of phrase
    (and for "what is the weather like in ...", which has no such form)."""
    if phrase[:2] != ("what", "is") or len(phrase) < 4 or "like" in phrase:
        return None
    return tuple(phrase[2:]) if phrase[2] in _DETERMINERS else None


class Recognizer:
    """``listen()`` for an utterance heard as it is spoken, ``hear(pcm)`` for a recorded one."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        phrases: Iterable[str] = (),
        *,
        fallback: bool = True,
        pronounce: Callable[[str], str] | None = None,
    ) -> None:
        from pocketsphinx import Decoder

        # Decoders of two kinds, as their searches want different settings: the grammar's (see
        # _new_grammar_decoder), and the language model's with the model's defaults (wide
        # beams there cost seconds).
        self._decoder_class = Decoder
        self._pronounced: list[tuple[str, str]] = []  # (word, phones) added to each decoder
        self._decoder = self._new_grammar_decoder()
        self._lm_decoder = Decoder(loglevel="FATAL") if fallback else None
        self._lock = threading.Lock()  # the decoders are shared by every stream
        self.fallback = fallback
        if pronounce is not None:
            self._add_pronunciations(vocabulary, pronounce)
        self._rules: dict[str, list[str]] = {}
        self.grammar, self._complete = self._compile(vocabulary, phrases)
        self._idle_first_passes: list[Any] = []  # one per utterance being heard; kept for reuse
        self._first_passes = 0  # created, idle or in use (FIRST_PASSES at most)
        if self.grammar is not None:
            self._ready(self._decoder)
            self._idle_first_passes.append(self._new_first_pass())
        if self._lm_decoder is not None:
            self._decode(self._lm_decoder, _warm_up())

    def _new_grammar_decoder(self) -> Any:
        # Wide beams (a small search, so cheap; narrow ones lose the right phrase in a long list
        # of places), and no filler words (silences, noises) between the grammar's words: with
        # them the short words of a fast phrase ("is it in") lose to silence and no phrase
        # completes.
        decoder = self._decoder_class(
            loglevel="FATAL",
            lm=None,
            fsgusefiller=False,
            beam=GRAMMAR_BEAM,
            pbeam=GRAMMAR_BEAM,
            wbeam=GRAMMAR_WORD_BEAM,
        )
        for word, phones in self._pronounced:
            decoder.add_word(word, phones, False)
        decoder.add_word(SILENCE, "SIL", False)
        return decoder

    def _new_first_pass(self) -> Any:
        self._first_passes += 1
        decoder = self._new_grammar_decoder()
        self._ready(decoder)
        return decoder

    def _ready(self, decoder: Any) -> None:
        decoder.add_jsgf_string("novakit", self.grammar)
        decoder.activate_search("novakit")
        # A decoder's first utterance sets up state that later ones reuse: do it now, so the
        # first user is heard as every later one is.
        self._decode(decoder, _warm_up())

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
                self._pronounced.append((word, phones))
            elif known != phones and decoder.lookup_word(f"{word}(2)") != phones:
                self._pronounced.append((f"{word}({_ALTERNATIVE})", phones))
        for word, phones in self._pronounced:
            decoder.add_word(word, phones, False)

    def _known(self, text: str) -> bool:
        return all(self._decoder.lookup_word(w) is not None for w in text.split())

    def _compile(
        self, vocabulary: Vocabulary, phrases: Iterable[str]
    ) -> tuple[str | None, re.Pattern[str] | None]:
        """The JSGF grammar, and a regex that accepts exactly its complete phrases.

        Phrases that end alike from their first slot on share that ending in the grammar
        ("what time is it in | what is the time in" then one ``<timezone>``): a rule referred to
        once is one copy of its values in the decoder's search, not one per phrase, which
        makes the search several times cheaper and hears the same phrases."""
        rules: dict[str, list[str]] = {}
        for name, values in vocabulary.rules.items():
            spoken = [v for v in values if v and self._known(v)]
            if spoken:
                rules[_RULE_SAFE.sub("_", name)] = spoken
        self._rules = rules
        self._body = ""
        plain: list[tuple[str, ...]] = []
        embedded: list[tuple[str, ...]] = []  # questions after an opener, in statement order
        dropped: list[str] = []
        for phrase in vocabulary.phrases:
            if not self._holds(phrase, rules):
                dropped.append(" ".join(phrase))
                continue
            plain.append(phrase)
            for asked in (embedded_question(phrase), asked_for(phrase)):
                if asked is not None and self._holds(asked, rules):
                    embedded.append(asked)
        for text in phrases:
            said = tuple(words(text))
            if said and self._known(" ".join(said)):
                plain.append(said)
        if dropped:
            log.info(
                "phrases left to the language model (words not in its dictionary): %s",
                dropped,
            )
        if not plain:
            return None, None
        openers = [o for o in OPENERS if self._known(o)]
        plain = list(dict.fromkeys([*plain, *_merged_with_openers(plain, openers)]))
        embedded = [e for e in dict.fromkeys(embedded) if e not in plain]
        opener_re = "|".join(map(re.escape, openers))
        regex = "|".join(self._regex(p, rules) for p in plain)
        pattern = f"(?:(?:{opener_re}) )?(?:{regex})"
        if embedded:
            pattern += f"|(?:{opener_re}) (?:{'|'.join(self._regex(e, rules) for e in embedded)})"
        body = " | ".join(_shared_endings(plain, embedded))
        lines = ["#JSGF V1.0;", "grammar novakit;"]
        self._body = body
        lines.append(_public_rule(body, leading_silence=True))
        lines.append(f"<opener> = {' | '.join(openers)};")
        for name, alternatives_of_rule in rules.items():
            lines.append(f"<{name}> = {' | '.join(alternatives_of_rule)};")
        return "\n".join(lines) + "\n", re.compile(f"^(?:{pattern})(?: please)?$")

    @staticmethod
    def _regex(phrase: tuple[str, ...], rules: dict[str, list[str]]) -> str:
        return " ".join(
            f"(?:{'|'.join(map(re.escape, rules[_RULE_SAFE.sub('_', t[1:-1])]))})"
            if t.startswith("<")
            else re.escape(t)
            for t in phrase
        )

    def _holds(self, phrase: tuple[str, ...], rules: dict[str, list[str]]) -> bool:
        """Whether every word and rule of ``phrase`` is known (the grammar can hold it)."""
        return all(
            _RULE_SAFE.sub("_", token[1:-1]) in rules
            if token.startswith("<")
            else self._known(token)
            for token in phrase
        )

    # -- hearing --------------------------------------------------------------

    def listen(self) -> Listening:
        """Start hearing one utterance; feed it its audio as it comes, then ``finish`` it."""
        return Listening(self)

    def hear(self, pcm: bytes) -> Heard:
        """The words of one recorded utterance (16-bit mono PCM at 16 kHz)."""
        listening = self.listen()
        listening.feed(pcm)
        return listening.finish()

    def _hear_with_grammar(self, audio: bytes, first_pass: str = "", *, ended: bool = False) -> str:
        """The grammar's phrase for ``audio``: with each slot narrowed to the values nearest
        those ``first_pass`` heard, or with the whole grammar if it heard none. ``ended``: the
        first pass heard silence after its words."""
        if self.grammar is None:
            return ""
        narrowed = self._narrowed(first_pass)
        if narrowed is None and ended and self._complete_phrase(first_pass):
            # A whole phrase without a slot ("thank you") and silence after it: the first pass
            # hears short phrases as well as a second would (better, with its typical mean).
            return first_pass
        with self._lock:
            if narrowed is None:
                return self._decode(self._decoder, audio)
            self._decoder.add_jsgf_string("narrowed", narrowed)
            self._decoder.activate_search("narrowed")
            try:
                return self._decode(self._decoder, audio)
            finally:
                self._decoder.activate_search("novakit")

    def _narrowed(self, first_pass: str) -> str | None:
        """The grammar with every slot's values cut to the ``NEIGHBOURS`` pronounced most like
        the slot value in ``first_pass`` (in any slot), or None if it holds none."""
        heard = f" {first_pass} "
        value = next(
            (
                v
                for values in self._rules.values()
                for v in sorted(values, key=len, reverse=True)
                if f" {v} " in heard
            ),
            None,
        )
        if value is None or self.grammar is None:
            return None
        # Without the silence before the phrase, which costs a third of this decode (the
        # phrase may start at every frame of it) for no word more heard on the tuning part.
        lines = []
        for line in self.grammar.splitlines():
            name = line[1 : line.find(">")] if line.startswith("<") else ""
            if name in self._rules:
                lines.append(f"<{name}> = {' | '.join(self._neighbours(name, value))};")
            elif line.startswith("public "):
                lines.append(_public_rule(self._body, leading_silence=False))
            else:
                lines.append(line)
        return "\n".join(lines) + "\n"

    @functools.lru_cache(maxsize=1024)  # noqa: B019 (one recognizer per emulator)
    def _neighbours(self, rule: str, value: str) -> tuple[str, ...]:
        """The values of ``rule`` whose phones are fewest edits from ``value``'s."""
        target = self._phones(value)
        return tuple(
            sorted(self._rules[rule], key=lambda v: edit_distance(self._phones(v), target))[
                :NEIGHBOURS
            ]
        )

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def _phones(self, text: str) -> tuple[str, ...]:
        return tuple(p for w in text.split() for p in (self._decoder.lookup_word(w) or w).split())

    def _take_first_pass(self) -> Any | None:
        """A first-pass decoder for a new utterance, or None when ``FIRST_PASSES`` are all in
        use (that utterance is then decoded whole at the pause)."""
        if self._idle_first_passes:
            decoder = self._idle_first_passes.pop()
        elif self._first_passes < FIRST_PASSES:
            decoder = self._new_first_pass()
        else:
            return None
        decoder.start_utt()
        decoder.set_cmn(SPEECH_CEPSTRAL_MEAN)
        return decoder

    def _give_back_first_pass(self, decoder: Any) -> None:
        decoder.end_utt()
        self._idle_first_passes.append(decoder)

    def _complete_phrase(self, text: str) -> bool:
        return bool(text) and self._complete is not None and bool(self._complete.match(text))

    def _hear_with_language_model(self, audio: bytes) -> Heard:
        if self._lm_decoder is None:
            return Heard("", "")
        # The language model takes about a third of real time, in the emulator's event loop:
        # it hears the start of a long utterance only, so no stream waits long for another.
        limit = round((PAD_SECONDS + LANGUAGE_MODEL_SECONDS) * INPUT_RATE) * 2
        with self._lock:
            text = self._decode(self._lm_decoder, audio[:limit])
        return Heard(text, "language model" if text else "")

    @staticmethod
    def _decode(decoder: Any, audio: bytes) -> str:
        decoder.start_utt()
        decoder.set_cmn(SPEECH_CEPSTRAL_MEAN)
        decoder.process_raw(audio, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return _words_of(hypothesis)


def _merged_with_openers(
    phrases: Sequence[tuple[str, ...]], openers: Sequence[str]
) -> list[tuple[str, ...]]:
    """Phrases that begin as an opener ends, said after it as one request: "tell me about
    <topic>" after "could you tell me" is "could you tell me about <topic>" (not "could you
    tell me tell me about ...")."""
    out: list[tuple[str, ...]] = []
    for opener in openers:
        said = tuple(opener.split())
        for phrase in phrases:
            overlap = next((k for k in range(len(said) - 1, 0, -1) if said[-k:] == phrase[:k]), 0)
            if overlap:
                out.append((*said, *phrase[overlap:]))
    return out


def _public_rule(body: str, *, leading_silence: bool) -> str:
    """The grammar's one public rule: its phrases, "please" after any, silence around them."""
    before = f"[{SILENCE}] " if leading_silence else ""
    return f"public <utterance> = {before}( {body} ) [please] [{SILENCE}];"


def _words_of(hypothesis: Any) -> str:
    """A hypothesis's words, without the silence at its edges."""
    if hypothesis is None:
        return ""
    return " ".join(words(" ".join(w for w in hypothesis.hypstr.split() if w != SILENCE)))


def _shared_endings(
    plain: Sequence[tuple[str, ...]], embedded: Sequence[tuple[str, ...]]
) -> list[str]:
    """The grammar's alternatives, phrases grouped by what they say from their first slot on:
    ``( [<opener>] ( heads ) | <opener> ( embedded heads ) ) ending``."""
    groups: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
    for phrases, index in ((plain, 0), (embedded, 1)):
        for phrase in phrases:
            slot = next((i for i, t in enumerate(phrase) if t.startswith("<")), len(phrase))
            heads = groups.setdefault(_rule_names(phrase[slot:]), ([], []))[index]
            heads.append(" ".join(phrase[:slot]))
    out: list[str] = []
    for ending, (heads, embedded_heads) in groups.items():
        said = [f"[<opener>] {_either(heads)}".strip()] if heads else []
        if embedded_heads:
            said.append(f"<opener> {_either(embedded_heads)}")
        start = said[0] if len(said) == 1 else f"( {' | '.join(said)} )"
        out.append(" ".join((start, *ending)))
    return out


def _rule_names(tokens: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"<{_RULE_SAFE.sub('_', t[1:-1])}>" if t.startswith("<") else t for t in tokens)


def _either(heads: Sequence[str]) -> str:
    """JSGF for one of ``heads`` (an empty head makes the choice optional)."""
    said = list(dict.fromkeys(h for h in heads if h))
    if not said:
        return ""
    if "" in heads:
        return f"[ {' | '.join(said)} ]"
    return said[0] if len(said) == 1 else f"( {' | '.join(said)} )"


def _warm_up() -> bytes:
    """A decoder's first utterance: half a second of digital silence."""
    return bytes(INPUT_RATE)


@functools.cache
def _noise_samples() -> Any:
    return np.random.default_rng(0).integers(-_NOISE_LSB, _NOISE_LSB + 1, _NOISE_PERIOD)


def _noise_floor(start: int, count: int) -> Any:
    """The noise floor's samples ``start`` to ``start + count`` of an utterance (the same ones
    whether the utterance comes at once or frame by frame)."""
    noise = _noise_samples()
    index = np.arange(start, start + count) % _NOISE_PERIOD
    return noise[index]


class Listening:
    """One utterance, fed as it is spoken, heard in two passes.

    The grammar's words come from a decode of the whole utterance so far, normalized by its own
    cepstral mean (a fixed or running mean, frame by frame, hears synthetic and unusual voices
    far worse: 66 % of slot values right against 78 %, in an earlier measure). That decode
    waits for the speaker's pause, so it must be quick: a *first pass* searches the whole
    grammar frame by frame while the audio comes (with the fixed typical mean), and at the
    pause ``settle`` decodes the utterance whole with each slot cut to the values pronounced
    most like the one the first pass heard (``NEIGHBOURS``): about half the work of the whole
    grammar, for the same accuracy on the benchmark's tuning part. When the first pass
    heard a whole phrase without a slot followed by silence ("thank you"), its words are
    taken as they are; when it heard neither, the whole grammar decodes the utterance. The
    words are kept until more audio comes.
    ``complete`` says whether they are a whole phrase of the grammar (the turn can end
    without the endpointing pause). The language model hears the utterance only at the end,
    and only when the grammar found no complete phrase."""

    def __init__(self, recognizer: Recognizer) -> None:
        self._recognizer = recognizer
        self._audio = bytearray()
        self._odd = b""
        self._samples = 0
        self._settled: tuple[int, str] | None = None  # (samples decoded, words)
        self.done = False
        self._first_pass = recognizer._take_first_pass() if recognizer.grammar is not None else None
        # The grammar search needs some silence before the first word: an utterance cut close
        # gets it. (Added after the last word, a pause tends to be heard as "please".)
        self._append(np.zeros(round(PAD_SECONDS * INPUT_RATE), dtype="<i2"))

    def feed(self, pcm: bytes) -> None:
        """The next audio of the utterance (16-bit mono PCM at 16 kHz)."""
        if self.done:
            return
        data = self._odd + pcm
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        if whole:
            self._append(np.frombuffer(data[:whole], dtype="<i2"))

    def _append(self, samples: Any) -> None:
        if len(self._audio) >= _GRAMMAR_BYTES:
            return
        noise = _noise_floor(self._samples, samples.size)
        audio = np.clip(samples.astype(np.int32) + noise, -32768, 32767).astype("<i2").tobytes()
        audio = audio[: _GRAMMAR_BYTES - len(self._audio)]
        self._audio += audio
        self._samples += samples.size
        if self._first_pass is not None and audio:
            self._first_pass.process_raw(audio)

    def settle(self) -> str:
        """The grammar's words for the audio so far (decoded once for the same audio)."""
        if self._settled is None or self._settled[0] != self._samples:
            first = self._first_pass.hyp() if self._first_pass is not None else None
            ended = first is not None and first.hypstr.rsplit(None, 1)[-1:] == [SILENCE]
            heard = self._recognizer._hear_with_grammar(
                bytes(self._audio), _words_of(first), ended=ended
            )
            self._settled = (self._samples, heard)
        return self._settled[1]

    def complete(self) -> bool:
        """Whether the words so far are a whole phrase of the grammar."""
        return self._recognizer._complete_phrase(self.settle())

    def finish(self) -> Heard:
        """The utterance's words: the grammar's phrase, else the language model's words."""
        if self.done:
            raise RuntimeError("this utterance was already heard")
        try:
            if self._samples - round(PAD_SECONDS * INPUT_RATE) < INPUT_RATE // 10:
                return Heard("", "")
            recognizer = self._recognizer
            text = self.settle()
            if recognizer._complete_phrase(text):
                return Heard(text, "grammar")
            return recognizer._hear_with_language_model(bytes(self._audio))
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Forget the utterance (its stream ended before it did)."""
        self.done = True
        if self._first_pass is not None:
            self._recognizer._give_back_first_pass(self._first_pass)
            self._first_pass = None
