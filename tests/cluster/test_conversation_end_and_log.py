"""Two bridge processes: a conversation its user ended is never started again on either, and a
takeover resumes from exactly the conversation log the model session kept (tool calls
included). What the emulator saw is asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from novakit import s2s
from novakit.emulator import Script, ScriptTurn, ToolCall
from novakit.s2s.nova.protocol import prepare_history

from ..contract.dialogue import history_sent
from ..stack.conftest import connect, kind
from ..stack.test_conversation_end import HELLO, assert_ended_once, end_with_audio_in_flight
from .conftest import cluster
from .test_cluster import keep_talking_until


async def test_end_with_audio_in_flight_over_two_processes(tmp_path: Path) -> None:
    async with cluster(tmp_path, size=2) as running:
        running.emulator.script = HELLO
        async with connect(running.url) as client:
            await end_with_audio_in_flight(client)
        assert_ended_once(client)
        connection_id = client.frames[0]["connection_id"]
        route = await running.directory.owner_of(connection_id)
        assert route is not None and route.ended  # a tombstone, for every task
        async with connect(running.url) as later:  # goes through after every frame above
            await later.speak(0.8)
            await later.wait_for(kind("turn_end"))
        records = await running.emulator.wait_for_streams(2, timeout=60)
        assert len(records) == 2


HOLIDAYS = Script(
    (
        ScriptTurn(
            transcript="how many holidays do I get",
            tool=ToolCall("lookup", {"topic": "holidays"}),
            reply="You get {result}.",
        ),
        ScriptTurn(transcript="second question", reply="Second answer."),
    )
)


async def test_a_takeover_resumes_with_the_history_the_model_had(tmp_path: Path) -> None:
    async with cluster(tmp_path, size=2) as running:
        running.emulator.script = HOLIDAYS
        async with connect(running.url) as client:
            await client.speak(1.0, pause=0.6)
            await client.wait_for(kind("turn_end"), within=60)
            connection_id = client.frames[0]["connection_id"]
            (spoken,) = [f["text"] for f in client.of_type("text") if f["final"]]

            async def saved_history() -> list[dict[str, str]]:
                async with asyncio.timeout(10):
                    while True:
                        record = await running.directory.get(connection_id)
                        assert record is not None
                        history = list(record.state.get("history", []))
                        if history and history[-1]["text"] == spoken:
                            return history
                        await asyncio.sleep(0.05)

            saved = await saved_history()
            first = running.emulator.records[0]
            (result,) = [e.body["content"] for e in first.input_events if e.name == "toolResult"]
            # the model session's log: the user's words, the tool call with its result, and
            # what was spoken
            assert saved == [
                {"role": "user", "text": "how many holidays do I get"},
                {
                    "role": "assistant",
                    "text": f"[tool lookup {json.dumps({'topic': 'holidays'})} returned {result}]",
                },
                {"role": "assistant", "text": spoken},
            ]
            owner = (await running.directory.get(connection_id)).owner
            victim = next(b for b in running.bridges if b.url == owner)
            victim.kill()
            await keep_talking_until(client, lambda f: f.get("state") == "resumed", within=15)
            before = len([f for f in client.of_type("turn_end")])
            await client.speak(0.8, pause=0.6)
            await client.wait_for(lambda f: len(client.of_type("turn_end")) > before, within=30)
        records = running.emulator.records
        assert len(records) == 2
        # the takeover's first stream was told exactly the saved log, as Nova takes history
        messages = [s2s.Message(m["role"], m["text"]) for m in saved]
        expected = [(m.role.upper(), m.text) for m in prepare_history(messages)]
        assert history_sent(records[1].input_events) == expected
        assert history_sent(records[0].input_events) == []
