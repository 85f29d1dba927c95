"""``novakit new-tool``: a folder that is a valid tool, passes its own test, and is callable in
the local stack with nothing else done."""

from __future__ import annotations

import asyncio
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


def test_the_new_tool_has_examples_the_local_emulator_understands(tmp_path: Path) -> None:
    from novakit.emulator.matching import Matcher, ToolExamples
    from novakit.tools.manifest import load_tool
    from novakit.tools.scaffold import new_tool

    spec = load_tool(new_tool("opening_hours", tmp_path))
    assert spec.examples
    found = Matcher([ToolExamples.from_spec(spec)]).match("ask opening hours about the Lyon shop")
    assert found is not None and found.arguments == {"query": "lyon shop"}


def _block_after(text: str, marker: str, fence: str) -> str:
    """The first fenced block of ``fence`` after ``marker`` in docs/tools.md."""
    start = text.index(f"```{fence}\n", text.index(marker)) + len(fence) + 4
    return text[start : text.index("```", start)]


def _tutorial_tool(root: Path) -> None:
    """tools/opening_hours/ with tool.json and handler.py exactly as docs/tools.md shows them."""
    import textwrap

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tools.md").read_text()
    folder = root / "opening_hours"
    folder.mkdir(parents=True)
    manifest = textwrap.dedent(_block_after(doc, "1. **Describe it**", "json"))
    (folder / "tool.json").write_text(manifest)
    handler = textwrap.dedent(_block_after(doc, "2. **Write the function**", "python"))
    (folder / "handler.py").write_text(handler)


async def test_the_tutorial_works_by_typing_as_docs_tools_md_says(tmp_path: Path) -> None:
    """docs/tools.md's opening_hours, as written there, answers a typed question in `make dev`."""
    _tutorial_tool(tmp_path / "tools")
    options = DevOptions(port=0, tools_dir=tmp_path / "tools", web_dir=None, speech=True)
    frames: list[dict[str, object]] = []
    async with (
        local_stack(options, stdout=io.StringIO()) as stack,
        websockets.connect(stack.gateway_url, open_timeout=10) as ws,
    ):
        for question in ("When is the Lyon shop open?", "when is the Nantes shop open"):
            await ws.send(json.dumps({"type": "text", "text": question}))
            async with asyncio.timeout(30):
                async for message in ws:
                    frames.append(json.loads(message))
                    if frames[-1]["type"] == "turn_end":
                        break
    tools = [(f["name"], f["status"]) for f in frames if f["type"] == "tool"]
    assert tools == [
        ("opening_hours", "started"),
        ("opening_hours", "succeeded"),
        ("opening_hours", "started"),
        ("opening_hours", "failed"),
    ]
    said = [f["text"] for f in frames if f["type"] == "text" and f["final"]]
    assert said == [
        "The Lyon shop is open 9 am to 7 pm, Monday to Saturday.",
        "Sorry, that did not work: we have no shop in Nantes.",
    ]
