"""Real Chromium against the local stack: the Bedrock emulator, the bridge (in-process, as
``novakit dev`` runs it) and the local API Gateway serving ``web/`` on the WebSocket's port.

Chromium is Debian's (``make test`` installs it); Playwright drives it. Without a chromium
binary the browser tests skip and say why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from novakit.bridge.app import Bridge, serving
from novakit.bridge.connections import Unsigned
from novakit.bridge.http import Request, Response
from novakit.bridge.settings import BridgeSettings
from novakit.dev import free_port
from novakit.emulator import DEFAULT_CREDENTIALS, Emulator, EmulatorConfig
from novakit.localgw import GatewayConfig, LocalGateway

from ..gateway_auth import GATEWAY_SECRET, SECRET_ENV

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


class RecordingBridge(Bridge):
    """The bridge, noting every client frame that reaches it, in the order it arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[str, dict[str, Any]]] = []  # (connection id, frame)

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        if request.path == "/ws/message":
            with contextlib.suppress(ValueError):
                self.frames.append(
                    (request.headers.get("x-connection-id", ""), json.loads(request.body))
                )
        return super().handle(request)


@dataclass
class BrowserStack:
    emulator: Emulator
    gateway: LocalGateway
    bridge: RecordingBridge | None = None

    @property
    def page_url(self) -> str:
        return f"{self.gateway.management_url}/"


def _provider_extra(emu: Emulator) -> dict[str, str]:
    return {
        "base_url": emu.endpoint,
        "ca_bundle": str(emu.ca_path),
        "aws_access_key_id": DEFAULT_CREDENTIALS.access_key_id,
        "aws_secret_access_key": DEFAULT_CREDENTIALS.secret_access_key,
    }


@contextlib.asynccontextmanager
async def browser_stack(
    config: EmulatorConfig,
    *,
    token: str | None = None,
    model: str | None = None,
    tools_dir: Path | None = None,
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
            provider_extra=_provider_extra(emu),
            tools_dir=tools_dir,
            # A retired model (Nova Sonic v1, for its voice list) needs the explicit setting.
            **({"model": model, "allow_retired_model": True} if model else {}),
        )
        bridge = RecordingBridge(settings, signer=Unsigned())
        bridge_url = await stack.enter_async_context(serving(bridge))
        gateway_config = GatewayConfig(
            port=gateway_port,
            backends=[bridge_url],
            static_dir=WEB,
            token=token,
            integration_secret=GATEWAY_SECRET,
        )
        gateway = await stack.enter_async_context(LocalGateway(gateway_config))
        yield BrowserStack(emu, gateway, bridge)


class BridgeProcess:
    """The bridge as a process of its own (``python -m novakit.bridge``) on a fixed port, which
    a test kills the hard way (SIGKILL: no draining, no goodbye to the gateway) and starts
    again, as when a bridge task crashes and ECS replaces it."""

    def __init__(self, port: int, environment: dict[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.environment = environment
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "novakit.bridge",
                env=self.environment,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"the bridge exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/health") as health:
                        if health.status == 200:
                            return
                if time.monotonic() > deadline:
                    log = self.log.read_text()[-2000:]
                    raise AssertionError(f"the bridge did not start: {log}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def crashable_stack(
    config: EmulatorConfig, log_dir: Path
) -> AsyncIterator[tuple[BrowserStack, BridgeProcess]]:
    """``browser_stack`` with the bridge in its own process (see :class:`BridgeProcess`)."""
    gateway_port, bridge_port = free_port(), free_port()
    async with contextlib.AsyncExitStack() as stack:
        emu = await stack.enter_async_context(Emulator(config))
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))},
            "AWS_REGION": emu.config.region,
            "NOVAKIT_CONNECTIONS_URL": f"http://127.0.0.1:{gateway_port}",
            "NOVAKIT_HOST": "127.0.0.1",
            "NOVAKIT_PORT": str(bridge_port),
            "NOVAKIT_DRAIN_SECONDS": "1",
            "NOVAKIT_PROVIDER_EXTRA": json.dumps(_provider_extra(emu)),
            **SECRET_ENV,
        }
        bridge = BridgeProcess(bridge_port, environment, log_dir / "bridge.log")
        stack.push_async_callback(bridge.kill)
        await bridge.start()
        gateway_config = GatewayConfig(
            port=gateway_port,
            backends=[bridge.url],
            static_dir=WEB,
            integration_secret=GATEWAY_SECRET,
        )
        gateway = await stack.enter_async_context(LocalGateway(gateway_config))
        yield BrowserStack(emu, gateway), bridge


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
                counts: novakit.counts,
                microphoneTracks: novakit.microphoneTracks,
                audioState: novakit.audioState,
                badge: document.querySelector("[data-testid=state]").textContent,
                error: document.querySelector("[data-testid=error]").hidden
                    ? "" : document.querySelector("[data-testid=error]").textContent,
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
