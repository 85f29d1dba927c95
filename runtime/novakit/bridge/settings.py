"""The bridge's settings: one typed object read from environment variables, validated at start.

ECS hands a container its configuration as environment variables, so that is the only source.
Every problem is reported at once, by variable name, before the service listens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..s2s.config import DEFAULT_MODEL
from .auth import DEFAULT_RELAY_WINDOW, secret_problems
from .cpus import usable_cpus

# Bound on NOVAKIT_PROCESSES: far more than any task's CPUs.
MAX_PROCESSES = 64

PREFIX = "NOVAKIT_"


class SettingsError(ValueError):
    """The environment does not describe a bridge that can start; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid bridge settings:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class BridgeSettings:
    """Everything the bridge reads from its environment (see ``describe()`` for the names)."""

    connections_url: str
    """Base of the @connections API: ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``
    on AWS, the local gateway's ``http://127.0.0.1:8080`` locally."""
    region: str = "us-east-1"
    host: str = "0.0.0.0"
    port: int = 8080
    model: str = DEFAULT_MODEL
    voice: str = "matthew"
    instructions: str = "You are a helpful voice assistant. Keep answers short and spoken."
    allow_client_instructions: bool = False
    phone_hangup: bool = False
    """Offer phone calls' models the built-in ``end_call`` tool (docs/phone.md)."""
    batch_ms: int = 100
    max_sessions: int = 200
    tools_manifest: tuple[Mapping[str, Any], ...] = ()
    tools_dir: Path | None = None
    directory_table: str | None = None
    advertise_url: str | None = None
    """How other tasks reach this one (relay); on ECS, found from the task metadata."""
    heartbeat_seconds: float = 2.0
    owner_timeout: float = 6.0
    relay_timeout: float = 2.0
    drain_seconds: float = 60.0
    tool_timeout: float = 10.0
    post_attempts: int = 4
    # Liveness without $disconnect (best-effort on API Gateway; see liveness.py), in seconds;
    # 0 turns a check off.
    idle_seconds: float = 600.0  # no client frame this long: API Gateway's idle timeout
    first_frame_seconds: float = 30.0  # no first frame this long after $connect
    presence_seconds: float = 60.0  # GET @connections/{id} this often (±20 %); 410 ends it
    output_queue_bytes: int = 1024 * 1024
    """Bound on the output waiting for one client (see ``OrderedSender``)."""
    throttled_seconds: float = 10.0
    """How long @connections may answer 429 (the client does not read) before the bridge hangs
    up."""
    error_frames_per_second: float = 5.0
    """Error frames one connection gets, on average (bursts of ``ERROR_BURST``)."""
    log_level: str = "INFO"
    event_loop: str = "uvloop"  # uvloop (when installed) or asyncio's own
    metrics_service: str = "bridge"  # the Service dimension of the bridge's metrics
    metrics_seconds: float = 60.0  # how often aggregated metrics are written
    provider_extra: Mapping[str, Any] = field(default_factory=dict)
    allow_retired_model: bool = False  # serve a model past its end of life (where still served)
    gateway_secrets: tuple[str, ...] = ()
    """Secrets an integration request may carry in ``x-gateway-secret``: the current one, then
    (during a rotation) the previous one. Relays are signed with keys derived from them."""
    insecure_no_gateway_secret: bool = False
    """Accept integration requests without a secret (local use only; refused on ECS)."""
    relay_window_seconds: float = DEFAULT_RELAY_WINDOW
    """How far a relay's timestamp may be from this task's clock, either way."""
    processes: int = 1
    """Bridge processes in this task, all on ``port`` (docs/bridge.md, "Processes per task");
    1: one process, no supervisor."""
    relay_port: int = 8081
    """With several processes, process ``i`` also listens on ``relay_port + i``: its own
    address, where relays for its sessions arrive."""
    process_index: int | None = None
    """Set by the supervisor in each process it starts: which of the task's processes this is."""

    @property
    def private_port(self) -> int | None:
        """This process's own port, when it is one of several processes of a task."""
        return None if self.process_index is None else self.relay_port + self.process_index

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BridgeSettings:
        env = os.environ if environ is None else environ
        problems: list[str] = []
        reader = _Reader(env, problems)
        url = reader.text("CONNECTIONS_URL", required=True)
        if url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(f"{PREFIX}CONNECTIONS_URL must be an http(s) URL, got {url!r}")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        secrets = tuple(
            secret
            for secret in (reader.text("GATEWAY_SECRET"), reader.text("GATEWAY_SECRET_PREVIOUS"))
            if secret is not None
        )
        insecure = reader.flag("INSECURE_NO_GATEWAY_SECRET")
        if reader.text("GATEWAY_SECRET_PREVIOUS") and not reader.text("GATEWAY_SECRET"):
            problems.append(f"{PREFIX}GATEWAY_SECRET_PREVIOUS needs {PREFIX}GATEWAY_SECRET")
        elif not secrets and not insecure:
            problems.append(
                f"{PREFIX}GATEWAY_SECRET is required: the secret API Gateway sends with every "
                f"integration request (for local use without a gateway, "
                f"{PREFIX}INSECURE_NO_GATEWAY_SECRET=1 accepts requests from anyone)"
            )
        if insecure and env.get("ECS_CONTAINER_METADATA_URI_V4"):
            problems.append(
                f"{PREFIX}INSECURE_NO_GATEWAY_SECRET is refused on ECS: a deployed bridge "
                "accepts only requests that carry the gateway secret"
            )
        problems += secret_problems(secrets, f"{PREFIX}GATEWAY_SECRET(_PREVIOUS)")
        port = reader.integer("PORT", cls.port, 1, 65535)
        table = reader.text("DIRECTORY_TABLE")
        processes = reader.processes(
            None
            if table is not None and secrets
            else f"{PREFIX}DIRECTORY_TABLE (the processes find each other's sessions there)"
            if table is None
            else f"{PREFIX}GATEWAY_SECRET (the processes sign the frames they relay to each other)"
        )
        relay_port = reader.integer("RELAY_PORT", port + 1, 1, 65535)
        process_index = reader.optional_integer("PROCESS_INDEX", 0, processes - 1)
        if processes > 1 and relay_port <= port < relay_port + processes:
            problems.append(
                f"{PREFIX}PORT {port} is one of the processes' own ports "
                f"({PREFIX}RELAY_PORT {relay_port} to {relay_port + processes - 1})"
            )
        if processes > 1 and relay_port + processes - 1 > 65535:
            problems.append(
                f"{PREFIX}RELAY_PORT {relay_port} leaves no port for each of {processes} processes"
            )
        settings = cls(
            connections_url=(url or "").rstrip("/"),
            region=region,
            host=reader.text("HOST") or cls.host,
            port=port,
            model=reader.text("MODEL_ID") or cls.model,
            voice=reader.text("VOICE") or cls.voice,
            instructions=reader.text("INSTRUCTIONS") or cls.instructions,
            allow_client_instructions=reader.flag("ALLOW_CLIENT_INSTRUCTIONS"),
            phone_hangup=reader.flag("PHONE_HANGUP"),
            batch_ms=reader.integer("BATCH_MS", cls.batch_ms, 20, 1000),
            max_sessions=reader.integer("MAX_SESSIONS", cls.max_sessions, 1, 100_000),
            tools_manifest=reader.manifest("TOOLS"),
            tools_dir=reader.path("TOOLS_DIR"),
            directory_table=table,
            advertise_url=reader.text("ADVERTISE_URL"),
            heartbeat_seconds=reader.number("HEARTBEAT_SECONDS", cls.heartbeat_seconds, 0.1, 60),
            owner_timeout=reader.number("OWNER_TIMEOUT", cls.owner_timeout, 0.3, 300),
            relay_timeout=reader.number("RELAY_TIMEOUT", cls.relay_timeout, 0.1, 29),
            drain_seconds=reader.number("DRAIN_SECONDS", cls.drain_seconds, 0, 3600),
            tool_timeout=reader.number("TOOL_TIMEOUT", cls.tool_timeout, 0.1, 300),
            post_attempts=reader.integer("POST_ATTEMPTS", cls.post_attempts, 1, 20),
            idle_seconds=reader.number("IDLE_SECONDS", cls.idle_seconds, 0, 7200),
            first_frame_seconds=reader.number(
                "FIRST_FRAME_SECONDS", cls.first_frame_seconds, 0, 3600
            ),
            presence_seconds=reader.number("PRESENCE_SECONDS", cls.presence_seconds, 0, 3600),
            output_queue_bytes=reader.integer(
                "OUTPUT_QUEUE_BYTES", cls.output_queue_bytes, 64 * 1024, 256 * 1024 * 1024
            ),
            throttled_seconds=reader.number("THROTTLED_SECONDS", cls.throttled_seconds, 1, 3600),
            error_frames_per_second=reader.number(
                "ERROR_FRAMES_PER_SECOND", cls.error_frames_per_second, 0.1, 1000
            ),
            log_level=(reader.text("LOG_LEVEL") or cls.log_level).upper(),
            event_loop=(reader.text("EVENT_LOOP") or cls.event_loop).lower(),
            metrics_service=reader.text("METRICS_SERVICE") or cls.metrics_service,
            metrics_seconds=reader.number("METRICS_SECONDS", cls.metrics_seconds, 1, 3600),
            provider_extra=reader.json_object("PROVIDER_EXTRA"),
            allow_retired_model=reader.flag("ALLOW_RETIRED_MODEL"),
            gateway_secrets=secrets,
            insecure_no_gateway_secret=insecure and not secrets,
            relay_window_seconds=reader.number(
                "RELAY_WINDOW_SECONDS", cls.relay_window_seconds, 1, 600
            ),
            processes=processes,
            relay_port=relay_port,
            process_index=process_index,
        )
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            levels = "DEBUG, INFO, WARNING or ERROR"
            problems.append(f"{PREFIX}LOG_LEVEL must be {levels}, got {settings.log_level!r}")
        if settings.event_loop not in ("uvloop", "asyncio"):
            problems.append(f"{PREFIX}EVENT_LOOP must be uvloop or asyncio")
        if problems:
            raise SettingsError(problems)
        return settings

    @staticmethod
    def describe() -> list[tuple[str, str]]:
        """(variable, meaning) for every setting, for ``novakit bridge --help`` and the docs."""
        return [
            (f"{PREFIX}CONNECTIONS_URL", "base URL of the @connections API (required)"),
            ("AWS_REGION", "Region of Bedrock and API Gateway (default us-east-1)"),
            (f"{PREFIX}PORT", "port of the integration endpoints and /health (default 8080)"),
            (f"{PREFIX}MODEL_ID", f"Nova Sonic model id (default {DEFAULT_MODEL})"),
            (f"{PREFIX}VOICE", "default voice (default matthew)"),
            (f"{PREFIX}INSTRUCTIONS", "the system prompt"),
            (f"{PREFIX}ALLOW_CLIENT_INSTRUCTIONS", "let clients replace the system prompt (0/1)"),
            (f"{PREFIX}PHONE_HANGUP", "let the model end phone calls: the end_call tool (0/1)"),
            (f"{PREFIX}BATCH_MS", "audio per output frame, in ms of audio, 20-1000 (default 100)"),
            (f"{PREFIX}MAX_SESSIONS", "sessions this process accepts (default 200)"),
            (f"{PREFIX}TOOLS", "tool manifest: a JSON list, or @path to a JSON file"),
            (f"{PREFIX}TOOLS_DIR", "run the tools of this tools/ folder in-process (local use)"),
            (f"{PREFIX}DIRECTORY_TABLE", "DynamoDB table of the session directory (several tasks)"),
            (f"{PREFIX}ADVERTISE_URL", "this task's URL for other tasks (default: from ECS)"),
            (f"{PREFIX}HEARTBEAT_SECONDS", "how often the task says it is alive (default 2)"),
            (f"{PREFIX}OWNER_TIMEOUT", "heartbeat age after which a task counts as gone (6)"),
            (f"{PREFIX}RELAY_TIMEOUT", "bound on relaying a frame to its owner, s (default 2)"),
            (f"{PREFIX}DRAIN_SECONDS", "how long SIGTERM waits for sessions to end (default 60)"),
            (f"{PREFIX}TOOL_TIMEOUT", "default tool timeout in seconds (default 10)"),
            (f"{PREFIX}POST_ATTEMPTS", "attempts per @connections post (default 4)"),
            (f"{PREFIX}IDLE_SECONDS", "end a session with no client frame this long, s (600)"),
            (f"{PREFIX}FIRST_FRAME_SECONDS", "end a session with no first frame this long (30)"),
            (f"{PREFIX}PRESENCE_SECONDS", "how often GET @connections checks the client (60)"),
            (f"{PREFIX}OUTPUT_QUEUE_BYTES", "bound on output queued per client (default 1 MiB)"),
            (f"{PREFIX}THROTTLED_SECONDS", "hang up after posts get 429 this long, s (10)"),
            (f"{PREFIX}ERROR_FRAMES_PER_SECOND", "error frames per client per second (default 5)"),
            (f"{PREFIX}LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
            (f"{PREFIX}EVENT_LOOP", "uvloop (default, when installed) or asyncio"),
            (f"{PREFIX}METRICS_SERVICE", "Service dimension of the metrics (default bridge)"),
            (f"{PREFIX}METRICS_SECONDS", "how often metrics are written, s (default 60)"),
            (f"{PREFIX}PROVIDER_EXTRA", "JSON object of Nova provider options (endpoint, ...)"),
            (
                f"{PREFIX}ALLOW_RETIRED_MODEL",
                "allow a model past its end of life, e.g. amazon.nova-sonic-v1:0 (0/1)",
            ),
            (f"{PREFIX}GATEWAY_SECRET", "secret API Gateway sends in x-gateway-secret (required)"),
            (f"{PREFIX}GATEWAY_SECRET_PREVIOUS", "also accepted, while a rotation is under way"),
            (f"{PREFIX}INSECURE_NO_GATEWAY_SECRET", "1: accept requests from anyone (local only)"),
            (f"{PREFIX}RELAY_WINDOW_SECONDS", "max relay timestamp skew, s (default 30)"),
            (
                f"{PREFIX}PROCESSES",
                "bridge processes on the port (default: one per usable CPU with a directory"
                " table, else 1)",
            ),
            (f"{PREFIX}RELAY_PORT", "first of the processes' own ports (default: port + 1)"),
        ]


class _Reader:
    """Reads ``NOVAKIT_*`` variables, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self._env = env
        self._problems = problems

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self._env.get(PREFIX + name, "").strip()
        if not value:
            if required:
                self._problems.append(f"{PREFIX}{name} is required")
            return None
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self._problems.append(f"{PREFIX}{name} must be an integer, got {raw!r}")
            return default
        if not low <= value <= high:
            self._problems.append(f"{PREFIX}{name} must be between {low} and {high}, got {value}")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        if self.text(name) is None:
            return None
        return self.integer(name, low, low, high)

    def processes(self, missing: str | None) -> int:
        """NOVAKIT_PROCESSES; unset: one per usable CPU, or 1 when the processes could not
        work together (``missing`` names what they would need)."""
        if self.text("PROCESSES") is None:
            return 1 if missing else min(usable_cpus(), MAX_PROCESSES)
        count = self.integer("PROCESSES", 1, 1, MAX_PROCESSES)
        if count > 1 and missing:
            self._problems.append(f"{PREFIX}PROCESSES={count} needs {missing}")
        return count

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self._problems.append(f"{PREFIX}{name} must be a number, got {raw!r}")
            return default
        if not low <= value <= high:
            self._problems.append(f"{PREFIX}{name} must be between {low} and {high}, got {value}")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.text(name) or "0").lower()
        if raw not in ("0", "1", "true", "false", "yes", "no"):
            self._problems.append(f"{PREFIX}{name} must be 0 or 1, got {raw!r}")
        return raw in ("1", "true", "yes")

    def path(self, name: str) -> Path | None:
        raw = self.text(name)
        if raw is None:
            return None
        path = Path(raw)
        if not path.is_dir():
            self._problems.append(f"{PREFIX}{name}: {raw!r} is not a directory")
        return path

    def json_object(self, name: str) -> dict[str, Any]:
        raw = self.text(name)
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            self._problems.append(f"{PREFIX}{name} is not valid JSON: {exc}")
            return {}
        if not isinstance(value, dict):
            self._problems.append(f"{PREFIX}{name} must be a JSON object")
            return {}
        return value

    def manifest(self, name: str) -> tuple[Mapping[str, Any], ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                self._problems.append(f"{PREFIX}{name}: cannot read {raw[1:]!r}: {exc}")
                return ()
        try:
            value = json.loads(raw)
        except ValueError as exc:
            self._problems.append(f"{PREFIX}{name} is not valid JSON: {exc}")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self._problems.append(f"{PREFIX}{name} must be a JSON list of tool objects")
            return ()
        return tuple(value)
