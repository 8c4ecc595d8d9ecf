"""Magnitude pruning of the student (edgeopt.prune)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeopt.distill import DistillConfig, pack_targets
from edgeopt.errors import StageError
from edgeopt.prune import PRUNABLE_LAYERS, PruneConfig, PruneResult, prune, sparsity_of
from stage_fixtures import NUM_LABELS, ToyTask, keras_logits, make_toy_task, train_toy_student

TARGET = 0.5


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("prune"), n=80)


@pytest.fixture(scope="module")
def targets(task: ToyTask) -> np.ndarray:
    teacher = np.where(np.eye(NUM_LABELS)[task.labels] > 0, 3.0, -3.0)
    return pack_targets(teacher, task.labels, NUM_LABELS)


def _trained(task: ToyTask) -> Any:
    return train_toy_student(task.vocab_size, task.encoded, task.labels, epochs=30)


@pytest.fixture(scope="module")
def pruned(task: ToyTask, targets: np.ndarray) -> tuple[Any, Any, PruneResult]:
    model = _trained(task)
    head_before = model.get_layer("logits").get_weights()[0].copy()
    # 80 texts in batches of 16: 5 steps an epoch, so the sparsity schedule ends on step 10, a pruning step.
    stripped, result = prune(
        model,
        task.encoded,
        targets,
        NUM_LABELS,
        DistillConfig(batch_size=16),
        PruneConfig(target_sparsity=TARGET, epochs=3),
    )
    return stripped, head_before, result


def test_prune_reaches_target_sparsity_on_the_stripped_model(pruned: tuple[Any, Any, PruneResult]) -> None:
    stripped, _, result = pruned
    measured = sparsity_of(stripped)
    assert set(measured) == set(PRUNABLE_LAYERS)
    for name in PRUNABLE_LAYERS:
        assert measured[name] == pytest.approx(TARGET, abs=0.02), name
        kernel = stripped.get_layer(name).get_weights()[0]
        assert np.mean(kernel == 0) == pytest.approx(TARGET, abs=0.02), name
    assert result.sparsity == measured
    assert result.overall_sparsity == pytest.approx(TARGET, abs=0.02)


def test_stripped_model_has_no_pruning_wrappers_and_a_dense_head(
    pruned: tuple[Any, Any, PruneResult],
) -> None:
    stripped, head_before, _ = pruned
    assert not [layer.name for layer in stripped.layers if "prune" in type(layer).__name__.lower()]
    assert [layer.name for layer in stripped.layers if layer.name in PRUNABLE_LAYERS] == list(PRUNABLE_LAYERS)
    head = stripped.get_layer("logits").get_weights()[0]
    assert head.shape == head_before.shape
    assert np.count_nonzero(head == 0) == 0  # the head is fine-tuned but never pruned
    assert [t.name.split(":")[0] for t in stripped.inputs] == ["input_ids", "attention_mask"]


def test_pruned_model_still_solves_the_toy_task(pruned: tuple[Any, Any, PruneResult], task: ToyTask) -> None:
    stripped, _, _ = pruned
    accuracy = np.mean(keras_logits(stripped, task.encoded).argmax(-1) == task.labels)
    assert accuracy >= 0.9


def test_sparsity_of_counts_exact_zeros(pruned: tuple[Any, Any, PruneResult]) -> None:
    stripped, _, _ = pruned
    head = stripped.get_layer("logits").get_weights()[0]
    assert sparsity_of(stripped, ("logits",)) == {"logits": float(np.mean(head == 0))} == {"logits": 0.0}


def test_prune_reaches_target_sparsity_with_few_steps_per_epoch(task: ToyTask, targets: np.ndarray) -> None:
    # 80 texts in batches of 40: 2 steps an epoch, end_step 4.
    stripped, result = prune(
        _trained(task),
        task.encoded,
        targets,
        NUM_LABELS,
        DistillConfig(batch_size=40),
        PruneConfig(target_sparsity=TARGET, epochs=3),
    )
    assert result.overall_sparsity == pytest.approx(TARGET, abs=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_sparsity": -0.1}, r"target sparsity must be in \[0, 0.95\], got -0.1"),
        ({"target_sparsity": 0.96}, r"target sparsity must be in \[0, 0.95\], got 0.96"),
        ({"target_sparsity": float("nan")}, r"target sparsity must be in \[0, 0.95\], got nan"),
        ({"epochs": 0}, "pruning epochs must be >= 1, got 0"),
    ],
)
def test_prune_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=f"^{message}$"):
        PruneConfig(**kwargs)


def test_prune_config_accepts_edges() -> None:
    assert PruneConfig(target_sparsity=0.0).target_sparsity == 0.0
    assert PruneConfig(target_sparsity=0.95, epochs=1).epochs == 1
