"""Which tool an utterance asks for, and with which arguments, from the tools' examples.

A tool's ``tool.json`` may list ``examples`` such as ``"when is the {city} shop open"``; each
``{slot}`` names an ``input_schema`` property. ``Matcher.match`` takes what the user said or typed
and finds the example it fits best: the example's words may come in another order, with words
before, after and between (polite openers such as "could you tell me"), and words in another
form ("opens" for "open"). A slot's value is one of its spoken values (see ``slot_values``) found
in the utterance, converted to what the schema asks for; a slot without a value list (free text)
takes the words the example does not explain. The arguments are checked against the schema, so a
match is always a valid call.

``Matcher.vocabulary`` is what the recognizer is guided by: the example phrases with the slots'
spoken values.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import slot_values

__all__ = [
    "SLOT_RE",
    "Example",
    "Match",
    "Matcher",
    "Slot",
    "ToolExamples",
    "Vocabulary",
    "edit_distance",
    "normalize",
    "words",
]

SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CONTRACTIONS = {
    "what's": "what is",
    "when's": "when is",
    "where's": "where is",
    "how's": "how is",
    "it's": "it is",
    "that's": "that is",
    "i'd": "i would",
    "i'm": "i am",
    "don't": "do not",
    "doesn't": "does not",
    "isn't": "is not",
    "what're": "what are",
}
# Words that carry little of an example's meaning: they count for less when comparing.
_LIGHT = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "be",
        "it",
        "its",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "me",
        "my",
        "you",
        "your",
        "i",
        "we",
        "us",
        "our",
        "this",
        "that",
        "there",
        "what",
        "which",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "will",
        "please",
    ]
)
# How people open or pad a request; never taken as free-text slot words.
_FILLERS = frozenset(
    [
        "could",
        "can",
        "would",
        "will",
        "you",
        "please",
        "tell",
        "me",
        "i",
        "want",
        "wanted",
        "to",
        "know",
        "like",
        "let",
        "hey",
        "hi",
        "hello",
        "so",
        "um",
        "uh",
        "okay",
        "ok",
        "well",
        "do",
        "does",
        "just",
        "kindly",
        "also",
        "then",
        "now",
    ]
)
MIN_SCORE = 0.6


def normalize(text: str) -> str:
    return " ".join(words(text))


# An initialism as written ("IT", "HR", "USA"): people say it letter by letter.
_INITIALISM_RE = re.compile(r"\b[A-Z]{2,5}\b")


def spoken_forms(text: str) -> list[str]:
    """How a value is said: its words, and, when it holds an initialism ("IT help"), also with
    the initialism's letters ("i t help"), as most speakers say it. Text in capitals throughout
    ("NEW YORK") is words, not initialisms."""
    plain = normalize(text)
    if not plain:
        return []
    if text.isupper() and len(plain.split()) > 1:
        return [plain]
    spelled = normalize(_INITIALISM_RE.sub(lambda m: " ".join(m.group()), text))
    return [plain] if spelled == plain else [plain, spelled]


def _by_spoken_form(values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``{spoken form: value}`` for ``(text, value)`` pairs; the first value said so wins."""
    out: dict[str, Any] = {}
    for text, value in values:
        for form in spoken_forms(text):
            out.setdefault(form, value)
    return out


def words(text: str) -> list[str]:
    """Lowercase words with contractions spelled out ("what's" -> "what", "is")."""
    out: list[str] = []
    for word in _WORD_RE.findall(text.lower().replace("’", "'")):
        out.extend(_CONTRACTIONS.get(word, word).split())
    return [w.removesuffix("'s") for w in out]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two sequences (of words, or of phones)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _weight(word: str) -> float:
    return 0.3 if word in _LIGHT else 1.0


