"""What a session measures about its streams, for ``NovaSession.stats`` and ``on_telemetry``.

``on_telemetry(name, value, tags)`` (``Config.extra['on_telemetry']``) is called as things
happen, so that a host (the bridge) can publish metrics; it must be quick and must not raise
(an exception is logged and otherwise ignored). Names and values:

``stream_opened``
    seconds to open a Bedrock stream (request to response headers); tags ``purpose``:
    ``initial``, ``rollover`` or ``recovery``.
``rollover``
    seconds from the rollover's trigger (the stream's age passing ``rollover_after``) to the
    switch; tags ``at``: ``turn_end`` (after the answer played out), ``interrupted``, ``quiet``.
``rollover_pause``
    seconds the caller's audio was held while the switch sent history and replayed audio.
``rollover_audio_gap``
    seconds between the last assistant audio of the old stream and the first of the new one
    (at a turn boundary this includes the user's next utterance: it is not silence the
    listener notices mid-answer, which a switch never causes).
``recovery``
    seconds of downtime, from the failure to the new stream in place; tags ``reason`` (the
    error code) and ``attempts``.
``recovery_failed``
    attempts made before giving up; tags ``reason``.
``audio_dropped``
    seconds of user audio the replay buffer could not hold (a long outage).
``dormant``
    1 when a stream ended while the caller had been silent past ``keepalive_limit`` and was
    not replaced (the next input opens one); tags ``reason`` (the error code).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TelemetryHook = Callable[[str, float, Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class SessionStats:
    """A snapshot of a session's stream-level figures (seconds unless named otherwise)."""

    streams_opened: int = 0
    rollovers: int = 0
    last_rollover_seconds: float | None = None
    mean_rollover_seconds: float | None = None
    last_rollover_pause_seconds: float | None = None
    last_rollover_audio_gap_seconds: float | None = None
    recoveries: Mapping[str, int] = field(default_factory=dict)
    last_recovery_seconds: float | None = None
    failed_recoveries: int = 0
    dropped_audio_seconds: float = 0.0
    dormant: int = 0  # streams let go without a replacement while the caller was silent


class StatsRecorder:
    """Accumulates ``SessionStats`` and forwards each figure to the hook."""

    def __init__(self, hook: TelemetryHook | None = None) -> None:
        self._hook = hook
        self._streams = 0
        self._rollovers: list[float] = []
        self._pause: float | None = None
        self._gap: float | None = None
        self._recoveries: Counter[str] = Counter()
        self._last_recovery: float | None = None
        self._failed = 0
        self._dropped = 0.0
        self._dormant = 0

    def snapshot(self) -> SessionStats:
        count = len(self._rollovers)
        return SessionStats(
            streams_opened=self._streams,
            rollovers=count,
            last_rollover_seconds=self._rollovers[-1] if count else None,
            mean_rollover_seconds=sum(self._rollovers) / count if count else None,
            last_rollover_pause_seconds=self._pause,
            last_rollover_audio_gap_seconds=self._gap,
            recoveries=dict(self._recoveries),
            last_recovery_seconds=self._last_recovery,
            failed_recoveries=self._failed,
            dropped_audio_seconds=self._dropped,
            dormant=self._dormant,
        )

    def stream_opened(self, seconds: float, purpose: str) -> None:
        self._streams += 1
        self._emit("stream_opened", seconds, purpose=purpose)

    def rolled_over(self, seconds: float, pause: float, at: str) -> None:
        self._rollovers.append(seconds)
        self._pause = pause
        self._emit("rollover", seconds, at=at)
        self._emit("rollover_pause", pause)

    def rollover_audio_gap(self, seconds: float) -> None:
        self._gap = seconds
        self._emit("rollover_audio_gap", seconds)

    def recovered(self, seconds: float, reason: str, attempts: int) -> None:
        self._recoveries[reason] += 1
        self._last_recovery = seconds
        self._emit("recovery", seconds, reason=reason, attempts=str(attempts))

    def recovery_failed(self, attempts: int, reason: str) -> None:
        self._failed += 1
        self._emit("recovery_failed", float(attempts), reason=reason)

    def audio_dropped(self, seconds: float) -> None:
        self._dropped += seconds
        self._emit("audio_dropped", seconds)

    def went_dormant(self, reason: str) -> None:
        self._dormant += 1
        self._emit("dormant", 1.0, reason=reason)

    def _emit(self, name: str, value: float, **tags: str) -> None:
        if self._hook is None:
            return
        try:
            self._hook(name, value, tags)
        except Exception:  # a metrics hook must never break the conversation
            log.exception("on_telemetry hook failed for %s", name)
