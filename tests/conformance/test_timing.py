"""Bedrock generates faster than real time whether or not the client streams (AWS's barge-in
page: audio generation is faster than playback). At real-time pace, with a client that sends
nothing after its typed question, the emulator's answer must start at once and arrive faster
than it plays."""

from __future__ import annotations

import base64
import time

import pytest

from novakit.emulator import Emulator, EmulatorConfig, Script, ScriptTurn

from .sequences import answers, expand, play
from .wire import open_raw_stream

pytestmark = pytest.mark.contract

REPLY = (
    "Here is a longer answer to what you typed. It has three sentences in it. "
    "The last one ends the turn."
)
TYPED = [
    {"$use": "session_start"},
    {"$use": "prompt_start"},
    {"$use": "system_prompt"},
    {"$use": "audio_start"},
    {
        "event": {
            "contentStart": {
                "promptName": "p1",
                "contentName": "typed-1",
                "type": "TEXT",
                "interactive": True,
                "role": "USER",
                "textInputConfiguration": {"mediaType": "text/plain"},
            }
        }
    },
    {"event": {"textInput": {"promptName": "p1", "contentName": "typed-1", "content": "Hi"}}},
    {"event": {"contentEnd": {"promptName": "p1", "contentName": "typed-1"}}},
]


async def test_a_typed_answer_starts_at_once_and_arrives_faster_than_it_plays() -> None:
    config = EmulatorConfig(pace=1.0, script=Script((ScriptTurn(reply=REPLY),)))
    async with Emulator(config) as emu:
        stream = await open_raw_stream(emu, "amazon.nova-2-sonic-v1:0")
        try:
            await play(stream, TYPED)
            asked = time.monotonic()
            assert await stream.wait_for(lambda out: any(n == "audioOutput" for n, _ in out))
            first_audio = time.monotonic() - asked
            assert await stream.wait_for(lambda out: answers(out) == 1)
            whole = time.monotonic() - asked
            await play(stream, [{"$use": "closing"}])
        finally:
            await stream.close()
    pcm = b"".join(base64.b64decode(b["content"]) for n, b in stream.outputs if n == "audioOutput")
    audio_seconds = len(pcm) / 2 / 24000
    print(f"first audio {first_audio:.3f} s; {audio_seconds:.2f} s of audio in {whole:.3f} s")
    # The engine's response latency is 0.2 s; before the fix no audio came at all until the
    # client sent more audio (1.17 s behind the provider's keep-alive).
    assert first_audio < 1.0
    assert audio_seconds > 3.0
    assert whole < audio_seconds / 2  # generated at 4x real time; half leaves room for load
    assert stream.error is None


def test_the_timing_sequence_uses_only_documented_fragments() -> None:
    assert [next(iter(s["event"])) for s in expand(TYPED) if "event" in s] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "contentEnd",
        "contentStart",
        "contentStart",
        "textInput",
        "contentEnd",
    ]
