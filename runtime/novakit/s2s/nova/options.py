"""Nova-specific settings read from ``Config.extra`` and validated with clear messages."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ..config import Config
from ..errors import ConfigError
from .models import (
    ENDPOINTING_SENSITIVITIES,
    INPUT_SAMPLE_RATES,
    MAX_AUDIO_EVENT_SECONDS,
    MODELS,
    OUTPUT_SAMPLE_RATES,
    NovaModel,
    retired_message,
)

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class NovaOptions:
    """Everything the Nova provider reads from ``Config.extra``.

    ``base_url`` overrides the endpoint (VPC endpoints, private deployments, the emulator); by
    default the SDK builds ``https://bedrock-runtime.{region}.amazonaws.com`` or honours
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``. ``ca_bundle`` is a PEM file of extra trusted CAs
    (default: ``AWS_CA_BUNDLE``). ``region`` defaults to ``AWS_REGION``, then
    ``AWS_DEFAULT_REGION``, then us-east-1.
    """

    region: str = DEFAULT_REGION
    base_url: str | None = None
    ca_bundle: str | None = None
    profile: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    credentials_resolver: Any = None
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7
    endpointing_sensitivity: str | None = None
    # Nova 2's speech prompt, sent as a SYSTEM_SPEECH content after the system prompt.
    speech_instructions: str | None = None
    open_timeout: float = 10.0
    send_timeout: float = 10.0
    close_timeout: float = 5.0
    # Bytes of audio per audioInput event, at most; never more than 100 ms at the input rate
    # (MAX_AUDIO_EVENT_SECONDS) whatever is set here.
    max_audio_event_bytes: int = 4800
    keepalive_after: float = 1.0  # seconds without caller audio before silence is streamed
    # The same when the caller's audio stopped in the middle of speech: that is a stall (the
    # network, a busy machine), not a caller gone quiet, and silence put into the gap would cut
    # the user's sentence in two. Clients stream silence between words (docs/protocol.md).
    keepalive_after_speech: float = 3.0
    # The same for a caller that streams an open microphone (it has streamed two seconds of
    # quiet in one go): it never stops sending, so its audio stopping is a stall, however it
    # ends, and the backlog is on the way. A caller that only types, or sends audio only while
    # it speaks (push-to-talk), gets keepalive_after.
    keepalive_after_stall: float = 10.0
    # Seconds of silence per keep-alive event (sent at real-time pace): the send path costs per
    # event, not per byte, so an idle session costs a third of one at 32 ms a piece.
    keepalive_step: float = 0.1
    # Seconds without caller input (audio, text or a tool result) after which the keep-alive
    # stops, and a stream Bedrock then ends (its idle cut, its 8-minute limit, a fault) is not
    # replaced until the caller sends something again (0: no bound). Bedrock bills the silence
    # it is sent, and a caller that went away without a word must not keep streams open.
    keepalive_limit: float = 120.0
    # Seconds a stream may send nothing at all while an answer is owed (the user's words were
    # transcribed, a text or a tool result was sent, and the model's turn has not ended) before
    # it counts as lost and is replaced like a failed one (0: never).
    stall_timeout: float = 20.0
    # Long conversations (docs/s2s.md, "Long conversations"): a stream older than this many
    # seconds is replaced at the next quiet point (0: never; Bedrock ends streams at ~8 min).
    rollover_after: float = 360.0
    replay_seconds: float = 10.0  # user audio kept for replay to a new stream
    recovery_attempts: int = 5  # fresh streams tried per outage (0: failures end the session)
    recovery_budget: float = 30.0  # seconds an outage may last before the session gives up
    on_telemetry: Any = None  # callable(name, value, tags); see telemetry.py
    # Use a model past its end of life (amazon.nova-sonic-v1:0) where it is still served.
    allow_retired_model: bool = False

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> NovaOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ConfigError(
                f"unknown Nova option(s) {unknown} in Config.extra; known: {sorted(known)}"
            )
        values = dict(extra)
        if "region" not in values:
            # Like the AWS SDKs (and what ECS sets in a task): the environment, then a default.
            env_region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            values["region"] = env_region or DEFAULT_REGION
        if values.get("ca_bundle") is None and os.environ.get("AWS_CA_BUNDLE"):
            values["ca_bundle"] = os.environ["AWS_CA_BUNDLE"]
        try:
            options = cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the key check above
            raise ConfigError(str(exc)) from exc
        options._validate()
        return options

    def _validate(self) -> None:
        if not self.region or not isinstance(self.region, str):
            raise ConfigError("region is required for Nova Sonic (Config.extra['region'])")
        if self.base_url is not None:
            url = urlparse(self.base_url)
            if url.scheme != "https" or not url.hostname:
                raise ConfigError(
                    f"base_url {self.base_url!r} must be an https:// URL: Bedrock's bidirectional"
                    " stream needs HTTP/2, which the CRT transport negotiates only over TLS"
                )
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ConfigError(f"ca_bundle {self.ca_bundle!r} is not a readable file")
        keys = (self.aws_access_key_id, self.aws_secret_access_key)
        if any(keys) and not all(keys):
            raise ConfigError("give both aws_access_key_id and aws_secret_access_key, or neither")
        if not 1 <= self.max_tokens <= 10000:
            raise ConfigError(f"max_tokens={self.max_tokens} must be within 1..10000")
        if not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p={self.top_p} must be within 0..1")
        if not 0.0 <= self.temperature <= 1.0:
            raise ConfigError(f"temperature={self.temperature} must be within 0..1")
        if (
            self.endpointing_sensitivity is not None
            and self.endpointing_sensitivity not in ENDPOINTING_SENSITIVITIES
        ):
            raise ConfigError(
                f"endpointing_sensitivity={self.endpointing_sensitivity!r}; use one of "
                f"{', '.join(ENDPOINTING_SENSITIVITIES)}"
            )
        if self.speech_instructions is not None and (
            not isinstance(self.speech_instructions, str) or not self.speech_instructions.strip()
        ):
            raise ConfigError("speech_instructions must be a string with a visible character")
        for name in ("open_timeout", "send_timeout", "close_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.keepalive_after < 0:
            raise ConfigError("keepalive_after must be >= 0 (0 turns the keep-alive off)")
        for name in ("keepalive_after_speech", "keepalive_after_stall"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if not 0.01 <= self.keepalive_step <= 0.5:
            raise ConfigError("keepalive_step must be between 0.01 and 0.5 seconds")
        if self.keepalive_limit < 0:
            raise ConfigError("keepalive_limit must be >= 0 (0: the keep-alive never stops)")
        if 0 < self.keepalive_limit < self.keepalive_after:
            raise ConfigError("keepalive_limit must not be shorter than keepalive_after")
        if self.stall_timeout < 0:
            raise ConfigError("stall_timeout must be >= 0 (0 turns stall detection off)")
        if self.rollover_after < 0:
            raise ConfigError("rollover_after must be >= 0 (0 turns rollover off)")
        if self.replay_seconds < 0.5:
            raise ConfigError("replay_seconds must be at least 0.5")
        if self.recovery_attempts < 0:
            raise ConfigError("recovery_attempts must be >= 0 (0 turns recovery off)")
        if self.recovery_budget <= 0:
            raise ConfigError("recovery_budget must be positive")
        if self.on_telemetry is not None and not callable(self.on_telemetry):
            raise ConfigError("on_telemetry must be a callable(name, value, tags)")
        if not isinstance(self.allow_retired_model, bool):
            raise ConfigError("allow_retired_model must be true or false")
        if self.max_audio_event_bytes < 320 or self.max_audio_event_bytes % 2:
            raise ConfigError("max_audio_event_bytes must be an even number >= 320")


def audio_event_bytes(options: NovaOptions, input_sample_rate: int) -> int:
    """Bytes per audioInput event: ``max_audio_event_bytes``, capped at 100 ms of audio."""
    cap = 2 * int(input_sample_rate * MAX_AUDIO_EVENT_SECONDS)
    return min(options.max_audio_event_bytes, cap)


def validate_for_nova(config: Config, options: NovaOptions) -> NovaModel:
    """Check ``config`` against what the model supports; returns the model's description."""
    model = MODELS.get(config.model)
    if model is None:
        raise ConfigError(
            f"unknown Nova Sonic model {config.model!r}; known: {', '.join(sorted(MODELS))}"
        )
    if model.end_of_life is not None and not options.allow_retired_model:
        raise ConfigError(retired_message(model, "Config.extra['allow_retired_model']=True"))
    if config.voice not in model.voices:
        raise ConfigError(
            f"voice {config.voice!r} is not available on {model.model_id}; choose one of "
            f"{', '.join(sorted(model.voices))}"
        )
    if config.input_sample_rate not in INPUT_SAMPLE_RATES:
        raise ConfigError(
            f"Nova Sonic takes 8000, 16000 or 24000 Hz input, not {config.input_sample_rate} Hz;"
            " resample first (novakit.voice.Resampler)"
        )
    if config.output_sample_rate not in OUTPUT_SAMPLE_RATES:
        raise ConfigError(
            f"output_sample_rate={config.output_sample_rate} Hz; Nova Sonic speaks at "
            f"{', '.join(str(r) for r in sorted(OUTPUT_SAMPLE_RATES))} Hz"
        )
    if options.speech_instructions is not None and not model.speech_prompt:
        raise ConfigError(
            f"speech_instructions (a SYSTEM_SPEECH prompt) is not supported by {model.model_id}"
        )
    if options.endpointing_sensitivity is not None and not model.turn_detection:
        raise ConfigError(f"endpointing_sensitivity is not supported by {model.model_id}")
    if options.base_url is None and options.region not in model.regions:
        # The Region list is not verified live: warn, so a newly launched Region still works.
        log.warning(
            "%s is not known to be offered in %s (known: %s); Bedrock will say if it is not",
            model.model_id,
            options.region,
            ", ".join(sorted(model.regions)),
        )
    return model
