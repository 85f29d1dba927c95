"""``novakit talk``: the protocol handling on its own, then the command against the local stack
(``novakit.dev.local_stack``, in this process) as a script would run it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import socket
import sys
import threading
import time
import types
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets

from novakit import audio
from novakit.dev import DevOptions, RunningStack, demo_script, local_stack
from novakit.emulator.speech import synthesize
from novakit.talk import (
    Conversation,
    Exit,
    TalkError,
    TalkOptions,
    load_wav,
    talk,
    with_token,
)
from novakit.talk import main as talk_main

REPO = Path(__file__).resolve().parents[2]


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


# -- the protocol, without sockets ---------------------------------------------------------


def test_frames_become_transcript_lines_audio_and_state() -> None:
    talk = Conversation()
    frames = [
        {
            "type": "session",
            "seq": 0,
            "state": "ready",
            "connection_id": "c1",
            "model": "m",
            "voice": "tiffany",
            "output_sample_rate": 24000,
        },
        {"type": "transcript", "seq": 1, "role": "user", "text": "what's the ", "continues": True},
        {"type": "transcript", "seq": 2, "role": "user", "text": "weather"},
        {"type": "tool", "seq": 3, "call_id": "a", "name": "weather", "status": "started"},
        {
            "type": "tool",
            "seq": 4,
            "call_id": "a",
            "name": "weather",
            "status": "succeeded",
            "ms": 12,
        },
        {"type": "text", "seq": 5, "role": "assistant", "text": "Sunny.", "final": False},
        {"type": "audio", "seq": 7, "data": b64(b"\x03\x00\x04\x00"), "sample_rate": 24000},
        {"type": "audio", "seq": 6, "data": b64(b"\x01\x00\x02\x00"), "sample_rate": 24000},
        {"type": "text", "seq": 8, "role": "assistant", "text": "Sunny.", "final": True},
        {"type": "usage", "seq": 9, "total_tokens": 5},
    ]
    lines = [line for frame in frames for line in talk.receive(frame).lines]
    assert lines == [
        "user: what's the weather",
        "tool: weather succeeded (12 ms)",
        "assistant: Sunny.",
    ]
    assert talk.in_turn and talk.turns_completed == 0
    talk.receive({"type": "turn_end", "seq": 10})
    assert not talk.in_turn and talk.turns_completed == 1
    assert talk.audio() == b"\x01\x00\x02\x00\x03\x00\x04\x00"  # in seq order
    assert (talk.connection_id, talk.sample_rate, talk.session_state) == ("c1", 24000, "ready")


def test_audio_of_an_interrupted_answer_arriving_after_the_clear_is_dropped() -> None:
    talk = Conversation()
    talk.receive({"type": "audio", "seq": 1, "data": b64(b"\x01\x00"), "sample_rate": 24000})
    notes = talk.receive({"type": "clear_audio", "seq": 4, "reason": "barge_in"}).notes
    assert notes == ["the assistant was interrupted (barge_in)"]
    talk.receive({"type": "audio", "seq": 3, "data": b64(b"\x09\x00"), "sample_rate": 24000})
    talk.receive({"type": "audio", "seq": 6, "data": b64(b"\x02\x00"), "sample_rate": 24000})
    assert talk.audio() == b"\x01\x00\x02\x00"
    assert talk.clears == 1 and talk.turns_completed == 1


def test_errors_fatal_or_not_and_the_end_of_the_session() -> None:
    talk = Conversation()
    notes = talk.receive(
        {"type": "error", "seq": 0, "code": "bad_audio", "message": "odd", "fatal": False}
    ).notes
    assert notes == ["error bad_audio: odd"] and talk.fatal is None
    talk.receive(
        {"type": "error", "seq": 1, "code": "session_failed", "message": "gone", "fatal": True}
    )
    assert talk.fatal == "session_failed: gone"
    talk.receive({"type": "session", "seq": 2, "state": "ended", "reason": "model failed"})
    assert talk.ended and talk.ended_reason == "model failed"
    assert talk.receive({"type": "future_thing", "seq": 3}).notes  # ignored, and said so


def test_urls_get_the_token_and_a_websocket_scheme() -> None:
    assert with_token("ws://h:8080", "a b") == "ws://h:8080/?token=a+b"
    assert with_token("https://x.example/prod?token=old", "new") == "wss://x.example/prod?token=new"
    assert with_token("ws://h/", None) == "ws://h/"
    with pytest.raises(TalkError) as refused:
        with_token("ftp://h/", None)
    assert refused.value.code is Exit.USAGE


def test_wav_files_of_any_rate_and_channel_count_become_16_khz_mono(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(4 * 44100))  # one second
    assert len(load_wav(stereo)) == 2 * 16000
    odd_rate = tmp_path / "odd.wav"
    audio.write_wav(odd_rate, audio.speech_like(0.5, 96000), 96000)  # not a novakit.voice rate
    assert len(load_wav(odd_rate)) == 2 * 8000


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        (b"not a wav file at all", "not a PCM WAV file"),
        ("8-bit", "16-bit PCM is needed"),
        ("empty", "holds no audio"),
    ],
)
def test_unusable_input_files_are_refused_in_words(
    tmp_path: Path, content: bytes | str | None, says: str
) -> None:
    path = tmp_path / "in.wav"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(1 if content == "8-bit" else 2)
            wav.setframerate(16000)
            wav.writeframes(b"" if content == "empty" else bytes(1600))
    with pytest.raises(TalkError, match=says) as refused:
        load_wav(path)
    assert refused.value.code is Exit.USAGE


# -- the command against the local stack ---------------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def novakit_talk(*args: str, cwd: Path, within: float = 60.0) -> Run:
    """``novakit talk ...`` as a subprocess, awaited without blocking this loop (the stack
    under test runs in it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "novakit.cli",
        "talk",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"novakit talk ran over {within} s: {out!r} {err!r}") from None
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def stack() -> AsyncIterator[RunningStack]:
    """The local stack with its demo script: a spoken question answered with a tool's help, then
    a typed thank-you."""
    options = DevOptions(port=0, tools_dir=REPO / "tools", web_dir=None, script=demo_script())
    async with local_stack(options, stdout=io.StringIO()) as running:
        yield running


