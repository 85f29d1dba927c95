"""What the emulator says: small talk, tool results read out, and honest replies.

Pure text in, text out. A tool result becomes a sentence through the tool's ``say`` template
(``"The {city} shop is open {hours}."``, fields of the result and of the call's arguments) or,
without one or when a field is missing, a generic read-out of the result's fields. An error
result is an apology with the error's message. Anything the emulator cannot answer gets a reply
that says what it is and repeats what it heard, so nobody mistakes it for a language model.
"""

from __future__ import annotations

import contextlib
import json
import string
from collections.abc import Mapping
from typing import Any

from .matching import words

__all__ = [
    "EMULATOR_NAME",
    "SMALL_TALK",
    "apology",
    "honest_reply",
    "read_result",
    "small_talk",
]

EMULATOR_NAME = "the novakit emulator"
MAX_FIELDS = 6
MAX_CHARS = 300

# Phrases of the built-in conversational set (also in the recognizer's grammar) -> reply kind.
SMALL_TALK: Mapping[str, str] = {
    "hello": "greeting",
    "hi": "greeting",
    "hey": "greeting",
    "good morning": "greeting",
    "good afternoon": "greeting",
    "good evening": "greeting",
    "thank you": "thanks",
    "thanks": "thanks",
    "thank you very much": "thanks",
    "thanks a lot": "thanks",
    "goodbye": "goodbye",
    "bye": "goodbye",
    "see you": "goodbye",
    "yes": "yes",
    "yes please": "yes",
    "no": "no",
    "no thanks": "no",
    "stop": "stop",
    "repeat that": "repeat",
    "say that again": "repeat",
    "can you repeat that": "repeat",
}


def small_talk(text: str, *, last_reply: str | None, hint: str | None) -> str | None:
    """The reply to a conversational phrase, or None if ``text`` is not one."""
    kind = SMALL_TALK.get(" ".join(words(text)))
    match kind:
        case "greeting":
            offer = f' Try asking "{hint}".' if hint else ""
            return f"Hello! This is {EMULATOR_NAME}.{offer}"
        case "thanks":
            return "You are welcome."
        case "goodbye":
            return "Goodbye!"
        case "yes":
            return "Okay."
        case "no":
            return "All right."
        case "stop":
            return "Stopped."
        case "repeat":
            return last_reply or "I have not said anything yet."
    return None


def honest_reply(heard: str, *, hint: str | None) -> str:
    said = " ".join(words(heard))
    head = f"This is {EMULATOR_NAME}, not a language model."
    heard_part = f' I heard: "{said}".' if said else " I did not catch any words."
    offer = f' I can answer questions such as "{hint}".' if hint else ""
    return head + heard_part + offer


def _unwrap(content: str) -> tuple[Any, str | None]:
    """The result's value, or the error message of an error result (which may be nested)."""
    try:
        value: Any = json.loads(content)
    except ValueError:
        return content, None
    for _ in range(3):
        if isinstance(value, Mapping) and set(value) == {"error"}:
            error = value["error"]
            try:
                inner = json.loads(error) if isinstance(error, str) else error
            except ValueError:
                return None, str(error)
            if isinstance(inner, Mapping) and "error" in inner:
                value = inner
                continue
            return None, str(error)
        if isinstance(value, Mapping) and set(value) == {"result"}:
            inner = value["result"]
            if isinstance(inner, str):
                with contextlib.suppress(ValueError):
                    inner = json.loads(inner)
            value = inner
            continue
        break
    return value, None


def apology(message: str) -> str:
    return f"Sorry, that did not work: {message.rstrip('.')}."


def read_result(
    content: str,
    *,
    tool: str,
    arguments: Mapping[str, Any],
    say: str | None = None,
) -> str:
    """A sentence from a toolResult's content; see the module docstring."""
    value, error = _unwrap(content)
    if error is not None:
        return apology(error)
    if say:
        fields = {**arguments, **value} if isinstance(value, Mapping) else dict(arguments)
        if not isinstance(value, Mapping):
            fields["result"] = value
        sentence = _fill(say, fields)
        if sentence is not None:
            return sentence
    readout = _read_out(value)
    name = tool.replace("_", " ")
    return f"The {name} tool says: {readout}." if readout else f"The {name} tool had no answer."


def _fill(template: str, fields: Mapping[str, Any]) -> str | None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError:
        return None
    if any(name not in fields for name in names):
        return None
    return template.format_map({name: _spoken(fields[name]) for name in names})


def _spoken(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        items = [_spoken(v) for v in value[:MAX_FIELDS]]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if isinstance(value, Mapping):
        return _read_out(value)
    return str(value)


def _read_out(value: Any) -> str:
    if isinstance(value, Mapping):
        parts = [
            f"{str(k).replace('_', ' ')} {_spoken(v)}"
            for k, v in list(value.items())[:MAX_FIELDS]
            if v not in (None, "", [], {})
        ]
        text = ", ".join(parts)
    elif value in (None, "", []):
        text = ""
    else:
        text = _spoken(value)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3].rsplit(" ", 1)[0] + "..."
