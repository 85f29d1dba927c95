"""A Bedrock stream holds at most its receive window of unread output, whatever the model sends.

awscrt hands response data to Python from its own thread, queued until the SDK reads it; without
flow control a model that sends faster than the session reads (a busy process, a stream being
closed while its answers still arrive) grows that queue, and the process, without bound.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import time
import weakref
from collections.abc import Container

import pytest
from awscrt.aio.http import AIOHttpClientStreamUnified

from novakit.emulator import Emulator, EmulatorConfig, Script, ScriptTurn
from novakit.emulator.speech import silence, synthesize, tone
from novakit.s2s.nova.transport import STREAM_WINDOW

from .helpers import audio_inputs, open_sdk_stream, opening

pytestmark = pytest.mark.contract

# About 40 s of speech in twelve sentences: some 2.7 MB of output events, ten windows.
SENTENCE = "This answer goes on and on, far longer than any window."
REPLY = " ".join([SENTENCE] * 12)


def crt_streams() -> dict[int, AIOHttpClientStreamUnified]:
    # gc also lists weak proxies to streams (isinstance sees through them): streams only.
    return {
        id(o): o
        for o in gc.get_objects()
        if type(o) not in weakref.ProxyTypes and isinstance(o, AIOHttpClientStreamUnified)
    }


def unread_bytes(besides: Container[int]) -> int:
    """Output received by awscrt and not read by the SDK yet, over the streams opened since
    ``besides`` (the streams that were there already) was taken."""
    return sum(
        len(chunk)
        for key, stream in crt_streams().items()
        if key not in besides
        for chunk in list(stream._received_chunks)
    )


async def settled_unread(besides: Container[int], within: float = 20.0, still: float = 0.5) -> int:
    """The unread bytes once they have stopped changing for ``still`` seconds (bounded)."""
    deadline = time.monotonic() + within
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = unread_bytes(besides)
        if now != last:
            last, since = now, time.monotonic()
        elif now > 0 and time.monotonic() - since >= still:
            return now
        await asyncio.sleep(0.02)
    raise AssertionError(f"the unread output never settled (last {last} bytes)")


async def test_a_stream_that_is_not_read_holds_one_window_then_delivers_everything() -> None:
    config = EmulatorConfig(
        pace=0, endpoint_seconds=0.3, script=Script(turns=(ScriptTurn(reply=REPLY),))
    )
    async with Emulator(config) as emu:
        earlier = crt_streams()  # other tests' streams, not collected yet (kept: ids stay)
        s = await open_sdk_stream(emu.endpoint, emu.ca_path)
        for raw in opening():
            await s.send(raw)
        # The question, then enough silence to drive the whole answer (pace 0: input is time).
        for raw in audio_inputs(tone(1.0) + silence(20.0)):
            await s.send(raw)

        held = await settled_unread(earlier)
        assert STREAM_WINDOW // 2 <= held <= STREAM_WINDOW

        # Reading reopens the window: the whole answer arrives, nothing lost.
        audio = b""
        while (item := await s.receive()) is not None:
            name, body = item
            if name == "audioOutput":
                audio += base64.b64decode(body["content"])
            if name == "usageEvent":
                break
        assert audio == synthesize(SENTENCE, 24000) * 12  # spoken a sentence at a time
        assert unread_bytes(earlier) <= STREAM_WINDOW
        await s.close()
