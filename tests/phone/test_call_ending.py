"""The hang-up's course without sockets (hangup.py) and the marks that say the goodbye was
heard (TwilioOutbound.marks_outstanding)."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator

from novakit.bridge.hangup import (
    END_CALL,
    GOODBYE_SECONDS,
    PLAY_MARGIN_SECONDS,
    CallEnding,
    EndingPhase,
    end_call_result,
)
from novakit.bridge.twilio import SAMPLE_RATE, TwilioOutbound

STREAM = "MZ0123456789abcdef0123456789abcdef"


def test_the_call_ends_when_the_goodbye_has_played_out():
    ending = CallEnding()
    assert not ending.check(0.0, played_out=True)  # nothing asked for
    ending.requested(0.0)
    ending.audio(1500)
    # Still saying goodbye: played-out marks of earlier audio do not end the call.
    assert not ending.check(1.0, played_out=True)
    ending.turn_ended(1.2)
    assert ending.phase is EndingPhase.PLAYING
    assert not ending.check(1.3, played_out=False)
    assert ending.check(2.9, played_out=True)
    assert ending.phase is EndingPhase.DUE


def test_without_mark_echoes_the_call_ends_after_the_goodbye_and_a_margin():
    ending = CallEnding()
    ending.requested(0.0)
    ending.audio(2000)
    ending.turn_ended(1.0)
    bound = 1.0 + 2.0 + PLAY_MARGIN_SECONDS
    assert ending.next_wakeup() == pytest.approx(bound)
    assert not ending.check(bound - 0.01, played_out=False)
    assert ending.check(bound, played_out=False)


def test_a_model_that_never_ends_its_goodbye_cannot_hold_the_call():
    ending = CallEnding()
    ending.requested(5.0)
    ending.audio(1000)  # the goodbye's audio extends the bound by its length
    assert ending.next_wakeup() == pytest.approx(5.0 + GOODBYE_SECONDS + 1.0)
    assert ending.check(5.0 + GOODBYE_SECONDS + 1.0, played_out=False)


def test_a_barge_in_calls_the_hang_up_off_and_a_new_request_starts_over():
    ending = CallEnding()
    assert not ending.barge_in()  # nothing to call off
    ending.requested(0.0)
    ending.audio(3000)
    assert ending.barge_in()
    assert not ending.pending and ending.next_wakeup() is None
    assert not ending.check(100.0, played_out=True)
    ending.requested(10.0)
    assert ending.goodbye_ms == 0 and ending.requests == 2
    ending.turn_ended(11.0)
    assert ending.check(11.1, played_out=True)


def test_a_second_request_while_saying_goodbye_changes_nothing():
    ending = CallEnding()
    ending.requested(0.0)
    ending.audio(500)
    ending.requested(0.4)
    assert ending.goodbye_ms == 500 and ending.next_wakeup() == pytest.approx(GOODBYE_SECONDS + 0.5)


def test_end_call_is_a_valid_tool_declaration_and_its_answer_says_goodbye():
    # The schema checked by jsonschema's own meta-schema; the name by Nova's tool-name rule.
    Draft202012Validator.check_schema(END_CALL.input_schema)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", END_CALL.name)
    result = end_call_result("call-1")
    assert result.call_id == "call-1" and not result.is_error and "goodbye" in result.text()


def test_marks_outstanding_counts_until_twilio_echoes_each_one():
    outbound = TwilioOutbound(batch_ms=100, hold_ms=50)
    outbound.bind(STREAM)
    messages = outbound.audio(b"\x01\x00" * (SAMPLE_RATE // 10) * 3, now=0.0)  # 300 ms
    marks = [m for m in messages if m.startswith('{"event":"mark"')]
    assert len(marks) == 3 and outbound.marks_outstanding == 3
    outbound.mark_played("0:100")
    outbound.mark_played("not-ours")  # a mark the bridge did not send is not counted
    assert outbound.marks_outstanding == 2
    outbound.barge_in(now=0.1)  # Twilio echoes the cleared marks too
    outbound.mark_played("0:200")
    outbound.mark_played("0:300")
    assert outbound.marks_outstanding == 0
    outbound.mark_played("0:300")  # a repeated echo cannot go below zero
    assert outbound.marks_outstanding == 0
