"""The student search (edgeopt.search): candidates, their cost, budgets and the choice."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from edgeopt.errors import ConfigError, StageError
from edgeopt.profiles import STUDENT_ARCHITECTURES
from edgeopt.search import (
    CandidateOutcome,
    CandidateStatus,
    StudentCandidate,
    multiply_accumulates,
    parameter_count,
    search_students,
    student_candidates,
)
from edgeopt.student import build_student, count_parameters
from stage_fixtures import MAX_SEQ_LEN, NUM_LABELS, tiny_spec


def _spec(**changes: Any) -> Any:
    return dataclasses.replace(tiny_spec(), **changes)


# --- candidates ---------------------------------------------------------------------------------------------


def test_search_axes_give_the_product_likeliest_first() -> None:
    spec = _spec(architecture="search", embedding_training="search", search_widths=(1.0, 1.5))
    names = [c.name for c in student_candidates(spec, teacher_table=True)]
    assert names == [
        "cnn-attention/trained/x1",
        "cnn-attention/frozen/x1",
        "cnn/trained/x1",
        "cnn/frozen/x1",
        "cnn-attention/trained/x1.5",
        "cnn-attention/frozen/x1.5",
        "cnn/trained/x1.5",
        "cnn/frozen/x1.5",
    ]


def test_named_values_pin_their_axis_and_a_random_table_always_trains() -> None:
    spec = _spec(architecture="cnn", embedding_training="search")
    assert [c.name for c in student_candidates(spec, teacher_table=True)] == ["cnn/trained/x1", "cnn/frozen/x1"]
    assert [c.name for c in student_candidates(spec, teacher_table=False)] == ["cnn/trained/x1"]
    spec = _spec(architecture="search", embedding_training="frozen")
    assert [c.name for c in student_candidates(spec, teacher_table=True)] == [
        "cnn-attention/frozen/x1",
        "cnn/frozen/x1",
    ]


def test_a_pinned_student_replaces_the_axes() -> None:
    spec = _spec(architecture="search", embedding_training="search")
    pinned = StudentCandidate.parse("cnn/frozen/x2")
    assert student_candidates(spec, teacher_table=True, pinned=pinned) == [pinned]
    with pytest.raises(
        ConfigError, match=r"^student cnn/frozen/x2 freezes a random embedding table; use cnn/trained/x2"
    ):
        student_candidates(spec, teacher_table=False, pinned=pinned)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cnn-attention/trained/x1", StudentCandidate("cnn-attention", "trained", 1.0)),
        ("cnn/frozen", StudentCandidate("cnn", "frozen", 1.0)),
        (" cnn/trained/x0.5 ", StudentCandidate("cnn", "trained", 0.5)),
    ],
)
def test_parse_reads_back_names(text: str, expected: StudentCandidate) -> None:
    assert StudentCandidate.parse(text) == expected
    assert StudentCandidate.parse(expected.name) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cnn", r"^student 'cnn' is not ARCHITECTURE/frozen\|trained\[/xWIDTH\]"),
        ("cnn/thawed", r"^student 'cnn/thawed' is not ARCHITECTURE"),
        ("lstm/trained", r"^unknown student architecture 'lstm'; use one of cnn, cnn-attention$"),
        ("cnn/trained/x9", r"^student width must be in \[0.1, 8\]; got 9$"),
    ],
)
def test_parse_refuses_what_it_cannot_build(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StudentCandidate.parse(text)


def test_candidate_spec_scales_the_sizes() -> None:
    spec = StudentCandidate("cnn-attention", "frozen", 1.5).spec(_spec())
    assert (spec.architecture, spec.embedding_training) == ("cnn-attention", "frozen")
    assert (spec.embedding_dim, spec.hidden_dim, spec.dense_dim, spec.kernel_size) == (12, 24, 12, 3)


@pytest.mark.parametrize("architecture", STUDENT_ARCHITECTURES)
def test_parameter_count_matches_the_built_model(architecture: str) -> None:
    spec = _spec(architecture=architecture, embedding_dim=6, hidden_dim=10, dense_dim=5)
    model = build_student(spec, 37, NUM_LABELS, MAX_SEQ_LEN)
    assert parameter_count(spec, 37, NUM_LABELS) == count_parameters(model)


def test_attention_costs_more_multiply_accumulates_and_length_scales_them() -> None:
    cnn, attention = _spec(architecture="cnn"), _spec(architecture="cnn-attention")
    assert multiply_accumulates(attention, NUM_LABELS, 64) > multiply_accumulates(cnn, NUM_LABELS, 64)
    assert multiply_accumulates(cnn, NUM_LABELS, 128) > 1.9 * multiply_accumulates(cnn, NUM_LABELS, 64)


# --- the search loop ----------------------------------------------------------------------------------------


class _Clock:
    """A clock the distill callback advances, so budgets are tested without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(
    scores: dict[str, tuple[float, float]],
    candidates: list[StudentCandidate],
    seconds_each: float = 10.0,
    budget_s: float = 0.0,
    max_model_bytes: float = 1e9,
) -> tuple[StudentCandidate, CandidateOutcome, Any, list[str]]:
    clock, distilled = _Clock(), []

    def distill(candidate: StudentCandidate, spec: Any) -> CandidateOutcome:
        distilled.append(candidate.name)
        clock.now += seconds_each
        accuracy, score = scores[candidate.name]
        return CandidateOutcome(model=candidate.name, validation_accuracy=accuracy, validation_score=score, epochs=3)

    chosen, outcome, results = search_students(
        candidates,
        _spec(),
        distill,
        vocab_size=100,
        num_labels=NUM_LABELS,
        seq_len=MAX_SEQ_LEN,
        max_model_bytes=max_model_bytes,
        bytes_per_weight=1,
        budget_s=budget_s,
        clock=clock,
    )
    return chosen, outcome, results, distilled


