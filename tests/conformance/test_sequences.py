"""AWS's documented event sequences against the emulator, over the raw SDK.

Each case in ``sequences/accepted.json`` must be accepted (and answered where it implies an
answer); each case in ``sequences/refused.json`` must end the stream with the exception type the
SDK raises for Bedrock's and a message in Bedrock's style.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from novakit.emulator import Emulator, EmulatorConfig, Outcome, Script

from .sequences import answers, finals, load_cases, play, sent_event_names
from .wire import RawStream, open_raw_stream

pytestmark = pytest.mark.contract

ACCEPTED = load_cases("accepted.json")
REFUSED = load_cases("refused.json")
NOVA_2 = "amazon.nova-2-sonic-v1:0"
# The input events of AWS's Nova 2 input-events page, the output events of its output page.
INPUT_EVENTS = {
    "sessionStart",
    "promptStart",
    "contentStart",
    "textInput",
    "audioInput",
    "toolResult",
    "contentEnd",
    "promptEnd",
    "sessionEnd",
}
OUTPUT_EVENTS = {
    "completionStart",
    "contentStart",
    "textOutput",
    "audioOutput",
    "toolUse",
    "contentEnd",
    "usageEvent",
    "completionEnd",
}


def emulator_for(case: dict[str, Any]) -> Emulator:
    # pace 0.25: the clock runs four times faster than the wall clock, from the wall clock (not
    # from the audio the client sends), as Bedrock's generation does not wait for input audio.
    config = EmulatorConfig(endpoint_seconds=0.3, pace=0.25, **case.get("emulator", {}))
    if "script" in case:
        config.script = Script.from_obj(case["script"])
    return Emulator(config)


async def run(case: dict[str, Any]) -> tuple[Emulator, RawStream, float]:
    """Play the case on a fresh emulator; returns it, the stream and the wall seconds taken."""
    async with emulator_for(case) as emu:
        stream = await open_raw_stream(emu, case.get("model", NOVA_2))
        started = time.monotonic()
        try:
            await play(stream, case["steps"])
        finally:
            await stream.close()
        elapsed = time.monotonic() - started
        await emu.wait_for_streams(1)
        return emu, stream, elapsed


@pytest.mark.parametrize("case", ACCEPTED, ids=[c["id"] for c in ACCEPTED])
async def test_documented_forms_are_accepted(case: dict[str, Any]) -> None:
    emu, stream, _ = await run(case)
    record = emu.records[0]
    assert stream.error is None, f"{case['id']}: refused with {stream.error!r}"
    assert record.outcome is Outcome.COMPLETED, (record.outcome, record.error)
    expect = case["expect"]
    assert finals(stream.outputs) == expect["finals"]
    assert answers(stream.outputs) == len(expect["finals"])
    names = [name for name, _ in stream.outputs]
    assert "audioOutput" in names
    for name in expect.get("outputs_include", ()):
        assert name in names, f"{name} missing from {sorted(set(names))}"
    if "utterance_seconds" in expect:
        # The audio's declared rate is honoured: the utterance is as long as was spoken.
        usage = [b for n, b in stream.outputs if n == "usageEvent"]
        speech_tokens = usage[0]["details"]["delta"]["input"]["speechTokens"]
        assert speech_tokens == round(expect["utterance_seconds"] * 25)


@pytest.mark.parametrize("case", REFUSED, ids=[c["id"] for c in REFUSED])
async def test_documented_refusals_are_refused(case: dict[str, Any]) -> None:
    _, stream, elapsed = await run(case)
    expect = case["expect"]
    refused = expect["refused"]
    error = stream.error
    assert error is not None, f"{case['id']}: not refused; got {[n for n, _ in stream.outputs]}"
    assert type(error).__name__ == refused["exception"]
    message = str(getattr(error, "message", error))
    assert message.startswith(refused["message"]), message
    assert refused.get("detail", "") in message
    assert finals(stream.outputs) == expect.get("finals", [])
    assert elapsed >= expect.get("not_before_seconds", 0.0)


def test_the_cases_cover_every_input_event_of_the_nova_2_page() -> None:
    sent: set[str] = set()
    for case in ACCEPTED:
        sent |= sent_event_names(case["steps"])
    assert sent == INPUT_EVENTS


def test_the_cases_expect_every_output_event_of_the_nova_2_page() -> None:
    expected: set[str] = set()
    for case in ACCEPTED:
        expected |= set(case["expect"].get("outputs_include", ()))
    assert expected == OUTPUT_EVENTS


def test_every_case_names_its_source() -> None:
    for case in [*ACCEPTED, *REFUSED]:
        source = case["source"]
        assert source.startswith(("https://docs.aws.amazon.com/", "aws-samples/", "reported")), (
            case["id"]
        )
