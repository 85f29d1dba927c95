"""``novakit dev --once``: a conversation through the whole local stack, as a user starts it."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from novakit import audio
from novakit.dev import DevOptions, local_stack

from ..stack.conftest import connect

REPO = Path(__file__).resolve().parents[2]


def test_novakit_dev_once_talks_through_gateway_bridge_and_tools(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "novakit.cli", "dev", "--once", "--port", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,  # where tools/ is, as `make dev` runs it
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert lines[0] == "novakit dev: the local stack"
    assert any(line.startswith("WebSocket API     ws://127.0.0.1:") for line in lines)
    assert any(line.startswith("tools             get_time") for line in lines)
    # What the local model understands is on the banner.
    assert any(line.startswith("local model       offline speech") for line in lines)
    said = [line for line in lines if line.startswith(("user", "tool ", "assistant"))]
    # The question is spoken (eSpeak NG), heard by the emulator (PocketSphinx), and calls the tool.
    assert said[0] == "user       what time is it in tokyo"
    assert said[1] == "tool       get_time: succeeded"
    # the tool really ran: its answer (the time in Tokyo) is what the assistant said
    assert said[2].startswith("assistant  It is ") and said[2].endswith(" in Asia/Tokyo.")
    assert said[-2:] == ["user       (typed) Thanks!", "assistant  You are welcome."]
    pcm, rate = audio.read_wav(out)
    assert rate == 24000 and audio.duration(pcm, rate) > 1.0


async def test_the_dev_stack_bridge_answers_its_own_gateway_only() -> None:
    options = DevOptions(port=0, tools_dir=None, web_dir=None)
    async with (
        local_stack(options, io.StringIO()) as running,
        aiohttp.ClientSession() as http,
        connect(running.gateway_url) as client,
    ):
        # the gateway's requests carry this run's secret: the client gets its session
        await client.send({"type": "start"})
        ready = await client.wait_for(lambda f: f.get("type") == "session")
        headers = {"x-connection-id": ready["connection_id"]}
        # another process on this machine that finds the bridge's port gets 403
        async with http.post(
            running.bridge_url + "/ws/message", data=b'{"type":"ping"}', headers=headers
        ) as response:
            assert response.status == 403


def test_a_busy_port_is_one_line_naming_the_port_and_the_options() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "novakit.cli", "dev", "--port", str(port), "--no-speech"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first == (
        f"novakit dev: port {port} is in use; choose another with --port (make dev PORT=...)"
    )
    assert "Traceback" not in proc.stderr


def test_novakit_version() -> None:
    from novakit import __version__

    proc = subprocess.run(
        [sys.executable, "-m", "novakit.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, f"novakit {__version__}")


async def test_the_dev_terminal_tells_each_session_in_words_not_metric_json() -> None:
    out = io.StringIO()
    options = DevOptions(port=0, tools_dir=REPO / "tools", web_dir=None, speech=True)
    async with local_stack(options, out) as running, connect(running.gateway_url) as client:
        await client.send({"type": "start"})
        await client.wait_for(lambda f: f.get("type") == "session")
        await client.send({"type": "text", "text": "What time is it in Tokyo?"})
        await client.wait_for(lambda f: f.get("type") == "turn_end")
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert not any(line[0].startswith("{") for line in lines if line)
    told = [
        line[:2]
        for line in lines
        if len(line) > 1 and line[0] in ("bridge", "emulator") and not line[1].startswith("http")
    ]
    assert told == [["bridge", "connect"], ["emulator", "tool"], ["bridge", "disconnect"]]


def test_a_bad_script_file_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text('{"turns": [{"transcript": "hi"}]}')
    proc = subprocess.run(
        [sys.executable, "-m", "novakit.cli", "dev", "--script", str(script), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"novakit dev: --script {script}: script turn 0 needs a string 'reply'"
    )


@pytest.mark.parametrize(
    ("manifest", "handler", "says"),
    [
        ('{"name": "broken",', "def handler(event, context):\n    return {}\n", "not valid JSON"),
        (
            '{"name": "broken", "description": "d", "input_schema": {"type": "object"}}',
            "def handler(event, context):\n    return 1 +\n",
            "import failed: SyntaxError",
        ),
    ],
)
def test_a_broken_tool_is_one_line_without_a_traceback(
    tmp_path: Path, manifest: str, handler: str, says: str
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "tool.json").write_text(manifest)
    (folder / "handler.py").write_text(handler)
    proc = subprocess.run(
        [sys.executable, "-m", "novakit.cli", "dev", "--tools", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"novakit dev: tool: {folder}")
    assert says in line


async def realtime_errors_after_client_instructions(options: DevOptions) -> list[str]:
    """A Realtime client (the OpenAI SDK) sets its own instructions and asks one question; the
    error events' messages until the answer is done."""
    import asyncio
    import json

    from openai import AsyncOpenAI

    errors: list[str] = []
    async with local_stack(options, stdout=io.StringIO()) as running:
        base = running.gateway_url.rstrip("/")
        client = AsyncOpenAI(api_key="anything", websocket_base_url=base)
        async with client.realtime.connect(model="gpt-realtime") as connection:
            await connection.session.update(
                session={"type": "realtime", "instructions": "Be brief."}
            )
            await connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "what time is it in Tokyo"}],
                }
            )
            await connection.response.create()
            async with asyncio.timeout(60):
                while True:
                    event = json.loads(await connection.recv_bytes())
                    if event["type"] == "error":
                        errors.append(event["error"]["message"])
                    if event["type"] == "response.done":
                        break
    return errors


