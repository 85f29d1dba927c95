"""The session bridge end to end: WebSocket client → local API Gateway → ``novakit bridge``
(started as the container starts it) → Bedrock emulator. What the client receives is asserted
frame by frame: content, order, and what the emulator saw."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import websockets

from novakit.emulator import Outcome, Script, ScriptTurn, ToolCall

from .conftest import Client, Stack, connect, kind, local_stack


def model_audio(stack: Stack, stream: int = 0) -> bytes:
    record = stack.emulator.records[stream]
    return b"".join(
        base64.b64decode(e.body["content"]) for e in record.output_events if e.name == "audioOutput"
    )


def assert_numbered(client: Client) -> None:
    seqs = [f["seq"] for f in client.frames]
    assert seqs == list(range(len(seqs))), f"frames out of order or missing: {seqs}"


async def test_a_spoken_turn_comes_back_as_transcript_text_audio_and_turn_end(
    stack: Stack,
) -> None:
    stack.emulator.script = Script(
        (ScriptTurn(transcript="hello there", reply="Hi! How can I help?"),)
    )
    async with connect(stack) as client:
        await client.send({"type": "start", "voice": "tiffany"})
        await client.speak(1.0)
        await client.wait_for(kind("turn_end"))
        kinds = [f["type"] for f in client.frames]
        session = client.frames[0]
        assert (session["type"], session["state"], session["voice"]) == (
            "session",
            "ready",
            "tiffany",
        )
        assert session["connection_id"] in stack.gateway.connections
        assert client.of_type("transcript")[0]["text"] == "hello there"
        assert kinds.index("transcript") < kinds.index("audio")
        finals = [f["text"] for f in client.of_type("text") if f["final"]]
        assert finals == ["Hi!", "How can I help?"]  # one final text per sentence, as Nova
        last_audio = len(kinds) - 1 - kinds[::-1].index("audio")
        assert last_audio < kinds.index("turn_end")
        # every byte the model spoke reached the client, in order, in frames within the limits
        assert client.audio_bytes() == model_audio(stack)
        assert all(len(json.dumps(f)) <= 32768 for f in client.frames)
        assert {f["sample_rate"] for f in client.of_type("audio")} == {24000}
        assert_numbered(client)
    (record,) = await stack.emulator.wait_for_streams(1)
    assert record.session_end_received


async def test_a_tool_runs_through_the_bridge_and_the_answer_is_spoken(stack: Stack) -> None:
    stack.emulator.script = Script(
        (
            ScriptTurn(
                transcript="how many holidays do I get",
                tool=ToolCall("lookup", {"topic": "holidays"}),
                reply="You get {result}.",
            ),
        )
    )
    async with connect(stack) as client:
        await client.speak(1.0)
        await client.wait_for(kind("turn_end"))
        statuses = [(f["name"], f["status"]) for f in client.of_type("tool")]
        assert statuses == [("lookup", "started"), ("lookup", "succeeded")]
        final = [f["text"] for f in client.of_type("text") if f["final"]]
        assert len(final) == 1 and "25 days a year" in final[0]
    record = stack.emulator.records[0]
    results = [e.body for e in record.input_events if e.name == "toolResult"]
    assert len(results) == 1
    answer = json.loads(results[0]["content"])
    assert answer == {"topic": "holidays", "answer": "25 days a year", "by": "lookup"}


async def test_failing_tools_become_error_results_and_the_conversation_goes_on(
    stack: Stack,
) -> None:
    turns = [
        ScriptTurn(
            transcript="look up explode",
            tool=ToolCall("lookup", {"topic": "explode"}),
            reply="Sorry: {result}",
        ),
        ScriptTurn(
            transcript="look up garbage",
            tool=ToolCall("lookup", {"topic": "garbage"}),
            reply="Sorry: {result}",
        ),
        ScriptTurn(transcript="be slow", tool=ToolCall("slow", {}), reply="Sorry: {result}"),
        ScriptTurn(
            transcript="count to many",
            tool=ToolCall("strict", {"count": "many"}),
            reply="Sorry: {result}",
        ),
        ScriptTurn(transcript="hello", reply="Still here."),
    ]
    stack.emulator.script = Script(tuple(turns))
    async with connect(stack) as client:
        for n in range(1, len(turns) + 1):
            await client.speak(0.8)
            await client.wait_for(lambda f, n=n: len(client.of_type("turn_end")) >= n, within=30)
        ends = [
            (f["name"], f["status"]) for f in client.of_type("tool") if f["status"] != "started"
        ]
        assert ends == [
            ("lookup", "failed"),
            ("lookup", "failed"),
            ("slow", "timed_out"),
            ("strict", "failed"),
        ]
        finals = [f["text"] for f in client.of_type("text") if f["final"]]
        assert "the tool failed (Unhandled): the handbook is on fire" in finals[0]
        assert "not valid JSON" in finals[1]
        assert "did not answer within 1 seconds" in finals[2]
        assert "invalid input (count)" in finals[3]
        assert finals[4] == "Still here."
    results = [e.body for e in stack.emulator.records[0].input_events if e.name == "toolResult"]
    assert len(results) == 4


async def test_barge_in_clears_audio_before_any_more_audio(stack: Stack) -> None:
    long_reply = " ".join(["This answer goes on for a good long while."] * 8)
    stack.emulator.script = Script(
        (
            ScriptTurn(transcript="tell me a story", reply=long_reply),
            ScriptTurn(transcript="stop please", reply="Okay."),
        )
    )
    async with connect(stack) as client:
        await client.speak(1.0, pause=0.5)
        await client.wait_for(kind("audio"))
        await client.speak(0.8)  # the user talks over the assistant
        clear = await client.wait_for(kind("clear_audio"))
        assert clear["reason"] == "barge_in"
        await client.wait_for(lambda f: f.get("type") == "text" and f.get("text") == "Okay.")
        await client.wait_for(lambda f: len(client.of_type("turn_end")) >= 1)
        kinds = [f["type"] for f in client.frames]
        at = kinds.index("clear_audio")
        after = kinds[at + 1 :]
        # after the clear, no audio of the story: the next audio follows the new transcript
        assert "audio" in after and after.index("transcript") < after.index("audio")
        # the story was cut: the client got less of it than the model had to say
        transcripts = [f["text"] for f in client.of_type("transcript")]
        assert transcripts == ["tell me a story", "stop please"]


async def test_bad_frames_get_error_frames_and_the_session_goes_on(stack: Stack) -> None:
    stack.emulator.script = Script((ScriptTurn(transcript="hello", reply="Hello again."),))
    async with connect(stack) as client:
        await client.send("this is not json")
        await client.send({"type": "audio", "seq": 0, "data": "!!!not base64!!!"})
        await client.send({"type": "dance"})
        await client.send({"type": "start", "input_sample_rate": 11025})
        await client.send({"type": "text"})
        await client.send({"type": "text", "text": "x" * 5000})  # oversized, under 32 KB
        await client.send({"type": "ping", "id": "p1"})
        for code in ("bad_json", "bad_audio", "unknown_type", "bad_sample_rate"):
            frame = await client.wait_for(lambda f, c=code: f.get("code") == c)
            assert frame["type"] == "error" and frame["fatal"] is False
        await client.wait_for(
            lambda f: len([g for g in client.of_type("error") if g["code"] == "bad_frame"]) == 2
        )
        bad = [f["message"] for f in client.of_type("error") if f["code"] == "bad_frame"]
        assert "text" in bad[0] and "1 to 4000 characters" in bad[1]
        pong = await client.wait_for(kind("pong"))
        assert pong["id"] == "p1"
        # out of order: a frame numbered behind the sequence is refused, not played twice
        await client.speak(1.0)
        await client.send({"type": "audio", "seq": 2, "data": base64.b64encode(bytes(64)).decode()})
        late = await client.wait_for(lambda f: f.get("code") == "out_of_order")
        assert late["ref"] == {"type": "audio", "seq": 2}
        await client.wait_for(kind("turn_end"))
        assert [f["text"] for f in client.of_type("text") if f["final"]] == ["Hello again."]


async def test_an_oversized_frame_closes_the_socket_like_api_gateway(stack: Stack) -> None:
    async with connect(stack) as client:
        await client.send({"type": "text", "text": "x" * 40000})
        async with asyncio.timeout(10):
            await client.closed.wait()
        assert client.ws.close_code == 1009
    # the bridge heard $disconnect and ended the session; it still serves the next client
    async with connect(stack) as client:
        await client.send({"type": "ping"})
        await client.wait_for(kind("pong"))


async def test_disconnect_closes_the_bedrock_stream_in_order(stack: Stack) -> None:
    stack.emulator.script = Script((ScriptTurn(transcript="hi", reply="Hello."),))
    async with connect(stack) as client:
        await client.speak(0.8)
        await client.wait_for(kind("turn_end"))
    (record,) = await stack.emulator.wait_for_streams(1)
    assert record.session_end_received and record.input_closed
    assert record.outcome is Outcome.COMPLETED
    names = record.input_names()
    assert names[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]


async def test_typed_text_and_a_client_interrupt(stack: Stack) -> None:
    stack.emulator.script = Script(
        (ScriptTurn(reply=" ".join(["A long reply to cut short."] * 8)),)
    )
    async with connect(stack) as client:
        await client.send({"type": "text", "text": "talk to me"})
        await client.wait_for(kind("audio"))
        await client.send({"type": "interrupt"})
        clear = await client.wait_for(kind("clear_audio"))
        assert clear["reason"] == "client"
        kinds = [f["type"] for f in client.frames]
        assert "turn_end" not in kinds[: kinds.index("clear_audio")]


async def test_a_bad_token_never_reaches_the_bridge(stack: Stack) -> None:
    url = stack.gateway.url + "?token=wrong"
    try:
        async with websockets.connect(url, open_timeout=5):
            raise AssertionError("the gateway accepted a bad token")
    except websockets.InvalidStatus as refused:
        assert refused.response.status_code == 401


async def test_sigterm_drains_clients_then_ends_their_sessions(tmp_path: Path) -> None:
    async with local_stack(tmp_path) as stack, connect(stack) as client:
        await client.send({"type": "text", "text": "hello"})
        await client.wait_for(kind("session"))
        stack.bridge.terminate()
        draining = await client.wait_for(lambda f: f.get("state") == "draining")
        assert "shutting down" in draining["reason"]
        ended = await client.wait_for(lambda f: f.get("state") == "ended", within=30)
        assert ended["reason"] == "server shutting down"
        assert await asyncio.to_thread(stack.bridge.wait, 30) == 0
        (record,) = await stack.emulator.wait_for_streams(1)
        assert record.session_end_received


async def test_start_options_reach_the_model_and_seq_keeps_counting(stack: Stack) -> None:
    stack.emulator.script = Script((ScriptTurn(transcript="hi", reply="Hello."),))
    async with connect(stack) as client:
        await client.send({"type": "ping", "id": 1})  # a frame goes out before the start
        await client.wait_for(kind("pong"))
        await client.send({"type": "start", "output_sample_rate": 16000, "batch_ms": 200})
        ready = await client.wait_for(kind("session"))
        assert (ready["output_sample_rate"], ready["batch_ms"]) == (16000, 200)
        await client.speak(0.8)
        await client.wait_for(kind("turn_end"))
        assert {f["sample_rate"] for f in client.of_type("audio")} == {16000}
        assert max(f["ms"] for f in client.of_type("audio")) == 200
        assert_numbered(client)
    record = stack.emulator.records[0]
    (prompt,) = [e.body for e in record.input_events if e.name == "promptStart"]
    assert prompt["audioOutputConfiguration"]["sampleRateHertz"] == 16000
