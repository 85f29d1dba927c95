"""Every ``# example:`` block of docs/s2s.md runs as written, in its own process, against the
emulator: the only change is the environment (endpoint, CA bundle, credentials), which is how a
user points the same code at AWS."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from novakit import audio
from novakit.emulator import (
    DEFAULT_CREDENTIALS,
    Emulator,
    EmulatorConfig,
    FaultKind,
    FaultPlan,
    Script,
    ScriptTurn,
    ToolCall,
    Trigger,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "s2s.md"
BLOCK = re.compile(r"```python\n# example: (?P<name>[\w-]+)\n(?P<code>.*?)```", re.S)
EXAMPLES = {m["name"]: m["code"] for m in BLOCK.finditer(DOC.read_text())}

SCRIPTS = {
    "quickstart": Script((ScriptTurn(transcript="hello there", reply="Hello! How can I help?"),)),
    "tools": Script(
        (
            ScriptTurn(
                transcript="how many holidays do I get",
                tool=ToolCall("lookup", {"topic": "holidays"}),
                reply="You get {result}.",
            ),
        )
    ),
    "text-and-interrupt": Script(
        (ScriptTurn(reply=" ".join(["Plants turn light into sugar."] * 6)),)
    ),
    "pipeline": Script((ScriptTurn(transcript="is the shop open", reply="Yes, until six."),)),
    "long-conversation": Script(
        (ScriptTurn(transcript="what is a noun", reply="A noun names a thing. Cat is one."),)
    ),
}
# What an example is shown surviving: the stream fails while the answer is being spoken.
FAULTS = {"long-conversation": (FaultPlan(FaultKind.THROTTLE, Trigger.ASSISTANT_SPEECH),)}


def test_every_example_has_a_script() -> None:
    assert set(EXAMPLES) == set(SCRIPTS)


async def run_example(name: str, emu: Emulator, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NOVAKIT_"))}
    env.update(
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=emu.endpoint,
        AWS_CA_BUNDLE=emu.ca_path,
        AWS_ACCESS_KEY_ID=DEFAULT_CREDENTIALS.access_key_id,
        AWS_SECRET_ACCESS_KEY=DEFAULT_CREDENTIALS.secret_access_key,
        AWS_REGION=emu.config.region,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EXAMPLES[name],
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        raise
    text = output.decode()
    assert process.returncode == 0, text
    return text


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_example_runs_as_written(name: str, tmp_path: Path) -> None:
    config = EmulatorConfig(
        endpoint_seconds=0.5,
        script=SCRIPTS[name],
        script_scope="emulator",
        faults=FAULTS.get(name, ()),
    )
    async with Emulator(config) as emu:
        out = await run_example(name, emu, tmp_path)
        await emu.wait_for_streams(len(emu.records))
    ended = [r for r in emu.records if r.fault is None]
    assert ended and all(r.session_end_received for r in ended), out
    lines = out.splitlines()
    match name:
        case "quickstart":
            assert "user: hello there" in lines
            assert "assistant: Hello!" in lines and "assistant: How can I help?" in lines
            pcm, rate = audio.read_wav(tmp_path / "reply.wav")
            assert rate == 24000 and audio.duration(pcm, rate) > 0.5
        case "tools":
            assert "tool lookup({'topic': 'holidays'}) -> " in out
            assert '{"answer": "25 days a year, plus public holidays"}' in out
            assert any(line.startswith("assistant: You get") for line in lines)
        case "text-and-interrupt":
            assert "interrupted: client" in lines
        case "pipeline":
            assert "(user speaking)" in lines
            assert "user: is the shop open" in lines
            assert "assistant: Yes, until six." in lines
            pcm, rate = audio.read_wav(tmp_path / "answer.wav")
            assert audio.duration(pcm, rate) > 0.3
        case "long-conversation":
            assert lines.index("interrupted: recovery") < lines.index("reconnected after throttled")
            assert lines.count("assistant: A noun names a thing.") == 1  # given again, once
            assert "streams: 2" in lines
            assert any(line.startswith("metric recovery ") for line in lines), out
