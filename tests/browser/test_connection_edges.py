"""The browser client at the edges of a conversation, in real Chromium against the local stack:
a bridge that is down behind a live gateway, Disconnect, the Reconnect button, the voice list,
and the pure lifecycle (state machine and back-off) the page runs on."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import aiohttp

from novakit import audio
from novakit.emulator import EmulatorConfig, Script, ScriptTurn
from novakit.localgw import GatewayConfig, LocalGateway
from novakit.s2s.nova.models import MODELS, NOVA_2_SONIC, NOVA_SONIC_V1

from .conftest import WEB, BrowserPage, browser_stack, chromium, crashable_stack

MIC_RATE = 48000
NOT_ANSWERING = "the agent is not answering, retrying…"
# Chromium's console words for a handshake the gateway refused while the bridge was down.
REFUSED_HANDSHAKE = "Unexpected response code: 502"


def silent_wav(path: Path) -> Path:
    audio.write_wav(path, audio.silence(5.0, MIC_RATE), MIC_RATE)
    return path


def page_errors(page: BrowserPage, *, but: tuple[str, ...] = ()) -> list[str]:
    """Script errors, less the expected ones (config.json's 404: only a hosted page has one)."""
    errors = [log for log in page.logs if log.startswith(("page error", "console error"))]
    return [e for e in errors if not e.endswith("/config.json)") and not any(b in e for b in but)]


async def buttons(page: BrowserPage) -> dict[str, bool]:
    """Which of Connect, Reconnect and Disconnect are enabled."""
    enabled: dict[str, bool] = await page.page.evaluate(
        """() => Object.fromEntries(["connect", "reconnect", "disconnect"].map(
            (id) => [id, !document.querySelector(`[data-testid=${id}]`).disabled]))"""
    )
    return enabled


def most_probes(seconds: float, base: float = 1.0) -> int:
    """The most probes exponential back-off allows in ``seconds``: probe k waits at least
    ``base * 2**k / 2`` (half of each wait is random), so k probes take at least
    ``base / 2 * (2**k - 1)``."""
    return math.floor(math.log2(2 * seconds / base + 1))


async def test_a_bridge_down_behind_a_live_gateway_pauses_the_audio_and_retries_with_back_off(
    tmp_path: Path,
) -> None:
    """The gateway stays up and answers every frame with "Internal server error": the page
    stops streaming, says the agent is not answering (once), probes with back-off, and streams
    again when a bridge takes the connection over (resumed). When the connection itself is
    lost while the bridge is down, it reconnects with back-off and comes back clean."""
    script = Script((ScriptTurn(reply="Hello."),))
    async with (
        crashable_stack(EmulatorConfig(script=script), tmp_path) as (stack, bridge),
        chromium(silent_wav(tmp_path / "mic.wav"), stack.page_url) as page,
    ):
        ui = page.page.get_by_test_id
        assert await buttons(page) == {"connect": True, "reconnect": False, "disconnect": False}
        await ui("connect").click()
        await page.wait_for(
            lambda s: s["session"] == "ready" and s["stats"]["micFramesSent"] > 3, "streaming"
        )
        assert await buttons(page) == {"connect": False, "reconnect": False, "disconnect": True}

        # The bridge crashes; the gateway keeps the connection and answers for it.
        killed_at = time.monotonic()  # before the pause: bounds measured from here hold
        await bridge.kill()
        state = await page.wait_for(lambda s: s["state"] == "retrying", "the pause", 30)
        assert state["error"] == NOT_ANSWERING and state["badge"].startswith(NOT_ANSWERING)
        assert await buttons(page) == {"connect": False, "reconnect": False, "disconnect": True}
        banners, sent = state["stats"]["banners"], state["stats"]["micFramesSent"]

        state = await page.wait_for(lambda s: s["counts"]["probes"] >= 3, "three probes", 60)
        elapsed = time.monotonic() - killed_at
        probes, errors = state["counts"]["probes"], state["counts"]["gatewayErrors"]
        assert probes <= most_probes(elapsed), (probes, elapsed)
        # No audio while paused: the gateway's errors are the few frames that were in flight
        # when the page paused, and one per probe; not ten a second.
        assert state["stats"]["micFramesSent"] == sent
        assert errors <= 3 + 8 + probes, state["counts"]
        assert state["stats"]["banners"] == banners  # one banner, still up: no flood
        assert state["state"] == "retrying" and state["error"] == NOT_ANSWERING

        # A bridge is back: the next probe reaches it, it takes the connection over, and the
        # conversation goes on on the same connection.
        connection_id = stack.gateway.connections[0]
        await bridge.start()
        state = await page.wait_for(
            lambda s: (
                s["session"] == "resumed"
                and s["badge"] == "connected"
                and s["stats"]["micFramesSent"] > sent
            ),
            "the resumed session",
            90,
        )
        assert state["error"] == "" and state["state"] == "open"
        assert stack.gateway.connections == [connection_id]
        assert state["counts"]["dials"] == 1  # no new connection was needed

        # Down again, and this time the connection is lost too: handshakes fail (502) until
        # the bridge is back, with back-off between them.
        await bridge.kill()
        await page.wait_for(lambda s: s["state"] == "retrying", "the second pause", 30)
        lost_at = time.monotonic()
        async with (
            aiohttp.ClientSession() as http,
            http.delete(f"{stack.gateway.management_url}/@connections/{connection_id}") as deleted,
        ):
            assert deleted.status == 204
        state = await page.wait_for(lambda s: s["state"] == "waiting", "the lost connection")
        assert "Connection deleted" in state["error"]
        assert await buttons(page) == {"connect": False, "reconnect": True, "disconnect": True}
        state = await page.wait_for(lambda s: s["counts"]["dials"] >= 4, "three redials", 60)
        redials = state["counts"]["dials"] - 1
        assert redials <= most_probes(time.monotonic() - lost_at), redials

        await bridge.start()
        state = await page.wait_for(
            lambda s: (
                s["state"] == "open" and s["session"] == "ready" and s["badge"] == "connected"
            ),
            "the new connection",
            90,
        )
        assert state["error"] == ""  # the lost connection's banner went with it
        assert stack.gateway.connections and stack.gateway.connections[0] != connection_id
        assert not page_errors(page, but=(REFUSED_HANDSHAKE,))


async def test_disconnect_sends_end_last_and_lets_the_microphone_go(tmp_path: Path) -> None:
    async with (
        browser_stack(EmulatorConfig()) as stack,
        chromium(silent_wav(tmp_path / "mic.wav"), stack.page_url) as page,
    ):
        assert stack.bridge is not None
        ui = page.page.get_by_test_id
        await ui("connect").click()
        state = await page.wait_for(
            lambda s: s["session"] == "ready" and s["stats"]["micFramesSent"] >= 5, "streaming"
        )
        assert state["microphoneTracks"] == ["live"] and state["audioState"] == "running"
        (connection_id,) = stack.gateway.connections

        await ui("disconnect").click()
        state = await page.wait_for(lambda s: s["state"] == "closed", "the end", 30)
        assert state["microphoneTracks"] == ["ended"]  # the browser's recording light is off
        assert state["audioState"] == "suspended"
        assert state["microphone"] == "off"
        assert await buttons(page) == {"connect": True, "reconnect": True, "disconnect": False}
        assert await ui("mute").is_disabled()

        # Nothing but `end` after the last audio frame: the gateway has nothing left to forward
        # once the connection has closed.
        sent = [frame["type"] for cid, frame in stack.bridge.frames if cid == connection_id]
        assert sent.count("end") == 1 and sent[-1] == "end", sent[-5:]
        assert sent.count("audio") >= 5

        # Reconnect takes the microphone again, on a new connection.
        await ui("reconnect").click()
        state = await page.wait_for(
            lambda s: s["session"] == "ready" and s["stats"]["micFramesSent"] > 5, "again"
        )
        assert state["microphoneTracks"] == ["ended", "live"] and state["audioState"] == "running"
        assert await buttons(page) == {"connect": False, "reconnect": False, "disconnect": True}
        assert not page_errors(page)


async def test_the_voice_list_is_the_voices_of_the_sessions_model(tmp_path: Path) -> None:
    async with (
        browser_stack(EmulatorConfig(), model=NOVA_SONIC_V1.model_id) as stack,
        chromium(silent_wav(tmp_path / "mic.wav"), stack.page_url) as page,
    ):
        # Before a session: the bridge's default model, Nova 2 Sonic.
        assert await voice_options(page) == sorted(NOVA_2_SONIC.voices)
        await page.page.get_by_test_id("voice").select_option("tiffany")
        await page.page.get_by_test_id("connect").click()
        await page.wait_for(lambda s: s["session"] == "ready", "the session")
        # The session runs Nova Sonic v1: its voices, the chosen one still chosen.
        assert await voice_options(page) == sorted(NOVA_SONIC_V1.voices)
        assert await page.page.get_by_test_id("voice").input_value() == "tiffany"
        assert not page_errors(page)


async def voice_options(page: BrowserPage) -> list[str]:
    names: list[str] = await page.page.evaluate(
        """() => [...document.querySelectorAll("[data-testid=voice] option")]
            .map((option) => option.value).filter(Boolean)"""
    )
    return sorted(names)


async def test_the_pages_lifecycle_and_back_off_on_their_own(tmp_path: Path) -> None:
    """lifecycle.js and voices.js, pure code, evaluated in the page."""
    gateway_config = GatewayConfig(backends=["http://127.0.0.1:9"], static_dir=WEB)
    async with (
        LocalGateway(gateway_config) as gateway,
        chromium(silent_wav(tmp_path / "mic.wav"), f"{gateway.management_url}/") as page,
    ):
        result: dict[str, Any] = await page.page.evaluate(
            """async () => {
                const life = await import("./lifecycle.js");
                const voices = await import("./voices.js");
                const walk = (events) => events.reduce(
                    (states, event) => [...states, life.transition(states.at(-1), event)],
                    ["closed"]);
                const window = new life.ErrorWindow({ count: 3, withinMs: 2000 });
                return {
                    happy: walk(["connect", "opened", "disconnect", "closed"]),
                    outage: walk(["connect", "opened", "gatewayErrors", "gatewayErrors",
                                  "answered", "lost", "retry", "lost", "giveUp", "connect"]),
                    refused: walk(["connect", "refused"]),
                    ignored: [life.transition("closed", "opened"),
                              life.transition("closing", "gatewayErrors"),
                              life.transition("open", "retry"),
                              life.transition("failed", "disconnect")],
                    streams: life.STATES.filter(life.streams),
                    reconnect: life.STATES.filter(life.canReconnect),
                    connect: life.STATES.filter(life.canConnect),
                    disconnect: life.STATES.filter(life.canDisconnect),
                    low: [...Array(12).keys()].map((n) => life.backoffMs(n, undefined, () => 0)),
                    high: [...Array(12).keys()].map((n) => life.backoffMs(n, undefined, () => 1)),
                    random: [...Array(200).keys()].map((n) => life.backoffMs(n % 12)),
                    backoff: life.BACKOFF,
                    gateway: [life.isGatewayError({ message: "Internal server error",
                                                    connectionId: "c", requestId: "r" }),
                              life.isGatewayError({ type: "error", message: "x" }),
                              life.isGatewayError(null)],
                    window: [window.add(0), window.add(500), window.add(2600), window.add(2700),
                             window.add(2800)],
                    voices: voices.MODEL_VOICES,
                    defaultModel: voices.DEFAULT_MODEL,
                };
            }"""
        )
    assert result["happy"] == ["closed", "connecting", "open", "closing", "closed"]
    assert result["outage"] == [
        "closed",
        "connecting",
        "open",
        "retrying",
        "retrying",
        "open",
        "waiting",
        "connecting",
        "waiting",
        "failed",
        "connecting",
    ]
    assert result["refused"] == ["closed", "connecting", "failed"]
    assert result["ignored"] == [None, None, None, None]
    assert result["streams"] == ["open"]
    assert result["reconnect"] == ["closed", "waiting", "failed"]
    assert result["connect"] == ["closed", "failed"]
    assert result["disconnect"] == ["connecting", "open", "retrying", "waiting"]

    base, cap = result["backoff"]["baseMs"], result["backoff"]["capMs"]
    low, high = result["low"], result["high"]
    assert high[:4] == [base, 2 * base, 4 * base, 8 * base] and high[-1] == cap
    assert low == [h / 2 for h in high]  # half of each wait is the jitter
    assert all(a <= b for a, b in itertools.pairwise(high))
    assert all(base / 2 <= ms <= cap for ms in result["random"])
    assert len(set(result["random"])) > 100  # jittered: pages do not come back in step

    assert result["gateway"] == [True, False, False]
    assert result["window"] == [False, False, False, False, True]

    # The page's voice table is the provider's.
    assert {model: sorted(v) for model, v in result["voices"].items()} == {
        model_id: sorted(model.voices) for model_id, model in MODELS.items()
    }
    from novakit.s2s.config import DEFAULT_MODEL

    assert result["defaultModel"] == DEFAULT_MODEL
