"""``novakit new-tool``: a folder that is a valid tool, passes its own test, and is callable in
the local stack with nothing else done."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import websockets

from novakit import audio
from novakit.dev import DevOptions, local_stack
from novakit.emulator import Script, ScriptTurn, ToolCall

NOVAKIT = Path(sys.executable).parent / "novakit"


def scaffold(tools: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVAKIT), "new-tool", name, "--dir", str(tools)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_scaffold_is_a_tool_with_a_passing_test(tmp_path: Path) -> None:
    done = scaffold(tmp_path / "tools", "opening_hours")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "tools" / "opening_hours"
    assert sorted(p.name for p in folder.iterdir()) == [
        "handler.py",
        "test_opening_hours.py",
        "tool.json",
    ]
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path) -> None:
    refused = scaffold(tmp_path, "Bad-Name")
    assert refused.returncode == 2 and "not a valid tool name" in refused.stderr
    assert scaffold(tmp_path, "twice").returncode == 0
    again = scaffold(tmp_path, "twice")
    assert again.returncode == 2 and "already exists" in again.stderr


async def test_a_new_tool_is_callable_in_the_local_stack(tmp_path: Path) -> None:
    assert scaffold(tmp_path / "tools", "opening_hours").returncode == 0
    options = DevOptions(port=0, tools_dir=tmp_path / "tools", web_dir=None)
    async with local_stack(options, stdout=io.StringIO()) as stack:
        stack.emulator.script = Script(
            (
                ScriptTurn(
                    transcript="when are you open",
                    tool=ToolCall("opening_hours", {"query": "today"}),
                    reply="The tool says {result}",
                ),
            )
        )
        async with websockets.connect(stack.gateway_url, open_timeout=10) as ws:
            pcm = audio.speech_like(1.0) + audio.silence(1.5)
            for seq, i in enumerate(range(0, len(pcm), 1024)):
                data = base64.b64encode(pcm[i : i + 1024]).decode()
                await ws.send(json.dumps({"type": "audio", "seq": seq, "data": data}))
            frames = []
            async for message in ws:
                frames.append(json.loads(message))
                if frames[-1]["type"] == "turn_end":
                    break
    tools = [(f["name"], f["status"]) for f in frames if f["type"] == "tool"]
    assert tools == [("opening_hours", "started"), ("opening_hours", "succeeded")]
    said = " ".join(f["text"] for f in frames if f["type"] == "text" and f["final"])
    assert "opening_hours received 'today'" in said
