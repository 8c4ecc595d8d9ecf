"""Knowledge distillation: train the student on the teacher's soft targets (Hinton et al., 2015).

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.
Texts without a label (the optional transfer set) contribute only the soft-target term. The ``T^2`` factor keeps the
soft term's gradient on the same scale as the hard term whatever the temperature.

Targets are packed into one array (``[soft logits | one-hot label | has-label]``) so that plain ``model.fit`` drives
training: Keras callbacks (early stopping, tfmot's pruning step) then work unchanged on the student itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.errors import StageError

__all__ = [
    "DistillConfig",
    "DistillResult",
    "pack_targets",
    "distillation_loss",
    "distill",
    "compile_for_distillation",
]


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
    """

    temperature: float = 2.0
    alpha: float = 0.5
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 3
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise StageError(f"distillation temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise StageError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 1 or self.batch_size < 1:
            raise StageError(f"epochs and batch size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise StageError(f"validation fraction must be in (0, 0.5), got {self.validation_fraction}")


@dataclass(frozen=True)
class DistillResult:
    """What distillation produced and how it went.

    Attributes:
        epochs_run: Epochs actually trained.
        best_val_accuracy: Validation accuracy of the weights kept.
        history: Per-epoch metrics from Keras.
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


def distill(
    model: Any,
    inputs: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    validation: tuple[tuple[np.ndarray, np.ndarray], np.ndarray],
    num_labels: int,
    config: DistillConfig,
    verbose: int = 0,
) -> DistillResult:
    """Train ``model`` in place on packed targets; keep the weights with the best validation accuracy.

    Args:
        model: A student from :func:`edgeopt.student.build_student`.
        inputs: ``(input_ids, attention_mask)`` of the transfer set.
        targets: Packed targets of the transfer set.
        validation: ``((input_ids, attention_mask), packed targets)`` of the held-out labeled texts.
        num_labels: Number of classes.
        config: Distillation settings.
        verbose: Keras verbosity.

    Returns:
        How training went.
    """
    _, keras = import_tf()
    keras.utils.set_random_seed(config.seed)
    compile_for_distillation(model, num_labels, config, config.learning_rate)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_label_accuracy", mode="max", patience=config.patience, restore_best_weights=True
    )
    history = model.fit(
        list(inputs),
        targets,
        validation_data=(list(validation[0]), validation[1]),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=[stopper],
        shuffle=True,
        verbose=verbose,
    )
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return DistillResult(
        epochs_run=len(values["loss"]), best_val_accuracy=max(values["val_label_accuracy"]), history=values
    )
