import pytest

from edgeopt.events import Message, Progress, StageFinished, StageStarted
from edgeopt.render import ConsoleRenderer

EVENTS = [
    StageStarted("teacher outputs"),
    *(Progress("teacher logits", i, 50, "batch") for i in range(51)),
    StageFinished("teacher outputs", 12.34, {"texts": 1600, "computed": 1600, "long": "x" * 120}),
    Message("bundle written to [out]/bundle"),
]


def test_not_a_terminal_gets_one_line_per_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with ConsoleRenderer(force_terminal=False) as render:
        for event in EVENTS:
            render(event)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"done teacher outputs (12.3 s): texts 1600, computed 1600, long {'x' * 120}",
        "bundle written to [out]/bundle",  # not read as rich markup
    ]


def test_a_terminal_gets_the_same_done_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with ConsoleRenderer(force_terminal=True) as render:
        for event in EVENTS:
            render(event)
    err = capsys.readouterr().err
    assert "done teacher outputs (12.3 s)" in err
    assert "bundle written to [out]/bundle" in err


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with ConsoleRenderer(quiet=True) as render:
        for event in EVENTS:
            render(event)
    assert capsys.readouterr() == ("", "")
