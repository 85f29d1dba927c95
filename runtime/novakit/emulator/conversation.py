"""The conversation engine, sans I/O: accepted input events in, Nova output events out.

Time is the engine's own clock. Bedrock generates faster than real time whether or not the client
streams, so by default the adapter moves the clock from the wall clock (``advance_to``) and the
input audio only feeds the ears: a client that stops streaming still hears the whole answer, and a
typed question is answered without waiting for more audio. With ``audio_drives_clock`` (the
adapter's "as fast as the input allows" mode, for tests) the clock follows the audio received
instead (20 ms per frame), so a test may send audio faster than real time and see exactly the
same behaviour; the adapter then moves the clock itself only while no audio content is open.

What the engine does:

* **Hearing.** An energy VAD over 20 ms frames: a frame is voiced when its RMS reaches a
  threshold; speech starts after ``min_speech_seconds`` of consecutive voiced frames and ends after
  an endpointing silence (``turnDetectionConfiguration.endpointingSensitivity`` HIGH/MEDIUM/LOW =
  1.5/1.75/2 s, or ``EngineSettings.endpoint_seconds``). Closing the audio content also ends an
  utterance in progress. With a mind, a shorter silence (``quick_endpoint_seconds``) ends it when
  the words heard so far are a whole phrase of the mind's grammar.
* **Turns.** Each utterance (or Nova 2 interactive USER text) takes the next ``ScriptTurn``. For an
  utterance the user's transcript comes first: a USER TEXT content (FINAL). Interactive text is not
  echoed back as a transcript: the client already has the words it typed. The reply is spoken
  sentence by sentence: ASSISTANT TEXT SPECULATIVE, an AUDIO content of ~100 ms audioOutput chunks,
  ASSISTANT TEXT FINAL. The last sentence's AUDIO and FINAL contents end with END_TURN, the others
  with PARTIAL_TURN; a usageEvent closes the turn. ``EngineSettings.turn_end`` picks another of
  the orders a server may use to end a turn (``TURN_END_MODES``): END_TURN on the last FINAL
  text only, on the last AUDIO only, or on neither, each turn then being a completion of its
  own that ``completionEnd`` closes. A scripted tool call is a TOOL content
  (toolUse, contentEnd TOOL_USE); the reply waits for the matching toolResult and has ``{result}``
  replaced by the result's content.
* **Generation.** Output is scheduled on the clock: ``response_latency`` after the end of the
  user's turn, then audio as fast as ``generation_speed`` times real time. Only what is due is
  released, so barge-in can stop what has not been "generated" yet.
* **Barge-in.** The assistant counts as speaking from its first audio chunk until the clock has
  moved on by the audio's duration (the client plays it in real time). User speech that starts
  meanwhile stops the reply: the open content ends with INTERRUPTED, then an ASSISTANT TEXT content
  carries ``{ "interrupted" : true }`` and ends with INTERRUPTED; the new speech is the next turn.
* **Offline speech.** With ``EngineSettings.mind`` (``novakit dev``), the utterance's audio
  (from a little before the onset to a little after the last voiced frame) is heard by the mind's
  recognizer while it is spoken: the transcript is the words heard; a turn no script answers
  goes to the mind, which may call a tool (toolUse with the slot values as input) and reads its
  result; replies are spoken with its synthetic voice (the promptStart's voiceId) instead of
  tone bursts.
* **Identity.** sessionId, completionId, contentIds and toolUseIds derive from a seed, so a run
  is reproducible byte for byte.
"""

from __future__ import annotations

import base64
import heapq
import json
import re
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .grammar import Accepted, ContentKind, ModelInfo
from .speech import rms, synthesize

__all__ = [
    "ENDPOINTING_SECONDS",
    "ConversationEngine",
    "EngineSettings",
    "OutputEvent",
    "Script",
    "ScriptCursor",
    "ScriptTurn",
    "ToolCall",
    "default_reply",
    "default_transcript",
]

