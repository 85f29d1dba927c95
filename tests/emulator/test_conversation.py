"""The conversation engine, driven through the grammar as the server drives it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from novakit.emulator.conversation import (
    ConversationEngine,
    EngineSettings,
    OutputEvent,
    Script,
    ScriptCursor,
    ScriptTurn,
    ToolCall,
)
from novakit.emulator.grammar import MODELS, NOVA_2_SONIC, InputGrammar, parse_event
from novakit.emulator.speech import rms, silence, synthesize, tone

from .helpers import (
    AUDIO,
    audio_inputs,
    audio_start,
    closing,
    content_end,
    event,
    opening,
    prompt_start,
    session_start,
    text_content,
    tool_result,
    tool_spec,
)

FAST = EngineSettings(endpoint_seconds=0.3)
CONTENT_EVENTS = {"contentStart", "textOutput", "audioOutput", "toolUse", "contentEnd"}


class Driver:
    """Grammar + engine, fed the way the session layer feeds them."""

    def __init__(
        self,
        script: Script | None = None,
        settings: EngineSettings = FAST,
        seed: str = "test",
        cursor: ScriptCursor | None = None,
    ) -> None:
        model = MODELS[NOVA_2_SONIC]
        self.grammar = InputGrammar(model)
        self.engine = ConversationEngine(
            model,
            seed=seed,
            turns=cursor or ScriptCursor(script or Script()),
            settings=settings,
        )
        self.out: list[OutputEvent] = []

    def send(self, *raws: bytes) -> None:
        for raw in raws:
            self.engine.handle(self.grammar.accept(parse_event(raw)))
            self._collect()

    def audio(self, pcm: bytes, chunk_bytes: int = 1024) -> None:
        self.send(*audio_inputs(pcm, chunk_bytes=chunk_bytes))

    def advance(self, when: float) -> None:
        self.engine.advance_to(when)
        self._collect()

    def _collect(self) -> None:
        for ev in self.engine.take_output():
            if ev.name == "toolUse":
                self.grammar.expect_tool_result(ev.body["toolUseId"])
            self.out.append(ev)

    def summary(self, since: int = 0) -> list[str]:
        """Events in a compact form; runs of audioOutput collapse to ``audio*``."""
        lines: list[str] = []
        for ev in self.out[since:]:
            line = describe(ev)
            if line == "audio" and lines and lines[-1] == "audio*":
                continue
            lines.append("audio*" if line == "audio" else line)
        return lines

    def audio_bytes(self, since: int = 0) -> bytes:
        return b"".join(
            base64.b64decode(ev.body["content"])
            for ev in self.out[since:]
            if ev.name == "audioOutput"
        )


def describe(ev: OutputEvent) -> str:
    b = ev.body
    match ev.name:
        case "contentStart":
            line = f"start {b['type']} {b['role']}"
            if b["type"] == "TEXT":
                line += " " + json.loads(b["additionalModelFields"])["generationStage"]
            return line
        case "textOutput":
            return f"text {b['role']}: {b['content']}"
        case "audioOutput":
            return "audio"
        case "contentEnd":
            return f"end {b['type']} {b['stopReason']}"
        case "toolUse":
            return f"toolUse {b['toolName']} {b['content']}"
    return ev.name


def spoken_reply(text: str, stop: str = "END_TURN") -> list[str]:
    return [
        "start TEXT ASSISTANT SPECULATIVE",
        f"text ASSISTANT: {text}",
        "end TEXT PARTIAL_TURN",
        "start AUDIO ASSISTANT",
        "audio*",
        f"end AUDIO {stop}",
        "start TEXT ASSISTANT FINAL",
        f"text ASSISTANT: {text}",
        f"end TEXT {stop}",
    ]


def user_said(text: str) -> list[str]:
    return ["start TEXT USER FINAL", f"text USER: {text}", "end TEXT END_TURN"]


# -- a spoken turn ---------------------------------------------------------------------------------


def test_spoken_turn_sequence() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(3.0))
    assert d.summary() == [
        "completionStart",
        *user_said("This is utterance 1, 1.00 seconds long."),
        *spoken_reply("I heard utterance 1."),
        "usageEvent",
    ]
    # The audio is the synthesised reply at the requested rate, in ~100 ms chunks.
    assert d.audio_bytes() == synthesize("I heard utterance 1.", 24000)
    sizes = [len(base64.b64decode(e.body["content"])) for e in d.out if e.name == "audioOutput"]
    assert set(sizes[:-1]) == {4800}
    assert 0 < sizes[-1] <= 4800


def test_output_rate_follows_prompt_start() -> None:
    d = Driver()
    d.send(session_start(), prompt_start(rate=8000), audio_start())
    d.audio(tone(0.5) + silence(3.0))
    starts = [e for e in d.out if e.name == "contentStart" and e.body["type"] == "AUDIO"]
    assert starts[0].body["audioOutputConfiguration"]["sampleRateHertz"] == 8000
    assert d.audio_bytes() == synthesize("I heard utterance 1.", 8000)


def test_every_event_carries_its_ids() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(3.0))
    session_ids = {e.body["sessionId"] for e in d.out}
    completion_ids = {e.body["completionId"] for e in d.out}
    assert len(session_ids) == len(completion_ids) == 1
    assert {e.body["promptName"] for e in d.out} == {"prompt-1"}
    for ev in d.out:
        assert ("contentId" in ev.body) == (ev.name in CONTENT_EVENTS), ev.name
    # One contentId per content, shared by its start, body and end.
    starts = [e.body["contentId"] for e in d.out if e.name == "contentStart"]
    ends = [e.body["contentId"] for e in d.out if e.name == "contentEnd"]
    assert starts == ends
    assert len(set(starts)) == len(starts)


def test_scripted_transcripts_and_multi_sentence_reply() -> None:
    script = Script(
        (
            ScriptTurn(transcript="Hello there.", reply="Hi. Nice to meet you! How can I help?"),
            ScriptTurn(reply="Second reply."),
        )
    )
    d = Driver(script)
    d.send(*opening())
    d.audio(tone(1.0) + silence(6.0))
    first = len(d.out)
    first_turn = d.summary()
    d.audio(tone(0.8) + silence(3.0))
    assert first_turn == [
        "completionStart",
        *user_said("Hello there."),
        *spoken_reply("Hi.", "PARTIAL_TURN"),
        *spoken_reply("Nice to meet you!", "PARTIAL_TURN"),
        *spoken_reply("How can I help?"),
        "usageEvent",
    ]
    assert d.summary(first) == [
        *user_said("This is utterance 2, 0.80 seconds long."),
        *spoken_reply("Second reply."),
        "usageEvent",
    ]


def test_speculative_text_comes_before_audio_and_final_after() -> None:
    d = Driver(Script((ScriptTurn(reply="One. Two."),)))
    d.send(*opening())
    d.audio(tone(1.0) + silence(4.0))
    lines = d.summary()
    for sentence in ("One.", "Two."):
        spoken = [i for i, line in enumerate(lines) if line == f"text ASSISTANT: {sentence}"]
        audio_starts = [i for i, line in enumerate(lines) if line == "start AUDIO ASSISTANT"]
        assert len(spoken) == 2
        assert any(spoken[0] < a < spoken[1] for a in audio_starts)


# -- determinism and endpointing -------------------------------------------------------------------


def test_same_input_gives_the_same_output_whatever_the_chunking() -> None:
    runs = []
    for chunk_bytes in (640, 1024, 3000):
        d = Driver()
        d.send(*opening())
        d.audio(tone(1.0) + silence(3.0), chunk_bytes=chunk_bytes)
        runs.append(d.out)
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize(("sensitivity", "pause"), [("HIGH", 1.5), ("MEDIUM", 1.75), ("LOW", 2.0)])
def test_endpointing_follows_sensitivity(sensitivity: str, pause: float) -> None:
    d = Driver(settings=EngineSettings())
    d.send(*opening(sensitivity=sensitivity))
    d.audio(tone(0.5) + silence(pause - 0.04))
    assert not any(e.name == "textOutput" for e in d.out)
    d.audio(silence(0.06))
    assert d.summary()[1:4] == user_said("This is utterance 1, 0.50 seconds long.")


def test_endpoint_override_beats_sensitivity() -> None:
    d = Driver(settings=EngineSettings(endpoint_seconds=0.3))
    d.send(*opening(sensitivity="LOW"))
    d.audio(tone(0.5) + silence(0.32))
    assert "text USER: This is utterance 1, 0.50 seconds long." in d.summary()


def test_short_clicks_are_not_speech() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(0.06) + silence(1.0) + tone(0.06) + silence(1.0))
    assert d.out == []
    d.audio(tone(0.1) + silence(0.4))
    assert "text USER: This is utterance 1, 0.10 seconds long." in d.summary()


def test_closing_the_audio_ends_the_utterance() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0))
    assert d.out == []
    d.send(content_end(AUDIO))
    assert d.summary()[1:4] == user_said("This is utterance 1, 1.00 seconds long.")
    # No audio drives the clock now: the adapter advances it.
    d.advance(d.engine.clock + 5)
    assert d.summary()[-1] == "usageEvent"


# -- barge-in --------------------------------------------------------------------------------------


LONG = "This answer goes on and on for quite a long time. It even has a second sentence."


def test_barge_in_stops_the_reply() -> None:
    d = Driver(Script((ScriptTurn(reply=LONG),)))
    d.send(*opening())
    d.audio(tone(1.0) + silence(0.8))  # the reply started at 1.5 s: some audio is out
    before = d.summary()
    assert before[-1] == "audio*"
    mark = len(d.out)
    d.audio(tone(0.6) + silence(3.0))
    after = d.summary(mark)
    # Audio keeps coming for the 100 ms it takes to recognise the user's speech.
    if after[0] == "audio*":
        after = after[1:]
    assert after[:5] == [
        "end AUDIO INTERRUPTED",
        "start TEXT ASSISTANT FINAL",
        'text ASSISTANT: { "interrupted" : true }',
        "end TEXT INTERRUPTED",
        "usageEvent",
    ]
    # Nothing more of the interrupted turn; the new speech is the next turn.
    assert after[5:] == [
        *user_said("This is utterance 2, 0.60 seconds long."),
        *spoken_reply("I heard utterance 2."),
        "usageEvent",
    ]
    assert "It even has a second sentence." not in "".join(d.summary())


@pytest.mark.parametrize(
    ("mode", "audio_stop", "text_stop"),
    [("text", "PARTIAL_TURN", "END_TURN"), ("audio", "END_TURN", "PARTIAL_TURN")],
)
def test_turn_end_mode_picks_the_content_that_ends_the_turn(
    mode: str, audio_stop: str, text_stop: str
) -> None:
    d = Driver(
        Script((ScriptTurn(reply="One. Two."),)),
        EngineSettings(endpoint_seconds=0.3, turn_end=mode),
    )
    d.send(*opening())
    d.audio(tone(1.0) + silence(3.0))
    ends = [line for line in d.summary() if line.startswith("end AUDIO") or "end TEXT" in line]
    # transcript; then per sentence: speculative, audio, final
    assert ends == [
        "end TEXT END_TURN",
        "end TEXT PARTIAL_TURN",
        "end AUDIO PARTIAL_TURN",
        "end TEXT PARTIAL_TURN",
        "end TEXT PARTIAL_TURN",
        f"end AUDIO {audio_stop}",
        f"end TEXT {text_stop}",
    ]
    assert d.summary().count("completionStart") == 1
    assert "completionEnd" not in d.summary()


def test_turn_end_mode_completion_makes_each_answer_a_completion() -> None:
    d = Driver(settings=EngineSettings(endpoint_seconds=0.3, turn_end="completion"))
    d.send(*opening())
    d.audio(tone(1.0) + silence(3.0) + tone(0.5) + silence(3.0))
    lines = d.summary()
    roles = {e.body["contentId"]: e.body["role"] for e in d.out if e.name == "contentStart"}
    assistant_stops = {
        e.body["stopReason"]
        for e in d.out
        if e.name == "contentEnd" and roles[e.body["contentId"]] == "ASSISTANT"
    }
    assert assistant_stops == {"PARTIAL_TURN"}
    completions = [e for e in d.out if e.name.startswith("completion")]
    assert [(e.name, e.body.get("stopReason")) for e in completions] == [
        ("completionStart", None),
        ("completionEnd", "END_TURN"),
        ("completionStart", None),
        ("completionEnd", "END_TURN"),
    ]
    first, second = completions[0].body["completionId"], completions[2].body["completionId"]
    assert first != second
    # Each answer's events carry its own completion's id, and end before its completionEnd.
    ends = [i for i, e in enumerate(d.out) if e.name == "completionEnd"]
    assert {e.body["completionId"] for e in d.out[: ends[0]]} == {first}
    assert lines[lines.index("usageEvent") + 1] == "completionEnd"


def test_turn_end_mode_completion_ends_a_cut_answer_interrupted() -> None:
    d = Driver(
        Script((ScriptTurn(reply=LONG),)),
        EngineSettings(endpoint_seconds=0.3, turn_end="completion"),
    )
    d.send(*opening())
    d.audio(tone(1.0) + silence(0.8))
    d.audio(tone(0.6) + silence(3.0))
    stops = [e.body["stopReason"] for e in d.out if e.name == "completionEnd"]
    assert stops == ["INTERRUPTED", "END_TURN"]


def test_turn_end_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="turn_end must be one of"):
        EngineSettings(turn_end="sometimes")


def test_barge_in_during_playback_after_generation() -> None:
    d = Driver(Script((ScriptTurn(reply="Short answer here."),)))
    d.send(*opening())
    d.audio(tone(1.0) + silence(1.1))  # generated by ~1.9 s, playing until ~3.1 s
    assert d.summary()[-1] == "usageEvent"
    mark = len(d.out)
    d.audio(tone(0.5) + silence(1.0))
    assert d.summary(mark)[:3] == [
        "start TEXT ASSISTANT FINAL",
        'text ASSISTANT: { "interrupted" : true }',
        "end TEXT INTERRUPTED",
    ]


def test_speech_after_playback_is_not_a_barge_in() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(5.0))
    mark = len(d.out)
    d.audio(tone(0.5) + silence(3.0))
    assert "end TEXT INTERRUPTED" not in d.summary(mark)
    assert d.summary(mark)[:3] == user_said("This is utterance 2, 0.50 seconds long.")


def test_assistant_speaking_window() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(0.5))
    assert not d.engine.assistant_speaking
    d.audio(silence(0.1))
    assert d.engine.assistant_speaking
    d.audio(silence(3.0))
    assert not d.engine.assistant_speaking


# -- tools and typed text --------------------------------------------------------------------------


def test_tool_call_waits_for_the_result() -> None:
    script = Script(
        (
            ScriptTurn(
                transcript="What's the weather in Paris?",
                reply="It is {result} in Paris.",
                tool=ToolCall("getWeather", {"city": "Paris"}),
            ),
        )
    )
    d = Driver(script)
    d.send(session_start(), prompt_start(tools=[tool_spec()]), audio_start())
    d.audio(tone(1.0) + silence(5.0))
    assert d.summary() == [
        "completionStart",
        *user_said("What's the weather in Paris?"),
        "start TOOL TOOL",
        'toolUse getWeather {"city":"Paris"}',
        "end TOOL TOOL_USE",
    ]
    tool_use_id = next(e.body["toolUseId"] for e in d.out if e.name == "toolUse")
    mark = len(d.out)
    d.send(*tool_result(tool_use_id, "sunny and 21 degrees"))
    d.audio(silence(3.0))
    assert d.summary(mark) == [*spoken_reply("It is sunny and 21 degrees in Paris."), "usageEvent"]


def test_typed_text_is_answered_without_an_echo() -> None:
    d = Driver()
    d.send(session_start(), prompt_start(), audio_start())
    d.send(*text_content("t1", "USER", "hello", interactive=True))
    d.advance(10.0)
    assert d.summary() == ["completionStart", *spoken_reply("I read message 1."), "usageEvent"]


def test_history_is_never_answered_as_a_live_turn() -> None:
    # The chat-history page sends history with interactive true; before audio it is context.
    d = Driver()
    d.send(
        session_start(),
        prompt_start(),
        *text_content("h1", "USER", "book a table", interactive=True),
        *text_content("h2", "ASSISTANT", "for how many?", interactive=True),
        *text_content("h3", "USER", "two", interactive=True),
        audio_start(),
    )
    d.advance(10.0)
    assert d.summary() == []
    d.audio(tone(0.6) + silence(0.4))
    d.advance(d.engine.clock + 10.0)
    assert finals(d) == ["I heard utterance 1."]


def test_without_audio_driving_it_the_clock_moves_only_by_advance() -> None:
    # The session's wall-clock mode: audio feeds the ears, the wall clock moves the answer.
    d = Driver()
    d.engine.audio_drives_clock = False
    d.send(*opening())
    d.audio(tone(0.6) + silence(0.4))
    assert d.engine.clock == 0.0
    assert d.engine.audio_position == pytest.approx(1.0)
    assert d.summary()[1].startswith("start TEXT USER")  # the transcript: heard at once
    d.advance(10.0)  # no more audio: the whole answer comes anyway
    assert finals(d) == ["I heard utterance 1."]


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_the_declared_input_rate_times_the_utterance(rate: int) -> None:
    d = Driver()
    config = {
        "mediaType": "audio/lpcm",
        "sampleRateHertz": rate,
        "sampleSizeBits": 16,
        "channelCount": 1,
        "audioType": "SPEECH",
        "encoding": "base64",
    }
    d.send(
        session_start(),
        prompt_start(),
        event(
            "contentStart",
            {
                "promptName": "prompt-1",
                "contentName": AUDIO,
                "type": "AUDIO",
                "interactive": True,
                "role": "USER",
                "audioInputConfiguration": config,
            },
        ),
    )
    d.audio(tone(0.6, rate) + silence(0.4, rate))
    transcript = next(line for line in d.summary() if line.startswith("text USER"))
    assert transcript == "text USER: This is utterance 1, 0.60 seconds long."


def test_prompt_end_drops_what_is_not_generated_yet() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(0.32))  # transcript out, reply not yet
    d.send(content_end(AUDIO), event("promptEnd", {"promptName": "prompt-1"}))
    d.advance(100.0)
    assert d.summary()[-2:] == ["end TEXT END_TURN", "completionEnd"]
    assert not any(e.name == "audioOutput" for e in d.out)


def finals(d: Driver) -> list[str]:
    return [line.split(": ", 1)[1] for line in d.summary() if line.startswith("text ASSISTANT")][
        1::2
    ]


def test_a_shared_script_gives_an_unanswered_turn_to_the_next_stream() -> None:
    script = Script(tuple(ScriptTurn(reply=r) for r in ("One.", "Two.", "Three.", "Four.")))
    cursor = ScriptCursor(script)
    first = Driver(cursor=cursor, seed="a")
    first.send(*opening())
    first.audio(tone(0.8) + silence(3.0))  # answered
    first.audio(tone(0.8) + silence(0.6))  # asked; the answer is under way when the stream ends
    first.send(*closing())
    assert finals(first) == ["One."]
    assert any(line == "text ASSISTANT: Two." for line in first.summary())  # begun, not finished

    second = Driver(cursor=cursor, seed="b")  # the client carries on on a new stream
    second.send(*opening())
    second.audio(tone(0.8) + silence(3.0))  # the same question again gets the same answer
    second.send(*text_content("t1", "USER", "and then?", interactive=True))
    second.advance(second.engine.clock + 10.0)
    assert finals(second) == ["Two.", "Three."]
    assert cursor.answered == 3


def test_on_one_stream_a_shared_script_runs_in_order() -> None:
    cursor = ScriptCursor(Script(tuple(ScriptTurn(reply=r) for r in ("One.", "Two.", "Three."))))
    d = Driver(cursor=cursor)
    d.send(*opening())
    d.audio(tone(0.6) + silence(0.4) + tone(0.6) + silence(4.0))  # a second question queued
    assert finals(d) == ["One.", "Two."]


# -- usage, identity, audio ------------------------------------------------------------------------


def usage(ev: OutputEvent) -> dict[str, Any]:
    assert ev.name == "usageEvent"
    return dict(ev.body)


def test_usage_counts_are_deterministic_and_cumulative() -> None:
    d = Driver()
    d.send(*opening())
    d.audio(tone(1.0) + silence(4.0))
    d.audio(tone(0.6) + silence(4.0))
    first, second = (usage(e) for e in d.out if e.name == "usageEvent")
    reply_samples = len(synthesize("I heard utterance 1.", 24000)) // 2
    assert first["details"]["delta"] == {
        "input": {"speechTokens": 25, "textTokens": 5},  # 1 s of speech; the system prompt
        # 25 tokens a second, rounded half up
        "output": {"speechTokens": (50 * reply_samples + 24000) // 48000, "textTokens": 4},
    }
    assert second["details"]["delta"]["input"] == {"speechTokens": 15, "textTokens": 0}
    totals = second["details"]["total"]
    assert totals["input"]["speechTokens"] == 40
    assert second["totalInputTokens"] == 45
    assert second["totalTokens"] == second["totalInputTokens"] + second["totalOutputTokens"]


def test_ids_are_derived_from_the_seed() -> None:
    def run(seed: str) -> list[OutputEvent]:
        d = Driver(seed=seed)
        d.send(*opening())
        d.audio(tone(0.5) + silence(3.0))
        return d.out

    assert run("a") == run("a")
    assert run("a")[0].body["sessionId"] != run("b")[0].body["sessionId"]


def test_the_assistant_voice_is_audible_to_a_vad() -> None:
    speech = synthesize("The quick brown fox jumps over the lazy dog.", 16000)
    frames = [speech[i : i + 640] for i in range(0, len(speech) - 640, 640)]
    voiced = sum(1 for f in frames if rms(f) >= FAST.vad_threshold)
    assert voiced / len(frames) > 0.5
    # Played back into the engine, it is heard as one utterance.
    d = Driver()
    d.send(*opening())
    d.audio(speech + silence(1.0))
    assert d.summary()[1] == "start TEXT USER FINAL"


def test_script_json_round_trip(tmp_path: Any) -> None:
    script = Script(
        (
            ScriptTurn(reply="a"),
            ScriptTurn(reply="b {result}", transcript="t", tool=ToolCall("x", {"k": 1})),
        )
    )
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script.to_obj()))
    assert Script.load(path) == script
    assert Script.from_obj([{"reply": "bare list"}]).turns[0].reply == "bare list"
    with pytest.raises(ValueError, match="reply"):
        Script.from_obj({"turns": [{"transcript": "no reply"}]})
