"""Hardware-aware student search: which student configurations a build tries, in what order, and which one it keeps.

A candidate is an architecture (:data:`edgeopt.profiles.STUDENT_ARCHITECTURES`), whether a teacher-initialized
embedding table trains or stays frozen, and a width (a factor on the profile's embedding, hidden and dense sizes).
The profile's ``[student]`` table sets the axes: ``architecture = "search"`` tries every architecture,
``embedding_training = "search"`` both tables, ``search_widths`` the widths; a named value pins that axis, and
``--student NAME`` (a :attr:`StudentCandidate.name` such as ``cnn-attention/trained/x1``) pins all three.

:func:`search_students` distills the candidates in order (the likeliest winner first, so a budget cut keeps the
best guesses) and skips any whose weights would not fit the profile's size budget before spending time on it (when
none fits, the smallest runs and the build's budget check reports the miss). It stops starting new ones once
``budget_s`` would be exceeded; the first candidate always runs, so there is always a best so far. Candidates are
ranked by accuracy on the labeled validation texts (what the profile's accuracy budget holds the build to), then by
the score early stopping watched (accuracy and agreement with the teacher on crops); the test split is never looked at.

Latency is not measured per candidate: that needs an export of each. The search records multiply-accumulates per
text at the profile's sequence length as a proxy, and the shipped artifact's latency is measured after export as
before. Rejected: a time budget that varies the candidate order (results would depend on the machine's speed even
more than the cut-off already makes them).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from edgeopt.errors import ConfigError, StageError
from edgeopt.profiles import STUDENT_ARCHITECTURES, StudentSpec

__all__ = [
    "BYTES_PER_WEIGHT",
    "smallest_student_bytes",
    "CandidateStatus",
    "CandidateOutcome",
    "CandidateResult",
    "StudentCandidate",
    "student_candidates",
    "parameter_count",
    "multiply_accumulates",
    "search_students",
]

BYTES_PER_WEIGHT = {"int8-static": 1, "int8-dynamic": 1, "float16": 2, "none": 4}
"""Bytes one weight takes in the exported file, by ``[export] quantization`` (scales and graph add a few kB)."""

_NAME_RE = re.compile(r"^(?P<architecture>[a-z0-9-]+)/(?P<table>frozen|trained)/x(?P<width>[0-9]*\.?[0-9]+)$")


@dataclass(frozen=True)
class StudentCandidate:
    """One student configuration the search can distill.

    Attributes:
        architecture: One of :data:`edgeopt.profiles.STUDENT_ARCHITECTURES`.
        embedding_training: ``frozen`` (a teacher-initialized table stays as it starts) or ``trained``.
        width: Factor on the profile's ``embedding_dim``, ``hidden_dim`` and ``dense_dim``.
    """

    architecture: str
    embedding_training: str
    width: float = 1.0

    def __post_init__(self) -> None:
        if self.architecture not in STUDENT_ARCHITECTURES:
            raise ConfigError(
                f"unknown student architecture {self.architecture!r}; use one of {', '.join(STUDENT_ARCHITECTURES)}"
            )
        if self.embedding_training not in ("frozen", "trained"):
            raise ConfigError(f"embedding training must be frozen or trained; got {self.embedding_training!r}")
        if not 0.1 <= self.width <= 8:
            raise ConfigError(f"student width must be in [0.1, 8]; got {self.width:g}")

    @property
    def name(self) -> str:
        """``architecture/table/xwidth``, e.g. ``cnn-attention/trained/x1``; :meth:`parse` reads it back."""
        return f"{self.architecture}/{self.embedding_training}/x{self.width:g}"

    @classmethod
    def parse(cls, text: str) -> StudentCandidate:
        """Read a :attr:`name`; the width may be left out (``cnn/trained`` is ``cnn/trained/x1``).

        Raises:
            StageError: ``text`` is not ``ARCHITECTURE/frozen|trained[/xWIDTH]`` with a known architecture.
        """
        candidate = text.strip()
        if candidate.count("/") == 1:
            candidate += "/x1"
        match = _NAME_RE.match(candidate)
        if match is None:
            raise ConfigError(
                f"student {text!r} is not ARCHITECTURE/frozen|trained[/xWIDTH]; for example cnn-attention/trained/x1 "
                f"(architectures: {', '.join(STUDENT_ARCHITECTURES)})"
            )
        return cls(match["architecture"], match["table"], float(match["width"]))

    def spec(self, base: StudentSpec) -> StudentSpec:
        """``base`` with this candidate's architecture, table and sizes (each at least 1)."""
        return replace(
            base,
            architecture=self.architecture,
            embedding_training=self.embedding_training,
            embedding_dim=max(1, round(base.embedding_dim * self.width)),
            hidden_dim=max(1, round(base.hidden_dim * self.width)),
            dense_dim=max(1, round(base.dense_dim * self.width)),
        )


