"""Whether a connection's client is still there, without relying on ``$disconnect`` (sans I/O).

API Gateway documents ``$disconnect`` as best-effort: when it is lost, nothing else tells the
bridge that the client left, and the session would keep its slot and its Bedrock stream until
the task restarts. So a session also ends by itself when

* no first frame arrives within ``first_frame_seconds`` of ``$connect`` (a client that connects
  and says nothing holds a slot for free);
* no frame arrives for ``idle_seconds`` (API Gateway closes a connection idle for 10 minutes:
  by then the client is gone whether or not ``$disconnect`` came);
* a ``GET @connections/{id}``, every ``presence_seconds`` (jittered so that sessions opened
  together do not check together), answers 410 Gone.

A 410 (from that check or from a post) while frames still arrive means the connection is
closing: API Gateway answers 410 as soon as the client closes, yet still delivers the frames it
had queued, then ``$disconnect``. Ending the session then would leave those frames to open new
sessions, each with a Bedrock stream. So a 410 ends the session only once no frame has come
for ``closing_grace`` seconds (``CLOSING_GRACE``, or the presence period if shorter); until
then the session takes the frames and says nothing.

``Liveness`` only decides; the session runs the timer and the GET. Times are
``time.monotonic()`` seconds; a setting of 0 turns its check off.
"""

from __future__ import annotations

import random
from enum import StrEnum

PRESENCE_JITTER = 0.2  # each presence check comes after presence_seconds * (1 ± this)
CLOSING_GRACE = 10.0  # seconds without a frame after which a 410 ends the session


class LivenessEnd(StrEnum):
    """Why a session ended by itself (the text is the session's end reason)."""

    NO_FIRST_FRAME = "no frame from the client after connecting"
    CLIENT_IDLE = "no frame from the client for longer than the idle timeout"
    CLIENT_ABSENT = "client gone (GET @connections answered 410)"
    CLIENT_GONE = "client gone"  # a post answered 410


class Liveness:
    def __init__(
        self,
        connected_at: float,
        *,
        first_frame_seconds: float,
        idle_seconds: float,
        presence_seconds: float,
        rng: random.Random | None = None,
    ) -> None:
        self.connected_at = connected_at
        self.first_frame_seconds = first_frame_seconds
        self.idle_seconds = idle_seconds
        self.presence_seconds = presence_seconds
        self.closing_grace = min(CLOSING_GRACE, presence_seconds or CLOSING_GRACE)
        self.gone: LivenessEnd | None = None  # a 410 seen, waiting for the frames to stop
        self._gone_check: float | None = None
        self.last_frame: float | None = None
        self._rng = rng or random.Random()
        self.next_presence: float | None = None
        self._schedule_presence(connected_at)

    def frame(self, now: float) -> None:
        """A frame of the client's arrived (any frame: a ping, or one that is refused)."""
        self.last_frame = now

    def expired(self, now: float) -> LivenessEnd | None:
        """Why the session must end now, if it must."""
        if self.gone is not None:
            if self.last_frame is None or now - self.last_frame >= self.closing_grace:
                return self.gone
            self._gone_check = self.last_frame + self.closing_grace
        if self.last_frame is None:
            limit = self.first_frame_seconds
            if limit > 0 and now - self.connected_at >= limit:
                return LivenessEnd.NO_FIRST_FRAME
        elif self.idle_seconds > 0 and now - self.last_frame >= self.idle_seconds:
            return LivenessEnd.CLIENT_IDLE
        return None

    def presence_due(self, now: float) -> bool:
        return self.next_presence is not None and now >= self.next_presence

    def presence_checked(self, now: float) -> None:
        """A presence check was made (whatever it answered): the next one is due later."""
        self._schedule_presence(now)

    def gone_reported(self, now: float, reason: LivenessEnd) -> bool:
        """A 410 Gone (``reason`` says from what): whether the session ends now. Not while
        frames still arrive: ``expired`` says so once they have stopped."""
        if self.gone is None:
            self.gone = reason
        return self.expired(now) is not None

    def next_wakeup(self) -> float | None:
        """When ``expired`` or ``presence_due`` may next change its answer (None: never)."""
        times = []
        if self.gone is not None and self._gone_check is not None:
            times.append(self._gone_check)
        if self.last_frame is None:
            if self.first_frame_seconds > 0:
                times.append(self.connected_at + self.first_frame_seconds)
        elif self.idle_seconds > 0:
            times.append(self.last_frame + self.idle_seconds)
        if self.next_presence is not None:
            times.append(self.next_presence)
        return min(times) if times else None

    def _schedule_presence(self, now: float) -> None:
        if self.presence_seconds <= 0:
            self.next_presence = None
            return
        spread = self._rng.uniform(1 - PRESENCE_JITTER, 1 + PRESENCE_JITTER)
        self.next_presence = now + self.presence_seconds * spread
