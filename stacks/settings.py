"""Deployment settings: read from CDK context (cdk.json or ``-c key=value``), checked before any
resource is defined, so a wrong value fails ``cdk synth`` with a message instead of a deploy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from novakit.bridge.dialects import STAGE_DIALECTS
from novakit.s2s.nova.models import MODELS, retired_message


class SettingsError(ValueError):
    """A context value is missing, malformed or not allowed."""


class AuthMode(StrEnum):
    """How ``$connect`` is authenticated."""

    SECRET = "secret"  # Lambda authorizer, shared secret from Secrets Manager (quick start)
    COGNITO = "cognito"  # Lambda authorizer, Cognito user pool access token
    IAM = "iam"  # SigV4-signed connect URL (execute-api:Invoke)
    NONE = "none"  # open endpoint: needs allow_unauthenticated=true


DEFAULT_REGION = "us-east-1"
# Fargate CPU units and the memory sizes each allows (MiB).
_FARGATE_MEMORY = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
}


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can choose. Context keys are the field names."""

    region: str = DEFAULT_REGION
    stack_name: str = "Novakit"
    model_id: str = "amazon.nova-2-sonic-v1:0"
    # Deploy a model past its end of life (amazon.nova-sonic-v1:0) where it is still served.
    allow_retired_model: bool = False
    voice: str = "matthew"
    instructions: str = ""
    auth_mode: AuthMode = AuthMode.SECRET
    allow_unauthenticated: bool = False
    task_cpu: int = 1024
    task_memory_mib: int = 2048
    min_tasks: int = 1
    max_tasks: int = 4
    max_sessions_per_task: int = 20
    batch_ms: int = 100
    log_level: str = "INFO"
    stage_name: str = "live"
    # Requests per second over all connections (client frames and connects); a client sending
    # 32 ms audio frames makes about 31 a second, so 2500 covers about 80 talking sessions.
    throttle_rate: int = 2500
    throttle_burst: int = 5000
    log_retention_days: int = 30
    nat_gateways: int = 1
    interface_endpoints: bool = False
    # The highly available shape in one switch: at least two tasks in two Availability Zones
    # and a NAT gateway in each, so one task or one zone can fail without stopping sessions.
    ha: bool = False
    # Step scaling adds tasks at once when fewer free session slots than this remain overall.
    min_free_sessions: int = 5
    # $connect only (each runs the authorizer and opens a Bedrock stream): its own, lower
    # stage throttle, and at most this many authorizer invocations at a time (0: no reservation).
    connect_rate: int = 50
    connect_burst: int = 100
    authorizer_concurrency: int = 10
    # The session directory's encryption: AWS-owned key (free) unless a customer key is asked for.
    directory_customer_key: bool = False
    web_client: bool = False
    alarm_email: str = ""
    apigw_account_logging_role: bool = True
    # The Secrets Manager version id of the gateway secret the integrations send; set during a
    # rotation (docs/deploy.md) so that CloudFormation reads the secret again. "": the current.
    gateway_secret_version: str = ""
    # Phone calls through Twilio Media Streams (docs/phone.md): the twilio stage, the
    # incoming-call webhook and the auth token's secret. Greeting: said before the agent
    # answers; numbers: a JSON object, per called number ("*": any other), of greeting, voice
    # and instructions. Hang-up: the model may end a call with the bridge's end_call tool.
    twilio: bool = False
    twilio_greeting: str = ""
    twilio_numbers: str = ""
    twilio_hangup: bool = False

    @property
    def task_range(self) -> tuple[int, int]:
        """``(min, max)`` tasks: with ``ha``, at least two (one per Availability Zone)."""
        low = max(2, self.min_tasks) if self.ha else self.min_tasks
        return low, max(low, self.max_tasks)

    @property
    def nat_gateway_count(self) -> int:
        """With ``ha``, one NAT gateway per Availability Zone: the tasks' way to Bedrock and
        to ``@connections`` (which no VPC endpoint can replace) must not depend on one zone."""
        return 2 if self.ha else self.nat_gateways

    @classmethod
    def from_node(cls, node: Any) -> Settings:
        """From a CDK app's context (``app.node``)."""
        return cls.from_context({f.name: node.try_get_context(f.name) for f in fields(cls)})

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> Settings:
        """Build from context values (strings when given with ``-c``, JSON values from cdk.json)."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = context.get(spec.name)
            if raw is None or raw == "":
                continue
            values[spec.name] = _coerce(spec.name, spec.type, raw)
        if "region" not in values:
            values["region"] = os.environ.get("CDK_DEFAULT_REGION") or DEFAULT_REGION
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        model = MODELS.get(self.model_id)
        if model is None:
            raise SettingsError(
                f"model_id {self.model_id!r} is not a Nova Sonic model; known: {sorted(MODELS)}"
            )
        if model.end_of_life is not None and not self.allow_retired_model:
            raise SettingsError(retired_message(model, "-c allow_retired_model=true"))
        if self.region not in model.regions:
            raise SettingsError(
                f"{self.model_id} is not offered in {self.region}: deploy to one of "
                f"{sorted(model.regions)} (make deploy CDK_ARGS='-c region=...'). Bedrock rejects "
                "cross-Region calls to this model, so the stack must run where the model runs."
            )
        if self.voice not in model.voices:
            raise SettingsError(
                f"voice {self.voice!r} is not offered by {self.model_id}; "
                f"one of {sorted(model.voices)}"
            )
        if self.auth_mode is AuthMode.NONE and not self.allow_unauthenticated:
            raise SettingsError(
                "auth_mode=none deploys a WebSocket endpoint anyone on the internet can use at "
                "your expense. If that is really wanted, also pass -c allow_unauthenticated=true."
            )
        memory = _FARGATE_MEMORY.get(self.task_cpu)
        if memory is None:
            raise SettingsError(f"task_cpu must be one of {sorted(_FARGATE_MEMORY)}")
        if self.task_memory_mib not in memory:
            raise SettingsError(
                f"task_memory_mib {self.task_memory_mib} does not fit task_cpu {self.task_cpu}: "
                f"{memory.start}..{memory.stop - 1} in steps of {memory.step}"
            )
        _check_range("min_tasks", self.min_tasks, 1, 100)
        _check_range("max_tasks", self.max_tasks, self.min_tasks, 100)
        _check_range("max_sessions_per_task", self.max_sessions_per_task, 1, 500)
        _check_range("batch_ms", self.batch_ms, 20, 1000)
        _check_range("throttle_rate", self.throttle_rate, 1, 10000)
        _check_range("throttle_burst", self.throttle_burst, 1, 5000)
        _check_range("nat_gateways", self.nat_gateways, 1, 2)
        _check_range("min_free_sessions", self.min_free_sessions, 1, self.max_sessions_per_task)
        _check_range("connect_rate", self.connect_rate, 1, self.throttle_rate)
        _check_range("connect_burst", self.connect_burst, 1, self.throttle_burst)
        _check_range("authorizer_concurrency", self.authorizer_concurrency, 0, 1000)
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError("log_level must be DEBUG, INFO, WARNING or ERROR")
        if self.log_retention_days not in _LOG_RETENTION_DAYS:
            raise SettingsError(f"log_retention_days must be one of {sorted(_LOG_RETENTION_DAYS)}")
        if not self.stage_name.isalnum():
            raise SettingsError("stage_name must be letters and digits only")
        if self.stage_name in STAGE_DIALECTS:
            raise SettingsError(
                f"stage_name {self.stage_name!r} is the stage of the bridge's"
                f" {STAGE_DIALECTS[self.stage_name].title} protocol; choose another name"
            )
        if self.twilio:
            self._check_twilio()
        elif self.twilio_hangup:
            raise SettingsError(
                "twilio_hangup=true lets the model end phone calls: needs twilio=true"
            )
        version = self.gateway_secret_version
        if version and not (
            32 <= len(version) <= 64 and all(c.isalnum() or c == "-" for c in version)
        ):
            raise SettingsError(
                "gateway_secret_version must be a Secrets Manager version id (32-64 letters, "
                f"digits or hyphens), got {version!r}"
            )

    def _check_twilio(self) -> None:
        if self.auth_mode not in (AuthMode.SECRET, AuthMode.COGNITO):
            raise SettingsError(
                "twilio=true needs the Lambda authorizer (auth_mode=secret or cognito): it checks "
                f"Twilio's signature on the phone stage; auth_mode={self.auth_mode.value} cannot"
            )
        numbers = self.phone_numbers
        for number, config in numbers.items():
            unknown = set(config) - {"greeting", "voice", "instructions"}
            if unknown:
                raise SettingsError(
                    f"twilio_numbers[{number!r}]: unknown keys {sorted(unknown)} (greeting, "
                    "voice, instructions)"
                )
            voice = config.get("voice")
            model = MODELS[self.model_id]
            if voice is not None and voice not in model.voices:
                raise SettingsError(f"twilio_numbers[{number!r}]: voice {voice!r} is not offered")
            # Twilio allows 500 characters per <Parameter> name and value.
            if len(config.get("instructions", "")) > 480:
                raise SettingsError(
                    f"twilio_numbers[{number!r}]: instructions over 480 characters (Twilio "
                    "passes at most 500 per stream parameter)"
                )

    @property
    def phone_numbers(self) -> dict[str, dict[str, str]]:
        """``twilio_numbers`` read: called number -> greeting, voice, instructions."""
        if not self.twilio_numbers:
            return {}
        try:
            value = json.loads(self.twilio_numbers)
        except ValueError as exc:
            raise SettingsError(f"twilio_numbers is not JSON: {exc}") from None
        if not isinstance(value, dict) or not all(
            isinstance(c, dict) and all(isinstance(v, str) for v in c.values())
            for c in value.values()
        ):
            raise SettingsError(
                'twilio_numbers must be a JSON object such as {"+15550100": {"greeting": "..."}}'
            )
        return value


# The retention periods CloudWatch Logs accepts.
_LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name} must be from {low} to {high}, got {value}")


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    kind = {"str": str, "int": int, "bool": bool, "AuthMode": AuthMode}.get(kind, kind)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise SettingsError(f"{name} must be a whole number, got {raw!r}")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if kind is AuthMode:
        try:
            return AuthMode(str(raw).strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in AuthMode)
            raise SettingsError(f"auth_mode must be one of {choices}, got {raw!r}") from None
    if isinstance(raw, dict | list):  # a JSON value in cdk.json (twilio_numbers)
        return json.dumps(raw)
    return str(raw)
