"""A stream that sends faster than the loop turns does not pile its events up in the session:
the session's consumer runs between them."""

from __future__ import annotations

import asyncio
import base64

from novakit import s2s

from .test_nova_session_legs import Bedrock, bedrock, engine  # noqa: F401 - the fixture

AUDIO_EVENTS = 200


async def test_the_consumer_runs_between_events_of_a_fast_stream(bedrock: Bedrock) -> None:  # noqa: F811
    async with engine().start() as session:
        stream = await bedrock.wait_for(1)
        chunk = base64.b64encode(bytes(4800)).decode()
        # Everything is there at once: every read of it returns without waiting.
        stream.say("contentStart", contentId="a1", type="AUDIO", role="ASSISTANT")
        for _ in range(AUDIO_EVENTS):
            stream.say("audioOutput", contentId="a1", content=chunk)
        waiting_at_first_audio = -1
        received = 0
        async with asyncio.timeout(5):
            async for event in session.recv():
                if event.type is s2s.EventType.AUDIO_OUTPUT:
                    if waiting_at_first_audio < 0:
                        waiting_at_first_audio = stream.output.qsize()
                    received += 1
                    if received == AUDIO_EVENTS:
                        break
        # The first event reached the consumer while the stream still held nearly all the rest.
        assert waiting_at_first_audio >= AUDIO_EVENTS - 5
