"""Loads the JSON event sequences and plays them over a raw SDK stream.

A sequence is a list of steps: an event (sent as is), ``{"$use": NAME}`` (a fragment of
``fragments.json``), ``{"$audio": {content, rate, speech, silence}}`` (audioInput events of 32 ms:
a voiced tone, then silence), or ``{"$await": "answer" | "toolUse" | "end"}`` (wait for the
model, or for the stream to end; with ``stream_silence`` the client keeps streaming silence at
real time meanwhile, as AWS's samples do with a live microphone). ``$TOOL_USE_ID`` is replaced
by the id of the last toolUse received, ``$TEXT_1025_BYTES`` by that much text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from novakit.emulator.speech import silence, tone

from .wire import RawStream

HERE = Path(__file__).parent / "sequences"
FRAGMENTS: dict[str, Any] = json.loads((HERE / "fragments.json").read_text(encoding="utf-8"))
CHUNK_SECONDS = 0.032  # the audio event size AWS recommends


def load_cases(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((HERE / name).read_text(encoding="utf-8"))["cases"]
    return cases


def expand(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        if "$use" in step:
            yield from expand(FRAGMENTS[step["$use"]])
        else:
            yield step


def audio_events(content: str, rate: int, pcm: bytes) -> Iterator[dict[str, Any]]:
    size = 2 * int(rate * CHUNK_SECONDS)
    for offset in range(0, len(pcm), size):
        chunk = base64.b64encode(pcm[offset : offset + size]).decode("ascii")
        yield {
            "event": {"audioInput": {"promptName": "p1", "contentName": content, "content": chunk}}
        }


def sent_event_names(steps: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for step in expand(steps):
        if "event" in step:
            names.update(step["event"])
        elif "$audio" in step:
            names.add("audioInput")
    return names


def answers(outputs: list[tuple[str, dict[str, Any]]]) -> int:
    """ASSISTANT turns ended so far (a FINAL text content ending with END_TURN)."""
    role = _roles(outputs)
    return sum(
        1
        for name, body in outputs
        if name == "contentEnd"
        and body["type"] == "TEXT"
        and body["stopReason"] == "END_TURN"
        and role.get(body["contentId"]) == "ASSISTANT"
    )


def _roles(outputs: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    return {b["contentId"]: b["role"] for n, b in outputs if n == "contentStart"}


def finals(outputs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The ASSISTANT FINAL texts, in order."""
    stage: dict[str, str] = {}
    role = _roles(outputs)
    for name, body in outputs:
        if name == "contentStart" and body["type"] == "TEXT":
            stage[body["contentId"]] = json.loads(body["additionalModelFields"])["generationStage"]
    return [
        body["content"]
        for name, body in outputs
        if name == "textOutput"
        and role.get(body["contentId"]) == "ASSISTANT"
        and stage.get(body["contentId"]) == "FINAL"
    ]


def _fill(value: Any, tool_use_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, tool_use_id) for k, v in value.items()}
    if value == "$TOOL_USE_ID":
        return tool_use_id
    if value == "$TEXT_1025_BYTES":
        return "x" * 1025
    return value


async def play(stream: RawStream, steps: list[dict[str, Any]], *, within: float = 15.0) -> None:
    """Send a sequence's steps in order, waiting where it says."""
    tool_use_id = ""
    answered = 0
    for step in expand(steps):
        if stream.send_failed:
            return
        if "$audio" in step:
            spec = step["$audio"]
            rate = spec["rate"]
            pcm = tone(spec["speech"], rate) + silence(spec["silence"], rate)
            for audio in audio_events(spec["content"], rate, pcm):
                await stream.send(audio)
        elif "$await" in step:
            if step["$await"] == "answer":
                ok = await _await_streaming(
                    stream,
                    lambda out, before=answered: answers(out) > before,
                    step.get("stream_silence"),
                    within,
                )
                answered = answers(stream.outputs)
            elif step["$await"] == "end":
                await stream.wait_for(lambda _: False, within)
                return
            else:
                ok = await _await_streaming(
                    stream, lambda out: any(n == "toolUse" for n, _ in out), None, within
                )
                uses = [b for n, b in stream.outputs if n == "toolUse"]
                tool_use_id = uses[-1]["toolUseId"] if uses else ""
            if not ok:
                return  # the stream ended first; the test's expectations say what that means
        else:
            await stream.send(_fill(step, tool_use_id))


async def _await_streaming(
    stream: RawStream, predicate: Any, silence_to: dict[str, Any] | None, within: float
) -> bool:
    if silence_to is None:
        return await stream.wait_for(predicate, within)

    async def microphone() -> None:
        rate = silence_to["rate"]
        (event,) = audio_events(silence_to["content"], rate, silence(CHUNK_SECONDS, rate))
        while True:
            await stream.send(event)
            await asyncio.sleep(CHUNK_SECONDS)  # a microphone's pace, not an ordering device

    task = asyncio.create_task(microphone())
    try:
        return await stream.wait_for(predicate, within)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
