"""``novakit call``'s command line: usage errors and an unreachable server, without a stack."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from novakit.call import main
from novakit.dev import free_port


@pytest.mark.parametrize(
    "argv",
    [
        ["ws://127.0.0.1:1/twilio"],  # nothing to say
        ["ws://127.0.0.1:1/twilio", "--dtmf", "1x"],  # not a key
        ["ws://127.0.0.1:1/twilio", "--dtmf", "1", "--quiet", "0"],
        ["ws://127.0.0.1:1/twilio", "--dtmf", "1", "--param", "novalue"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_an_unwritable_out_is_said_before_calling(tmp_path: Path) -> None:
    folder = tmp_path / "missing" / "heard.wav"
    assert main(["ws://127.0.0.1:1/twilio", "--dtmf", "1", "--out", str(folder)]) == 2


def test_nothing_listening_exits_3() -> None:
    out = io.StringIO()
    code = main([f"ws://127.0.0.1:{free_port()}/twilio", "--dtmf", "1"], stdout=out)
    assert code == 3
    assert "could not connect" in out.getvalue()