def student_candidates(
    spec: StudentSpec, teacher_table: bool, pinned: StudentCandidate | None = None
) -> list[StudentCandidate]:
    """The candidates the profile's ``[student]`` axes allow, likeliest winner first.

    Order: widths as listed, then the attention student before the max-pool one, then a trained table before a
    frozen one (measured on the dev tasks: ``bench/results/validation_levers.jsonl``, ``bench/results/tasks.md``).

    Args:
        spec: The build's student settings.
        teacher_table: Whether the embedding table starts from the teacher (a random table always trains).
        pinned: One configuration to use instead of the axes (``--student``).

    Returns:
        A non-empty list of :class:`StudentCandidate`.
    """
    if pinned is not None:
        if pinned.embedding_training == "frozen" and not teacher_table:
            trained = replace(pinned, embedding_training="trained")
            raise ConfigError(
                lambda p: (
                    f"student {pinned.name} freezes a random embedding table; use {trained.name} "
                    f"or start the table from the teacher ({p('embedding_init', 'teacher-static')})"
                )
            )
        return [pinned]
    preference = ("cnn-attention", "cnn")
    architectures = preference if spec.architecture == "search" else (spec.architecture,)
    if not teacher_table:
        tables: tuple[str, ...] = ("trained",)
    elif spec.embedding_training == "search":
        tables = ("trained", "frozen")
    else:
        tables = (spec.embedding_training,)
    return [
        StudentCandidate(architecture, table, width)
        for width, architecture, table in itertools.product(spec.search_widths, architectures, tables)
    ]


def parameter_count(spec: StudentSpec, vocab_size: int, num_labels: int) -> int:
    """Weights of the student :func:`edgeopt.student.build_student` builds for ``spec``, without building it."""
    e, h, d = spec.embedding_dim, spec.hidden_dim, spec.dense_dim
    pooled = 2 * h if spec.architecture == "cnn-attention" else h
    attention = h + 1 if spec.architecture == "cnn-attention" else 0
    return vocab_size * e + spec.kernel_size * e * h + h + attention + pooled * d + d + d * num_labels + num_labels


def smallest_student_bytes(spec: StudentSpec, vocab_size: int, num_labels: int, bytes_per_weight: int) -> int:
    """Bytes of the weights of the cheapest candidate the search could try (the max-pool CNN at the least width)."""
    smallest = StudentCandidate("cnn", "trained", min(spec.search_widths)).spec(spec)
    return parameter_count(smallest, vocab_size, num_labels) * bytes_per_weight


def multiply_accumulates(spec: StudentSpec, num_labels: int, seq_len: int) -> int:
    """Multiply-accumulates for one text of ``seq_len`` tokens: the search's latency proxy."""
    e, h, d = spec.embedding_dim, spec.hidden_dim, spec.dense_dim
    per_token = spec.kernel_size * e * h + (2 * h if spec.architecture == "cnn-attention" else 0)
    pooled = 2 * h if spec.architecture == "cnn-attention" else h
    return seq_len * per_token + pooled * d + d * num_labels


class CandidateStatus(StrEnum):
    """What became of a candidate."""

    CHOSEN = "chosen"
    DISTILLED = "distilled"
    OVER_SIZE_BUDGET = "over size budget"
    SEARCH_BUDGET_SPENT = "search budget spent"


@dataclass(frozen=True)
class CandidateOutcome:
    """What distilling one candidate gave (from the build's callback)."""

    model: Any
    validation_accuracy: float
    validation_score: float
    epochs: int
    detail: Any = None


