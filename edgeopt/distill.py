"""Knowledge distillation: train the student on the teacher's soft targets (Hinton et al., 2015).

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.
Texts without a label (the optional transfer set) contribute only the soft-target term. The ``T^2`` factor keeps the
soft term's gradient on the same scale as the hard term whatever the temperature.

Targets are packed into one array (``[soft logits | one-hot label | has-label]``) so that plain ``model.fit`` drives
training: Keras callbacks (early stopping, tfmot's pruning step) then work unchanged on the student itself.

Optionally the student also learns the teacher's hidden representation (intermediate-layer distillation, as in
FitNets and TinyBERT): a learned linear projection maps the student's pooled features (its ``pool`` layer) to the
teacher's hidden size, and ``intermediate_weight * MSE`` (or cosine distance) to the teacher's mean-pooled last hidden
state is added to the loss. The projection lives only in a training wrapper that shares the student's layers; the
student itself, the model that is exported, keeps its inputs, its ``logits`` output and its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.defaults import DEFAULTS
from edgeopt.errors import ConfigError, StageError

__all__ = [
    "DistillConfig",
    "DistillResult",
    "RecoveryData",
    "FeatureLoss",
    "PROJECTION_LAYER",
    "feature_loss",
    "pack_targets",
    "distillation_loss",
    "distill",
    "compile_for_distillation",
    "length_bucketed_batches",
    "EmbedDistillResult",
    "embedding_loss",
    "compile_for_embedding",
    "distill_embeddings",
]


PROJECTION_LAYER = "feature_projection"
"""Name of the training-only layer that maps the student's pooled features to the teacher's hidden size."""

_POOL_LAYER = "pool"
_WATCHED_SCORE = "val_watched_score"
_LOSS_TIE_BREAK = 1e-6


class FeatureLoss(StrEnum):
    """How the projected student features are compared with the teacher's features."""

    MSE = "mse"
    COSINE = "cosine"