INPUT_RATE = 16000  # the rate the samples use; the audio content may declare 8000 or 24000
FRAME_SECONDS = 0.02
ENDPOINTING_SECONDS: Mapping[str, float] = {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}
INTERRUPTED_CONTENT = '{ "interrupted" : true }'
PREROLL_SECONDS = 0.4  # audio kept from before the VAD's onset (it fires after a run of frames)
# Audio after the last voiced frame that the recognizer hears (a pause within the utterance is
# heard whole): the fall of the last word, and little silence, which is heard as "please".
TRAILING_SECONDS = 0.15
MAX_UTTERANCE_SECONDS = 30.0  # what the recognizer hears of a longer utterance
TOKENS_PER_SPEECH_SECOND = 25  # one token per 40 ms; any fixed rate keeps counts deterministic
# How a turn's end is signalled (EngineSettings.turn_end): "both" (the last AUDIO and FINAL TEXT
# contents end END_TURN), "text" (only the FINAL TEXT), "audio" (only the AUDIO; every FINAL TEXT
# ends PARTIAL_TURN), "completion" (every content PARTIAL_TURN; each turn is one completion,
# closed by completionEnd END_TURN, or INTERRUPTED after a barge-in).
TURN_END_MODES = ("both", "text", "audio", "completion")
_ID_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-4d8e-9a53-3d1f0c0a7e11")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


# -- scripts ------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptTurn:
    """What happens on one user turn: the transcript to report, a tool to call, the reply."""

    reply: str
    transcript: str | None = None  # None: the default transcript
    tool: ToolCall | None = None


