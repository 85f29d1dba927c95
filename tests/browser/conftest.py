"""Real Chromium against the local stack: the Bedrock emulator, the bridge (in-process, as
``novakit dev`` runs it) and the local API Gateway serving ``web/`` on the WebSocket's port.

Chromium is Debian's (``make test`` installs it); Playwright drives it. Without a chromium
binary the browser tests skip and say why."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from novakit.bridge.app import Bridge
from novakit.bridge.connections import Unsigned
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..gateway_auth import GATEWAY_SECRET

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
ARTIFACTS = REPO / "test-artifacts" / "browser"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A microphone without a permission prompt; the test adds the WAV file that feeds it.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium binary (make test installs Debian's: apt-get install chromium)")
    return path


@dataclass
class BrowserStack:
    emulator: Emulator
    gateway: LocalGateway

    @property
    def page_url(self) -> str:
        return f"{self.gateway.management_url}/"


@contextlib.asynccontextmanager
async def browser_stack(
    config: EmulatorConfig, *, token: str | None = None
) -> AsyncIterator[BrowserStack]:
    """Emulator, bridge and gateway (serving the web client) on loopback, as ``novakit dev``
    wires them, with the emulator under the test's control."""
    gateway_port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        emu = await stack.enter_async_context(Emulator(config))
        settings = BridgeSettings(
            connections_url=f"http://127.0.0.1:{gateway_port}",
            host="127.0.0.1",
            port=0,
            region=emu.config.region,
            drain_seconds=1.0,
            gateway_secrets=(GATEWAY_SECRET,),
            provider_extra={
                "base_url": emu.endpoint,
                "ca_bundle": emu.ca_path,
                "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
                "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
            },
        )
        bridge = Bridge(settings, signer=Unsigned())
        runner = web.AppRunner(bridge.application(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        bridge_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        gateway_config = GatewayConfig(
            port=gateway_port,
            backends=[bridge_url],
            static_dir=WEB,
            token=token,
            integration_secret=GATEWAY_SECRET,
        )
        gateway = await stack.enter_async_context(LocalGateway(gateway_config))
        yield BrowserStack(emu, gateway)


@dataclass
class BrowserPage:
    """A page of the web client in Chromium, read through its ``window.novakit`` test hook."""

    page: Any  # playwright.async_api.Page
    logs: list[str] = field(default_factory=list)

    async def hook(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.page.evaluate(
            """() => ({
                state: novakit.state,
                session: novakit.sessionState,
                microphone: novakit.microphone,
                contextTime: novakit.contextTime,
                transcript: novakit.transcript(),
                stats: novakit.stats,
                error: document.querySelector("[data-testid=error]").textContent,
            })"""
        )
        return state

    async def wait_for(
        self, check: Callable[[dict[str, Any]], Any], what: str, within: float = 20.0
    ) -> dict[str, Any]:
        """The hook's state once ``check`` accepts it; fails with the page's state after
        ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            state = await self.hook()
            if check(state):
                return state
            if time.monotonic() > deadline:
                logs = "\n".join(self.logs[-30:])
                raise AssertionError(f"timed out waiting for {what}; page: {state}\n{logs}")
            await asyncio.sleep(0.1)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=path)
        return path


@contextlib.asynccontextmanager
async def chromium(microphone_wav: Path, url: str) -> AsyncIterator[BrowserPage]:
    """Chromium with a fake microphone playing ``microphone_wav``, showing ``url``."""
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={microphone_wav}"],
            timeout=30_000,
        )
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 760})
            page.set_default_timeout(10_000)
            opened = BrowserPage(page)
            page.on(
                "console",
                lambda m: opened.logs.append(f"console {m.type}: {m.text} ({m.location['url']})"),
            )
            page.on("pageerror", lambda e: opened.logs.append(f"page error: {e}"))
            await page.goto(url)
            yield opened
        finally:
            await browser.close()