def question_wav(path: Path) -> Path:
    """A spoken question recorded at 8 kHz (telephone quality), so talk has to resample it."""
    audio.write_wav(path, audio.speech_like(1.5, 8000) + audio.silence(0.3, 8000), 8000)
    return path


async def test_a_wav_question_and_a_typed_one_come_back_as_transcript_and_audio(
    stack: RunningStack, tmp_path: Path
) -> None:
    out = tmp_path / "answer.wav"
    run = await novakit_talk(
        stack.gateway_url,
        "--wav",
        str(question_wav(tmp_path / "q.wav")),
        "--out",
        str(out),
        "--text",
        "Thanks!",
        "--speed",
        "4",
        "--quiet",
        "1",
        cwd=tmp_path,
    )
    assert run.code == Exit.OK, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "user: what time is it in Tokyo"
    assert lines[1].startswith("tool: get_time succeeded (")
    assert lines[2] == "assistant: Here is what the clock says."
    assert '"timezone":"Asia/Tokyo"' in lines[3]
    assert lines[4:] == ["user: Thanks!", "assistant: You are welcome.", "assistant: Goodbye!"]
    for progress in (
        "connecting to ws://127.0.0.1:",
        "session ready",
        "sent 1.8 s of audio",
        "waiting for the answer",
        f"wrote {out}",
    ):
        assert progress in run.stderr
    pcm, rate = audio.read_wav(out)
    assert rate == 24000 and audio.duration(pcm, rate) > 1.0
    # exactly what the emulator said: its voice for each sentence, in order
    said = [line.removeprefix("assistant: ") for line in lines if line.startswith("assistant: ")]
    assert pcm == b"".join(synthesize(sentence, 24000) for sentence in said)


