"""``python -m bench speech``: the emulator's offline speech, measured.

1. **Understanding.** Spoken requests for the example tools of ``tools/`` (several phrasings,
   values, eSpeak NG voices and speeds; every request also with background noise at 20 dB SNR),
   heard by the emulator's recognizer and matched to a tool: tool accuracy, slot accuracy, word
   error rate of the transcript, recognition CPU per request. A few requests no tool answers
   measure false tool calls.
2. **Latency and CPU through the local stack** (gateway, bridge, emulator, in-process tools, one
   process): a client speaks a question in real time over the WebSocket; end of the user's
   speech to the first answer audio at the client, p50/p95, split into the endpointing pause
   (the model's turn detection) and the rest; the CPU the emulator's speech used per second of
   a talking session.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import save

TOOLS = Path(__file__).resolve().parents[1] / "tools"
NOISE_SNR_DB = 20.0
VOICES = ("matthew", "tiffany", "amy", "olivia")
SPEEDS = (150, 175, 200)


@dataclass(frozen=True)
class Request:
    said: str
    tool: str | None
    arguments: dict[str, Any]


def requests() -> list[Request]:
    """The test set: what is said, and the call it should become (None: no tool)."""
    cities = ("Tokyo", "London", "Paris", "New York", "Berlin", "Madrid", "Sydney", "Chicago")
    zones = {
        "Tokyo": "Asia/Tokyo",
        "London": "Europe/London",
        "Paris": "Europe/Paris",
        "New York": "America/New_York",
        "Berlin": "Europe/Berlin",
        "Madrid": "Europe/Madrid",
        "Sydney": "Australia/Sydney",
        "Chicago": "America/Chicago",
    }
    time_phrasings = (
        "what time is it in {}",
        "could you tell me what time it is in {}",
        "what is the time in {} please",
    )
    weather_phrasings = (
        "what is the weather in {}",
        "what's the weather like in {}",
        "is it raining in {}",
    )
    topics = ("parking", "holidays", "expenses", "office hours")
    lookup_phrasings = (
        "what does the handbook say about {}",
        "tell me about {}",
        "what is the policy on {}",
    )
    out: list[Request] = []
    for i, city in enumerate(cities):
        for j, phrasing in enumerate(time_phrasings):
            if (i + j) % 3 != 2:
                out.append(Request(phrasing.format(city), "get_time", {"timezone": zones[city]}))
        for j, phrasing in enumerate(weather_phrasings):
            if (i + j) % 3 == 0:
                out.append(Request(phrasing.format(city), "weather", {"city": city}))
    for i, topic in enumerate(topics):
        for phrasing in lookup_phrasings[: 2 + i % 2]:
            out.append(Request(phrasing.format(topic), "lookup", {"query": topic}))
    for said in ("hello", "thank you", "goodbye"):
        out.append(Request(said, None, {}))
    for said in ("I would like to order a pizza", "play some music", "how are you today"):
        out.append(Request(said, None, {}))
    return out


def _words(text: str) -> list[str]:
    from novakit.emulator.matching import words

    return words(text)


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def with_noise(pcm: bytes, snr_db: float, seed: int) -> bytes:
    """``pcm`` plus white noise ``snr_db`` below the speech's power."""
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    voiced = speech[np.abs(speech) > 100]
    power = float(np.mean(voiced**2)) if voiced.size else 1.0
    noise = np.random.default_rng(seed).normal(
        0.0, np.sqrt(power / 10 ** (snr_db / 10)), speech.size
    )
    return np.clip(np.rint(speech + noise), -32768, 32767).astype("<i2").tobytes()


def understanding(quick: bool) -> dict[str, Any]:
    from novakit.emulator.mind import Mind

    mind = Mind.from_tools_dir(TOOLS)
    cases = requests()
    if quick:
        cases = cases[::3]
    rows: list[dict[str, Any]] = []
    errors = reference_words = 0
    cpu: list[float] = []
    for index, case in enumerate(cases):
        for noisy in (False, True):
            voice = VOICES[index % len(VOICES)]
            speed = SPEEDS[(index + noisy) % len(SPEEDS)]
            pcm = bytes(8000) + mind.synthesizer.speak(
                case.said, 16000, voice, words_per_minute=speed
            )
            pcm += bytes(8000)
            if noisy:
                pcm = with_noise(pcm, NOISE_SNR_DB, seed=index)
            started = time.process_time()
            heard = mind.hear(pcm)
            cpu.append(time.process_time() - started)
            response = mind.respond(heard.text)
            reference = _words(case.said)
            errors += word_errors(reference, heard.text.split())
            reference_words += len(reference)
            rows.append(
                {
                    "said": case.said,
                    "voice": voice,
                    "wpm": speed,
                    "noise": noisy,
                    "heard": heard.text,
                    "by": heard.by,
                    "tool_ok": response.tool == case.tool,
                    "slots_ok": response.tool == case.tool
                    and (response.arguments or {}) == case.arguments,
                    "expected_tool": case.tool,
                }
            )
    with_tool = [r for r in rows if r["expected_tool"] is not None]
    without = [r for r in rows if r["expected_tool"] is None]
    return {
        "requests": len(rows),
        "tool_requests": len(with_tool),
        "tool_accuracy": round(sum(r["tool_ok"] for r in with_tool) / len(with_tool), 3),
        "slot_accuracy": round(sum(r["slots_ok"] for r in with_tool) / len(with_tool), 3),
        "tool_accuracy_clean": _share(with_tool, noisy=False),
        "tool_accuracy_noise_20db": _share(with_tool, noisy=True),
        "false_tool_calls": sum(not r["tool_ok"] for r in without),
        "no_tool_requests": len(without),
        "word_error_rate": round(errors / reference_words, 3),
        "heard_by_grammar": round(sum(r["by"] == "grammar" for r in rows) / len(rows), 3),
        "recognition_cpu_ms_p50": round(1000 * statistics.median(cpu), 1),
        "recognition_cpu_ms_max": round(1000 * max(cpu), 1),
        "misses": [r for r in with_tool if not r["slots_ok"]][:20],
    }


