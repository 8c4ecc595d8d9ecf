"""Magnitude pruning of the student (edgeopt.prune)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeopt.distill import DistillConfig, RecoveryData, pack_targets
from edgeopt.errors import ConfigError, StageError
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
        RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=16)),
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
        RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=40)),
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
    with pytest.raises(ConfigError, match=f"^{message}$"):
        PruneConfig(**kwargs)


def test_prune_config_accepts_edges() -> None:
    assert PruneConfig(target_sparsity=0.0).target_sparsity == 0.0
    assert PruneConfig(target_sparsity=0.95, epochs=1).epochs == 1


# --- schedules, m:n sparsity, per-layer targets ---------------------------------------------------------------------


def _prune(task: ToyTask, targets: np.ndarray, model: Any, **kwargs: Any) -> tuple[Any, PruneResult]:
    data = RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=16))
    return prune(model, data, PruneConfig(**kwargs))


@pytest.fixture(scope="module")
def trained(task: ToyTask) -> tuple[Any, list[np.ndarray]]:
    # prune() shares weights with the model it gets: each test below prunes its own clone of these.
    model = _trained(task)
    return model, model.get_weights()


def _fresh(trained: tuple[Any, list[np.ndarray]]) -> Any:
    from edgeopt._tf import import_tf

    _, keras = import_tf()
    model, weights = trained
    clone = keras.models.clone_model(model)
    clone.set_weights(weights)
    return clone


def test_constant_schedule_reaches_target_in_one_epoch(
    task: ToyTask, targets: np.ndarray, trained: tuple[Any, list[np.ndarray]]
) -> None:
    stripped, result = _prune(task, targets, _fresh(trained), target_sparsity=0.7, epochs=1, schedule="constant")
    assert result.schedule == "constant"
    for name in PRUNABLE_LAYERS:
        assert result.sparsity[name] == pytest.approx(0.7, abs=0.02), name
    assert result.patterns == dict.fromkeys(PRUNABLE_LAYERS, "unstructured")
    assert result.m_by_n_satisfied is None
    assert np.mean(keras_logits(stripped, task.encoded).argmax(-1) == task.labels) >= 0.9


def test_two_four_pattern_holds_on_the_stripped_dense_kernel(
    task: ToyTask, targets: np.ndarray, trained: tuple[Any, list[np.ndarray]]
) -> None:
    stripped, result = _prune(task, targets, _fresh(trained), target_sparsity=0.0, epochs=2, m_by_n=(2, 4))
    assert result.patterns == {"embedding": "dense", "conv": "dense", "dense": "2:4"}
    assert result.m_by_n_satisfied is True
    kernel = stripped.get_layer("dense").get_weights()[0]  # [inputs 16, outputs 8]
    groups = kernel.T.reshape(kernel.shape[1], -1, 4)  # per output, groups of 4 consecutive inputs
    assert (groups == 0).sum(axis=-1).min() >= 2
    assert result.sparsity["dense"] == pytest.approx(0.5)
    # Layers left dense keep every weight.
    assert result.sparsity["embedding"] == result.sparsity["conv"] == 0.0
    assert result.targets == {"embedding": 0.0, "conv": 0.0, "dense": 0.5}


def test_two_four_with_unstructured_elsewhere(
    task: ToyTask, targets: np.ndarray, trained: tuple[Any, list[np.ndarray]]
) -> None:
    _, result = _prune(
        task, targets, _fresh(trained), target_sparsity=0.6, epochs=2, schedule="constant", m_by_n=(2, 4)
    )
    assert result.patterns == {"embedding": "unstructured", "conv": "unstructured", "dense": "2:4"}
    assert result.m_by_n_satisfied is True
    assert result.sparsity["conv"] == pytest.approx(0.6, abs=0.02)
    assert result.sparsity["embedding"] == pytest.approx(0.6, abs=0.02)


def test_per_layer_targets_are_reached(
    task: ToyTask, targets: np.ndarray, trained: tuple[Any, list[np.ndarray]]
) -> None:
    per_layer = {"embedding": 0.3, "conv": 0.8}
    _, result = _prune(task, targets, _fresh(trained), target_sparsity=0.5, epochs=3, per_layer=per_layer)
    assert result.targets == {"embedding": 0.3, "conv": 0.8, "dense": 0.5}
    for name, target in result.targets.items():
        assert result.sparsity[name] == pytest.approx(target, abs=0.02), name


def test_per_layer_zero_leaves_a_layer_dense(
    task: ToyTask, targets: np.ndarray, trained: tuple[Any, list[np.ndarray]]
) -> None:
    stripped, result = _prune(
        task, targets, _fresh(trained), target_sparsity=0.5, epochs=1, schedule="constant", per_layer={"dense": 0}
    )
    assert result.patterns["dense"] == "dense"
    assert np.count_nonzero(stripped.get_layer("dense").get_weights()[0] == 0) == 0


def test_m_by_n_needs_two_training_steps(task: ToyTask, targets: np.ndarray) -> None:
    with pytest.raises(StageError, match=r"^2:4 pruning needs at least 2 training steps, got 1; raise the pruning"):
        prune(
            object(),
            RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=80)),
            PruneConfig(epochs=1, m_by_n=(2, 4)),
        )


def test_satisfies_m_by_n() -> None:
    from edgeopt.prune import satisfies_m_by_n

    kernel = np.ones((8, 3), dtype=np.float32)  # [inputs, outputs]
    assert not satisfies_m_by_n(kernel, 2, 4)
    kernel[[0, 1, 4, 7], :] = 0  # groups 0-3 and 4-7 each hold 2 zeros
    assert satisfies_m_by_n(kernel, 2, 4)
    kernel[1, 2] = 0.5
    assert not satisfies_m_by_n(kernel, 2, 4)
    # A short last group counts as zero-padded, as tfmot pads it: 6 inputs = one full group + [x, x, 0, 0].
    short = np.ones((6, 1), dtype=np.float32)
    short[[0, 1]] = 0
    assert satisfies_m_by_n(short, 2, 4)
    # Conv kernels [k, inputs, outputs]: groups run along the inputs for every tap and output.
    conv = np.zeros((3, 4, 2), dtype=np.float32)
    conv[:, :2, :] = 1
    assert satisfies_m_by_n(conv, 2, 4)
    conv[0, 2, 0] = 1
    assert not satisfies_m_by_n(conv, 2, 4)
    with pytest.raises(StageError, match=r"rank >= 2"):
        satisfies_m_by_n(np.zeros(4), 2, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "cubic"}, "pruning schedule must be one of polynomial, constant, got 'cubic'"),
        ({"m_by_n": (2,)}, r"m_by_n must be two integers \(m, n\) such as \(2, 4\), got \(2,\)"),
        ({"m_by_n": (2.0, 4)}, r"m_by_n must be two integers \(m, n\) such as \(2, 4\), got \(2.0, 4\)"),
        ({"m_by_n": (4, 4)}, r"m_by_n needs 0 < m < n \(m zeros in every n weights\), got \(4, 4\)"),
        ({"m_by_n": (0, 4)}, r"m_by_n needs 0 < m < n \(m zeros in every n weights\), got \(0, 4\)"),
        (
            {"per_layer": {"logits": 0.5, "head": 0.1}},
            r"per-layer sparsity names unknown layer\(s\) 'head', 'logits'; "
            "prunable layers are embedding, conv, dense",
        ),
        ({"per_layer": {"conv": 0.99}}, r"target sparsity of layer 'conv' must be in \[0, 0.95\], got 0.99"),
        (
            {"per_layer": [("conv", 0.5)]},
            r"per-layer sparsity must map layer names to targets, got \[\('conv', 0.5\)\]",
        ),
    ],
)
def test_prune_config_rejects_bad_pattern_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        PruneConfig(**kwargs)


def test_prune_config_normalizes_choices() -> None:
    from edgeopt.prune import PruneSchedule

    config = PruneConfig(schedule="constant", m_by_n=[2, 4], per_layer={"conv": 0})
    assert config.schedule is PruneSchedule.CONSTANT
    assert config.m_by_n == (2, 4)
    assert config.per_layer == {"conv": 0.0} and isinstance(config.per_layer["conv"], float)
    # An m:n pattern overrides the per-layer target of its layers.
    assert PruneConfig(m_by_n=(1, 4), per_layer={"dense": 0.9}).layer_targets()["dense"] == 0.25
