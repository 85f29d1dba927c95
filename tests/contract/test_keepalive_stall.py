"""The keep-alive never cuts the caller's sentence in two.

A caller's audio can stop for a moment in the middle of a word: a network stall, a busy machine
between the client and the bridge. The keep-alive must not take that gap for a caller who went
quiet and fill it with silence: the model would hear a pause that was never said, end the
user's turn there and take the rest of the sentence for a new one. A caller whose audio stops
after silence (a muted microphone that sends nothing, a caller that only types) still gets the
keep-alive's silence after ``keepalive_after``. A caller that streams an open microphone (it
has streamed two seconds of quiet in one go) never stops sending: for it every gap is a stall,
however long, up to ``keepalive_after_stall``.

Independent check: the emulator ends an utterance on 0.4 s of silence in the audio it is sent,
as Bedrock finds turn ends in the audio itself (nova-sonic-protocol.md); both the audio the
emulator received and the turns it heard are asserted.
"""

from __future__ import annotations

import asyncio
import base64

from novakit import audio, s2s
from novakit.emulator import Emulator, Script, ScriptTurn

from .conftest import CHUNK, collect_until, streaming_silence

E = s2s.EventType
# The gap in the caller's audio: well past keepalive_after, well short of keepalive_after_speech.
STALL_SECONDS = 1.0


def received_audio(emulator: Emulator) -> bytes:
    return b"".join(
        base64.b64decode(e.body["content"])
        for e in emulator.records[0].input_events
        if e.name == "audioInput"
    )


async def send(session: s2s.Session, pcm: bytes) -> None:
    for i in range(0, len(pcm), CHUNK):
        await session.send_audio(pcm[i : i + CHUNK])


async def test_a_stall_in_the_middle_of_speech_is_not_filled_with_silence(
    emulator: Emulator, engine_for
) -> None:
    emulator.script = Script((ScriptTurn(transcript="the whole sentence", reply="Heard it."),))
    engine = engine_for(extra={"keepalive_after": 0.2, "keepalive_after_speech": 3.0})
    first, second = audio.speech_like(0.5), audio.speech_like(0.5, pitch=150.0)
    async with engine.start() as session:
        await send(session, first)
        # The caller's audio stops mid-word: the stimulus is the gap's length itself.
        await asyncio.sleep(STALL_SECONDS)
        await send(session, second)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END, within=20)
    assert [e.text for e in events if e.type is E.TRANSCRIPT] == ["the whole sentence"]
    # The two halves reached the model back to back: no silence was put between them (with
    # it, the emulator ends the first utterance after half the sentence).
    sent = received_audio(emulator)
    assert sent.startswith(first + second)


async def test_an_open_microphones_stall_longer_than_after_speech_is_not_filled(
    emulator: Emulator, engine_for
) -> None:
    """The stall is past ``keepalive_after_speech``: a caller that streamed a pause before (an
    open microphone) still gets its sentence whole, and the keep-alive's silence only after
    ``keepalive_after_stall``."""
    emulator.script = Script((ScriptTurn(transcript="the whole sentence", reply="Heard it."),))
    extra = {"keepalive_after": 0.2, "keepalive_after_speech": 0.3, "keepalive_after_stall": 5.0}
    engine = engine_for(extra=extra)
    pause = audio.silence(2.1)
    first, second = audio.speech_like(0.5), audio.speech_like(0.5, pitch=150.0)
    async with engine.start() as session:
        await send(session, pause + first)
        await asyncio.sleep(STALL_SECONDS)  # the gap's length is the stimulus
        await send(session, second)
        async with streaming_silence(session):
            events = await collect_until(session, lambda e: e.type is E.TURN_END, within=20)
    assert [e.text for e in events if e.type is E.TRANSCRIPT] == ["the whole sentence"]
    assert received_audio(emulator).startswith(pause + first + second)


async def test_a_caller_who_went_quiet_still_gets_the_keepalive(
    emulator: Emulator, engine_for
) -> None:
    """After silence (a muted microphone that then stops sending), the keep-alive takes over
    after keepalive_after, not keepalive_after_speech."""
    engine = engine_for(extra={"keepalive_after": 0.2, "keepalive_after_speech": 30.0})
    said = audio.speech_like(0.3) + audio.silence(0.3)
    async with engine.start() as session:
        await send(session, said)
        async with asyncio.timeout(20):
            # the emulator's record has no event to wait on: look at it until enough arrived
            while len(received_audio(emulator)) < len(said) + 2 * 16000 * 0.3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    sent = received_audio(emulator)
    assert sent.startswith(said)
    assert set(sent[len(said) :]) == {0}  # what followed was the keep-alive's silence