_FOUR = student_candidates(_spec(architecture="search", embedding_training="search"), teacher_table=True)


def test_the_best_validation_accuracy_wins_and_the_watched_score_breaks_ties() -> None:
    scores = {c.name: (0.8, 0.5) for c in _FOUR}
    scores["cnn/trained/x1"] = (0.9, 0.1)
    scores["cnn/frozen/x1"] = (0.9, 0.2)
    chosen, outcome, results, distilled = _run(scores, _FOUR)
    assert chosen.name == "cnn/frozen/x1" and outcome.model == "cnn/frozen/x1"
    assert distilled == [c.name for c in _FOUR]
    assert [r.status for r in results] == [CandidateStatus.DISTILLED] * 3 + [CandidateStatus.CHOSEN]
    assert results[0].to_dict()["validation_accuracy"] == 0.8 and results[0].to_dict()["seconds"] == 10.0


def test_a_spent_budget_stops_new_candidates_and_keeps_the_best_so_far() -> None:
    scores = {c.name: (0.7 + 0.01 * i, 0.0) for i, c in enumerate(_FOUR)}
    # 10 s each, 25 s budget: after two (20 s spent, 10 s expected for the next) the third would pass it.
    chosen, _, results, distilled = _run(scores, _FOUR, budget_s=25.0)
    assert distilled == [c.name for c in _FOUR[:2]]
    assert chosen == _FOUR[1]
    assert [r.status for r in results[2:]] == [CandidateStatus.SEARCH_BUDGET_SPENT] * 2
    assert results[2].validation_accuracy is None and results[2].parameters > 0


def test_the_first_candidate_runs_whatever_the_budget() -> None:
    scores = {c.name: (0.5, 0.5) for c in _FOUR}
    chosen, _, _, distilled = _run(scores, _FOUR, seconds_each=100.0, budget_s=1.0)
    assert distilled == [_FOUR[0].name] and chosen == _FOUR[0]


def test_candidates_over_the_size_budget_are_never_distilled() -> None:
    wide = [StudentCandidate("cnn", "trained", 4.0), StudentCandidate("cnn", "trained", 1.0)]
    small_bytes = parameter_count(wide[1].spec(_spec()), 100, NUM_LABELS)
    scores = {c.name: (0.9, 0.9) for c in wide}
    chosen, _, results, distilled = _run(scores, wide, max_model_bytes=small_bytes)
    assert distilled == ["cnn/trained/x1"] and chosen == wide[1]
    assert results[0].status is CandidateStatus.OVER_SIZE_BUDGET and results[0].model_bytes > small_bytes


def test_when_nothing_fits_the_smallest_runs_so_the_budget_check_can_report_it() -> None:
    candidates = [StudentCandidate("cnn", "trained", 2.0), StudentCandidate("cnn", "trained", 1.0)]
    chosen, _, results, distilled = _run({c.name: (0.9, 0.9) for c in candidates}, candidates, max_model_bytes=100)
    assert distilled == ["cnn/trained/x1"] and chosen == candidates[1]
    assert [r.status for r in results] == [CandidateStatus.OVER_SIZE_BUDGET, CandidateStatus.CHOSEN]


def test_an_empty_search_is_a_stage_error() -> None:
    with pytest.raises(StageError, match=r"^the student search has no candidates"):
        _run({}, [])