@pytest.mark.timeout(180)
@pytest.mark.parametrize("allowed", [True, False])
async def test_novakit_dev_lets_clients_set_instructions_only_when_told(allowed: bool) -> None:
    """docs/openai-realtime.md and docs/phone.md: a client's instructions are used where the
    bridge allows them; ``novakit dev --allow-client-instructions`` is how, locally."""
    options = DevOptions(port=0, web_dir=None, speech=True, allow_client_instructions=allowed)
    errors = await realtime_errors_after_client_instructions(options)
    if allowed:
        assert errors == []
    else:
        assert len(errors) == 1 and "instructions" in errors[0], errors


@pytest.mark.parametrize(
    ("variable", "argv", "allowed"),
    [
        (None, [], False),
        (None, ["--allow-client-instructions"], True),
        ("1", [], True),
        ("true", [], True),
        ("0", [], False),
    ],
)
def test_novakit_dev_allow_client_instructions_option_and_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, argv: list[str], allowed: bool
) -> None:
    """The option, or the bridge's own NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS as its default."""
    from novakit.cli import build_parser

    if variable is None:
        monkeypatch.delenv("NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS", raising=False)
    else:
        monkeypatch.setenv("NOVAKIT_ALLOW_CLIENT_INSTRUCTIONS", variable)
    parsed = build_parser().parse_args(["dev", *argv])
    assert parsed.allow_client_instructions is allowed


async def test_the_dev_terminal_says_why_a_phone_call_was_dropped(tmp_path: Path) -> None:
    """A phone number's voice the model lacks: the bridge cannot open the model session and
    ends the call, and Twilio's protocol has no way to say why; the terminal does."""
    from novakit.call import CallOptions, place_call
    from novakit.talk import Exit

    said = tmp_path / "question.wav"
    audio.write_wav(said, audio.speech_like(2.0, 8000), 8000)
    out = io.StringIO()
    options = DevOptions(port=0, tools_dir=None, web_dir=None)
    async with local_stack(options, out) as running:
        call = CallOptions(
            running.gateway_url.rstrip("/") + "/twilio",
            wav=said,
            parameters={"voice": "alloy"},
            timeout=20,
        )
        result = await place_call(call)
    assert result.exit is Exit.SESSION, result.lines
    assert "hangs up before answering" in result.lines[-1]
    (failed,) = [line for line in out.getvalue().splitlines() if line.split()[1:2] == ["failed"]]
    assert "alloy" in failed and "voice" in failed, failed


def test_novakit_dev_public_url_is_checked_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from novakit.cli import build_parser

    parsed = build_parser().parse_args(["dev", "--public-url", "wss://abc.ngrok.app/"])
    assert parsed.public_url == "wss://abc.ngrok.app"
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["dev", "--public-url", "https://abc.ngrok.app"])
    assert exited.value.code == 2
    assert "ws(s)://host" in capsys.readouterr().err