@dataclass(frozen=True)
class Slot:
    """A property an example fills: its spoken values (None: free text) and its schema."""

    name: str
    schema: Mapping[str, Any]
    values: Mapping[str, Any] | None  # spoken (lowercase words) -> value for the tool

    def convert(self, spoken: str) -> Any:
        value = self.values[spoken] if self.values is not None else spoken
        kind = self.schema.get("type")
        if kind in ("integer", "number") and isinstance(value, str) and value.isdigit():
            return int(value)
        if kind == "string" and not isinstance(value, str):
            return str(value)
        return value


@dataclass(frozen=True)
class Example:
    tool: str
    text: str
    parts: tuple[str | Slot, ...]  # words and slots, in the example's order

    @property
    def literal(self) -> list[str]:
        return [p for p in self.parts if isinstance(p, str)]

    @property
    def slots(self) -> list[Slot]:
        return [p for p in self.parts if isinstance(p, Slot)]


@dataclass(frozen=True)
class ToolExamples:
    """What matching needs of one tool (read from its tool.json)."""

    name: str
    input_schema: Mapping[str, Any]
    examples: Sequence[str] = ()
    values: Mapping[str, Any] = field(default_factory=dict)  # property -> list, mapping or kit list
    say: str | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> ToolExamples:
        """From a ``novakit.tools.manifest.ToolSpec``."""
        return cls(spec.name, spec.input_schema, spec.examples, spec.values, spec.say)


@dataclass(frozen=True)
class Match:
    tool: str
    arguments: dict[str, Any]
    example: Example
    score: float


@dataclass(frozen=True)
class Vocabulary:
    """Phrases for the recognizer: words, and ``<rule>`` references to ``rules``' alternatives."""

    phrases: tuple[tuple[str, ...], ...]
    rules: Mapping[str, tuple[str, ...]]


def slot_values_for(name: str, schema: Mapping[str, Any], listed: Any) -> dict[str, Any] | None:
    """The spoken values of property ``name``, or None for free text."""
    if isinstance(listed, str):
        return dict(slot_values.kit_list(listed))
    if isinstance(listed, list):
        return _by_spoken_form((str(v), v) for v in listed)
    if isinstance(listed, Mapping):
        return _by_spoken_form((str(k), v) for k, v in listed.items())
    enum = schema.get("enum")
    if isinstance(enum, list):
        return _by_spoken_form((str(v), v) for v in enum)
    kit = slot_values.list_for_property(name)
    if kit is not None:
        return dict(slot_values.kit_list(kit))
    if schema.get("type") in ("integer", "number"):
        return dict(slot_values.kit_list("numbers"))
    return None


def compile_examples(tool: ToolExamples) -> list[Example]:
    properties: Mapping[str, Any] = tool.input_schema.get("properties", {})
    slots: dict[str, Slot] = {}
    compiled: list[Example] = []
    for text in tool.examples:
        parts: list[str | Slot] = []
        for index, piece in enumerate(SLOT_RE.split(text)):
            if index % 2:
                if piece not in slots:
                    schema = properties.get(piece, {})
                    values = slot_values_for(piece, schema, tool.values.get(piece))
                    slots[piece] = Slot(piece, schema, values)
                parts.append(slots[piece])
            else:
                parts.extend(words(piece))
        compiled.append(Example(tool.name, text, tuple(parts)))
    return compiled


def _find(sequence: Sequence[str], phrase: Sequence[str], taken: set[int]) -> int | None:
    n = len(phrase)
    for start in range(len(sequence) - n + 1):
        if all(start + i not in taken for i in range(n)) and list(
            sequence[start : start + n]
        ) == list(phrase):
            return start
    return None


