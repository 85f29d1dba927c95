"""The load generator, in a process of its own: N clients of one bridge, as API Gateway drives it.

``python -m bench.driver CONFIG_JSON`` runs the conversations the config describes and writes
its results as JSON to the config's ``out`` file. It speaks to the bridge the way API Gateway
does, without a WebSocket layer in between: each client frame is an integration request
(``POST /ws/message`` with the ``x-connection-id`` headers the stack maps), and the bridge's
``@connections`` posts land on a small server in this process (the config's ``sink_port``,
given to the bridge as ``NOVAKIT_CONNECTIONS_URL``). So this process holds what the real
clients and API Gateway would do, and the CPU it spends is not the bridge's.

Modes (``mode``):

``talk``   real-time microphone frames of ``frame_ms``: a spoken question, then silence until
           the answer has ended (``turn_end``) and played out, again and again.
``barge``  as ``talk``, but the client speaks again ``barge_after_ms`` after the answer's first
           audio: the model stops (``INTERRUPTED``), the bridge sends ``clear_audio``.
``idle``   one ``start`` frame (the model session opens), then nothing: memory per session.

Measured here: how late frames left against their schedule (this process's own lag: if it is
large, the load generator, not the bridge, is the limit); the integration requests' round trip;
playback underruns (each turn's audio played from its first frame at real time: a frame that
arrives after the audio before it has played out is an underrun); barge-in as the client sees
it (its first interrupting frame to ``clear_audio``; stale audio after the clear); messages and
32 KB units each way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from novakit import audio
from novakit.bridge.auth import GATEWAY_SECRET_HEADER
from novakit.localgw import message_units

from .common import GATEWAY_SECRET

SAMPLE_RATE = 16000


@dataclass
class Client:
    """One conversation's state, shared by its sending loop and the sink."""

    connection_id: str
    turn_over: asyncio.Event = field(default_factory=asyncio.Event)
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)
    cleared: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # playback: when the current turn's audio would have played out
    play_until: float = 0.0
    clear_seq: int = -1
    barge_started: float | None = None


@dataclass
class Stats:
    frames_sent: int = 0
    units_in: int = 0
    frames_received: int = 0
    units_out: int = 0
    audio_frames: int = 0
    audio_ms: float = 0.0
    turns: int = 0
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    underruns: int = 0
    underrun_ms: float = 0.0
    stale_audio_frames: int = 0
    lateness_ms: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)
    failed_requests: int = 0