@dataclass(frozen=True)
class Script:
    """Turns played in order; after the last one the engine falls back to default turns.

    JSON form: ``{"turns": [{"transcript": "...", "reply": "It is {result}.",
    "tool": {"name": "getWeather", "input": {"city": "Paris"}}}]}`` (a bare list also works).
    """

    turns: tuple[ScriptTurn, ...] = ()

    @classmethod
    def from_obj(cls, data: Any) -> Script:
        items = data.get("turns") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError('a script is {"turns": [...]} or a list of turns')
        turns: list[ScriptTurn] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("reply"), str):
                raise ValueError(f"script turn {i} needs a string 'reply'")
            transcript = item.get("transcript")
            if transcript is not None and not isinstance(transcript, str):
                raise ValueError(f"script turn {i}: 'transcript' must be a string")
            tool = item.get("tool")
            call = None
            if tool is not None:
                if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                    raise ValueError(f"script turn {i}: 'tool' needs a string 'name'")
                arguments = tool.get("input", {})
                if not isinstance(arguments, dict):
                    raise ValueError(f"script turn {i}: tool 'input' must be an object")
                call = ToolCall(tool["name"], arguments)
            turns.append(ScriptTurn(reply=item["reply"], transcript=transcript, tool=call))
        return cls(tuple(turns))

    @classmethod
    def from_json(cls, text: str) -> Script:
        return cls.from_obj(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> Script:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def to_obj(self) -> dict[str, Any]:
        turns: list[dict[str, Any]] = []
        for turn in self.turns:
            item: dict[str, Any] = {"reply": turn.reply}
            if turn.transcript is not None:
                item["transcript"] = turn.transcript
            if turn.tool is not None:
                item["tool"] = {"name": turn.tool.name, "input": dict(turn.tool.input)}
            turns.append(item)
        return {"turns": turns}


class ScriptCursor:
    """Hands out a script's turns in order; shared by streams when the script spans them.

    A turn's place in the script is the number of turns *answered* so far (spoken to the end,
    or cut by barge-in) on every stream sharing the cursor, plus the turns its own stream took
    before it and has not answered yet. A stream that ends before answering a turn therefore
    gives it back: the next stream asked that question (a client that carries the conversation
    over to a new stream asks again what was left unanswered) gets the same turn, as a model
    given the same conversation would answer the same way. On a single stream this is plain
    script order.
    """

    def __init__(self, script: Script, *, follows_history: bool = False) -> None:
        self.script = script
        self.answered = 0
        # A stream's own cursor (script_scope "stream"): a stream that opens with conversation
        # history (a client resuming on a new stream) continues the script after the user turns
        # already in that history, as a model given the conversation would not answer its first
        # question again.
        self.follows_history = follows_history

    def turn_at(self, index: int) -> ScriptTurn | None:
        return self.script.turns[index] if index < len(self.script.turns) else None


def default_transcript(number: int, seconds: float) -> str:
    return f"This is utterance {number}, {seconds:.2f} seconds long."


def default_reply(number: int, typed: bool) -> str:
    return f"I read message {number}." if typed else f"I heard utterance {number}."


# -- events -------------------------------------------------------------------


@dataclass(frozen=True)
class OutputEvent:
    """One output event; on the wire it is the JSON ``{"event": {name: body}}``."""

    name: str
    body: Mapping[str, Any]

    def to_json(self) -> bytes:
        return json.dumps({"event": {self.name: self.body}}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class EngineSettings:
    endpoint_seconds: float | None = None  # overrides the sensitivity's pause (tests)
    vad_threshold: float = 500.0  # RMS in 16-bit units (about -36 dBFS)
    min_speech_seconds: float = 0.1
    generation_speed: float = 4.0  # seconds of audio generated per second of clock
    response_latency: float = 0.2
    chunk_seconds: float = 0.1
    turn_end: str = "both"  # one of TURN_END_MODES
    # With a mind: the user's turn ends after this much silence when the words heard so far
    # are a whole phrase of its grammar (an example or a conversational phrase), instead of
    # after the endpointing pause: a complete question is answered at once, and a pause within
    # one ("what is the weather in ... Paris") still waits. None: always the pause.
    quick_endpoint_seconds: float | None = 0.25
    # The offline speech (an ``emulator.mind.Mind``): it hears the user's words, answers them
    # (tool calls from the tools' examples) and speaks with a synthetic voice. None: transcripts
    # and replies are the generic ones and the voice is tone bursts (cheap and exact for tests).
    mind: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.turn_end not in TURN_END_MODES:
            raise ValueError(f"turn_end must be one of {TURN_END_MODES}, not {self.turn_end!r}")


# -- hearing ------------------------------------------------------------------


class _Vad:
    """Onset after consecutive voiced frames; end after an endpointing run of silent ones."""

    def __init__(self, threshold: float, min_speech_frames: int, endpoint_frames: int) -> None:
        self.threshold = threshold
        self.min_speech_frames = max(1, min_speech_frames)
        self.endpoint_frames = max(1, endpoint_frames)
        self.speaking = False
        self.start = 0.0
        self.last_voiced_end = 0.0
        self._voiced_run = 0
        self._silent_run = 0

    def push(self, level: float, frame_start: float) -> str | None:
        voiced = level >= self.threshold
        frame_end = frame_start + FRAME_SECONDS
        if not self.speaking:
            if not voiced:
                self._voiced_run = 0
                return None
            if self._voiced_run == 0:
                self.start = frame_start
            self._voiced_run += 1
            if self._voiced_run >= self.min_speech_frames:
                self.speaking = True
                self.last_voiced_end = frame_end
                self._silent_run = 0
                return "start"
            return None
        if voiced:
            self.last_voiced_end = frame_end
            self._silent_run = 0
            return None
        self._silent_run += 1
        if self._silent_run >= self.endpoint_frames:
            self.speaking = False
            self._voiced_run = 0
            return "end"
        return None

    @property
    def silent_seconds(self) -> float:
        """How long the speaker has been silent (while speaking)."""
        return self._silent_run * FRAME_SECONDS if self.speaking else 0.0

    def end_now(self) -> str:
        """End the speech here (the turn is known to be over)."""
        self.speaking = False
        self._voiced_run = 0
        return "end"

    def reset(self) -> None:
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0


# -- turns --------------------------------------------------------------------


class _TurnState(StrEnum):
    QUEUED = "queued"
    WAITING_TOOL = "waiting_tool"
    RESPONDING = "responding"
    DONE = "done"
    INTERRUPTED = "interrupted"


@dataclass
class _Turn:
    number: int
    typed: bool
    script: ScriptTurn | None
    input_speech_seconds: float = 0.0
    input_text_tokens: int = 0
    state: _TurnState = _TurnState.QUEUED
    tool_use_id: str | None = None
    first_audio_at: float | None = None
    audio_seconds: float = 0.0  # released so far
    open_content: tuple[str, str] | None = None  # (contentId, type) released but not ended
    output_text_tokens: int = 0
    output_speech_samples: int = 0  # at the output rate; integers keep token counts exact
    usage_sent: bool = False
    heard: str = ""  # what the user said or typed (with a mind)
    call: ToolCall | None = None  # the tool this turn calls, from the script or the mind


@dataclass(order=True)
class _Scheduled:
    due: float
    seq: int
    event: OutputEvent | None = field(compare=False)
    turn: _Turn | None = field(compare=False, default=None)
    audio_samples: int = field(compare=False, default=0)
    text_tokens: int = field(compare=False, default=0)
    finishes_turn: bool = field(compare=False, default=False)


def _speech_tokens(samples: int, rate: int) -> int:
    """Tokens for an amount of audio, rounded half up in integers (no float drift)."""
    return (2 * samples * TOKENS_PER_SPEECH_SECOND + rate) // (2 * rate)


def _tokens(text: str) -> int:
    return len(text.split())


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_RE.split(text.strip()) if s]


class ConversationEngine:
    """See the module docstring. Feed ``handle``; collect ``take_output``."""

    def __init__(
        self,
        model: ModelInfo,
        *,
        seed: str,
        turns: ScriptCursor,
        settings: EngineSettings | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or EngineSettings()
        self._seed = seed
        self._cursor = turns
        self._id_counter = 0
        self.session_id = self._new_id("session")
        self.completion_id = self._new_id("completion")
        self.clock = 0.0
        self.audio_drives_clock = True  # see the module docstring; the adapter decides
        self.audio_position = 0.0  # seconds of input audio heard
        self.input_rate = INPUT_RATE
        self.prompt_name = ""
        self.output_rate = 24000
        self.audio_open = False
        self.completed_turns = 0
        self._output: list[OutputEvent] = []
        self._schedule: list[_Scheduled] = []
        self._seq = 0
        self._completion_started = False
        self._completion_ended = False
        self._pcm_remainder = b""
        self._vad = self._make_vad(ENDPOINTING_SECONDS["MEDIUM"])
        self._turn_count = 0
        self._unanswered = 0  # turns taken from the cursor and not finished on this stream
        self._history_user_turns = 0  # user turns in the history this stream opened with
        self._last_history_role = ""
        self._queue: deque[_Turn] = deque()
        self._active: _Turn | None = None
        self._voice_turn: _Turn | None = None  # the last turn that spoke (for barge-in)
        self._typed_parts: list[str] = []
        self._tool_results: dict[str, str] = {}
        self._context_tokens = 0  # system prompt and history, charged to the first turn
        self.voice_id = "matthew"
        self._declared_tools: list[str] = []
        self._last_reply: str | None = None
        self._preroll: deque[bytes] = deque(maxlen=round(PREROLL_SECONDS / FRAME_SECONDS))
        self._hearing: Any = None  # the mind's ears on the utterance being spoken
        self._hearing_frames = 0  # frames of the utterance fed to them
        self._quiet_fed = 0  # of which silent frames since the last voiced one
        self._held: list[bytes] = []  # silent frames beyond the trailing ones, not fed (yet)
        self._totals = {"input": [0, 0], "output": [0, 0]}  # [speechTokens, textTokens]

    # -- public state ---------------------------------------------------------

    @property
    def user_speaking(self) -> bool:
        return self._vad.speaking

    @property
    def assistant_speaking(self) -> bool:
        turn = self._voice_turn
        if turn is None or turn.first_audio_at is None or turn.state is _TurnState.INTERRUPTED:
            return False
        return turn.state is _TurnState.RESPONDING or self.clock < (
            turn.first_audio_at + turn.audio_seconds
        )

    def next_due(self) -> float | None:
        return self._schedule[0].due if self._schedule else None

    def take_output(self) -> list[OutputEvent]:
        out, self._output = self._output, []
        return out

    # -- input ----------------------------------------------------------------

    def handle(self, accepted: Accepted) -> None:
        event, content = accepted.event, accepted.content
        body = event.body
        match event.name:
            case "sessionStart":
                sensitivity = body.get("turnDetectionConfiguration", {}).get(
                    "endpointingSensitivity", "MEDIUM"
                )
                self._vad = self._make_vad(ENDPOINTING_SECONDS[sensitivity])
            case "promptStart":
                self.prompt_name = body["promptName"]
                self.output_rate = body["audioOutputConfiguration"]["sampleRateHertz"]
                self.voice_id = body["audioOutputConfiguration"].get("voiceId", self.voice_id)
                tools = body.get("toolConfiguration", {}).get("tools", [])
                self._declared_tools = [t["toolSpec"]["name"] for t in tools]
            case "contentStart":
                assert content is not None
                if content.kind is ContentKind.HISTORY:
                    # A long message arrives as several contents of one role: one turn.
                    if content.role == "USER" and self._last_history_role != "USER":
                        self._history_user_turns += 1
                    self._last_history_role = content.role
                if content.kind is ContentKind.AUDIO:
                    self.audio_open = True
                    self.input_rate = body["audioInputConfiguration"]["sampleRateHertz"]
                elif content.kind is ContentKind.USER_TEXT:
                    self._typed_parts = []
            case "textInput":
                assert content is not None
                if content.kind is ContentKind.USER_TEXT:
                    self._typed_parts.append(body["content"])
                else:
                    self._context_tokens += _tokens(body["content"])
            case "audioInput":
                self._feed_audio(event.audio)
            case "toolResult":
                assert content is not None and content.tool_use_id is not None
                self._tool_results[content.tool_use_id] = body["content"]
            case "contentEnd":
                assert content is not None
                self._on_content_end(content.kind, content.tool_use_id)
            case "promptEnd":
                self._end_prompt()

    def advance_to(self, when: float) -> None:
        """Move the clock forward without audio (no audio content open), releasing what is due."""
        if when > self.clock:
            self._release_until(when)
            self.clock = when

    # -- hearing --------------------------------------------------------------

    def _make_vad(self, endpoint: float) -> _Vad:
        s = self.settings
        seconds = s.endpoint_seconds if s.endpoint_seconds is not None else endpoint
        return _Vad(
            s.vad_threshold,
            round(s.min_speech_seconds / FRAME_SECONDS),
            round(seconds / FRAME_SECONDS),
        )

    def _feed_audio(self, pcm: bytes) -> None:
        data = self._pcm_remainder + pcm
        frame_bytes = 2 * int(self.input_rate * FRAME_SECONDS)
        whole = len(data) - len(data) % frame_bytes
        view = memoryview(data)
        for offset in range(0, whole, frame_bytes):
            frame_start = self.audio_position
            self.audio_position = round(self.audio_position + FRAME_SECONDS, 6)
            if self.audio_drives_clock:
                self.clock = round(self.clock + FRAME_SECONDS, 6)
                self._release_until(self.clock)
            frame = view[offset : offset + frame_bytes]
            level = rms(frame)
            change = self._vad.push(level, frame_start)
            if self.settings.mind is not None:
                self._keep_audio(bytes(frame), change, voiced=level >= self._vad.threshold)
                if change is None and self._heard_a_whole_phrase():
                    change = self._vad.end_now()
            if change == "start":
                self._barge_in()
            elif change == "end":
                self._utterance(self._vad.start, self._vad.last_voiced_end)
        self._pcm_remainder = bytes(view[whole:])

    def _keep_audio(self, frame: bytes, change: str | None, *, voiced: bool) -> None:
        """Feed the utterance's audio (with some before the onset) to the mind's ears as it
        comes, so its words are known when it ends. A pause's silence beyond the trailing
        frames is held back, and fed only if speech resumes."""
        if change == "start":
            if self._hearing is not None:
                self._hearing.cancel()
            self._hearing = self.settings.mind.listen(self.input_rate)
            self._hearing.feed(b"".join(self._preroll))
            self._hearing_frames = len(self._preroll)
            self._quiet_fed = 0
            self._held = []
        self._preroll.append(frame)
        hearing = self._hearing
        room = self._hearing_frames < MAX_UTTERANCE_SECONDS / FRAME_SECONDS
        if hearing is None or not (self._vad.speaking or change == "end") or not room:
            return
        if voiced:
            for held in self._held:
                hearing.feed(held)
            self._hearing_frames += len(self._held)
            self._held = []
            self._quiet_fed = 0
        elif self._quiet_fed >= round(TRAILING_SECONDS / FRAME_SECONDS):
            self._held.append(frame)
            return
        else:
            self._quiet_fed += 1
        hearing.feed(frame)
        self._hearing_frames += 1

    def _heard_a_whole_phrase(self) -> bool:
        quick = self.settings.quick_endpoint_seconds
        hearing = self._hearing
        if quick is None or hearing is None or not self._vad.speaking:
            return False
        silent = self._vad.silent_seconds + 1e-9
        if silent >= TRAILING_SECONDS:
            # The speaker paused: the words so far are decoded now, while the rest of the
            # pause arrives, and kept unless speech resumes.
            hearing.settle()
        return silent >= quick and hearing.complete()

    def _on_content_end(self, kind: ContentKind, tool_use_id: str | None) -> None:
        if kind is ContentKind.AUDIO:
            self.audio_open = False
            self._pcm_remainder = b""
            if self._vad.speaking:
                self._vad.reset()
                self._utterance(self._vad.start, self._vad.last_voiced_end)
        elif kind is ContentKind.USER_TEXT:
            text = "".join(self._typed_parts)
            self._start_completion()
            turn = self._new_turn(typed=True)
            turn.input_text_tokens = _tokens(text)
            turn.heard = text
            self._enqueue(turn)
        elif kind is ContentKind.TOOL and tool_use_id is not None:
            active = self._active
            if (
                active is not None
                and active.tool_use_id == tool_use_id
                and active.state is _TurnState.WAITING_TOOL
            ):
                result = self._tool_results[tool_use_id]
                if active.script is not None:
                    reply = active.script.reply.replace("{result}", result)
                else:
                    assert active.call is not None and self.settings.mind is not None
                    reply = self.settings.mind.answer_tool(
                        active.call.name, dict(active.call.input), result
                    )
                self._speak(active, reply, self.clock + self.settings.response_latency)

    def _end_prompt(self) -> None:
        # The client has closed the prompt: nothing still to be generated will be.
        self._schedule.clear()
        if self._hearing is not None:
            self._hearing.cancel()
            self._hearing = None
        self._end_completion("END_TURN")

    # -- turns ----------------------------------------------------------------

    def _new_turn(self, *, typed: bool) -> _Turn:
        self._turn_count += 1
        index = self._cursor.answered + self._unanswered
        if self._cursor.follows_history:
            index += self._history_user_turns
        self._unanswered += 1
        turn = _Turn(number=self._turn_count, typed=typed, script=self._cursor.turn_at(index))
        if self._turn_count == 1:
            turn.input_text_tokens += self._context_tokens
        return turn

    def _utterance(self, start: float, end: float) -> None:
        seconds = round(end - start, 6)
        self._start_completion()
        turn = self._new_turn(typed=False)
        turn.input_speech_seconds = seconds
        mind = self.settings.mind
        if mind is not None:
            hearing, self._hearing = self._hearing, None
            turn.heard = hearing.finish().text if hearing is not None else ""
            self._held = []
        if turn.script is not None and turn.script.transcript is not None:
            transcript = turn.script.transcript
        elif mind is not None:
            transcript = turn.heard
        else:
            transcript = default_transcript(turn.number, seconds)
        content_id = self._new_id("content")
        self._emit(self._content_start(content_id, "TEXT", "USER", stage="FINAL"))
        self._emit(self._content_event("textOutput", content_id, content=transcript, role="USER"))
        self._emit(self._content_end(content_id, "TEXT", "END_TURN"))
        self._enqueue(turn)

    def _enqueue(self, turn: _Turn) -> None:
        self._queue.append(turn)
        self._start_next()

    def _start_next(self) -> None:
        if self._active is not None or not self._queue:
            return
        turn = self._active = self._queue.popleft()
        if self.settings.turn_end == "completion":
            self._start_completion()  # each answer is a completion of its own
        start = self.clock + self.settings.response_latency
        script = turn.script
        mind = self.settings.mind
        reply = script.reply if script is not None else default_reply(turn.number, turn.typed)
        if script is not None:
            turn.call = script.tool
        elif mind is not None:
            response = mind.respond(
                turn.heard, tools=self._declared_tools, last_reply=self._last_reply
            )
            reply = response.reply
            if response.tool is not None:
                turn.call = ToolCall(response.tool, response.arguments or {})
        if turn.call is not None:
            turn.state = _TurnState.WAITING_TOOL
            turn.tool_use_id = self._new_id("tool-use")
            content_id = self._new_id("content")
            tool_start = self._content_start(content_id, "TOOL", "TOOL")
            self._at(start, tool_start, turn)
            use = self._content_event(
                "toolUse",
                content_id,
                toolName=turn.call.name,
                toolUseId=turn.tool_use_id,
                content=json.dumps(dict(turn.call.input), separators=(",", ":")),
            )
            self._at(start, use, turn)
            self._at(start, self._content_end(content_id, "TOOL", "TOOL_USE"), turn)
            return
        self._speak(turn, reply, start)

    def _speak(self, turn: _Turn, text: str, start: float) -> None:
        """Schedule the spoken reply, sentence by sentence, from ``start`` on the clock."""
        turn.state = _TurnState.RESPONDING
        self._last_reply = text
        s = self.settings
        when = start
        sentences = _sentences(text) or [""]
        bytes_per_chunk = 2 * max(1, int(self.output_rate * s.chunk_seconds))
        mode = s.turn_end
        for index, sentence in enumerate(sentences):
            last = index == len(sentences) - 1
            audio_stop = "END_TURN" if last and mode in ("both", "audio") else "PARTIAL_TURN"
            text_stop = "END_TURN" if last and mode in ("both", "text") else "PARTIAL_TURN"
            speculative = self._new_id("content")
            self._at(
                when, self._content_start(speculative, "TEXT", "ASSISTANT", "SPECULATIVE"), turn
            )
            self._at(
                when,
                self._content_event("textOutput", speculative, content=sentence, role="ASSISTANT"),
                turn,
            )
            self._at(when, self._content_end(speculative, "TEXT", "PARTIAL_TURN"), turn)

            audio_id = self._new_id("content")
            self._at(when, self._content_start(audio_id, "AUDIO", "ASSISTANT"), turn)
            pcm = (
                s.mind.speak(sentence, self.output_rate, self.voice_id)
                if s.mind is not None
                else synthesize(sentence, self.output_rate)
            )
            for offset in range(0, len(pcm), bytes_per_chunk):
                chunk = pcm[offset : offset + bytes_per_chunk]
                seconds = len(chunk) / 2 / self.output_rate
                when += seconds / s.generation_speed
                event = self._content_event(
                    "audioOutput", audio_id, content=base64.b64encode(chunk).decode("ascii")
                )
                self._at(when, event, turn, audio_samples=len(chunk) // 2)
            self._at(when, self._content_end(audio_id, "AUDIO", audio_stop), turn)

            final = self._new_id("content")
            self._at(when, self._content_start(final, "TEXT", "ASSISTANT", "FINAL"), turn)
            self._at(
                when,
                self._content_event("textOutput", final, content=sentence, role="ASSISTANT"),
                turn,
                text_tokens=_tokens(sentence),
            )
            self._at(when, self._content_end(final, "TEXT", text_stop), turn)
        self._push(_Scheduled(round(when, 6), self._next_seq(), None, turn, finishes_turn=True))

    def _barge_in(self) -> None:
        turn = self._voice_turn
        if turn is None or not self.assistant_speaking:
            return
        assert turn.first_audio_at is not None
        # Nothing more of this turn will be generated.
        self._schedule = [item for item in self._schedule if item.turn is not turn]
        heapq.heapify(self._schedule)
        if turn.open_content is not None:
            content_id, kind = turn.open_content
            self._emit(self._content_end(content_id, kind, "INTERRUPTED"))
            turn.open_content = None
        notice = self._new_id("content")
        self._emit(self._content_start(notice, "TEXT", "ASSISTANT", "FINAL"))
        self._emit(
            self._content_event("textOutput", notice, content=INTERRUPTED_CONTENT, role="ASSISTANT")
        )
        self._emit(self._content_end(notice, "TEXT", "INTERRUPTED"))
        # Playback stops here: the audio the client had queued is dropped.
        turn.audio_seconds = self.clock - turn.first_audio_at
        was_running = turn.state is _TurnState.RESPONDING
        turn.state = _TurnState.INTERRUPTED
        if was_running:
            self._finish_turn(turn)

    def _finish_turn(self, turn: _Turn) -> None:
        if not turn.usage_sent:
            turn.usage_sent = True
            self._emit(self._usage(turn))
        if turn.state is not _TurnState.INTERRUPTED:
            turn.state = _TurnState.DONE
        if self.settings.turn_end == "completion":
            interrupted = turn.state is _TurnState.INTERRUPTED
            self._end_completion("INTERRUPTED" if interrupted else "END_TURN")
        self.completed_turns += 1
        self._unanswered -= 1
        self._cursor.answered += 1
        if self._active is turn:
            self._active = None
            self._start_next()

    # -- scheduling -----------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push(self, item: _Scheduled) -> None:
        heapq.heappush(self._schedule, item)

    def _at(
        self,
        due: float,
        event: OutputEvent,
        turn: _Turn,
        audio_samples: int = 0,
        text_tokens: int = 0,
    ) -> None:
        self._push(
            _Scheduled(round(due, 6), self._next_seq(), event, turn, audio_samples, text_tokens)
        )

    def _release_until(self, when: float) -> None:
        while self._schedule and self._schedule[0].due <= when:
            item = heapq.heappop(self._schedule)
            turn = item.turn
            if item.finishes_turn and turn is not None:
                self._finish_turn(turn)
                continue
            event = item.event
            assert event is not None
            if turn is not None:
                if event.name == "contentStart":
                    turn.open_content = (event.body["contentId"], event.body["type"])
                elif event.name == "contentEnd":
                    turn.open_content = None
                elif event.name == "audioOutput":
                    if turn.first_audio_at is None:
                        turn.first_audio_at = item.due
                        self._voice_turn = turn
                    turn.audio_seconds += item.audio_samples / self.output_rate
                    turn.output_speech_samples += item.audio_samples
                turn.output_text_tokens += item.text_tokens
            self._emit(event)

    # -- event construction ---------------------------------------------------

    def _new_id(self, kind: str) -> str:
        self._id_counter += 1
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self._seed}/{kind}/{self._id_counter}"))

    def _emit(self, event: OutputEvent) -> None:
        self._output.append(event)

    def _start_completion(self) -> None:
        if self._completion_started and not self._completion_ended:
            return
        if self._completion_ended:
            if self.settings.turn_end != "completion":
                return  # one completion for the session, and it has ended
            self.completion_id = self._new_id("completion")
        self._completion_started = True
        self._completion_ended = False
        self._emit(OutputEvent("completionStart", self._base({})))

    def _end_completion(self, stop: str) -> None:
        if self._completion_started and not self._completion_ended:
            self._completion_ended = True
            self._emit(OutputEvent("completionEnd", self._base({"stopReason": stop})))

    def _base(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "promptName": self.prompt_name,
            "completionId": self.completion_id,
            **body,
        }

    def _content_event(self, name: str, content_id: str, **fields: Any) -> OutputEvent:
        return OutputEvent(name, self._base({"contentId": content_id, **fields}))

    def _content_start(
        self, content_id: str, kind: str, role: str, stage: str | None = None
    ) -> OutputEvent:
        body: dict[str, Any] = {"type": kind, "role": role}
        if kind == "TEXT":
            body["additionalModelFields"] = json.dumps({"generationStage": stage or "FINAL"})
            body["textOutputConfiguration"] = {"mediaType": "text/plain"}
        elif kind == "AUDIO":
            body["audioOutputConfiguration"] = {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": self.output_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "encoding": "base64",
                "audioType": "SPEECH",
            }
        else:
            body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        return self._content_event("contentStart", content_id, **body)

    def _content_end(self, content_id: str, kind: str, stop: str) -> OutputEvent:
        return self._content_event("contentEnd", content_id, type=kind, stopReason=stop)

    def _usage(self, turn: _Turn) -> OutputEvent:
        delta = {
            "input": [
                _speech_tokens(round(turn.input_speech_seconds * INPUT_RATE), INPUT_RATE),
                turn.input_text_tokens,
            ],
            "output": [
                _speech_tokens(turn.output_speech_samples, self.output_rate),
                turn.output_text_tokens,
            ],
        }
        for side, (speech, text) in delta.items():
            self._totals[side][0] += speech
            self._totals[side][1] += text

        def counts(pair: list[int]) -> dict[str, int]:
            return {"speechTokens": pair[0], "textTokens": pair[1]}

        total_in = sum(self._totals["input"])
        total_out = sum(self._totals["output"])
        return OutputEvent(
            "usageEvent",
            self._base(
                {
                    "details": {
                        "delta": {side: counts(pair) for side, pair in delta.items()},
                        "total": {side: counts(pair) for side, pair in self._totals.items()},
                    },
                    "totalInputTokens": total_in,
                    "totalOutputTokens": total_out,
                    "totalTokens": total_in + total_out,
                }
            ),
        )