@dataclass(frozen=True)
class DistillConfig:
    """Settings of the distillation stage.

    Attributes:
        temperature: Softmax temperature of the soft targets (> 0); higher spreads the teacher's dark knowledge.
        alpha: Weight of the hard-label loss in [0, 1]; ``1 - alpha`` weighs the soft-target loss.
        epochs: Upper bound on epochs; early stopping usually ends sooner.
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        patience: Epochs without a better validation accuracy before stopping.
        validation_fraction: Share of the labeled training texts held out for early stopping.
        seed: Random seed.
        intermediate_weight: Weight (>= 0) of the intermediate-layer loss between the projected student features
            and the teacher's standardized hidden features; 0 turns intermediate distillation off. Features are
            standardized per dimension, so at 1.0 an untrained projection's MSE is about as large as the
            logit loss.
        intermediate_loss: ``mse`` or ``cosine`` (1 - cosine similarity) for the intermediate-layer loss.
        lr_decay: Factor in (0, 1] on the learning rate after each epoch whose validation accuracy is no higher
            than the best so far (Keras' ``ReduceLROnPlateau``, patience 1; the history then has ``lr``, the rate
            each epoch trained at); 1 keeps it constant.
    """

    temperature: float = DEFAULTS["temperature"]
    alpha: float = DEFAULTS["alpha"]
    epochs: int = DEFAULTS["distill_epochs"]
    batch_size: int = DEFAULTS["distill_batch_size"]
    learning_rate: float = DEFAULTS["distill_learning_rate"]
    patience: int = DEFAULTS["distill_patience"]
    validation_fraction: float = DEFAULTS["validation_fraction"]
    seed: int = 0
    intermediate_weight: float = DEFAULTS["intermediate_weight"]
    intermediate_loss: FeatureLoss = FeatureLoss.MSE
    lr_decay: float = DEFAULTS["distill_lr_decay"]

    def __post_init__(self) -> None:
        if not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(
                f"distillation lr_decay must be in (0, 1] (1 keeps the rate constant), got {self.lr_decay}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"distillation temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ConfigError(f"validation fraction must be in (0, 0.5), got {self.validation_fraction}")
        if not (math.isfinite(self.intermediate_weight) and self.intermediate_weight >= 0):
            raise ConfigError(
                f"intermediate_weight must be a finite number >= 0 (0 turns it off), got {self.intermediate_weight}"
            )
        if self.intermediate_loss not in tuple(FeatureLoss):
            raise ConfigError(
                f"intermediate_loss must be one of {[m.value for m in FeatureLoss]}, got {self.intermediate_loss!r}"
            )
        # Accept plain strings (from TOML or the CLI) and store the enum.
        object.__setattr__(self, "intermediate_loss", FeatureLoss(self.intermediate_loss))


@dataclass(frozen=True)
class RecoveryData:
    """What a fine-tune after a lossy pass trains on: the rows, targets and loss the student was distilled with.

    Magnitude pruning, unit removal and quantization-aware training each recover the student this way, so they take
    this one value (rather than its four parts each, which let a caller pass rows of one set and targets of another).

    Attributes:
        inputs: ``(input_ids, attention_mask)`` of the training rows.
        targets: Their packed targets (:func:`pack_targets`), or what another loss takes (an embedder's vectors).
        num_labels: Number of classes (an embedder: its width).
        distill: Temperature, alpha, batch size and seed of the loss.
    """

    inputs: tuple[np.ndarray, np.ndarray]
    targets: np.ndarray
    num_labels: int
    distill: DistillConfig

    def __post_init__(self) -> None:
        rows = (len(self.inputs[0]), len(self.inputs[1]), len(self.targets))
        if len(set(rows)) != 1:
            raise StageError(
                f"recovery inputs and targets must have the same rows, got {rows[0]}, {rows[1]} and {rows[2]}; "
                "pass the rows the targets were packed for"
            )


@dataclass(frozen=True)
class DistillResult:
    """What distillation produced and how it went.

    Attributes:
        epochs_run: Epochs actually trained.
        best_val_accuracy: Validation accuracy of the weights kept.
        history: Per-epoch metrics from Keras: ``loss``, ``label_accuracy`` and their ``val_`` twins; with
            intermediate distillation also ``logit_loss`` and ``feature_loss`` (unweighted) and their ``val_`` twins.
    """

    epochs_run: int
    best_val_accuracy: float
    history: dict[str, list[float]]


def pack_targets(teacher_logits: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """Pack soft and hard targets into one float32 array; a label of -1 means "unlabeled".

    Returns:
        ``[n, 2 * num_labels + 1]``: teacher logits, one-hot label, and 1.0 where a label exists.
    """
    labels = np.asarray(labels)
    has_label = labels >= 0
    one_hot = np.zeros((len(labels), num_labels), dtype=np.float32)
    one_hot[np.flatnonzero(has_label), labels[has_label]] = 1.0
    return np.concatenate([teacher_logits.astype(np.float32), one_hot, has_label.astype(np.float32)[:, None]], axis=1)


def distillation_loss(num_labels: int, temperature: float, alpha: float) -> Any:
    """Return a Keras loss over packed targets (see :func:`pack_targets`)."""
    tf, _ = import_tf()

    def loss(packed: Any, student_logits: Any) -> Any:
        teacher_logits = packed[:, :num_labels]
        one_hot = packed[:, num_labels : 2 * num_labels]
        has_label = packed[:, 2 * num_labels]
        soft_teacher = tf.nn.softmax(teacher_logits / temperature)
        log_soft_student = tf.nn.log_softmax(student_logits / temperature)
        kl = tf.reduce_sum(soft_teacher * (tf.math.log(soft_teacher + 1e-9) - log_soft_student), axis=-1)
        hard = tf.nn.softmax_cross_entropy_with_logits(labels=one_hot, logits=student_logits) * has_label
        return alpha * hard + (1.0 - alpha) * temperature**2 * kl

    return loss


_POOL_BATCHES = 50
_MIN_WIDTH = 16


def length_bucketed_batches(
    inputs: tuple[np.ndarray, np.ndarray], targets: Any, batch_size: int, seed: int, shuffle: bool = True
) -> Any:
    """Batches of similar-length rows, each cut to a width just above its longest row: a Keras ``Sequence``.

    Transfer sets mix 2 kB documents with subject lines and crops; padded to ``max_seq_len`` a 10-token crop costs
    as much as a document. The student's convolution and masked max-pool give the same logits at any width at
    least the text's length (padding is zeroed, and zero is what the convolution pads with), so a batch needs only
    its longest row's width. Widths are powers of two from 16 up to the input's width, so Keras traces a handful
    of shapes. Rows are drawn in random pools of 50 batches sorted by width (as Hugging Face's group_by_length
    sorts by length), reshuffled each epoch from ``seed``.

    Args:
        inputs: ``(input_ids, attention_mask)``, ``[n, max_seq_len]``.
        targets: ``[n, ...]`` array, or a dict of them (one per model output).
        batch_size: Rows per batch.
        seed: Seed of the order.
        shuffle: Reshuffle each epoch; False gives a fixed order (for validation).
    """
    _, keras = import_tf()
    ids, mask = inputs
    lengths = np.asarray(mask).sum(axis=1)
    full = int(ids.shape[1])
    widths = sorted({w for w in (2**k for k in range(4, 16)) if w < full} | {full})

    def width_for(longest: int) -> int:
        return next(w for w in widths if w >= max(longest, min(_MIN_WIDTH, full)))

    row_widths = np.array([width_for(int(n)) for n in lengths])

    # Keras classes are Any to mypy (TensorFlow ships no types), hence misc (subclassing Any).
    class _Batches(keras.utils.Sequence):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self._epoch = 0
            self._batches = self._order()

        def _order(self) -> list[np.ndarray]:
            if not shuffle:
                order = np.argsort(lengths, kind="stable")
                return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            rng = np.random.default_rng([seed, self._epoch])
            order = rng.permutation(len(lengths))
            pool = batch_size * _POOL_BATCHES
            batches = []
            for start in range(0, len(order), pool):
                chunk = order[start : start + pool]
                # By width, not exact length: rows of one width cost the same, and stay randomly mixed.
                chunk = chunk[np.argsort(row_widths[chunk], kind="stable")]
                batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            return [batches[i] for i in rng.permutation(len(batches))]

        def __len__(self) -> int:
            return len(self._batches)

        def __getitem__(self, index: int) -> tuple[list[np.ndarray], Any]:
            rows = np.sort(self._batches[index])
            width = int(row_widths[rows].max())
            batch_targets = {k: v[rows] for k, v in targets.items()} if isinstance(targets, dict) else targets[rows]
            return [ids[rows, :width], mask[rows, :width]], batch_targets

        def on_epoch_end(self) -> None:
            self._epoch += 1
            self._batches = self._order()

    return _Batches()


def _label_accuracy(num_labels: int) -> Any:
    tf, _ = import_tf()

    def label_accuracy(packed: Any, student_logits: Any) -> Any:
        # Unlabeled rows carry no ground truth: score them against the teacher's label instead.
        one_hot = packed[:, num_labels : 2 * num_labels]
        has_label = packed[:, 2 * num_labels] > 0
        truth = tf.where(has_label, tf.argmax(one_hot, -1), tf.argmax(packed[:, :num_labels], -1))
        return tf.cast(tf.equal(truth, tf.argmax(student_logits, -1)), tf.float32)

    return label_accuracy


def compile_for_distillation(model: Any, num_labels: int, config: DistillConfig, learning_rate: float) -> None:
    """Compile ``model`` with the distillation loss and a label-accuracy metric."""
    _, keras = import_tf()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=distillation_loss(num_labels, config.temperature, config.alpha),
        metrics=[_label_accuracy(num_labels)],
    )


def feature_loss(kind: FeatureLoss | str) -> Any:
    """Return a Keras loss between projected student features and teacher features, per row.

    Args:
        kind: ``mse`` (mean over dimensions of the squared difference) or ``cosine`` (1 - cosine similarity).
    """
    tf, _ = import_tf()
    kind = FeatureLoss(kind)

    def mse(teacher: Any, projected: Any) -> Any:
        return tf.reduce_mean(tf.square(projected - teacher), axis=-1)

    def cosine(teacher: Any, projected: Any) -> Any:
        return 1.0 - tf.reduce_sum(tf.math.l2_normalize(teacher, -1) * tf.math.l2_normalize(projected, -1), axis=-1)

    return mse if kind is FeatureLoss.MSE else cosine


def distill(
    model: Any,
    inputs: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    validation: tuple[tuple[np.ndarray, np.ndarray], np.ndarray],
    num_labels: int,
    config: DistillConfig,
    verbose: int = 0,
    teacher_features: np.ndarray | None = None,
    validation_features: np.ndarray | None = None,
) -> DistillResult:
    """Train ``model`` in place on packed targets; keep the weights with the best validation accuracy.

    With ``config.intermediate_weight > 0`` the student trains inside a wrapper that adds a projection of its
    ``pool`` layer to the teacher's hidden size; the wrapper and its projection are discarded afterwards, so
    ``model`` keeps its inputs, its single ``logits`` output and its layers.

    Args:
        model: A student from :func:`edgeopt.student.build_student`.
        inputs: ``(input_ids, attention_mask)`` of the transfer set.
        targets: Packed targets of the transfer set.
        validation: ``((input_ids, attention_mask), packed targets)`` of the held-out labeled texts.
        num_labels: Number of classes.
        config: Distillation settings.
        verbose: Keras verbosity.
        teacher_features: ``[len(targets), hidden]`` teacher features of the transfer set
            (:meth:`edgeopt.teacher.Teacher.features`); required iff ``config.intermediate_weight > 0``.
        validation_features: ``[len(validation targets), hidden]`` teacher features of the validation texts;
            required iff ``config.intermediate_weight > 0``.

    Returns:
        How training went.

    Raises:
        StageError: Features are missing, given without an intermediate weight, or of the wrong shape.
    """
    _, keras = import_tf()
    features = _checked_features(config, len(targets), len(validation[1]), teacher_features, validation_features)
    keras.utils.set_random_seed(config.seed)
    # With features the trainer, whose weights include every student weight, is watched: restoring its best
    # weights restores the best student.
    accuracy_key = "val_label_accuracy" if features is None else "val_logits_label_accuracy"

    class _WatchedScore(keras.callbacks.Callback):  # type: ignore[name-defined,misc]
        """Validation accuracy, ties broken by the lower validation loss.

        Keras' stopper keeps the first epoch of a tie, so on a small validation set every later epoch that
        matches the first perfect score was thrown away, however much closer to the teacher it got. The loss
        term (1e-6 of it) is far below one validation text's share of the accuracy, so it only ever breaks ties.
        """

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if logs is not None and accuracy_key in logs:
                logs[_WATCHED_SCORE] = float(logs[accuracy_key]) - _LOSS_TIE_BREAK * float(logs["val_loss"])

    stopper = keras.callbacks.EarlyStopping(
        monitor=_WATCHED_SCORE,
        mode="max",
        patience=config.patience,
        restore_best_weights=True,
    )
    callbacks = [_WatchedScore(), stopper]
    if config.lr_decay < 1.0:
        callbacks.insert(
            1,
            keras.callbacks.ReduceLROnPlateau(
                monitor=_WATCHED_SCORE, mode="max", factor=config.lr_decay, patience=1, min_lr=1e-5
            ),
        )
    # The batches' own order is reshuffled each epoch; Keras must not shuffle a Sequence again.
    fit_args: dict[str, Any] = {"epochs": config.epochs, "shuffle": False, "verbose": verbose}
    if features is None:
        compile_for_distillation(model, num_labels, config, config.learning_rate)
        history = model.fit(
            length_bucketed_batches(inputs, targets, config.batch_size, config.seed),
            validation_data=length_bucketed_batches(validation[0], validation[1], 256, 0, shuffle=False),
            callbacks=callbacks,
            **fit_args,
        ).history
    else:
        train_features, val_features = _standardize(*features)
        trainer = _feature_trainer(model, train_features.shape[1])
        trainer.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss={
                "logits": distillation_loss(num_labels, config.temperature, config.alpha),
                PROJECTION_LAYER: feature_loss(config.intermediate_loss),
            },
            loss_weights={"logits": 1.0, PROJECTION_LAYER: config.intermediate_weight},
            metrics={"logits": [_label_accuracy(num_labels)]},
        )
        history = trainer.fit(
            length_bucketed_batches(
                inputs, {"logits": targets, PROJECTION_LAYER: train_features}, config.batch_size, config.seed
            ),
            validation_data=length_bucketed_batches(
                validation[0], {"logits": validation[1], PROJECTION_LAYER: val_features}, 256, 0, shuffle=False
            ),
            callbacks=callbacks,
            **fit_args,
        ).history
        history = {_rename(key): value for key, value in history.items()}
        # Leave the student compiled as the logits-only path leaves it, so evaluate() and later stages see the same.
        compile_for_distillation(model, num_labels, config, config.learning_rate)
    values = {k: [float(v) for v in vs] for k, vs in history.items()}
    return DistillResult(
        epochs_run=len(values["loss"]), best_val_accuracy=max(values["val_label_accuracy"]), history=values
    )


