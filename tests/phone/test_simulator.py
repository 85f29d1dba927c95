"""The Twilio simulator (``novakit.call.TwilioCaller``) against the bridge's codec, without
sockets: documented shapes both ways, 20 ms playback, marks echoed when played, clear honoured."""

from __future__ import annotations

import json

from novakit.audio import speech_like
from novakit.bridge.protocol import ClientAudio, ClientEnd, ClientStart, ClientText
from novakit.bridge.twilio import MarkPlayed, TwilioInbound, TwilioOutbound, parse_twilio_message
from novakit.call import FRAME_BYTES, TwilioCaller
from novakit.g711 import pcm_to_ulaw, ulaw_to_pcm


def test_the_callers_messages_are_what_the_codec_reads() -> None:
    caller = TwilioCaller(parameters={"voice": "amy"})
    inbound = TwilioInbound()
    assert inbound.receive(caller.connected()) == []
    [start] = inbound.receive(caller.start())
    assert start == ClientStart(voice="amy", input_sample_rate=8000, output_sample_rate=8000)
    speech = speech_like(0.06, 8000)
    chunks = [speech[i : i + 2 * FRAME_BYTES] for i in range(0, len(speech), 2 * FRAME_BYTES)]
    audio = [inbound.receive(caller.media(chunk))[0] for chunk in chunks]
    assert [a.seq for a in audio if isinstance(a, ClientAudio)] == [1, 2, 3]
    assert b"".join(a.pcm for a in audio if isinstance(a, ClientAudio)) == ulaw_to_pcm(
        pcm_to_ulaw(speech)
    )
    timestamps = [json.loads(caller.media(bytes(320)))["media"]["timestamp"] for _ in range(2)]
    assert timestamps == ["60", "80"]  # 20 ms per message, as Twilio numbers them
    assert inbound.receive(caller.dtmf("5")) == [
        ClientText("The caller pressed 5 on the phone keypad.")
    ]
    assert inbound.receive(caller.stop()) == [ClientEnd()]
    numbers = [int(json.loads(m)["sequenceNumber"]) for m in (caller.dtmf("1"), caller.stop())]
    assert numbers[1] == numbers[0] + 1


def started_codec(caller: TwilioCaller) -> TwilioInbound:
    """The bridge's side of the caller's stream, past its start."""
    inbound = TwilioInbound()
    inbound.receive(caller.start())
    return inbound


def test_audio_plays_in_20_ms_steps_and_marks_come_back_once_played() -> None:
    caller = TwilioCaller()
    inbound = started_codec(caller)
    outbound = TwilioOutbound(batch_ms=100)
    outbound.bind(caller.stream_sid)
    answer = speech_like(0.3, 8000)
    for message in outbound.audio(answer, 0.0):
        assert caller.receive(message) == []  # audio queued first: no mark is due yet
    assert caller.media_received == 3
    _, echoes = caller.play()  # 20 ms of the first 100 ms batch
    assert echoes == [] and len(caller.heard) == 2 * FRAME_BYTES
    ticks = 1
    while caller.playing:
        _, echoes = caller.play()
        ticks += 1
        for echo in echoes:
            [played] = inbound.receive(echo)
            assert isinstance(played, MarkPlayed)
            outbound.mark_played(played.name)
            assert outbound.heard_ms == ticks * 20  # a mark returns when its audio has played
    assert ticks == 15
    assert bytes(caller.heard) == ulaw_to_pcm(pcm_to_ulaw(answer))
    assert caller.marks_echoed == ["0:100", "0:200", "0:300"]
    assert caller.errors == []


def test_clear_drops_the_queue_and_returns_its_marks_which_do_not_count_as_heard() -> None:
    caller = TwilioCaller()
    outbound = TwilioOutbound(batch_ms=100)
    outbound.bind(caller.stream_sid)
    for message in outbound.audio(speech_like(0.5, 8000), 0.0):
        caller.receive(message)
    for _ in range(6):  # 120 ms played: the first mark is back
        for echo in caller.play()[1]:
            outbound.mark_played(json.loads(echo)["mark"]["name"])
    assert outbound.heard_ms == 100
    [clear] = outbound.barge_in(0.2)
    echoes = caller.receive(clear)
    assert [json.loads(e)["mark"]["name"] for e in echoes] == ["0:200", "0:300", "0:400", "0:500"]
    for echo in echoes:
        outbound.mark_played(json.loads(echo)["mark"]["name"])
    assert outbound.interrupted == (100, 500)
    assert not caller.playing and caller.clears == 1
    assert len(caller.heard) == 6 * 2 * FRAME_BYTES  # nothing more is played after the clear
    assert caller.play() == (b"", [])


def test_a_mark_with_nothing_before_it_comes_back_at_once() -> None:
    caller = TwilioCaller()
    mark = json.dumps({"event": "mark", "streamSid": caller.stream_sid, "mark": {"name": "x"}})
    [echo] = caller.receive(mark)
    assert json.loads(echo)["mark"] == {"name": "x"}
    assert parse_twilio_message(echo).EVENT == "mark"


def test_what_twilio_would_refuse_is_noted() -> None:
    caller = TwilioCaller()
    caller.receive(json.dumps({"type": "audio", "seq": 0, "data": ""}))  # a v1 frame
    caller.receive(json.dumps({"event": "media", "streamSid": "MZother", "media": {}}))
    caller.receive(json.dumps({"event": "media", "streamSid": caller.stream_sid, "media": {}}))
    assert len(caller.errors) == 3
