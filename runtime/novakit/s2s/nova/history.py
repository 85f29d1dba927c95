"""The conversation as the session remembers it, to be replayed to each new Bedrock stream.

Nova's history is text with roles USER and ASSISTANT only, so the log keeps:

- USER: the user's transcripts (``TRANSCRIPT``) and typed text, as given.
- ASSISTANT: FINAL assistant text only (``TEXT_OUTPUT`` with ``final=True``), which is what was
  actually spoken; speculative text never. A turn cut by barge-in keeps the FINAL text that
  arrived before the cut (possibly none): the part of the answer that was generated as speech;
  ``keep_heard()`` cuts it further to what the listener heard, when a caller knows (a phone
  plays audio seconds after it is generated).
- Tools: one ASSISTANT line per call, rendered ``[tool lookup {"topic": "x"} returned {...}]``
  (or ``... no result yet``), each at most ``TOOL_SUMMARY_LIMIT`` bytes.

``messages()`` renders the log; ``prepare_history`` (protocol.py) then merges same-role turns,
drops the oldest turns past 40 KB and a leading ASSISTANT turn. The log itself keeps at most
``keep_bytes`` of text (oldest entries go first), since only the newest 40 KB is ever sent.

Turn boundaries: ``turn_over()`` marks where an assistant turn ended (``TURN_END`` or
``INTERRUPTED``). What follows the mark is the exchange in progress; ``rewind_unanswered()``
takes its user words back out, with any partial answer, when a failed stream cut it, so that
the question can be asked again on the next stream without appearing twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Message, ToolResult
from ..events import ToolCall
from .protocol import HISTORY_LIMIT

TOOL_SUMMARY_LIMIT = 1024  # bytes of one rendered tool line


@dataclass(slots=True)
class _Said:
    role: str  # "user" | "assistant"
    text: str


@dataclass(slots=True)
class _ToolUse:
    call: ToolCall
    result: ToolResult | None = None

    @property
    def role(self) -> str:
        return "assistant"

    @property
    def text(self) -> str:
        arguments = json.dumps(self.call.arguments, ensure_ascii=False, sort_keys=True)
        if self.result is None:
            outcome = "no result yet"
        elif self.result.is_error:
            outcome = f"failed: {self.result.text()}"
        else:
            outcome = f"returned {self.result.text()}"
        return _clip(f"[tool {self.call.name} {arguments} {outcome}]", TOOL_SUMMARY_LIMIT)


class ConversationLog:
    """What was said so far, in order; see the module docstring for what is kept."""

    def __init__(self, initial: Sequence[Message] = (), keep_bytes: int = 2 * HISTORY_LIMIT):
        self._entries: list[_Said | _ToolUse] = [_Said(m.role, m.text) for m in initial]
        self._turn_start = len(self._entries)  # index after the last finished assistant turn
        self._last_turn_start = self._turn_start  # where that finished turn began
        self._keep_bytes = keep_bytes

    def user(self, text: str) -> None:
        self._add(_Said("user", text))

    def assistant(self, text: str) -> None:
        self._add(_Said("assistant", text))

    def tool_called(self, call: ToolCall) -> None:
        self._add(_ToolUse(call))

    def tool_answered(self, result: ToolResult) -> None:
        for entry in reversed(self._entries):
            if isinstance(entry, _ToolUse) and entry.call.call_id == result.call_id:
                entry.result = result
                return

    def turn_over(self) -> None:
        """An assistant turn ended (finished or cut): what follows is a new exchange."""
        self._last_turn_start = self._turn_start
        self._turn_start = len(self._entries)

    def keep_heard(self, fraction: float) -> None:
        """The listener heard only the first ``fraction`` of the last finished turn's speech
        (a phone's playback lags the model): its assistant text is cut to that share, at a word,
        with an ellipsis (tool lines stay: what a tool did happened)."""
        if fraction >= 1:
            return
        turn = range(self._last_turn_start, self._turn_start)
        said = [
            i
            for i in turn
            if isinstance(self._entries[i], _Said) and not _is_user(self._entries[i])
        ]
        budget = round(sum(len(self._entries[i].text) for i in said) * max(0.0, fraction))
        dropped: list[int] = []
        for i in said:
            text = self._entries[i].text
            if budget >= len(text):
                budget -= len(text)
                continue
            if budget > 0:
                cut = text[:budget]
                space = cut.rfind(" ")
                cut = (cut[:space] if space > 0 else cut).rstrip()
                self._entries[i] = _Said("assistant", f"{cut}…")
                budget = 0
            else:
                dropped.append(i)
        for i in reversed(dropped):
            del self._entries[i]
        self._turn_start -= len(dropped)

    def rewind_unanswered(self) -> str | None:
        """Remove the user's words since the last finished turn, and the partial answer given
        to them (tool lines stay: what a tool did happened); return those words, joined, or
        None when the user said nothing since."""
        tail = self._entries[self._turn_start :]
        question = " ".join(e.text.strip() for e in tail if _is_user(e) and e.text.strip())
        if not question:
            return None
        self._entries[self._turn_start :] = [e for e in tail if isinstance(e, _ToolUse)]
        return question

    def messages(self) -> list[Message]:
        return [Message(e.role, e.text) for e in self._entries]

    def _add(self, entry: _Said | _ToolUse) -> None:
        self._entries.append(entry)
        total = sum(len(e.text.encode()) for e in self._entries)
        while len(self._entries) > 1 and total > self._keep_bytes:
            total -= len(self._entries.pop(0).text.encode())
            self._turn_start = max(0, self._turn_start - 1)
            self._last_turn_start = max(0, self._last_turn_start - 1)


def _is_assistant_said(entry: _Said | _ToolUse) -> bool:
    return isinstance(entry, _Said) and entry.role == "assistant"


def _is_user(entry: _Said | _ToolUse) -> bool:
    return isinstance(entry, _Said) and entry.role == "user"


def _clip(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 4].decode(errors="ignore") + "…]"
