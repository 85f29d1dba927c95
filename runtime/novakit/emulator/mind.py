"""The emulator's deterministic "mind": hearing, answering and speaking, offline.

``Mind`` puts the small modules together for the conversation engine: ``recognition`` (audio to
words), ``matching`` (words to a tool call), ``answers`` (what to say) and ``synthesis`` (text to
speech). It is built once when the emulator starts, from the tools' ``tool.json`` files, and
shared by every stream; what one conversation must remember (the last reply, for "repeat that")
lives in the engine.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..voice.resample import Resampler
from .answers import SMALL_TALK, honest_reply, read_result, small_talk
from .matching import Matcher, ToolExamples, words
from .recognition import INPUT_RATE, Heard, Listening, Recognizer
from .synthesis import Synthesizer

__all__ = ["Hearing", "Mind", "Response"]


@dataclass(frozen=True)
class Response:
    """A reply to speak, or a tool to call first (then ``Mind.answer_tool`` gives the reply)."""

    reply: str = ""
    tool: str | None = None
    arguments: dict[str, Any] | None = None


class Hearing:
    """An utterance the mind hears as it is spoken: ``recognition.Listening`` with its CPU time
    counted and its words told."""

    def __init__(self, mind: Mind, listening: Listening | None, rate: int = INPUT_RATE) -> None:
        self._mind = mind
        self._listening = listening
        # Nova takes 8, 16 or 24 kHz; the recognizer's model is 16 kHz: others are converted.
        self._resampler = Resampler(rate, INPUT_RATE) if rate != INPUT_RATE else None

    def feed(self, pcm: bytes) -> None:
        if self._listening is not None:
            with self._mind.cpu():
                if self._resampler is not None:
                    pcm = self._resampler.process(pcm)
                self._listening.feed(pcm)

    def settle(self) -> None:
        """Decode what came so far (the speaker paused)."""
        if self._listening is not None:
            with self._mind.cpu():
                self._listening.settle()

    def complete(self) -> bool:
        """Whether the words so far are a whole phrase (a question the mind can answer)."""
        if self._listening is None:
            return False
        with self._mind.cpu():
            return self._listening.complete()

    def finish(self) -> Heard:
        heard = Heard("", "")
        if self._listening is not None:
            with self._mind.cpu():
                if self._resampler is not None:
                    self._listening.feed(self._resampler.flush())
                heard = self._listening.finish()
        self._mind._heard(heard)
        return heard

    def cancel(self) -> None:
        if self._listening is not None:
            self._listening.cancel()


class Mind:
    def __init__(
        self,
        tools: Sequence[ToolExamples] = (),
        *,
        listen: bool = True,
        fallback: bool = True,
        words_per_minute: int | None = None,
    ) -> None:
        self.matcher = Matcher(tools)
        self.synthesizer = (
            Synthesizer(words_per_minute=words_per_minute) if words_per_minute else Synthesizer()
        )
        self.recognizer = (
            Recognizer(
                self.matcher.vocabulary(),
                SMALL_TALK,
                fallback=fallback,
                pronounce=self.synthesizer.pronounce,
            )
            if listen
            else None
        )
        self.cpu_seconds = 0.0  # spent hearing and speaking (this thread), for the benchmark
        # Told each turn in words ("heard: ...", "tool call: ..."): novakit dev prints them.
        self.narrate: Callable[[str], None] | None = None

    @classmethod
    def from_tools_dir(cls, root: Path | None, **options: Any) -> Mind:
        """A mind that knows the examples of the tools under ``root`` (none if it is None)."""
        from ..tools.manifest import discover_tools

        specs = discover_tools(root) if root is not None else []
        return cls([ToolExamples.from_spec(spec) for spec in specs], **options)

    @property
    def hint(self) -> str | None:
        """An example question, its slots filled with a first value (for greetings)."""
        for example in self.matcher.examples:
            said: list[str] = []
            for part in example.parts:
                if isinstance(part, str):
                    said.append(part)
                elif part.values:
                    said.append(next(iter(part.values)))
                else:
                    break
            else:
                return " ".join(said)
        return None

    def hear(self, pcm: bytes, rate: int = INPUT_RATE) -> Heard:
        """The words of a recorded utterance (PCM16 at ``rate``), heard as the same audio live
        would be."""
        hearing = self.listen(rate)
        hearing.feed(pcm)
        return hearing.finish()

    def _heard(self, heard: Heard) -> None:
        self._tell(f"heard       {heard.text or '(no words)'}  ({heard.by or 'nothing'})")

    def listen(self, rate: int = INPUT_RATE) -> Hearing:
        """Ears on an utterance as it is spoken (see ``recognition.Listening``), in PCM16 at
        ``rate``."""
        listening = self.recognizer.listen() if self.recognizer is not None else None
        return Hearing(self, listening, rate)

    def speak(self, text: str, rate: int, voice: str) -> bytes:
        with self.cpu():
            return self.synthesizer.speak(text, rate, voice)

    @contextlib.contextmanager
    def cpu(self) -> Iterator[None]:
        """Count the CPU time (this thread's) of what runs inside in ``cpu_seconds``."""
        started = time.thread_time()
        try:
            yield
        finally:
            self.cpu_seconds += time.thread_time() - started

    def respond(
        self, text: str, *, tools: Iterable[str] | None = None, last_reply: str | None = None
    ) -> Response:
        """What to do about ``text`` (spoken or typed): small talk, a tool call, or an honest
        reply. ``tools`` are the tools this conversation declared (all known ones if None)."""
        said = " ".join(words(text))
        reply = small_talk(said, last_reply=last_reply, hint=self.hint)
        if reply is not None:
            return Response(reply)
        found = self.matcher.match(said, tools) if said else None
        if found is not None:
            self._tell(f"tool call   {found.tool} {self.arguments_json(found.arguments)}")
            return Response(tool=found.tool, arguments=found.arguments)
        self._tell("no tool     (no example fits: an honest reply)")
        return Response(honest_reply(said, hint=self.hint))

    def answer_tool(self, tool: str, arguments: dict[str, Any], content: str) -> str:
        """The reply to a toolResult's content."""
        spec = self.matcher.tools.get(tool)
        return read_result(
            content, tool=tool, arguments=arguments, say=spec.say if spec is not None else None
        )

    def _tell(self, line: str) -> None:
        if self.narrate is not None:
            self.narrate(line)

    @staticmethod
    def arguments_json(arguments: dict[str, Any]) -> str:
        return json.dumps(arguments, separators=(",", ":"))
