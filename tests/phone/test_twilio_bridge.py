"""The bridge speaking Twilio on the twilio stage, in process (a stand-in model session): the
call's media reaches the model, the answer goes out as media + marks for the call's stream
through the twilio stage's @connections, and a barge-in sends clear and tells the model session
how much of the cut answer the caller heard (the echoed marks)."""

from __future__ import annotations

import base64
import json

from novakit import s2s
from novakit.audio import speech_like
from novakit.bridge.directory import MemoryDirectory
from novakit.call import TwilioCaller
from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm

from ..bridge.test_session import until
from ..bridge.test_stages import call, management, running_bridge


async def test_a_call_through_the_bridge_and_what_a_barge_in_keeps() -> None:
    caller = TwilioCaller()
    directory = MemoryDirectory()
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):

        async def send(message: str) -> None:
            assert await call(url, "/ws/message", "p=", "twilio", message.encode()) == 200

        assert await call(url, "/ws/connect", "p=", "twilio") == 200
        await send(caller.connected())
        await send(caller.start())
        spoken = speech_like(0.04, 8000)
        await send(caller.media(spoken[:320]))
        await send(caller.media(spoken[320:]))
        model = bridge.engine.session  # the stand-in model session
        await until(lambda: len([s for s in model.sent if s[0] == "audio"]) >= 1)
        heard_by_model = b"".join(pcm for kind, pcm in model.sent if kind == "audio")
        assert heard_by_model == ulaw_to_pcm(pcm_to_ulaw(spoken))  # 8 kHz PCM, unresampled

        fractions: list[float] = []
        model.keep_heard = fractions.append  # type: ignore[method-assign]
        answer = speech_like(1.0, 8000)
        model.events.put_nowait(s2s.AudioOutput(answer, 8000))
        await until(lambda: len(api.posts) >= 4)  # two 500 ms media, each with its mark
        posts = [(stage, frame) for stage, _, frame in api.posts]
        assert {stage for stage, _ in posts} == {"twilio"}
        assert [frame["event"] for _, frame in posts] == ["media", "mark", "media", "mark"]
        assert {frame["streamSid"] for _, frame in posts} == {caller.stream_sid}
        payload = b"".join(base64.b64decode(f["media"]["payload"]) for _, f in posts[::2])
        assert payload == pcm_to_ulaw(answer)
        # The caller has heard the first half when the barge-in comes.
        first_mark = posts[1][1]["mark"]["name"]
        await send(
            json.dumps(
                {"event": "mark", "streamSid": caller.stream_sid, "mark": {"name": first_mark}}
            )
        )
        model.events.put_nowait(s2s.Event.interrupted("barge_in"))
        await until(lambda: any(f["event"] == "clear" for _, _, f in api.posts))
        assert fractions == [0.5]
        # Nothing Twilio does not know was ever posted (no session, text or usage frames).
        assert {f["event"] for _, _, f in api.posts} <= {"media", "mark", "clear"}
        await send(caller.stop())
        await until(lambda: "p=" not in bridge.sessions)


async def test_the_stream_id_is_saved_at_start_and_a_takeover_keeps_answering_the_call() -> None:
    caller = TwilioCaller()
    directory = MemoryDirectory()
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            _,
            url,
        ),
    ):
        assert await call(url, "/ws/connect", "s=", "twilio") == 200
        for message in (caller.connected(), caller.start()):
            assert await call(url, "/ws/message", "s=", "twilio", message.encode()) == 200

        async def saved() -> bool:
            record = await directory.get("s=")
            return record is not None and "codec" in record.state

        await until(saved)  # before any turn: a new owner must know the stream at once
        record = await directory.get("s=")
        assert record is not None
        assert record.state["codec"] == {
            "stream_sid": caller.stream_sid,
            "call_sid": caller.call_sid,
        }

    # A task that is gone held the call; its next media lands on another task.
    gone = await directory.claim("t=", "http://127.0.0.1:9", state={**record.state, "history": []})
    assert gone is not None
    async with (
        management() as api,
        running_bridge(f"{api.url}/{{stage}}", directory) as (
            bridge,
            url,
        ),
    ):
        media = caller.media(speech_like(0.02, 8000))
        assert await call(url, "/ws/message", "t=", "twilio", media.encode()) == 200
        model = bridge.engine.session
        await until(lambda: any(kind == "audio" for kind, _ in model.sent))
        model.events.put_nowait(s2s.AudioOutput(bytes(8000), 8000))  # 500 ms of answer
        await until(lambda: len(api.posts) >= 2)
        stages = {stage for stage, _, _ in api.posts}
        sids = {frame["streamSid"] for _, _, frame in api.posts}
    assert stages == {"twilio"} and sids == {caller.stream_sid}
