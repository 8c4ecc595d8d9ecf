"""Structured pruning: removal of whole embedding dimensions, filters and dense units (edgeopt.structured)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.distill import DistillConfig, RecoveryData, pack_targets
from edgeopt.errors import ConfigError, StageError
from edgeopt.export import to_tflite
from edgeopt.structured import STRUCTURED_LAYERS, StructuredResult, rank_units, remove_units, structured_prune
from edgeopt.student import count_parameters
from stage_fixtures import MAX_SEQ_LEN, NUM_LABELS, ToyTask, keras_logits, make_toy_task, tiny_spec, train_toy_student

KERNEL = tiny_spec().kernel_size


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("structured"), n=80)


@pytest.fixture(scope="module")
def trained(task: ToyTask) -> Any:
    return train_toy_student(task.vocab_size, task.encoded, task.labels, epochs=30)


@pytest.fixture(scope="module")
def halved(trained: Any) -> tuple[Any, StructuredResult]:
    return remove_units(trained, tiny_spec(), 0.5)


def _expected_params(vocab: int, embedding: int, hidden: int, dense: int) -> int:
    # embedding table + conv kernel and bias + dense kernel and bias + classifier kernel and bias
    conv = KERNEL * embedding * hidden + hidden
    return vocab * embedding + conv + hidden * dense + dense + dense * NUM_LABELS + NUM_LABELS


def test_keep_all_units_gives_the_same_model(trained: Any, task: ToyTask) -> None:
    weights_before = [w.copy() for w in trained.get_weights()]
    same, result = remove_units(trained, tiny_spec(), 1.0)
    np.testing.assert_array_equal(keras_logits(same, task.encoded), keras_logits(trained, task.encoded))
    assert result.params_before == result.params_after == count_parameters(trained)
    assert result.kept == {name: tuple(range(n)) for name, n in result.units_before.items()}
    assert result.spec == tiny_spec()
    for before, after in zip(weights_before, trained.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the input model is not changed


def test_removal_shrinks_parameters_by_the_formula(halved: tuple[Any, StructuredResult], task: ToyTask) -> None:
    small, result = halved
    assert result.units_before == {"embedding": 8, "conv": 16, "dense": 8}
    assert result.units_after == {"embedding": 4, "conv": 8, "dense": 4}
    assert result.spec == dataclasses.replace(tiny_spec(), embedding_dim=4, hidden_dim=8, dense_dim=4)
    assert result.params_before == _expected_params(task.vocab_size, 8, 16, 8) == 1050
    assert result.params_after == _expected_params(task.vocab_size, 4, 8, 4) == count_parameters(small) == 398
    assert result.params_ratio == pytest.approx(398 / 1050)
    assert [t.name.split(":")[0] for t in small.inputs] == ["input_ids", "attention_mask"]
    assert small.output_shape == (None, NUM_LABELS)


def test_removal_keeps_the_units_with_the_largest_l1_norm(trained: Any, halved: tuple[Any, StructuredResult]) -> None:
    _, result = halved
    for name, norms in rank_units(trained).items():
        kept = list(result.kept[name])
        assert kept == sorted(kept)
        dropped = sorted(set(range(len(norms))) - set(kept))
        assert norms[kept].min() >= norms[dropped].max(), name


def test_smaller_model_equals_the_original_with_removed_units_zeroed(
    trained: Any, halved: tuple[Any, StructuredResult], task: ToyTask
) -> None:
    # The regression test for the weight-slice copying: a removed unit contributes nothing once its incoming weights
    # and bias are zero (ReLU(0) = 0, and a zero embedding column feeds nothing), so the original model with those
    # weights zeroed must compute what the smaller model computes.
    from edgeopt._tf import import_tf

    small, result = halved
    _, keras = import_tf()
    masked = keras.models.clone_model(trained)
    masked.set_weights(trained.get_weights())
    drop = {name: sorted(set(range(result.units_before[name])) - set(result.kept[name])) for name in STRUCTURED_LAYERS}
    (table,) = masked.get_layer("embedding").get_weights()
    table[:, drop["embedding"]] = 0
    masked.get_layer("embedding").set_weights([table])
    kernel, bias = masked.get_layer("conv").get_weights()
    kernel[:, :, drop["conv"]] = 0
    bias[drop["conv"]] = 0
    masked.get_layer("conv").set_weights([kernel, bias])
    kernel, bias = masked.get_layer("dense").get_weights()
    kernel[:, drop["dense"]] = 0
    bias[drop["dense"]] = 0
    masked.get_layer("dense").set_weights([kernel, bias])
    np.testing.assert_allclose(
        keras_logits(small, task.encoded), keras_logits(masked, task.encoded), rtol=1e-5, atol=1e-5
    )


def test_removal_shrinks_the_tflite_file(trained: Any, halved: tuple[Any, StructuredResult], tmp_path: Path) -> None:
    small, result = halved
    before = to_tflite(trained, tmp_path / "before.tflite").stat().st_size
    after = to_tflite(small, tmp_path / "after.tflite").stat().st_size
    # float32 weights: 4 bytes for each weight removed, less a little metadata that does not shrink.
    assert before - after >= 0.9 * 4 * (result.params_before - result.params_after)


def test_keep_per_layer_leaves_other_layers_whole(trained: Any, task: ToyTask) -> None:
    small, result = remove_units(trained, tiny_spec(), {"conv": 0.25})
    assert result.units_after == {"embedding": 8, "conv": 4, "dense": 8}
    assert result.params_after == _expected_params(task.vocab_size, 8, 4, 8) == count_parameters(small)


def test_keep_rounds_and_keeps_at_least_one_unit(trained: Any) -> None:
    _, result = remove_units(trained, tiny_spec(), {"embedding": 0.01, "conv": 0.3, "dense": 0.99})
    assert result.units_after == {"embedding": 1, "conv": 5, "dense": 8}


def test_structured_prune_fine_tunes_the_smaller_model(trained: Any, task: ToyTask) -> None:
    teacher = np.where(np.eye(NUM_LABELS)[task.labels] > 0, 3.0, -3.0)
    targets = pack_targets(teacher, task.labels, NUM_LABELS)
    small, result = structured_prune(
        trained,
        tiny_spec(),
        0.5,
        RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=16)),
        epochs=5,
        learning_rate=5e-3,
    )
    assert result.units_after == {"embedding": 4, "conv": 8, "dense": 4}
    assert count_parameters(small) == result.params_after
    assert np.mean(keras_logits(small, task.encoded).argmax(-1) == task.labels) >= 0.9
    assert small.inputs[0].shape[1] == MAX_SEQ_LEN


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (0.0, r"share of units to keep in layer 'embedding' must be in \(0, 1\], got 0.0"),
        (1.5, r"share of units to keep in layer 'embedding' must be in \(0, 1\], got 1.5"),
        (float("nan"), r"share of units to keep in layer 'embedding' must be in \(0, 1\], got nan"),
        ({"dense": -0.5}, r"share of units to keep in layer 'dense' must be in \(0, 1\], got -0.5"),
        (
            {"heads": 0.5, "logits": 0.5},
            r"structured pruning names unknown layer\(s\) 'heads', 'logits'; "
            r"layers with removable units are embedding, conv, dense",
        ),
    ],
)
def test_remove_units_rejects_bad_keep(trained: Any, keep: Any, message: str) -> None:
    with pytest.raises(StageError, match=f"^{message}$"):
        remove_units(trained, tiny_spec(), keep)


def test_remove_units_rejects_a_spec_that_does_not_match(trained: Any) -> None:
    wrong = dataclasses.replace(tiny_spec(), hidden_dim=32)
    with pytest.raises(
        StageError,
        match=r"^the student spec says hidden_dim=32 but the model's 'conv' layer has 16 units; "
        r"pass the StudentSpec the model was built with$",
    ):
        remove_units(trained, wrong, 0.5)


def test_structured_prune_rejects_zero_epochs(trained: Any, task: ToyTask) -> None:
    with pytest.raises(ConfigError, match=r"^structured pruning fine-tune epochs must be >= 1, got 0$"):
        data = RecoveryData(task.encoded, np.zeros((80, 5)), NUM_LABELS, DistillConfig())
        structured_prune(trained, tiny_spec(), 0.5, data, epochs=0)


def test_result_to_dict_is_plain_json(halved: tuple[Any, StructuredResult]) -> None:
    import json

    _, result = halved
    data = json.loads(json.dumps(result.to_dict()))
    assert data["units_after"] == {"embedding": 4, "conv": 8, "dense": 4}
    assert data["spec"]["hidden_dim"] == 8
    assert data["params_after"] == 398


@pytest.fixture(scope="module")
def trained_attention(task: ToyTask) -> Any:
    return train_toy_student(task.vocab_size, task.encoded, task.labels, epochs=30, architecture="cnn-attention")


def test_attention_student_keep_all_gives_the_same_model(trained_attention: Any, task: ToyTask) -> None:
    spec = tiny_spec(architecture="cnn-attention")
    same, result = remove_units(trained_attention, spec, 1.0)
    np.testing.assert_allclose(
        keras_logits(same, task.encoded), keras_logits(trained_attention, task.encoded), atol=1e-6
    )
    assert result.spec == spec


def test_attention_student_removal_slices_both_pools_and_the_score(trained_attention: Any, task: ToyTask) -> None:
    small, result = remove_units(trained_attention, tiny_spec(architecture="cnn-attention"), 0.5)
    # The dense layer reads [max pool; attention pool]: 2 x 8 kept filters; the score reads the 8 kept filters.
    assert small.get_layer("dense").get_weights()[0].shape == (16, 4)
    assert small.get_layer("attention_score").get_weights()[0].shape == (8, 1)
    score = trained_attention.get_layer("attention_score").get_weights()[0]
    np.testing.assert_array_equal(small.get_layer("attention_score").get_weights()[0], score[list(result.kept["conv"])])
    dense = trained_attention.get_layer("dense").get_weights()[0]
    kept_rows = [*result.kept["conv"], *(16 + j for j in result.kept["conv"])]
    np.testing.assert_array_equal(
        small.get_layer("dense").get_weights()[0], dense[kept_rows][:, list(result.kept["dense"])]
    )
    assert result.params_after == count_parameters(small) < result.params_before
