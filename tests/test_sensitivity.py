"""Pruning sensitivity analysis and the per-layer sparsity it chooses (edgeopt.sensitivity)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edgeopt.errors import StageError
from edgeopt.prune import PRUNABLE_LAYERS, PruneConfig
from edgeopt.sensitivity import (
    DEFAULT_LEVELS,
    SensitivityTable,
    choose_sparsities,
    keras_accuracy,
    magnitude_prune_weights,
    pruning_sensitivity,
)
from stage_fixtures import ToyTask, keras_logits, make_toy_task, train_toy_student


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("sensitivity"), n=80)


@pytest.fixture(scope="module")
def trained(task: ToyTask) -> Any:
    return train_toy_student(task.vocab_size, task.encoded, task.labels, epochs=30)


@pytest.fixture(scope="module")
def table(trained: Any, task: ToyTask) -> SensitivityTable:
    return pruning_sensitivity(trained, keras_accuracy(task.encoded, task.labels))


def _hand_table() -> SensitivityTable:
    return SensitivityTable(
        baseline=0.90,
        layers=("embedding", "conv", "dense"),
        levels=(0.25, 0.5, 0.75, 0.9),
        scores=(
            (0.90, 0.89, 0.88, 0.80),  # drops 0, .01, .02, .10
            (0.85, 0.90, 0.90, 0.90),  # drops .05 first, then 0: noise past a failing level is not trusted
            (0.90, 0.90, 0.90, 0.895),  # drops 0, 0, 0, .005
        ),
        sizes=(496, 384, 128),
    )


def test_table_has_one_score_per_layer_and_level(table: SensitivityTable, trained: Any) -> None:
    assert table.layers == PRUNABLE_LAYERS
    assert table.levels == DEFAULT_LEVELS
    assert len(table.scores) == len(PRUNABLE_LAYERS)
    assert all(len(row) == len(DEFAULT_LEVELS) for row in table.scores)
    assert table.sizes == tuple(trained.get_layer(name).get_weights()[0].size for name in PRUNABLE_LAYERS)
    assert table.baseline >= 0.95  # the toy student solves its task


def test_accuracy_drops_stay_in_range(table: SensitivityTable) -> None:
    for layer in table.layers:
        drops = [table.drop(layer, level) for level in table.levels]
        assert all(-0.05 <= d <= 1.0 for d in drops), (layer, drops)


def test_drops_grow_with_sparsity(trained: Any, task: ToyTask) -> None:
    # The toy task is so easy that accuracy hardly moves; the logit margin of the true label shows every loss.
    rows = np.arange(len(task.labels))

    def margin(model: Any) -> float:
        logits = keras_logits(model, task.encoded)
        return float(np.mean(logits[rows, task.labels] - logits[rows, 1 - task.labels]))

    table = pruning_sensitivity(trained, margin)
    assert table.baseline > 1.0
    for layer in table.layers:
        drops = [table.drop(layer, level) for level in table.levels]
        # Monotone up to noise at low sparsity, where pruning can even help a little.
        steps = np.diff(drops)
        assert np.all(steps >= -0.05 * table.baseline), (layer, drops)
        assert drops[-1] > drops[0] + 0.1, (layer, drops)
    chosen = choose_sparsities(table, max_drop_per_layer=0.02 * table.baseline)
    assert all(level < DEFAULT_LEVELS[-1] for level in chosen.values()), chosen


def test_sensitivity_prunes_one_layer_at_a_time_on_a_copy(trained: Any) -> None:
    # A score that counts the zeros of the whole model: each entry must be exactly one layer's kernel pruned.
    weights_before = [w.copy() for w in trained.get_weights()]
    total = sum(w.size for w in weights_before)

    def nonzero_share(model: Any) -> float:
        return float(sum(np.count_nonzero(w) for w in model.get_weights()) / total)

    measured = pruning_sensitivity(trained, nonzero_share, layers=("conv", "dense"), levels=(0.5, 0.75))
    baseline = nonzero_share(trained)
    assert measured.baseline == baseline
    for layer, size, row in zip(measured.layers, measured.sizes, measured.scores, strict=True):
        for level, score in zip(measured.levels, row, strict=True):
            assert score == pytest.approx(baseline - round(level * size) / total), (layer, level)
    for before, after in zip(weights_before, trained.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_chosen_sparsities_feed_prune_config(table: SensitivityTable) -> None:
    chosen = choose_sparsities(table, max_drop_per_layer=0.02)
    assert set(chosen) == set(PRUNABLE_LAYERS)
    assert all(level == 0.0 or level in DEFAULT_LEVELS for level in chosen.values())
    for layer, level in chosen.items():
        if level:
            assert table.drop(layer, level) <= 0.02
    assert PruneConfig(per_layer=chosen).layer_targets() == chosen


def test_choose_sparsities_on_a_hand_made_table() -> None:
    table = _hand_table()
    assert choose_sparsities(table, 0.02) == {"embedding": 0.75, "conv": 0.0, "dense": 0.9}
    assert choose_sparsities(table, 0.0) == {"embedding": 0.25, "conv": 0.0, "dense": 0.75}
    assert choose_sparsities(table, 0.05) == {"embedding": 0.75, "conv": 0.9, "dense": 0.9}
    assert choose_sparsities(table, 1.0) == dict.fromkeys(table.layers, 0.9)
    # A budget equal to a drop counts, float rounding aside (0.90 - 0.89 is not exactly 0.01).
    assert choose_sparsities(table, 0.01)["embedding"] == 0.5
    # Only some levels on offer.
    assert choose_sparsities(table, 0.02, levels=(0.5,)) == {"embedding": 0.5, "conv": 0.0, "dense": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_drop_per_layer": -0.01}, r"the accuracy drop budget per layer must be >= 0, got -0.01"),
        ({"max_drop_per_layer": float("nan")}, r"the accuracy drop budget per layer must be >= 0, got nan"),
        (
            {"max_drop_per_layer": 0.01, "levels": (0.3, 0.5)},
            r"sparsity level\(s\) 0.3 are not in the sensitivity table; it has 0.25, 0.5, 0.75, 0.9",
        ),
        (
            {"max_drop_per_layer": 0.01, "levels": (0.5, 0.25)},
            r"sparsity levels must be ascending and distinct, got 0.5, 0.25",
        ),
    ],
)
def test_choose_sparsities_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=f"^{message}$"):
        choose_sparsities(_hand_table(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": ()}, r"sensitivity needs at least one sparsity level, got none"),
        ({"levels": (0.5, 1.0)}, r"sparsity levels must be in \(0, 0.95\], got 1.0"),
        ({"levels": (0.0, 0.5)}, r"sparsity levels must be in \(0, 0.95\], got 0.0"),
        ({"layers": ("conv", "attention")}, r"the model has no layer\(s\) 'attention' to probe; it has .*"),
    ],
)
def test_pruning_sensitivity_rejects_bad_arguments(trained: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=f"^{message}$"):
        pruning_sensitivity(trained, lambda model: 1.0, **kwargs)


def test_table_round_trips_through_json_and_renders_markdown() -> None:
    table = _hand_table()
    data = json.loads(json.dumps(table.to_dict()))
    assert data["layers"]["conv"]["drops"][0] == pytest.approx(0.05)
    assert SensitivityTable.from_dict(data) == table
    markdown = table.to_markdown(chosen=choose_sparsities(table, 0.02))
    lines = markdown.splitlines()
    assert lines[2] == "| layer | weights | drop @ 25% | drop @ 50% | drop @ 75% | drop @ 90% | chosen |"
    assert lines[4] == "| embedding | 496 | +0.0 | +1.0 | +2.0 | +10.0 | 75% |"
    assert lines[5] == "| conv | 384 | +5.0 | +0.0 | +0.0 | +0.0 | 0% |"
    assert len(lines) == 7


def test_table_rejects_mismatched_shapes() -> None:
    with pytest.raises(StageError, match=r"^a sensitivity table needs one score per layer and level \(1 x 2\)"):
        SensitivityTable(baseline=1.0, layers=("conv",), levels=(0.25, 0.5), scores=((1.0,),), sizes=(10,))
    with pytest.raises(StageError, match=r"^layer 'head' is not in the sensitivity table; it has embedding, conv"):
        _hand_table().drop("head", 0.5)


def test_magnitude_prune_weights_zeroes_the_smallest() -> None:
    kernel = np.array([[0.1, -3.0], [-0.2, 0.4], [2.0, -0.05]], dtype=np.float32)
    pruned = magnitude_prune_weights(kernel, 0.5)
    np.testing.assert_array_equal(pruned, np.array([[0.0, -3.0], [0.0, 0.4], [2.0, 0.0]], dtype=np.float32))
    assert kernel[0, 0] == np.float32(0.1)  # a copy
    np.testing.assert_array_equal(magnitude_prune_weights(kernel, 0.0), kernel)


def test_keras_accuracy_rejects_mismatched_labels(task: ToyTask) -> None:
    with pytest.raises(StageError, match=r"^accuracy needs one label per text, got 3 labels for 80 texts$"):
        keras_accuracy(task.encoded, task.labels[:3])
