import logging

import pytest

from edgeopt.events import (
    Message,
    Progress,
    ProgressCounter,
    StageFinished,
    StageStarted,
    emit,
    listening,
    progress,
)
from edgeopt.stages import Reporter


def test_without_a_listener_stages_and_messages_are_log_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgeopt")
    emit(StageStarted("data"))
    emit(Progress("teacher logits", 3, 10, "batch"))
    emit(StageFinished("data", 1.25, {"train": 40, "task": "toy", "nested": {"x": 1}, "share": 0.123456}))
    emit(Message("bundle written to out"))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "done data (1.2 s): train 40, task toy, share 0.1235",
        "bundle written to out",
    ]


def test_listening_routes_events_and_restores_the_previous_listener() -> None:
    outer: list[object] = []
    inner: list[object] = []
    with listening(outer.append):
        emit(Message("a"))
        with listening(inner.append):
            emit(Message("b"))
        emit(Message("c"))
    assert outer == [Message("a"), Message("c")] and inner == [Message("b")]


def test_the_reporter_emits_each_stage_and_keeps_its_record() -> None:
    seen: list[object] = []
    reporter = Reporter()
    with listening(seen.append), reporter.stage("teacher") as info:
        info["kind"] = "onnx"
    assert isinstance(seen[0], StageStarted) and seen[0].name == "teacher"
    assert isinstance(seen[1], StageFinished) and dict(seen[1].details) == {"kind": "onnx"}
    assert [r.name for r in reporter.records] == ["teacher"]


def test_progress_is_throttled_but_always_shows_the_start_and_the_end() -> None:
    seen: list[Progress] = []
    now = [0.0]
    with listening(seen.append):  # type: ignore[arg-type]
        counter = ProgressCounter("fine-tuning teacher", 100, "step", clock=lambda: now[0])
        for step in range(100):
            now[0] = step * 0.1  # 10 s in all: at most one event per 0.25 s
            counter.advance(detail=f"loss {step}")
    assert seen[0] == Progress("fine-tuning teacher", 0, 100, "step")
    assert seen[-1] == Progress("fine-tuning teacher", 100, 100, "step", "loss 99")
    assert 30 <= len(seen) <= 45
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_disabled_progress_yields_everything_and_emits_nothing() -> None:
    seen: list[object] = []
    with listening(seen.append):
        assert list(progress(range(5), 5, "x", "item", enabled=False)) == [0, 1, 2, 3, 4]
        assert list(progress(range(3), 3, "y", "item")) == [0, 1, 2]
    assert seen[0] == Progress("y", 0, 3, "item") and seen[-1] == Progress("y", 3, 3, "item")