async def test_silence_gets_no_answer_and_times_out(stack: RunningStack, tmp_path: Path) -> None:
    silent = tmp_path / "silence.wav"
    audio.write_wav(silent, audio.silence(0.5), 16000)
    run = await novakit_talk(
        stack.gateway_url, "--wav", str(silent), "--timeout", "1", "--speed", "4", cwd=tmp_path
    )
    assert run.code == Exit.TIMEOUT and "timed out" in run.stderr
    assert run.stdout == ""


async def test_a_refused_token_exits_3(tmp_path: Path) -> None:
    options = DevOptions(port=0, tools_dir=None, web_dir=None, token="s3cret")
    async with local_stack(options, stdout=io.StringIO()) as running:
        run = await novakit_talk(
            running.gateway_url, "--token", "wrong", "--text", "hi", cwd=tmp_path
        )
    assert run.code == Exit.CONNECT
    assert "HTTP 401, the token was refused" in run.stderr
    assert "wrong" not in run.stderr  # the token is never printed


async def test_nothing_listening_exits_3(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        run = await novakit_talk(f"ws://127.0.0.1:{port}/", "--text", "hi", cwd=tmp_path)
    assert run.code == Exit.CONNECT and "could not connect" in run.stderr


async def test_a_bad_input_file_exits_2_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    run = await novakit_talk("ws://127.0.0.1:9/", "--wav", str(bad), cwd=tmp_path)
    assert run.code == Exit.USAGE and "not a PCM WAV file" in run.stderr
    run = await novakit_talk("ws://127.0.0.1:9/", cwd=tmp_path)  # nothing to say
    assert run.code == Exit.USAGE and "--wav FILE, --mic or --text" in run.stderr


@pytest.mark.parametrize("fatal", [True, False])
async def test_a_failed_session_exits_4(tmp_path: Path, fatal: bool) -> None:
    """A fatal error frame, or a connection that closes before the conversation is over."""

    async def failing_server(ws: websockets.ServerConnection) -> None:
        await ws.recv()  # start
        if fatal:
            error = {
                "type": "error",
                "seq": 0,
                "code": "session_failed",
                "message": "model gone",
                "fatal": True,
            }
            await ws.send(json.dumps(error))
            await ws.send(json.dumps({"type": "session", "seq": 1, "state": "ended"}))
        await ws.close(1011, "bridge crashed")

    async with websockets.serve(failing_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        run = await novakit_talk(f"ws://127.0.0.1:{port}/", "--text", "hi", cwd=tmp_path)
    assert run.code == Exit.SESSION
    if fatal:
        assert "fatal error session_failed: model gone" in run.stderr
    else:
        assert "closed unexpectedly (1011, server error: bridge crashed)" in run.stderr


@pytest.mark.parametrize("where", ["no-such-folder/reply.wav", "a-folder"])
def test_an_unwritable_out_is_a_usage_error_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    out = tmp_path / where
    # Port 9 (discard) on loopback: nothing listens there, so connecting would fail with 3.
    code = talk_main(["ws://127.0.0.1:9/", "--text", "hello", "--out", str(out)])
    assert code == Exit.USAGE == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # no "connecting" before it
    assert line.startswith(f"novakit talk: --out {out}: ")


def test_mic_without_sounddevice_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from novakit.talk import MicrophoneSource

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if it were not installed
    with pytest.raises(TalkError, match="--mic needs the sounddevice package") as refused:
        MicrophoneSource()
    assert refused.value.code is Exit.USAGE


class FakeSoundDevice(types.ModuleType):
    """Stands in for the sounddevice package: a microphone that says ``speech`` then stays
    silent, and a speaker that records what it is given, both at four times real time."""

    SPEED = 4.0

    def __init__(self, speech: bytes) -> None:
        super().__init__("sounddevice")
        self.speech = speech
        self.played = bytearray()

    def query_devices(self, kind: str | None = None) -> dict[str, str]:
        return {"name": "fake"}

    def RawInputStream(self, *, blocksize: int, callback: Any, **_: Any) -> Any:  # noqa: N802
        return FakeStream(lambda: self._capture(blocksize, callback), blocksize / 16000)

    def RawOutputStream(self, *, samplerate: int, callback: Any, **_: Any) -> Any:  # noqa: N802
        frames = samplerate // 50
        return FakeStream(lambda: self._playback(frames, callback), 0.02)

    def _capture(self, frames: int, callback: Any) -> None:
        chunk, self.speech = self.speech[: 2 * frames], self.speech[2 * frames :]
        callback(chunk + bytes(2 * frames - len(chunk)), frames, None, None)

    def _playback(self, frames: int, callback: Any) -> None:
        out = bytearray(2 * frames)
        callback(out, frames, None, None)
        self.played += out


class FakeStream:
    def __init__(self, tick: Any, seconds: float) -> None:
        self.tick, self.seconds = tick, seconds / FakeSoundDevice.SPEED
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running.is_set():
            self.tick()
            time.sleep(self.seconds)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        self.thread.join(timeout=5)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeStream:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


async def test_mic_mode_talks_and_plays_the_answer(
    stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = FakeSoundDevice(audio.speech_like(1.5) + audio.silence(0.3))
    monkeypatch.setitem(sys.modules, "sounddevice", device)
    out = tmp_path / "answer.wav"
    stdout, stderr = io.StringIO(), io.StringIO()
    options = TalkOptions(url=stack.gateway_url, mic=True, out=out, timeout=5.0)
    code = await talk(options, stdout, stderr)
    assert code is Exit.OK, stderr.getvalue()
    lines = stdout.getvalue().splitlines()
    assert lines[:3] == [
        "user: what time is it in Tokyo",
        lines[1],
        "assistant: Here is what the clock says.",
    ]
    assert lines[1].startswith("tool: get_time succeeded")
    pcm, _ = audio.read_wav(out)
    assert audio.duration(pcm, 24000) > 1.0
    assert any(device.played)  # the answer went to the speaker


@pytest.mark.parametrize("source", ["wav", "mic"])
async def test_no_audio_goes_out_after_end(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio streams until the conversation is over; then ``end`` is the last frame on the wire,
    however long the server takes to finish."""
    received: list[dict[str, Any]] = []
    after_end = asyncio.Event()

    async def server(ws: websockets.ServerConnection) -> None:
        seq = 0

        async def send(frame: dict[str, Any]) -> None:
            nonlocal seq
            await ws.send(json.dumps({**frame, "seq": seq}))
            seq += 1

        session = {"type": "session", "v": 1, "connection_id": "c1", "model": "m", "voice": "v"}
        async for message in ws:
            frame = json.loads(message)
            received.append(frame)
            if frame["type"] == "start":
                await send({**session, "state": "ready", "output_sample_rate": 24000})
            elif frame["type"] == "text":
                await send({"type": "text", "role": "assistant", "text": "Hi.", "final": True})
                await send({"type": "turn_end"})
            elif frame["type"] == "end":
                # Whatever the client still had in flight would arrive now: give it time to
                # (a bounded wait for frames that must not come), then finish.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        async for late in ws:
                            received.append(json.loads(late))
                after_end.set()
                await send({**session, "state": "ended", "reason": "client ended the session"})

    wav = tmp_path / "q.wav"
    audio.write_wav(wav, audio.speech_like(0.5) + audio.silence(0.2), 16000)
    if source == "mic":
        monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(audio.speech_like(0.5)))
    async with websockets.serve(server, "127.0.0.1", 0) as listening:
        port = listening.sockets[0].getsockname()[1]
        options = TalkOptions(
            url=f"ws://127.0.0.1:{port}/",
            wav=wav if source == "wav" else None,
            mic=source == "mic",
            text="hello",
            speed=4.0,
            quiet=0.3,
            timeout=1.5 if source == "mic" else 10.0,
        )
        stderr = io.StringIO()
        code = await talk(options, io.StringIO(), stderr)
    assert code is Exit.OK, stderr.getvalue()
    assert after_end.is_set()
    kinds = [frame["type"] for frame in received]
    assert kinds.count("audio") >= 5 and kinds.count("end") == 1
    assert kinds[-1] == "end", kinds[-5:]
    assert "session ended: client ended the session" in stderr.getvalue()


# -- the offline speech: speech in, speech out ----------------------------------------------


@pytest.fixture
async def speaking_stack() -> AsyncIterator[RunningStack]:
    """The local stack as `make dev` runs it: the emulator hears, calls tools and speaks."""
    options = DevOptions(port=0, tools_dir=REPO / "tools", web_dir=None, speech=True)
    async with local_stack(options, stdout=io.StringIO()) as running:
        yield running


def spotted(pcm: bytes, rate: int, keyword: str) -> bool:
    """Whether PocketSphinx spots ``keyword`` in the audio (keyword search, no grammar)."""
    import numpy as np
    from pocketsphinx import Decoder

    from novakit.voice import resample

    samples = np.frombuffer(resample(pcm, rate, 16000), dtype="<i2").astype(np.int32)
    samples += np.random.default_rng(0).integers(-10, 11, samples.size)  # not digital silence
    audio16 = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    decoder = Decoder(loglevel="FATAL", lm=None, keyphrase=keyword, kws_threshold=1e-20)
    decoder.start_utt()
    decoder.process_raw(bytes(6400) + audio16 + bytes(6400), full_utt=True)
    decoder.end_utt()
    return decoder.hyp() is not None


async def test_a_spoken_question_calls_the_tool_and_the_spoken_answer_says_it(
    speaking_stack: RunningStack, tmp_path: Path
) -> None:
    mind = speaking_stack.emulator.config.engine.mind
    wav = tmp_path / "question.wav"
    audio.write_wav(wav, mind.speak("what time is it in Tokyo", 16000, "tiffany"), 16000)
    out = tmp_path / "answer.wav"
    run = await novakit_talk(
        speaking_stack.gateway_url,
        "--wav",
        str(wav),
        "--out",
        str(out),
        "--text",
        "What's the time in Tokyo?",
        "--speed",
        "4",
        # The typed question goes once nothing has come for this long after the WAV: on a
        # busy machine the spoken question's transcript can take more than a second.
        "--quiet",
        "3",
        cwd=tmp_path,
    )
    assert run.code == Exit.OK, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "user: what time is it in tokyo"
    tools = [line for line in lines if line.startswith("tool: ")]
    assert len(tools) == 2 and all(t.startswith("tool: get_time succeeded") for t in tools)
    # The typed question called the same tool with the same arguments.
    calls = [json.loads(e.body["content"]) for e in _tool_uses(speaking_stack)]
    assert calls == [{"timezone": "Asia/Tokyo"}, {"timezone": "Asia/Tokyo"}]
    answers = [line for line in lines if line.startswith("assistant: It is ")]
    assert len(answers) == 2 and all(a.endswith(" in Asia/Tokyo.") for a in answers)
    pcm, rate = audio.read_wav(out)
    assert audio.duration(pcm, rate) > 2.0
    assert spotted(pcm, rate, "tokyo") and not spotted(pcm, rate, "london")


def _tool_uses(stack: RunningStack) -> list[Any]:
    return [
        event
        for record in stack.emulator.records
        for event in record.output_events
        if event.name == "toolUse"
    ]