_TRAINER_METRICS = {
    "logits_loss": "logit_loss",
    f"{PROJECTION_LAYER}_loss": "feature_loss",
    "logits_label_accuracy": "label_accuracy",
}


def _rename(key: str) -> str:
    prefix = "val_" if key.startswith("val_") else ""
    base = key.removeprefix(prefix)
    return prefix + _TRAINER_METRICS.get(base, base)


def _checked_features(
    config: DistillConfig,
    n_train: int,
    n_val: int,
    teacher_features: np.ndarray | None,
    validation_features: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the two feature arrays when intermediate distillation is on, ``None`` when it is off."""
    named = (("teacher_features", teacher_features), ("validation_features", validation_features))
    given = [name for name, value in named if value is not None]
    if config.intermediate_weight == 0:
        if given:
            raise StageError(
                f"{' and '.join(given)} were given but intermediate_weight is 0; set "
                "DistillConfig.intermediate_weight > 0 to distill hidden states, or drop the features"
            )
        return None
    if teacher_features is None or validation_features is None:
        raise StageError(
            f"intermediate_weight={config.intermediate_weight} needs teacher_features and validation_features "
            "(Teacher.features of the transfer and validation texts); pass both or set intermediate_weight to 0"
        )
    for name, value, rows in (
        ("teacher_features", teacher_features, n_train),
        ("validation_features", validation_features, n_val),
    ):
        shape = np.shape(value)
        if len(shape) != 2 or shape[0] != rows or shape[1] < 1:
            raise StageError(f"{name} has shape {shape}; expected ({rows}, hidden_size), one row per target")
        if not np.all(np.isfinite(value)):
            raise StageError(f"{name} holds NaN or infinite values; recompute the teacher features")
    if np.shape(teacher_features)[1] != np.shape(validation_features)[1]:
        raise StageError(
            f"teacher_features have {np.shape(teacher_features)[1]} dimensions but validation_features "
            f"{np.shape(validation_features)[1]}; compute both with the same teacher"
        )
    return np.asarray(teacher_features), np.asarray(validation_features)


def _standardize(train: np.ndarray, validation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both arrays with the training rows' per-dimension statistics.

    Raw encoder features have small, uneven scales (and a large shared offset that makes every cosine near 1);
    standardizing makes the loss weight mean the same thing whatever the teacher.
    """
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    std = np.maximum(train.std(axis=0), 1e-6)
    return (
        ((train - mean) / std).astype(np.float32),
        ((np.asarray(validation, dtype=np.float64) - mean) / std).astype(np.float32),
    )


def _feature_trainer(model: Any, hidden_size: int) -> Any:
    """Wrap the student in a two-output model that shares its layers: ``logits`` and the projected features."""
    _, keras = import_tf()
    try:
        pooled = model.get_layer(_POOL_LAYER).output
    except ValueError as exc:
        raise StageError(
            f"intermediate distillation needs a student layer named {_POOL_LAYER!r} (build_student makes one); "
            f"{model.name} has none, so set intermediate_weight to 0"
        ) from exc
    projected = keras.layers.Dense(hidden_size, name=PROJECTION_LAYER)(pooled)
    return keras.Model(model.inputs, [model.output, projected], name=f"{model.name}_feature_trainer")


@dataclass(frozen=True)
class EmbedDistillResult:
    """How distilling an embedder went.

    Attributes:
        epochs_run: Epochs actually trained.
        best_val_cosine: Mean cosine between the student's and the teacher's embeddings of the held-out texts, for
            the weights kept.
        history: Per-epoch ``loss``, ``cosine`` and their ``val_`` twins.
    """

    epochs_run: int
    best_val_cosine: float
    history: dict[str, list[float]]


def embedding_loss(similarity_weight: float) -> Any:
    """Keras loss of an embedder against the teacher's unit vectors: cosine distance plus batch similarity structure.

    Per row: ``1 - cos(student, teacher)`` plus ``similarity_weight`` times ``1 - r``, where ``r`` is the Pearson
    correlation between the row's cosines to every text of the batch as the student sees them and as the teacher
    does. The first term pulls each vector toward its target; the second keeps who-is-near-whom, which is what a
    search over the vectors uses (the relational term of Park et al. 2019). A correlation, not the squared
    difference of the cosines: many encoders are anisotropic (all-MiniLM's cosines of unrelated texts sit around
    0.1-0.3, a random small BERT's all above 0.95), and a squared difference is then so small that a student
    answering the teachers' mean vector for every text loses almost nothing; a correlation is blind to the
    scale and offset of the cosines, so a collapsed student scores 0 on it. Rejected: MSE on the raw vectors (it
    weighs the vector's length, which every search normalizes away).
    """
    tf, _ = import_tf()

    def loss(teacher: Any, student: Any) -> Any:
        unit = tf.math.l2_normalize(student, axis=-1)
        distance = 1.0 - tf.reduce_sum(unit * teacher, axis=-1)
        if similarity_weight == 0:
            return distance
        ours = tf.matmul(unit, unit, transpose_b=True)
        theirs = tf.matmul(teacher, teacher, transpose_b=True)
        ours -= tf.reduce_mean(ours, axis=-1, keepdims=True)
        theirs -= tf.reduce_mean(theirs, axis=-1, keepdims=True)
        # rsqrt(x + eps), not 1 / sqrt(x): finite gradient where a row has no spread (a batch of one).
        scale = tf.math.rsqrt(tf.reduce_sum(ours * ours, -1) * tf.reduce_sum(theirs * theirs, -1) + 1e-12)
        correlation = tf.reduce_sum(ours * theirs, axis=-1) * scale
        return distance + similarity_weight * (1.0 - correlation)

    return loss


def _cosine_metric() -> Any:
    tf, _ = import_tf()

    def cosine(teacher: Any, student: Any) -> Any:
        return tf.reduce_sum(tf.math.l2_normalize(student, axis=-1) * teacher, axis=-1)

    return cosine


def compile_for_embedding(model: Any, learning_rate: float, similarity_weight: float) -> None:
    """Compile an embedder with :func:`embedding_loss` and a mean-cosine metric (``cosine``)."""
    _, keras = import_tf()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=embedding_loss(similarity_weight),
        metrics=[_cosine_metric()],
    )


