"""Scale-in protection: the planner's decisions, and the client against a local stand-in of the
ECS agent's task-protection endpoint (an aiohttp server on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from novakit.bridge import protection
from novakit.bridge.protection import (
    Action,
    AgentProtectionClient,
    ProtectionError,
    ProtectionPlanner,
    ProtectionPolicy,
)

POLICY = ProtectionPolicy(
    expires_minutes=10,
    renew_before_seconds=300,
    release_after_idle_seconds=30,
    max_busy_minutes=60,
)


def step(planner: ProtectionPlanner, sessions: int, now: float, draining: bool = False):
    action = planner.next(sessions, draining, now)
    if action is not None:
        planner.done(action, now)
    return action


def test_a_busy_task_is_protected_and_renewed_before_expiry() -> None:
    planner = ProtectionPlanner(POLICY)
    assert step(planner, 0, 0.0) is None  # idle and unprotected: nothing to ask
    assert step(planner, 1, 1.0) is Action.PROTECT
    assert planner.expires_at == 1.0 + 600
    assert step(planner, 3, 200.0) is None  # 401 s left: more than the renewal margin
    assert step(planner, 3, 302.0) is Action.PROTECT  # 299 s left: renew
    assert planner.expires_at == 302.0 + 600


def test_idle_releases_only_after_the_grace_period() -> None:
    planner = ProtectionPlanner(POLICY)
    step(planner, 2, 0.0)
    assert step(planner, 0, 10.0) is None  # just went idle
    assert step(planner, 1, 20.0) is None  # busy again: still protected, no call
    assert step(planner, 0, 25.0) is None
    assert step(planner, 0, 54.0) is None  # 29 s idle
    assert step(planner, 0, 55.0) is Action.CLEAR
    assert planner.protected is False
    assert step(planner, 0, 500.0) is None


def test_draining_clears_at_once_and_never_protects() -> None:
    planner = ProtectionPlanner(POLICY)
    step(planner, 4, 0.0)
    assert step(planner, 4, 1.0, draining=True) is Action.CLEAR
    assert step(planner, 4, 2.0, draining=True) is None


def test_a_protected_stretch_is_bounded_until_the_task_goes_idle_once() -> None:
    planner = ProtectionPlanner(POLICY)
    now = 0.0
    assert step(planner, 1, now) is Action.PROTECT
    actions = []
    while now < 3600 - 5:
        now += 5
        actions.append(step(planner, 1, now))
    assert Action.CLEAR not in actions and planner.protected
    assert step(planner, 1, 3600.0) is Action.CLEAR  # an hour without an idle moment
    assert step(planner, 5, 4000.0) is None  # busy still: stays eligible
    assert step(planner, 0, 4010.0) is None
    assert step(planner, 1, 4020.0) is Action.PROTECT  # went idle once: a new stretch


def test_a_failed_call_is_asked_again() -> None:
    planner = ProtectionPlanner(POLICY)
    assert planner.next(1, False, 0.0) is Action.PROTECT  # not confirmed (the call failed)
    assert planner.next(1, False, 5.0) is Action.PROTECT


@dataclass
class Agent:
    """What the ECS agent answers, and what it was asked."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    answer: dict[str, Any] | None = None
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"method": request.method, "path": request.path, "body": body})
        self.seen.set()
        if self.answer is not None:
            return web.json_response(self.answer, status=self.status)
        return web.json_response(
            {
                "protection": {
                    "ExpirationDate": "2026-12-07T10:10:00Z",
                    "ProtectionEnabled": body["ProtectionEnabled"],
                    "TaskArn": "arn:aws:ecs:us-east-1:111122223333:task/c/abc",
                }
            },
            status=self.status,
        )


@pytest.fixture
async def agent() -> AsyncIterator[tuple[Agent, str]]:
    stand_in = Agent()
    app = web.Application()
    app.router.add_put("/api/abc-123/task-protection/v1/state", stand_in.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield stand_in, str(server.make_url("/api/abc-123"))
    finally:
        await server.close()


async def test_client_puts_the_documented_body(agent: tuple[Agent, str]) -> None:
    stand_in, uri = agent
    client = AgentProtectionClient(uri)
    try:
        answer = await client.set(True, 10)
        assert answer["ProtectionEnabled"] is True
        await client.set(False)
    finally:
        await client.close()
    assert stand_in.requests == [
        {
            "method": "PUT",
            "path": "/api/abc-123/task-protection/v1/state",
            "body": {"ProtectionEnabled": True, "ExpiresInMinutes": 10},
        },
        {
            "method": "PUT",
            "path": "/api/abc-123/task-protection/v1/state",
            "body": {"ProtectionEnabled": False},
        },
    ]


@pytest.mark.parametrize(
    ("status", "answer", "message"),
    [
        (
            403,
            {
                "error": {
                    "Arn": "arn:aws:ecs:us-east-1:111122223333:task/c/abc",
                    "Code": "AccessDeniedException",
                    "Message": "User is not authorized to perform: ecs:UpdateTaskProtection",
                }
            },
            "AccessDeniedException",
        ),
        (
            200,
            {"failure": {"Arn": "arn", "Reason": "TASK_NOT_VALID", "Detail": None}},
            "TASK_NOT_VALID",
        ),
        (500, {"unexpected": True}, "500"),
    ],
)
async def test_client_reports_what_the_agent_refused(
    agent: tuple[Agent, str], status: int, answer: dict[str, Any], message: str
) -> None:
    stand_in, uri = agent
    stand_in.status, stand_in.answer = status, answer
    client = AgentProtectionClient(uri)
    try:
        with pytest.raises(ProtectionError, match=message):
            await client.set(True, 10)
    finally:
        await client.close()


async def test_the_loop_protects_while_busy_and_clears_when_draining(
    agent: tuple[Agent, str],
) -> None:
    stand_in, uri = agent
    state = {"sessions": 0, "draining": False}
    task = asyncio.create_task(
        protection.run(
            AgentProtectionClient(uri),
            lambda: (state["sessions"], state["draining"]),
            planner=ProtectionPlanner(POLICY),
            interval=0.01,
        )
    )
    try:
        state["sessions"] = 2
        async with asyncio.timeout(10):
            await stand_in.seen.wait()
        stand_in.seen.clear()
        state["draining"] = True
        async with asyncio.timeout(10):
            await stand_in.seen.wait()
    finally:
        await protection.stop(task)
    bodies = [r["body"] for r in stand_in.requests]
    assert bodies == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 10},
        {"ProtectionEnabled": False},
    ]


async def test_the_loop_survives_a_refusal_and_tries_again(agent: tuple[Agent, str]) -> None:
    stand_in, uri = agent
    stand_in.status, stand_in.answer = 403, {"error": {"Code": "AccessDeniedException"}}
    task = asyncio.create_task(
        protection.run(
            AgentProtectionClient(uri),
            lambda: (1, False),
            planner=ProtectionPlanner(POLICY),
            interval=0.01,
        )
    )
    try:
        async with asyncio.timeout(10):
            while len(stand_in.requests) < 3:
                stand_in.seen.clear()
                await stand_in.seen.wait()
    finally:
        await protection.stop(task)
    assert all(r["body"]["ProtectionEnabled"] is True for r in stand_in.requests)


async def test_no_agent_no_loop() -> None:
    assert protection.start(lambda: (0, False), environ={}) is None
    task = protection.start(lambda: (0, False), environ={"ECS_AGENT_URI": "http://127.0.0.1:9"})
    assert task is not None
    await protection.stop(task)
    assert task.cancelled()