class Matcher:
    """Matches utterances to tool examples; see the module docstring."""

    def __init__(self, tools: Iterable[ToolExamples], *, min_score: float = MIN_SCORE) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.examples = [e for tool in self.tools.values() for e in compile_examples(tool)]
        self.min_score = min_score
        # Longest spoken values first, so "new york city" wins over "york".
        self._ordered: dict[int, list[tuple[list[str], str]]] = {}
        for example in self.examples:
            for slot in example.slots:
                if slot.values is not None and id(slot) not in self._ordered:
                    self._ordered[id(slot)] = sorted(
                        ((k.split(), k) for k in slot.values), key=lambda p: -len(p[0])
                    )

    def match(self, text: str, tools: Iterable[str] | None = None) -> Match | None:
        """The best example ``text`` fits, among ``tools`` (all by default), or None."""
        allowed = set(self.tools) if tools is None else set(tools)
        said = words(text)
        best: Match | None = None
        for example in self.examples:
            if example.tool not in allowed:
                continue
            found = self._match_example(example, said)
            if found is None:
                continue
            if best is None or (found.score, len(example.parts)) > (
                best.score,
                len(best.example.parts),
            ):
                best = found
        return best

    def _match_example(self, example: Example, said: list[str]) -> Match | None:
        taken: set[int] = set()
        arguments: dict[str, Any] = {}
        free: list[Slot] = []
        for slot in example.slots:
            if slot.name in arguments:
                continue
            if slot.values is None:
                free.append(slot)
                continue
            for phrase, spoken in self._ordered[id(slot)]:
                start = _find(said, phrase, taken)
                if start is not None:
                    taken.update(range(start, start + len(phrase)))
                    arguments[slot.name] = slot.convert(spoken)
                    break
            else:
                if slot.schema.get("type") in ("integer", "number"):
                    digits = next((i for i, w in enumerate(said) if w.isdigit()), None)
                    if digits is not None and digits not in taken:
                        taken.add(digits)
                        arguments[slot.name] = int(said[digits])
                        continue
                return None
        stems = Counter(_stem(w) for i, w in enumerate(said) if i not in taken)
        literal = example.literal
        total = sum(_weight(w) for w in literal) or 1.0
        matched = 0.0
        content_needed = any(w not in _LIGHT for w in literal)
        content_found = False
        literal_stems = set()
        for word in literal:
            stem = _stem(word)
            literal_stems.add(stem)
            if stems[stem] > 0:
                stems[stem] -= 1
                matched += _weight(word)
                content_found = content_found or word not in _LIGHT
        if content_needed and not content_found:
            return None
        score = matched / total
        if score < self.min_score:
            return None
        if free:
            rest = [
                w
                for i, w in enumerate(said)
                if i not in taken and _stem(w) not in literal_stems and w not in _FILLERS
            ]
            while rest and rest[0] in _LIGHT:
                rest.pop(0)
            while rest and rest[-1] in _LIGHT:
                rest.pop()
            if not rest:
                return None
            # One free slot takes the words left; several cannot be told apart.
            arguments[free[0].name] = " ".join(rest)
            if len(free) > 1:
                return None
        if not _valid(arguments, self.tools[example.tool].input_schema):
            return None
        return Match(example.tool, arguments, example, round(score, 3))

    def vocabulary(self) -> Vocabulary:
        rules: dict[str, tuple[str, ...]] = {}
        phrases: list[tuple[str, ...]] = []
        for example in self.examples:
            phrase: list[str] = []
            for part in example.parts:
                if isinstance(part, str):
                    phrase.append(part)
                    continue
                if part.values is None:
                    break  # free text: the language model hears it
                rule = f"{example.tool}_{part.name}"
                rules[rule] = tuple(part.values)
                phrase.append(f"<{rule}>")
            else:
                phrases.append(tuple(phrase))
        return Vocabulary(tuple(dict.fromkeys(phrases)), rules)


def _valid(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> bool:
    """The checks of JSON Schema a slot value can fail (the rest holds by construction)."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    if any(name not in arguments for name in schema.get("required", [])):
        return False
    for name, value in arguments.items():
        rules = properties.get(name, {})
        kind = rules.get("type")
        if kind == "string" and not isinstance(value, str):
            return False
        if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
        if "enum" in rules and value not in rules["enum"]:
            return False
        if isinstance(value, str):
            if len(value) < rules.get("minLength", 0):
                return False
            if "maxLength" in rules and len(value) > rules["maxLength"]:
                return False
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in rules and value < rules["minimum"]:
                return False
            if "maximum" in rules and value > rules["maximum"]:
                return False
    return True