def distill_embeddings(
    model: Any,
    inputs: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    validation: tuple[tuple[np.ndarray, np.ndarray], np.ndarray],
    config: DistillConfig,
    similarity_weight: float = 1.0,
    verbose: int = 0,
) -> EmbedDistillResult:
    """Train an embedder (``build_student(..., head="embedding")``) in place on the teacher's unit vectors.

    Batches are length-bucketed as for a classifier; early stopping keeps the weights with the best mean cosine on
    the held-out texts. Of ``config`` only the optimisation settings are read (epochs, batch size, learning rate,
    patience, seed): temperature and alpha are about class scores.

    Args:
        model: The student embedder; its output is as wide as the teacher's vectors.
        inputs: ``(input_ids, attention_mask)`` of the transfer texts.
        targets: ``[n, dim]`` unit vectors of the teacher (:meth:`edgeopt.teacher.Teacher.embeddings`).
        validation: ``((input_ids, attention_mask), targets)`` of held-out texts.
        config: Optimisation settings.
        similarity_weight: Weight (>= 0) of the batch similarity-structure term (:func:`embedding_loss`).
        verbose: Keras verbosity.

    Raises:
        StageError: Targets do not match the inputs or the model's output width, or hold non-finite values.
    """
    _, keras = import_tf()
    if not (math.isfinite(similarity_weight) and similarity_weight >= 0):
        raise ConfigError(f"similarity_weight must be a finite number >= 0, got {similarity_weight}")
    width = int(model.output_shape[-1])
    for name, given, rows in (
        ("targets", targets, len(inputs[0])),
        ("validation targets", validation[1], len(validation[0][0])),
    ):
        shape = np.shape(given)
        if len(shape) != 2 or shape[0] != rows or shape[1] != width:
            raise StageError(f"{name} have shape {shape}; expected ({rows}, {width}), one teacher vector per text")
        if not np.all(np.isfinite(given)):
            raise StageError(f"{name} hold NaN or infinite values; recompute the teacher embeddings")
    keras.utils.set_random_seed(config.seed)
    compile_for_embedding(model, config.learning_rate, similarity_weight)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_cosine", mode="max", patience=config.patience, restore_best_weights=True
    )
    history = model.fit(
        length_bucketed_batches(inputs, np.asarray(targets, dtype=np.float32), config.batch_size, config.seed),
        validation_data=length_bucketed_batches(
            validation[0], np.asarray(validation[1], dtype=np.float32), 256, 0, shuffle=False
        ),
        callbacks=[stopper],
        epochs=config.epochs,
        shuffle=False,
        verbose=verbose,
    ).history
    values = {k: [float(v) for v in vs] for k, vs in history.items()}
    return EmbedDistillResult(epochs_run=len(values["loss"]), best_val_cosine=max(values["val_cosine"]), history=values)
