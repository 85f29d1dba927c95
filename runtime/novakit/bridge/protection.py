"""ECS task scale-in protection, set from inside the task while it holds live conversations.

Autoscaling and deployments stop the tasks ECS picks; a task with live sessions would then hand
them over (a short gap for each listener) to peers that may be busy themselves. While a task
holds sessions it asks the ECS agent (``$ECS_AGENT_URI/task-protection/v1/state``) to protect
it, with an expiry renewed while it stays busy, so scale-in picks idle tasks; it lets go when
it has been idle for a while or is draining. A protected stretch is bounded
(``max_busy_minutes``): a task that never goes idle still becomes eligible, so a deployment
finishes by hand-over within that bound instead of waiting for a quiet moment.

The agent calls ECS ``UpdateTaskProtection`` with the task role's credentials, so the role
needs that permission on the cluster's tasks (stacks/bridge_service.py grants it).

``ProtectionPlanner`` is the pure decision (sessions, draining, time in; what to ask for out);
``AgentProtectionClient`` is the HTTP call; ``run`` ties them to the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

AGENT_URI_ENV = "ECS_AGENT_URI"  # set by ECS in every container of a task
STATE_PATH = "/task-protection/v1/state"


class Action(enum.Enum):
    PROTECT = "protect"  # set, or renew, protection
    CLEAR = "clear"


@dataclass(frozen=True)
class ProtectionPolicy:
    # How long one request protects the task (ECS accepts 1 to 2880 minutes).
    expires_minutes: int = 10
    # Renew when less than this is left: several checks' worth, so one failed call does not
    # let protection lapse under live sessions.
    renew_before_seconds: float = 300.0
    # Idle this long before letting go: a task that drops to zero sessions and gets the next
    # one a moment later does not toggle protection (each toggle is an ECS API call).
    release_after_idle_seconds: float = 30.0
    # Longest protected stretch without an idle moment; then the task is eligible until it has
    # been idle once.
    max_busy_minutes: float = 60.0


class ProtectionPlanner:
    """What to ask the agent for, given what the task holds now. Pure: no I/O, no clock."""

    def __init__(self, policy: ProtectionPolicy | None = None) -> None:
        self.policy = policy or ProtectionPolicy()
        self.protected = False
        self.expires_at = 0.0
        self._busy_since: float | None = None
        self._idle_since: float | None = None
        self._held_too_long = False

    def next(self, sessions: int, draining: bool, now: float) -> Action | None:
        if sessions > 0:
            self._idle_since = None
            if self._busy_since is None:
                self._busy_since = now
        else:
            self._busy_since = None
            self._held_too_long = False
            if self._idle_since is None:
                self._idle_since = now
        if draining:
            return Action.CLEAR if self.protected else None
        if sessions == 0:
            idle_for = now - (self._idle_since if self._idle_since is not None else now)
            if self.protected and idle_for >= self.policy.release_after_idle_seconds:
                return Action.CLEAR
            return None
        assert self._busy_since is not None
        if now - self._busy_since >= self.policy.max_busy_minutes * 60:
            self._held_too_long = True
        if self._held_too_long:
            return Action.CLEAR if self.protected else None
        if not self.protected or self.expires_at - now < self.policy.renew_before_seconds:
            return Action.PROTECT
        return None

    def done(self, action: Action, now: float) -> None:
        """The agent accepted ``action`` at ``now``."""
        if action is Action.PROTECT:
            self.protected = True
            self.expires_at = now + self.policy.expires_minutes * 60
        else:
            self.protected = False
            self.expires_at = 0.0


class ProtectionError(RuntimeError):
    """The agent (or ECS behind it) refused or failed the request."""


class AgentProtectionClient:
    """PUT ``{"ProtectionEnabled": ..., "ExpiresInMinutes": ...}`` to the agent's endpoint."""

    def __init__(self, agent_uri: str, *, timeout: float = 10.0) -> None:
        self.url = agent_uri.rstrip("/") + STATE_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def set(self, enabled: bool, expires_minutes: int | None = None) -> dict[str, object]:
        """The protection ECS now records (``ProtectionEnabled``, ``ExpirationDate``...)."""
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled and expires_minutes is not None:
            body["ExpiresInMinutes"] = expires_minutes
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.put(self.url, json=body) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                answer = None
        if not isinstance(answer, dict):
            raise ProtectionError(f"agent answered {response.status} without a JSON object")
        # Errors come as {"error": {...}} (agent or ECS) or {"failure": {...}} (ECS per task).
        for key in ("error", "failure"):
            problem = answer.get(key)
            if problem:
                raise ProtectionError(f"agent answered {response.status}: {key} {problem}")
        protection = answer.get("protection")
        if response.status != 200 or not isinstance(protection, dict):
            raise ProtectionError(f"agent answered {response.status}: {answer}")
        return protection

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# What the task holds: (sessions, draining), or a coroutine that finds out (a task of several
# processes asks its siblings).
Status = Callable[[], tuple[int, bool] | Awaitable[tuple[int, bool]]]


async def run(
    client: AgentProtectionClient,
    status: Status,
    *,
    planner: ProtectionPlanner | None = None,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Every ``interval`` seconds: read ``status()`` (sessions held, draining) and ask the agent
    for what the planner decides. A failed call is logged and tried again at the next check."""
    planner = planner or ProtectionPlanner()
    try:
        while True:
            current = status()
            sessions, draining = await current if inspect.isawaitable(current) else current
            action = planner.next(sessions, draining, clock())
            if action is not None:
                try:
                    enabled = action is Action.PROTECT
                    await client.set(enabled, planner.policy.expires_minutes if enabled else None)
                except (ProtectionError, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning(
                        "scale-in protection not updated: %s", exc, extra={"action": action.value}
                    )
                else:
                    planner.done(action, clock())
                    log.info(
                        "scale-in protection %s",
                        "set" if enabled else "cleared",
                        extra={"sessions": sessions, "draining": draining},
                    )
            await asyncio.sleep(interval)
    finally:
        await client.close()


def start(status: Status, environ: Mapping[str, str] | None = None) -> asyncio.Task[None] | None:
    """The protection loop when running on ECS (the agent's URI is set), else nothing."""
    env = os.environ if environ is None else environ
    agent_uri = env.get(AGENT_URI_ENV, "").strip()
    if not agent_uri:
        return None
    return asyncio.create_task(
        run(AgentProtectionClient(agent_uri), status), name="scale-in-protection"
    )


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
