"""The browser client (``web/``) in real Chromium with a fake microphone fed from a WAV file,
against the local stack. Screenshots go to ``test-artifacts/browser/``."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import numpy as np

from novakit import audio
from novakit.emulator import EmulatorConfig, EngineSettings, Script, ScriptTurn

from .conftest import REPO, WEB, BrowserPage, browser_stack, chromium

STORY = " ".join(["This answer goes on for a good long while."] * 8)  # ~22 s of speech
NEXT_ANSWER = "Okay, I will stop the story here."
MIC_RATE = 48000  # what a microphone usually gives; the page resamples to 16 kHz


def spoken_wav(path: Path) -> Path:
    """A question, a pause that ends it, then words over the assistant's answer (a barge-in),
    then silence for longer than the test runs (Chromium loops the file)."""
    pcm = (
        audio.speech_like(1.5, MIC_RATE)
        + audio.silence(3.5, MIC_RATE)
        + audio.speech_like(1.2, MIC_RATE, pitch=170.0)
        + audio.silence(60.0, MIC_RATE)
    )
    audio.write_wav(path, pcm, MIC_RATE)
    return path


def silent_wav(path: Path) -> Path:
    audio.write_wav(path, audio.silence(5.0, MIC_RATE), MIC_RATE)
    return path


def lines(state: dict, role: str) -> list[dict]:
    return [line for line in state["transcript"] if line["role"] == role]


def no_page_errors(page: BrowserPage, *, but: str = "\0") -> None:
    """No script errors; the 404 of config.json (only a hosted page has one) is expected."""
    errors = [log for log in page.logs if log.startswith(("page error", "console error"))]
    unexpected = [e for e in errors if but not in e and not e.endswith("/config.json)")]
    assert not unexpected, errors


async def test_speech_in_answer_out_and_barge_in_stops_playback_at_once(tmp_path: Path) -> None:
    script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=STORY),
            ScriptTurn(transcript="stop please", reply=NEXT_ANSWER),
        )
    )
    config = EmulatorConfig(script=script, engine=EngineSettings(endpoint_seconds=0.8))
    async with (
        browser_stack(config) as stack,
        chromium(spoken_wav(tmp_path / "mic.wav"), stack.page_url) as page,
    ):
        assert await page.page.get_by_test_id("url").input_value() == stack.gateway.url
        await page.page.get_by_test_id("connect").click()
        state = await page.wait_for(lambda s: s["session"] == "ready", "the session", 15)
        assert state["microphone"] == "on"
        await page.screenshot("1-connected")

        # The question is heard and answered: the user's words, then the answer's text and audio.
        state = await page.wait_for(
            lambda s: s["stats"]["framesPlayed"] >= 5 and lines(s, "assistant"), "the answer"
        )
        await page.screenshot("2-answering")
        assert [line["text"] for line in lines(state, "user")] == ["tell me a story"]
        assert lines(state, "assistant")[0]["text"].startswith("This answer goes on")
        assert state["stats"]["playedSeconds"] > 0 and state["contextTime"] > 0
        assert state["stats"]["micFramesSent"] > 0

        # The user talks over the answer: the server clears, the page empties its queue at once.
        state = await page.wait_for(
            lambda s: s["stats"]["clears"] and s["stats"]["clears"][0]["queuedSecondsAfter"] == 0,
            "the barge-in",
        )
        await page.screenshot("3-barge-in")
        clear = state["stats"]["clears"][0]
        assert clear["reason"] == "barge_in"
        assert clear["droppedSeconds"] > 1.0  # the rest of the story, never played
        story = lines(state, "assistant")[0]
        assert story["interrupted"]
        # what was spoken before the interruption, as final text; no speculative text is left
        assert story["final"] == story["text"] and story["final"].startswith("This answer")
        assert len(story["final"]) < len(STORY)

        # The next answer plays, and nothing of the story played after the clear.
        state = await page.wait_for(
            lambda s: (
                any(line["final"] == NEXT_ANSWER for line in lines(s, "assistant"))
                and s["stats"]["framesPlayed"] > s["stats"]["clears"][0]["framesPlayedAfter"] + 3
            ),
            "the next answer",
        )
        await page.screenshot("4-next-answer")
        clear = state["stats"]["clears"][0]
        after = state["stats"]["playedSeqs"][clear["framesPlayedAfter"] :]
        assert after and all(seq > clear["seq"] for seq in after)
        assert [line["text"] for line in lines(state, "user")] == [
            "tell me a story",
            "stop please",
        ]
        no_page_errors(page)
    transcripts = [e for e in stack.emulator.records[0].output_events if e.name == "textOutput"]
    assert transcripts  # the model really spoke through the bridge to this page


async def test_token_errors_typed_text_interrupt_and_reconnect(tmp_path: Path) -> None:
    long_reply = " ".join(["A long reply to cut short."] * 10)
    script = Script((ScriptTurn(reply=long_reply), ScriptTurn(reply="Hello again.")))
    config = EmulatorConfig(script=script)
    async with (
        browser_stack(config, token="s3cret") as stack,
        chromium(silent_wav(tmp_path / "mic.wav"), stack.page_url) as page,
    ):
        ui = page.page.get_by_test_id
        # Without the token the handshake is refused, and the page says so in words.
        await ui("connect").click()
        state = await page.wait_for(lambda s: s["error"], "an error")
        assert "could not connect" in state["error"] and "token" in state["error"]
        assert state["state"] == "failed"  # no retries: the same token would be refused again
        await page.screenshot("5-refused")

        await ui("token").fill("s3cret")
        await ui("connect").click()
        await page.wait_for(lambda s: s["session"] == "ready", "the session")
        assert await ui("error").is_hidden()

        # Typed input, then the interrupt button stops playback without waiting for the server.
        await ui("text-input").fill("talk to me")
        await ui("send").click()
        await page.wait_for(lambda s: s["stats"]["framesPlayed"] >= 3, "the answer")
        await ui("interrupt").click()
        state = await page.wait_for(
            lambda s: (
                len(s["stats"]["clears"]) >= 2
                and all(c["queuedSecondsAfter"] is not None for c in s["stats"]["clears"][:2])
            ),
            "the local stop and the server's, both carried out by the player",
        )
        local, server = state["stats"]["clears"][:2]
        assert (local["reason"], local["seq"], local["queuedSecondsAfter"]) == ("client", None, 0)
        assert server["reason"] == "client" and server["seq"] > 0
        assert lines(state, "user")[0]["text"] == "talk to me"
        assert lines(state, "assistant")[0]["interrupted"]

        # The connection drops (API Gateway closes it): the page says why and reconnects.
        (connection_id,) = stack.gateway.connections
        async with (
            aiohttp.ClientSession() as http,
            http.delete(f"{stack.gateway.management_url}/@connections/{connection_id}") as deleted,
        ):
            assert deleted.status == 204

        # The banner lasts until the page has reconnected: look for it in the page's record.
        def dropped(s: dict) -> list[str]:
            return [e for e in s["stats"]["errors"] if "Connection deleted" in str(e)]

        state = await page.wait_for(dropped, "the drop")
        assert "code 1000" in dropped(state)[0]
        await page.screenshot("6-dropped")
        state = await page.wait_for(
            lambda s: (
                s["state"] == "open"
                and sum(line["text"].startswith("connected") for line in lines(s, "note")) == 2
            ),
            "the reconnection",
        )
        assert state["error"] == ""  # the drop's banner went when the new connection opened
        assert stack.gateway.connections and stack.gateway.connections[0] != connection_id

        # The new connection is a new conversation, its frames numbered from 0 again: it plays.
        played, ignored = state["stats"]["framesPlayed"], state["stats"]["lateAudioIgnored"]
        await ui("text-input").fill("are you there")
        await ui("send").click()
        state = await page.wait_for(
            lambda s: s["stats"]["framesPlayed"] > played + 3, "audio again"
        )
        assert state["stats"]["lateAudioIgnored"] == ignored  # none taken for the old answer's
        no_page_errors(page, but="HTTP Authentication failed")  # Chromium's word on the 401


async def test_the_capture_worklet_resamples_to_16_khz_without_aliasing(tmp_path: Path) -> None:
    """The microphone path alone, rendered offline at 48 kHz: a 440 Hz tone comes out at
    16 kHz as a 440 Hz tone, and a 10 kHz tone (above 16 kHz audio's 8 kHz limit) is filtered
    out instead of folding back as a 6 kHz alias."""
    from novakit.localgw import GatewayConfig, LocalGateway

    gateway_config = GatewayConfig(backends=["http://127.0.0.1:9"], static_dir=WEB)
    async with (
        LocalGateway(gateway_config) as gateway,
        chromium(silent_wav(tmp_path / "mic.wav"), f"{gateway.management_url}/") as page,
    ):
        levels = {}
        for frequency in (440, 10000):
            samples = await page.page.evaluate(
                """async (frequency) => {
                    const context = new OfflineAudioContext(1, 48000, 48000);
                    await context.audioWorklet.addModule("worklets.js");
                    const capture = new AudioWorkletNode(context, "novakit-capture", {
                        numberOfOutputs: 0, processorOptions: { frameSamples: 512 } });
                    const frames = [];
                    capture.port.onmessage = (event) => frames.push(...event.data.pcm);
                    const tone = new OscillatorNode(context, { frequency });
                    tone.connect(capture);
                    tone.start();
                    await context.startRendering();
                    await new Promise((resolve) => setTimeout(resolve, 300));
                    return frames;
                }""",
                frequency,
            )
            pcm = np.asarray(samples, dtype=np.float64)
            assert len(pcm) == 16000 // 512 * 512  # one second at 16 kHz, in whole frames
            steady = pcm[1000:]  # past the filter's start
            spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
            peak_hz = np.argmax(spectrum) * 16000 / len(steady)
            levels[frequency] = np.sqrt(np.mean(steady**2)) / 32768
            if frequency == 440:
                assert abs(peak_hz - 440) < 5, peak_hz
        assert 20 * np.log10(levels[10000] / levels[440]) < -40, levels
        no_page_errors(page)


async def test_a_hosted_page_takes_its_websocket_url_from_config_json(tmp_path: Path) -> None:
    """The stack hosts ``web/`` with a config.json naming its API; the page connects there."""
    from novakit.localgw import GatewayConfig, LocalGateway

    api = "wss://abc123.execute-api.eu-west-1.amazonaws.com/live"
    gateway_config = GatewayConfig(backends=["http://127.0.0.1:9"], static_dir=WEB)
    async with (
        LocalGateway(gateway_config) as gateway,
        chromium(silent_wav(tmp_path / "mic.wav"), f"{gateway.management_url}/") as page,
    ):
        config = json.dumps({"url": api, "auth": "cognito"})
        await page.page.route(
            "**/config.json",
            lambda route: route.fulfill(body=config, content_type="application/json"),
        )
        await page.page.reload()
        from playwright.async_api import expect

        await expect(page.page.get_by_test_id("url")).to_have_value(api)
        token = page.page.get_by_test_id("token")
        await expect(token).to_have_attribute("placeholder", "a Cognito access token")
        no_page_errors(page)


async def test_a_spoken_question_calls_the_tool_and_the_answer_plays(tmp_path: Path) -> None:
    """The offline speech of `make dev`: the fake microphone asks (eSpeak NG), the page shows
    the words the emulator heard, the tool line, and plays the answer."""
    from novakit.emulator.mind import Mind
    from novakit.voice import resample

    mind = Mind.from_tools_dir(REPO / "tools")
    question = mind.speak("what time is it in Tokyo", 16000, "tiffany")
    pcm = resample(audio.silence(0.5) + question, 16000, MIC_RATE) + audio.silence(60.0, MIC_RATE)
    wav = tmp_path / "question.wav"
    audio.write_wav(wav, pcm, MIC_RATE)
    engine = EngineSettings(mind=mind, endpoint_seconds=0.8, response_latency=0.0)
    async with (
        browser_stack(EmulatorConfig(engine=engine), tools_dir=REPO / "tools") as stack,
        chromium(wav, stack.page_url) as page,
    ):
        await page.page.get_by_test_id("connect").click()
        await page.wait_for(lambda s: s["session"] == "ready", "the session", 15)
        state = await page.wait_for(
            lambda s: (
                s["stats"]["framesPlayed"] >= 5
                and any(line["text"].startswith("It is ") for line in lines(s, "assistant"))
            ),
            "the answer",
            30,
        )
        await page.screenshot("offline-speech")
        (heard,) = [line["text"] for line in lines(state, "user")]
        # The question's words (the recognizer may hear a polite word around them).
        assert "what time is it in tokyo" in heard
        assert [line["text"].split()[:2] for line in lines(state, "tool")] == [["get_time", "done"]]
        answer = lines(state, "assistant")[0]["text"]
        assert answer.startswith("It is ") and answer.endswith(" in Asia/Tokyo.")
        assert state["stats"]["playedSeconds"] > 0
        no_page_errors(page)