class Driver:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.bridge = config["bridge_url"].rstrip("/")
        self.frame_bytes = int(SAMPLE_RATE * 2 * config.get("frame_ms", 32) / 1000) & ~1
        self.step = self.frame_bytes / 2 / SAMPLE_RATE
        self.clients: dict[str, Client] = {}
        self.stats = Stats()
        self.measuring = False
        self.http: aiohttp.ClientSession | None = None

    # -- the @connections sink -----------------------------------------------------------

    async def on_post(self, request: web.Request) -> web.Response:
        body = await request.read()
        client = self.clients.get(request.match_info["id"])
        if client is None:
            return web.Response(status=410)
        now = time.monotonic()
        stats = self.stats
        text = body.decode()
        head = text[:40]
        if self.measuring:
            stats.frames_received += 1
            stats.units_out += message_units(len(body))
        if head.startswith('{"type":"audio"'):
            frame = json.loads(text)
            ms = float(frame["ms"])
            if client.cleared.is_set() and frame["seq"] < client.clear_seq:
                stats.stale_audio_frames += 1
            if self.measuring:
                stats.audio_frames += 1
                stats.audio_ms += ms
            if not client.first_audio.is_set():
                client.first_audio.set()
                client.play_until = now
            elif now > client.play_until and self.measuring:
                stats.underruns += 1
                stats.underrun_ms += (now - client.play_until) * 1000
            client.play_until = max(client.play_until, now) + ms / 1000
        elif head.startswith(('{"type":"turn_end"', '{"type":"clear_audio"')):
            if head.startswith('{"type":"clear_audio"'):
                client.clear_seq = json.loads(text)["seq"]
                client.cleared.set()
                client.play_until = now  # playback stops
                if client.barge_started is not None and self.measuring:
                    stats.barge_in_ms.append((now - client.barge_started) * 1000)
                client.barge_started = None
            if self.measuring:
                stats.turns += 1
            client.first_audio.clear()
            client.turn_over.set()
        elif head.startswith('{"type":"session"'):
            client.ready.set()
        elif head.startswith('{"type":"error"'):
            code = json.loads(text).get("code", "?")
            stats.errors += 1
            stats.error_codes[code] = stats.error_codes.get(code, 0) + 1
        return web.Response(status=200)

    # -- integration requests --------------------------------------------------------------

    def _headers(self, client: Client, route: str) -> dict[str, str]:
        return {
            GATEWAY_SECRET_HEADER: GATEWAY_SECRET,
            "x-connection-id": client.connection_id,
            "x-request-id": f"{client.connection_id}-{time.monotonic_ns()}",
            "x-route-key": route,
            "x-source-ip": "127.0.0.1",
            "x-stage": "bench",
            "x-connected-at": "0",
            "x-principal-id": "bench",
            "content-type": "application/json",
        }

    async def _request(self, client: Client, path: str, route: str, body: bytes) -> int:
        assert self.http is not None
        started = time.monotonic()
        try:
            async with self.http.post(
                f"{self.bridge}{path}", data=body, headers=self._headers(client, route)
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if self.measuring and path == "/ws/message":
            self.stats.request_ms.append((time.monotonic() - started) * 1000)
        if status != 200:
            self.stats.failed_requests += 1
        return status

    async def _send(self, client: Client, frame: dict[str, Any]) -> None:
        body = json.dumps(frame, separators=(",", ":")).encode()
        if self.measuring:
            self.stats.frames_sent += 1
            self.stats.units_in += message_units(len(body))
        await self._request(client, "/ws/message", "$default", body)

    # -- conversations ---------------------------------------------------------------------

    async def conversation(self, client: Client, offset: float, until: float) -> None:
        await asyncio.sleep(offset)
        if await self._request(client, "/ws/connect", "$connect", b"") != 200:
            return
        mode = self.config.get("mode", "talk")
        try:
            if mode == "idle":
                await self._send(client, {"type": "start"})
                await self._idle(until)
            else:
                await self._talk(client, until, barge=mode == "barge")
        finally:
            await self._request(client, "/ws/disconnect", "$disconnect", b"")

    async def _idle(self, until: float) -> None:
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    async def _talk(self, client: Client, until: float, *, barge: bool) -> None:
        question = audio.speech_like(self.config.get("question_seconds", 1.5))
        barge_speech = audio.speech_like(0.6)
        silence = audio.silence(self.step)
        size = self.frame_bytes
        barge_after = self.config.get("barge_after_ms", 400) / 1000
        client.turn_over.set()
        start = time.monotonic()
        seq = 0
        pending = b""
        barge_at: float | None = None
        while time.monotonic() < until:
            now = time.monotonic()
            # The user speaks again once the answer has been heard out (or cut off): speaking
            # while it plays would be a barge-in.
            if not pending and client.turn_over.is_set() and now >= client.play_until:
                client.turn_over.clear()
                client.cleared.clear()
                pending = question
                barge_at = None
            elif barge and barge_at is None and client.first_audio.is_set() and not pending:
                barge_at = now + barge_after
            if barge_at is not None and now >= barge_at and not pending:
                pending = barge_speech
                client.barge_started = now
                barge_at = float("inf")  # once per turn
            chunk, pending = (pending[:size], pending[size:]) if pending else (silence, b"")
            if len(chunk) < size:
                chunk += bytes(size - len(chunk))
            data = base64.b64encode(chunk).decode()
            await self._send(client, {"type": "audio", "seq": seq, "data": data})
            seq += 1
            due = start + seq * self.step
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.measuring:
                self.stats.lateness_ms.append(max(0.0, time.monotonic() - due) * 1000)

    async def run(self) -> dict[str, Any]:
        config = self.config
        sessions = int(config["sessions"])
        ramp = float(config.get("ramp_seconds", 2.0))
        warmup = float(config.get("warmup_seconds", 2.0))
        seconds = float(config["seconds"])
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/@connections/{id}", self.on_post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(config["sink_port"])).start()
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        )
        tag = config.get("tag", "c")
        for i in range(sessions):
            cid = f"{tag}{i:05d}AbCdE="
            self.clients[cid] = Client(cid)
        began = time.monotonic()
        measure_from = began + ramp + warmup
        until = measure_from + seconds
        tasks = [
            asyncio.create_task(self.conversation(client, ramp * i / sessions, until))
            for i, client in enumerate(self.clients.values())
        ]
        print(json.dumps({"event": "ramping"}), flush=True)
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        self.measuring = True
        measured_at = time.monotonic()
        print(json.dumps({"event": "measuring", "epoch": time.time()}), flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        self.measuring = False
        wall = time.monotonic() - measured_at
        print(json.dumps({"event": "done", "epoch": time.time()}), flush=True)
        await asyncio.sleep(0.5)  # the bridge's last posts after the disconnects
        await self.http.close()
        await runner.cleanup()
        return self.results(wall)

    def results(self, wall: float) -> dict[str, Any]:
        s = self.stats
        minutes = len(self.clients) * wall / 60
        return {
            "seconds": round(wall, 2),
            "session_minutes": round(minutes, 3),
            "frames_sent": s.frames_sent,
            "frames_received": s.frames_received,
            "units_in": s.units_in,
            "units_out": s.units_out,
            "audio_frames": s.audio_frames,
            "audio_ms": round(s.audio_ms),
            "turns": s.turns,
            "errors": s.errors,
            "error_codes": s.error_codes,
            "failed_requests": s.failed_requests,
            "underruns": s.underruns,
            "underrun_ms": round(s.underrun_ms, 1),
            "stale_audio_frames": s.stale_audio_frames,
            "lateness_ms": s.lateness_ms,
            "request_ms": s.request_ms,
            "barge_in_ms": s.barge_in_ms,
        }


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("uvloop"):  # a cheaper loop for the load generator, when installed
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        results = asyncio.run(Driver(config).run())
        # every latency sample: to a file, not through the pipe
        Path(config["out"]).write_text(json.dumps(results))
        print(json.dumps({"event": "results"}), flush=True)


if __name__ == "__main__":
    main()