def _share(rows: list[dict[str, Any]], *, noisy: bool) -> float:
    chosen = [r for r in rows if r["noise"] is noisy]
    return round(sum(r["tool_ok"] for r in chosen) / len(chosen), 3)


async def latency(quick: bool) -> dict[str, Any]:
    """Questions spoken in real time through gateway and bridge; see the module docstring."""
    import websockets

    from novakit.dev import DevOptions, local_stack
    from novakit.emulator.conversation import ENDPOINTING_SECONDS

    questions = ["what time is it in Tokyo", "what time is it in London", "hello", "thank you"]
    rounds = 2 if quick else 5
    options = DevOptions(port=0, speech=True, tools_dir=TOOLS, web_dir=None)
    total: list[float] = []
    after_endpoint: list[float] = []
    pause = ENDPOINTING_SECONDS["MEDIUM"]
    with open(os.devnull, "w") as quiet:  # noqa: ASYNC230 (before the stack starts)
        async with local_stack(options, quiet) as running:
            mind = running.emulator.config.engine.mind
            spoken = {q: mind.speak(q, 16000, "matthew") for q in questions}
            cpu_before = mind.cpu_seconds
            wall_started = time.monotonic()
            async with websockets.connect(running.gateway_url, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "start"}))
                await _until(ws, "session")
                seq = 0
                for _ in range(rounds):
                    for question in questions:
                        seq, speech_end = await _speak(ws, spoken[question], seq)
                        first_audio = await _first_audio(ws)
                        total.append(first_audio - speech_end)
                        after_endpoint.append(first_audio - speech_end - pause)
            wall = time.monotonic() - wall_started
            cpu = mind.cpu_seconds - cpu_before
    return {
        "turns": len(total),
        "end_of_speech_to_first_audio_ms_p50": _ms(statistics.median(total)),
        "end_of_speech_to_first_audio_ms_p95": _ms(_p95(total)),
        "endpointing_pause_ms": _ms(pause),
        "after_turn_end_to_first_audio_ms_p50": _ms(statistics.median(after_endpoint)),
        "after_turn_end_to_first_audio_ms_p95": _ms(_p95(after_endpoint)),
        "speech_cpu_seconds_per_session_second": round(cpu / wall, 4),
        "session_seconds": round(wall, 1),
    }


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for message in ws:
            frame: dict[str, Any] = json.loads(message)
            if frame.get("type") == kind:
                return frame
    raise RuntimeError(f"the connection closed before a {kind!r} frame")


async def _speak(ws: Any, pcm: bytes, seq: int) -> tuple[int, float]:
    """Send ``pcm`` then silence in real time (20 ms frames); return when the speech ended."""
    frame = 640
    audio = pcm + bytes(16000 * 2 * 3)  # then 3 s of silence: the endpointing pause and more
    started = time.monotonic()
    speech_end = started + len(pcm) / 32000
    sender = asyncio.create_task(_send_audio(ws, audio, seq, started, frame))
    await asyncio.sleep(0)
    _SENDERS.append(sender)
    return seq + len(audio) // frame + 1, speech_end


_SENDERS: list[asyncio.Task[None]] = []


async def _send_audio(ws: Any, audio: bytes, seq: int, started: float, frame: int) -> None:
    for index, offset in enumerate(range(0, len(audio), frame)):
        delay = started + index * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = base64.b64encode(audio[offset : offset + frame]).decode()
        await ws.send(json.dumps({"type": "audio", "seq": seq + index, "data": chunk}))


async def _first_audio(ws: Any) -> float:
    """When the first answer audio arrives; then wait for the turn's end and the sender."""
    first: float | None = None
    async with asyncio.timeout(30):
        async for message in ws:
            frame: dict[str, Any] = json.loads(message)
            if frame.get("type") == "audio" and first is None:
                first = time.monotonic()
            elif frame.get("type") == "turn_end" and first is not None:
                break
    while _SENDERS:
        await _SENDERS.pop()
    assert first is not None
    return first


async def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"understanding": understanding(quick)}
    save("speech", results)  # what is measured so far, if the next part fails
    results["latency"] = await latency(quick)
    results["path"] = str(save("speech", results))
    return results