@dataclass(frozen=True)
class CandidateResult:
    """One row of ``build.search``: a candidate, its cost and, when distilled, its validation scores."""

    candidate: StudentCandidate
    status: CandidateStatus
    parameters: int
    model_bytes: int
    macs: int
    validation_accuracy: float | None = None
    validation_score: float | None = None
    epochs: int | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the manifest."""
        return {
            "name": self.candidate.name,
            "architecture": self.candidate.architecture,
            "embeddings": self.candidate.embedding_training,
            "width": self.candidate.width,
            "status": self.status.value,
            "parameters": self.parameters,
            "model_bytes": self.model_bytes,
            "macs": self.macs,
            "validation_accuracy": self.validation_accuracy,
            "validation_score": self.validation_score,
            "epochs": self.epochs,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
        }


def search_students(
    candidates: Sequence[StudentCandidate],
    base: StudentSpec,
    distill_candidate: Callable[[StudentCandidate, StudentSpec], CandidateOutcome],
    *,
    vocab_size: int,
    num_labels: int,
    seq_len: int,
    max_model_bytes: float,
    bytes_per_weight: int,
    budget_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[StudentCandidate, CandidateOutcome, tuple[CandidateResult, ...]]:
    """Distill candidates in order within the budgets and return the best one.

    Args:
        candidates: From :func:`student_candidates`.
        base: The build's student settings (each candidate's spec is derived from it).
        distill_candidate: Distills one candidate's student and scores it on validation.
        vocab_size: The student's vocabulary size (for its parameter count).
        num_labels: Classes.
        seq_len: Tokens per text (for the latency proxy).
        max_model_bytes: The profile's size budget; a candidate whose weights alone exceed it is not distilled,
            unless none fits: then the smallest is.
        bytes_per_weight: Bytes per weight in the exported file (:data:`BYTES_PER_WEIGHT`).
        budget_s: Seconds the search may take; 0 is no limit. A candidate is not started when the time spent plus
            the mean time of those distilled so far would pass it.
        clock: Seconds since an arbitrary start (tests pass their own).

    Returns:
        ``(best candidate, its outcome, every candidate's result)``.

    Raises:
        StageError: ``candidates`` is empty.
    """
    if not candidates:
        raise StageError("the student search has no candidates; list at least one width in [student] search_widths")
    start = clock()
    results: list[CandidateResult] = []
    best: tuple[tuple[float, float], StudentCandidate, CandidateOutcome] | None = None
    durations: list[float] = []
    costs = {}
    for candidate in candidates:
        spec = candidate.spec(base)
        parameters = parameter_count(spec, vocab_size, num_labels)
        costs[candidate] = {
            "parameters": parameters,
            "model_bytes": parameters * bytes_per_weight,
            "macs": multiply_accumulates(spec, num_labels, seq_len),
        }
    fitting = [c for c in candidates if costs[c]["model_bytes"] <= max_model_bytes]
    # Nothing fits: distill the smallest anyway, so the build's budget check reports the miss (and
    # --allow-over-budget can keep it) instead of the search failing with nothing to show.
    allowed = fitting or [min(candidates, key=lambda c: costs[c]["model_bytes"])]
    for candidate in candidates:
        spec, cost = candidate.spec(base), costs[candidate]
        if candidate not in allowed:
            results.append(CandidateResult(candidate, CandidateStatus.OVER_SIZE_BUDGET, **cost))
            continue
        spent = clock() - start
        if best is not None and budget_s > 0 and spent + sum(durations) / len(durations) > budget_s:
            results.append(CandidateResult(candidate, CandidateStatus.SEARCH_BUDGET_SPENT, **cost))
            continue
        began = clock()
        outcome = distill_candidate(candidate, spec)
        durations.append(clock() - began)
        results.append(
            CandidateResult(
                candidate,
                CandidateStatus.DISTILLED,
                **cost,
                validation_accuracy=outcome.validation_accuracy,
                validation_score=outcome.validation_score,
                epochs=outcome.epochs,
                seconds=durations[-1],
            )
        )
        rank = (outcome.validation_accuracy, outcome.validation_score)
        if best is None or rank > best[0]:
            best = (rank, candidate, outcome)
    assert best is not None  # the first allowed candidate always runs
    _, chosen, outcome = best
    results = [replace(r, status=CandidateStatus.CHOSEN) if r.candidate == chosen else r for r in results]
    return chosen, outcome, tuple(results)
