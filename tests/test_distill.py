"""Knowledge distillation: packed targets, the loss against a numpy reference, training (edgeopt.distill)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from edgeopt._tf import import_tf
from edgeopt.distill import (
    PROJECTION_LAYER,
    DistillConfig,
    FeatureLoss,
    distill,
    distillation_loss,
    feature_loss,
    length_bucketed_batches,
    pack_targets,
)
from edgeopt.errors import ConfigError, StageError
from edgeopt.profiles import STUDENT_ARCHITECTURES
from edgeopt.student import build_student
from stage_fixtures import (
    MAX_SEQ_LEN,
    NUM_LABELS,
    ToyTask,
    encode,
    keras_logits,
    make_toy_task,
    tiny_spec,
    toy_corpus,
)


def _teacher_logits(labels: np.ndarray, margin: float = 3.0) -> np.ndarray:
    return np.where(np.eye(NUM_LABELS)[labels] > 0, margin, -margin).astype(np.float32)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _reference_loss(
    teacher: np.ndarray, student: np.ndarray, labels: np.ndarray, temperature: float, alpha: float
) -> np.ndarray:
    """Hinton et al.: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)."""
    log_p = _log_softmax(teacher / temperature)
    log_q = _log_softmax(student / temperature)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    labeled = labels >= 0
    ce = np.zeros(len(labels))
    ce[labeled] = -_log_softmax(student)[np.flatnonzero(labeled), labels[labeled]]
    return alpha * ce + (1.0 - alpha) * temperature**2 * kl


def _loss_values(packed: np.ndarray, student: np.ndarray, num_labels: int, temperature: float, alpha: float):
    tf, _ = import_tf()
    loss = distillation_loss(num_labels, temperature, alpha)
    return loss(tf.constant(packed), tf.constant(student)).numpy()


# --- pack_targets -------------------------------------------------------------------------------------------


def test_pack_targets_layout_with_unlabeled_rows() -> None:
    teacher = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=np.float64)
    packed = pack_targets(teacher, np.array([2, -1, 0]), num_labels=3)
    assert packed.dtype == np.float32
    assert packed.shape == (3, 7)
    np.testing.assert_array_equal(packed[:, :3], teacher)
    np.testing.assert_array_equal(packed[:, 3:6], [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(packed[:, 6], [1, 0, 1])


# --- the loss -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "alpha"), [(1.0, 0.5), (2.0, 0.5), (4.0, 0.0), (3.0, 1.0), (0.5, 0.3), (2.0, 0.9)]
)
def test_loss_equals_numpy_reference(temperature: float, alpha: float) -> None:
    rng = np.random.default_rng(int(temperature * 10 + alpha * 100))
    num_labels = 3
    teacher = rng.normal(0, 3, (12, num_labels)).astype(np.float32)
    student = rng.normal(0, 3, (12, num_labels)).astype(np.float32)
    labels = rng.integers(0, num_labels, 12)
    labels[[1, 5, 6]] = -1
    got = _loss_values(pack_targets(teacher, labels, num_labels), student, num_labels, temperature, alpha)
    np.testing.assert_allclose(got, _reference_loss(teacher, student, labels, temperature, alpha), rtol=1e-4, atol=1e-5)


def test_alpha_one_is_cross_entropy_and_zero_on_unlabeled_rows() -> None:
    rng = np.random.default_rng(1)
    teacher = rng.normal(0, 2, (6, 2)).astype(np.float32)
    student = rng.normal(0, 2, (6, 2)).astype(np.float32)
    labels = np.array([0, 1, -1, 1, -1, 0])
    got = _loss_values(pack_targets(teacher, labels, 2), student, 2, temperature=2.0, alpha=1.0)
    ce = -_log_softmax(student)[np.arange(6), np.maximum(labels, 0)]
    np.testing.assert_allclose(got, np.where(labels >= 0, ce, 0.0), rtol=1e-5, atol=1e-6)


def test_unlabeled_rows_get_only_the_soft_term() -> None:
    rng = np.random.default_rng(2)
    teacher = rng.normal(0, 2, (4, 2)).astype(np.float32)
    student = rng.normal(0, 2, (4, 2)).astype(np.float32)
    unlabeled = _loss_values(pack_targets(teacher, np.full(4, -1), 2), student, 2, temperature=2.0, alpha=0.5)
    soft_only = _loss_values(pack_targets(teacher, np.array([0, 1, 0, 1]), 2), student, 2, temperature=2.0, alpha=0.0)
    np.testing.assert_allclose(unlabeled, 0.5 * soft_only, rtol=1e-5)


def test_soft_term_is_zero_when_student_matches_teacher() -> None:
    logits = np.array([[2.0, -1.0], [0.5, 0.25]], dtype=np.float32)
    got = _loss_values(pack_targets(logits, np.full(2, -1), 2), logits, 2, temperature=3.0, alpha=0.0)
    np.testing.assert_allclose(got, 0.0, atol=1e-5)


# --- DistillConfig ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "distillation temperature must be > 0, got 0.0"),
        ({"temperature": -1.0}, "distillation temperature must be > 0, got -1.0"),
        ({"temperature": float("nan")}, "distillation temperature must be > 0, got nan"),
        ({"alpha": -0.1}, r"distillation alpha must be in \[0, 1\], got -0.1"),
        ({"alpha": 1.5}, r"distillation alpha must be in \[0, 1\], got 1.5"),
        ({"epochs": 0}, "epochs and batch size must be >= 1, got 0 and 32"),
        ({"batch_size": 0}, "epochs and batch size must be >= 1, got 20 and 0"),
        ({"validation_fraction": 0.0}, r"validation fraction must be in \(0, 0.5\), got 0.0"),
        ({"validation_fraction": 0.5}, r"validation fraction must be in \(0, 0.5\), got 0.5"),
        ({"lr_decay": 0.0}, r"distillation lr_decay must be in \(0, 1\] \(1 keeps the rate constant\), got 0.0"),
        ({"lr_decay": 1.5}, r"distillation lr_decay must be in \(0, 1\] \(1 keeps the rate constant\), got 1.5"),
    ],
)
def test_distill_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        DistillConfig(**kwargs)


def test_distill_config_accepts_edges() -> None:
    DistillConfig(alpha=0.0)
    DistillConfig(alpha=1.0, temperature=0.1, epochs=1, batch_size=1, validation_fraction=0.49)


# --- training -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("distill"), n=80)


@pytest.fixture(scope="module")
def validation(task: ToyTask) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    texts, labels = toy_corpus(20, seed=11)
    return encode(task.tokenizer_json, texts), labels


def test_distill_learns_a_separable_task(task: ToyTask, validation: tuple[Any, np.ndarray]) -> None:
    labels = task.labels.copy()
    labels[::4] = -1  # a transfer set: some texts carry only the teacher's soft targets
    targets = pack_targets(_teacher_logits(task.labels), labels, NUM_LABELS)
    val_encoded, val_labels = validation
    val_targets = pack_targets(_teacher_logits(val_labels), val_labels, NUM_LABELS)
    model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    config = DistillConfig(epochs=25, batch_size=16, learning_rate=1e-2, patience=3)

    result = distill(model, task.encoded, targets, (val_encoded, val_targets), NUM_LABELS, config)

    train_accuracy = np.mean(keras_logits(model, task.encoded).argmax(-1) == task.labels)
    assert train_accuracy >= 0.95
    assert result.best_val_accuracy >= 0.9
    assert 1 <= result.epochs_run <= config.epochs
    assert {"loss", "label_accuracy", "val_loss", "val_label_accuracy"} <= set(result.history)
    assert all(len(values) == result.epochs_run for values in result.history.values())
    assert result.best_val_accuracy == max(result.history["val_label_accuracy"])


def _flipped_validation(
    task: ToyTask, validation: tuple[Any, np.ndarray]
) -> tuple[np.ndarray, tuple[Any, np.ndarray], np.ndarray, Any]:
    """Training targets, validation with the opposite labels, those labels, and a fresh student.

    Validation accuracy then falls as training succeeds: an early epoch is the best one and later ones are worse.
    """
    targets = pack_targets(_teacher_logits(task.labels), task.labels, NUM_LABELS)
    val_encoded, val_labels = validation
    flipped = 1 - val_labels
    val_targets = pack_targets(_teacher_logits(flipped), flipped, NUM_LABELS)
    model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    return targets, (val_encoded, val_targets), flipped, model


def test_early_stopping_restores_the_best_weights(task: ToyTask, validation: tuple[Any, np.ndarray]) -> None:
    # Validation labels are the opposite of the training labels, so validation accuracy falls as training
    # succeeds: the best epoch is an early one and the last weights are the worst.
    targets, (val_encoded, val_targets), flipped, model = _flipped_validation(task, validation)
    config = DistillConfig(epochs=15, batch_size=16, learning_rate=1e-2, patience=2)

    result = distill(model, task.encoded, targets, (val_encoded, val_targets), NUM_LABELS, config)

    history = result.history["val_label_accuracy"]
    assert result.epochs_run < config.epochs  # it did stop early
    assert history[-1] < max(history)  # guards the test: the last epoch is not the best one
    returned_accuracy = np.mean(keras_logits(model, val_encoded).argmax(-1) == flipped)
    assert returned_accuracy == pytest.approx(result.best_val_accuracy, abs=1e-6)


def test_lr_decay_cuts_the_rate_after_an_epoch_without_a_better_score(
    task: ToyTask, validation: tuple[Any, np.ndarray]
) -> None:
    # Flipped validation labels (as above): accuracy falls as training succeeds, so later epochs are no better.
    targets, (val_encoded, val_targets), flipped, model = _flipped_validation(task, validation)
    config = DistillConfig(epochs=6, batch_size=16, learning_rate=1e-2, patience=6, lr_decay=0.5)

    result = distill(model, task.encoded, targets, (val_encoded, val_targets), NUM_LABELS, config)

    rates = result.history["lr"]  # the rate each epoch trained at
    accuracy = result.history["val_label_accuracy"]
    assert rates[:2] == pytest.approx([1e-2, 1e-2])  # the first epoch is always a new best
    for epoch in range(2, len(rates)):
        better = accuracy[epoch - 1] > max(accuracy[: epoch - 1])
        assert rates[epoch] == pytest.approx(rates[epoch - 1] * (1.0 if better else 0.5)), (epoch, accuracy)
    assert rates[-1] < rates[0]  # guards the test: at least one epoch was no better


# --- intermediate-layer distillation -----------------------------------------------------------------------------

HIDDEN = 12


def _bag_of_words_features(encoded: tuple[np.ndarray, np.ndarray], seed: int = 5) -> np.ndarray:
    """Stand-in teacher features: a fixed random vector per token id, averaged over the real tokens."""
    ids, mask = encoded
    table = np.random.default_rng(seed).normal(0, 1, (int(ids.max()) + 1, HIDDEN))
    return ((table[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)).astype(np.float32)


def _layer_names(model: Any) -> list[str]:
    return [layer.name for layer in model.layers]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"intermediate_weight": -0.5},
            r"intermediate_weight must be a finite number >= 0 \(0 turns it off\), got -0.5",
        ),
        ({"intermediate_weight": float("inf")}, "intermediate_weight must be a finite number >= 0"),
        ({"intermediate_weight": float("nan")}, "intermediate_weight must be a finite number >= 0"),
        ({"intermediate_loss": "l1"}, r"intermediate_loss must be one of \['mse', 'cosine'\], got 'l1'"),
    ],
)
def test_intermediate_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        DistillConfig(**kwargs)


def test_intermediate_loss_accepts_strings() -> None:
    assert DistillConfig(intermediate_loss="cosine").intermediate_loss is FeatureLoss.COSINE
    assert DistillConfig().intermediate_weight == 0.0


def test_feature_losses_equal_numpy_reference() -> None:
    tf, _ = import_tf()
    rng = np.random.default_rng(3)
    teacher = rng.normal(0, 2, (5, 7)).astype(np.float32)
    projected = rng.normal(0, 2, (5, 7)).astype(np.float32)
    mse = feature_loss("mse")(tf.constant(teacher), tf.constant(projected)).numpy()
    np.testing.assert_allclose(mse, ((teacher - projected) ** 2).mean(-1), rtol=1e-5)
    cosine = feature_loss(FeatureLoss.COSINE)(tf.constant(teacher), tf.constant(projected)).numpy()
    unit = np.linalg.norm(teacher, axis=-1) * np.linalg.norm(projected, axis=-1)
    np.testing.assert_allclose(cosine, 1 - (teacher * projected).sum(-1) / unit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feature_loss("cosine")(tf.constant(teacher), tf.constant(3 * teacher)), 0, atol=1e-6)


def test_intermediate_distillation_keeps_the_student_contract(
    task: ToyTask, validation: tuple[Any, np.ndarray]
) -> None:
    targets = pack_targets(_teacher_logits(task.labels), task.labels, NUM_LABELS)
    val_encoded, val_labels = validation
    val_targets = pack_targets(_teacher_logits(val_labels), val_labels, NUM_LABELS)
    features, val_features = _bag_of_words_features(task.encoded), _bag_of_words_features(val_encoded)
    fresh = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    config = DistillConfig(epochs=15, batch_size=16, learning_rate=1e-2, patience=15, intermediate_weight=1.0)

    result = distill(
        model,
        task.encoded,
        targets,
        (val_encoded, val_targets),
        NUM_LABELS,
        config,
        teacher_features=features,
        validation_features=val_features,
    )

    # The student is exactly the deployable model: same inputs, one logits output, no projection weights.
    assert model.input_names == ["input_ids", "attention_mask"]
    assert model.output_names == ["logits"]
    assert _layer_names(model) == _layer_names(fresh)
    assert PROJECTION_LAYER not in _layer_names(model)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in fresh.get_weights()]
    assert PROJECTION_LAYER not in model.to_json()
    # Both terms were trained: the feature loss falls well below its standardized start (~1).
    history = result.history
    assert {"loss", "logit_loss", "feature_loss", "label_accuracy", "val_feature_loss", "val_label_accuracy"} <= set(
        history
    )
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["feature_loss"][-1] < 0.7 * history["feature_loss"][0]
    assert result.best_val_accuracy >= 0.9
    assert np.mean(keras_logits(model, task.encoded).argmax(-1) == task.labels) >= 0.95
    # The student stays compiled with the logits loss, as after logits-only distillation.
    assert np.isfinite(model.evaluate(list(val_encoded), val_targets, verbose=0)[0])


def test_intermediate_loss_changes_what_the_student_learns(task: ToyTask, validation: tuple[Any, np.ndarray]) -> None:
    targets = pack_targets(_teacher_logits(task.labels), task.labels, NUM_LABELS)
    val_encoded, val_labels = validation
    val_targets = pack_targets(_teacher_logits(val_labels), val_labels, NUM_LABELS)
    config = DistillConfig(epochs=2, batch_size=16, learning_rate=1e-2, patience=5)
    weights = []
    for extra in ({}, {"teacher_features": _bag_of_words_features(task.encoded)}):
        model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
        run_config = replace(config, intermediate_weight=2.0, intermediate_loss="cosine") if extra else config
        if extra:
            extra["validation_features"] = _bag_of_words_features(val_encoded)
        distill(model, task.encoded, targets, (val_encoded, val_targets), NUM_LABELS, run_config, **extra)
        weights.append(model.get_layer("conv").get_weights()[0])
    assert not np.allclose(weights[0], weights[1])


def test_intermediate_early_stopping_restores_the_best_student(
    task: ToyTask, validation: tuple[Any, np.ndarray]
) -> None:
    # As in the logits-only test: flipped validation labels make an early epoch the best one.
    targets, (val_encoded, val_targets), flipped, model = _flipped_validation(task, validation)
    config = DistillConfig(epochs=15, batch_size=16, learning_rate=1e-2, patience=2, intermediate_weight=0.5)

    result = distill(
        model,
        task.encoded,
        targets,
        (val_encoded, val_targets),
        NUM_LABELS,
        config,
        teacher_features=_bag_of_words_features(task.encoded),
        validation_features=_bag_of_words_features(val_encoded),
    )

    history = result.history["val_label_accuracy"]
    assert result.epochs_run < config.epochs
    assert history[-1] < max(history)
    returned_accuracy = np.mean(keras_logits(model, val_encoded).argmax(-1) == flipped)
    assert returned_accuracy == pytest.approx(result.best_val_accuracy, abs=1e-6)


def test_intermediate_feature_errors(task: ToyTask, validation: tuple[Any, np.ndarray]) -> None:
    targets = pack_targets(_teacher_logits(task.labels), task.labels, NUM_LABELS)
    val_encoded, val_labels = validation
    val_targets = pack_targets(_teacher_logits(val_labels), val_labels, NUM_LABELS)
    model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    features, val_features = _bag_of_words_features(task.encoded), _bag_of_words_features(val_encoded)
    on, off = DistillConfig(epochs=1, intermediate_weight=1.0), DistillConfig(epochs=1)

    def run(config: DistillConfig, train_f: Any, val_f: Any) -> None:
        distill(model, task.encoded, targets, (val_encoded, val_targets), NUM_LABELS, config, 0, train_f, val_f)

    cases = [
        (on, None, None, r"^intermediate_weight=1.0 needs teacher_features and validation_features"),
        (on, features, None, r"^intermediate_weight=1.0 needs teacher_features and validation_features"),
        (off, features, val_features, r"^teacher_features and validation_features were given but intermediate_w"),
        (off, None, val_features, r"^validation_features were given but intermediate_weight is 0"),
        (on, features[:-1], val_features, rf"^teacher_features has shape \({len(targets) - 1}, 12\); expected"),
        (on, features, val_features[:, 0], r"^validation_features has shape \(20,\); expected \(20, hidden_size\)"),
        (on, features, val_features[:, :5], r"^teacher_features have 12 dimensions but validation_features 5"),
        (on, features * np.nan, val_features, r"^teacher_features holds NaN or infinite values"),
    ]
    for config, train_f, val_f, message in cases:
        with pytest.raises(StageError, match=message):
            run(config, train_f, val_f)


# --- length-bucketed batches --------------------------------------------------------------------------------


def _ragged(n: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, width + 1, size=n)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32)
    ids = (rng.integers(1, 30, size=(n, width)) * mask).astype(np.int32)
    return ids, mask


def test_bucketed_batches_cover_every_row_once_per_epoch_at_a_sufficient_width() -> None:
    ids, mask = _ragged(300, 128, seed=0)
    targets = np.arange(300, dtype=np.float32)[:, None]
    batches = length_bucketed_batches((ids, mask), targets, batch_size=16, seed=3)
    assert len(batches) == 19  # ceil(300 / 16): the pools hold whole batches
    for _ in range(2):
        seen = []
        for index in range(len(batches)):
            (b_ids, b_mask), b_targets = batches[index]
            rows = b_targets[:, 0].astype(int)
            seen += rows.tolist()
            assert b_ids.shape[1] in (16, 32, 64, 128) and b_mask.sum(1).max() <= b_ids.shape[1]
            np.testing.assert_array_equal(b_ids, ids[rows, : b_ids.shape[1]])
            assert mask[rows, b_ids.shape[1] :].sum() == 0
        assert sorted(seen) == list(range(300))
        first = batches[0][1]
        batches.on_epoch_end()
    assert not np.array_equal(first, batches[0][1])  # a new order each epoch
    widths = {batches[i][0][0].shape[1] for i in range(len(batches))}
    assert 16 in widths  # short rows really travel in short batches


def test_bucketed_batches_carry_dict_targets_and_keep_a_fixed_validation_order() -> None:
    ids, mask = _ragged(40, 32, seed=1)
    targets = {"a": np.arange(40), "b": np.arange(40) * 2}
    batches = length_bucketed_batches((ids, mask), targets, batch_size=8, seed=0, shuffle=False)
    (_, _), first = batches[0]
    assert np.array_equal(first["b"], first["a"] * 2)
    batches.on_epoch_end()
    assert np.array_equal(batches[0][1]["a"], first["a"])


@pytest.mark.parametrize("architecture", STUDENT_ARCHITECTURES)
def test_student_logits_do_not_depend_on_the_batch_width(architecture: str) -> None:
    """Why bucketing is exact: the student gives the same logits at any width that holds the text."""
    ids, mask = _ragged(12, MAX_SEQ_LEN, seed=2)
    mask[:, 10:] = 0
    ids = ids * mask
    tf, _ = import_tf()
    model = build_student(tiny_spec(architecture=architecture), 40, NUM_LABELS, MAX_SEQ_LEN, seed=0)
    # As in fit(), whose batches from a Sequence have no static width.
    spec = tf.TensorSpec((None, None), tf.int32)
    run = tf.function(lambda a, b: model([a, b], training=False), input_signature=[spec, spec])
    full = keras_logits(model, (ids, mask))
    np.testing.assert_allclose(run(ids, mask).numpy(), full, atol=1e-6)
    np.testing.assert_allclose(run(ids[:, :10], mask[:, :10]).numpy(), full, atol=1e-5)


def _target_vectors(labels: np.ndarray, dim: int = 6) -> np.ndarray:
    """Teacher vectors for the toy corpus: each class near its own direction, normalized."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, dim))
    vectors = centers[labels] + rng.normal(scale=0.3, size=(len(labels), dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_an_embedder_learns_the_teachers_vectors(tmp_path: Any) -> None:
    from edgeopt.distill import distill_embeddings

    task = make_toy_task(tmp_path, n=96)
    targets = _target_vectors(task.labels)
    model = build_student(tiny_spec(), task.vocab_size, targets.shape[1], MAX_SEQ_LEN, seed=0, head="embedding")
    assert model.output_names == ["sentence_embedding"]
    before = model.predict(list(task.encoded), verbose=0)
    before = before / np.linalg.norm(before, axis=1, keepdims=True)
    fit, val = slice(0, 80), slice(80, 96)
    ids, mask = task.encoded
    result = distill_embeddings(
        model,
        (ids[fit], mask[fit]),
        targets[fit],
        ((ids[val], mask[val]), targets[val]),
        DistillConfig(epochs=30, patience=30, learning_rate=5e-3),
    )
    after = model.predict([ids[val], mask[val]], verbose=0)
    after = after / np.linalg.norm(after, axis=1, keepdims=True)
    cosine = float(np.mean(np.sum(after * targets[val], axis=1)))
    assert cosine > float(np.mean(np.sum(before[val] * targets[val], axis=1))) + 0.3
    assert result.best_val_cosine == pytest.approx(max(result.history["val_cosine"]))
    assert cosine == pytest.approx(result.best_val_cosine, abs=1e-3)  # the best epoch's weights were kept


def test_embedding_distillation_checks_its_targets(tmp_path: Any) -> None:
    from edgeopt.distill import distill_embeddings

    task = make_toy_task(tmp_path, n=20)
    model = build_student(tiny_spec(), task.vocab_size, 6, MAX_SEQ_LEN, head="embedding")
    ids, mask = task.encoded
    good = _target_vectors(task.labels)
    with pytest.raises(StageError, match=r"targets have shape \(20, 5\); expected \(20, 6\)"):
        distill_embeddings(model, (ids, mask), good[:, :5], ((ids, mask), good), DistillConfig(epochs=1))
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(StageError, match="validation targets hold NaN"):
        distill_embeddings(model, (ids, mask), good, ((ids, mask), bad), DistillConfig(epochs=1))
    with pytest.raises(ConfigError, match="similarity_weight must be a finite number >= 0"):
        distill_embeddings(model, (ids, mask), good, ((ids, mask), good), DistillConfig(epochs=1), similarity_weight=-1)
