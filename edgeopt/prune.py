"""Magnitude pruning of the student with tfmot, fine-tuned with the distillation loss.

Unstructured sparsity does not shrink a .tflite or .onnx file by itself (zeros take as many bytes as any weight); it
pays off once the artifact is compressed for download (the bundle records gzip sizes) and on runtimes with sparse
kernels. The structured part of pruning that shrinks the file itself is the vocabulary pruning in
:mod:`edgeopt.student`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.distill import DistillConfig, compile_for_distillation
from edgeopt.errors import StageError

__all__ = ["PruneConfig", "PruneResult", "prune", "sparsity_of", "PRUNABLE_LAYERS"]

# The layers that carry almost all weights; the classifier head stays dense because it is tiny and most sensitive.
PRUNABLE_LAYERS = ("embedding", "conv", "dense")


@dataclass(frozen=True)
class PruneConfig:
    """Settings of the pruning stage.

    Attributes:
        target_sparsity: Share of weights set to zero in each pruned layer, in [0, 0.95].
        epochs: Fine-tuning epochs while sparsity ramps up (polynomial schedule) and settles.
        learning_rate: Adam learning rate for fine-tuning (lower than distillation's: the weights are trained).
    """

    target_sparsity: float = 0.5
    epochs: int = 3
    learning_rate: float = 5e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_sparsity <= 0.95:
            raise StageError(f"target sparsity must be in [0, 0.95], got {self.target_sparsity}")
        if self.epochs < 1:
            raise StageError(f"pruning epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True)
class PruneResult:
    """Sparsity reached, per layer and overall, on the stripped weights."""

    sparsity: dict[str, float]
    overall_sparsity: float


def sparsity_of(model: Any, layer_names: tuple[str, ...] = PRUNABLE_LAYERS) -> dict[str, float]:
    """Share of exact zeros in the kernel (first weight) of each named layer."""
    result = {}
    for name in layer_names:
        kernel = model.get_layer(name).get_weights()[0]
        result[name] = float(np.mean(kernel == 0))
    return result


def prune(
    model: Any,
    inputs: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    num_labels: int,
    distill_config: DistillConfig,
    config: PruneConfig,
    verbose: int = 0,
) -> tuple[Any, PruneResult]:
    """Prune ``model`` to ``config.target_sparsity`` and fine-tune it on the distillation targets.

    Args:
        model: A trained student.
        inputs: ``(input_ids, attention_mask)`` of the transfer set.
        targets: Packed distillation targets (see :func:`edgeopt.distill.pack_targets`).
        num_labels: Number of classes.
        distill_config: Temperature, alpha, batch size and seed of the loss.
        config: Pruning settings.
        verbose: Keras verbosity.

    Returns:
        The stripped (plain Keras) pruned model and the sparsity it reached.
    """
    tf, keras = import_tf()
    import tensorflow_model_optimization as tfmot

    keras.utils.set_random_seed(distill_config.seed)
    steps_per_epoch = int(np.ceil(len(targets) / distill_config.batch_size))
    # Sparsity ramps up over all epochs but the last, which fine-tunes at the final sparsity. tfmot updates the masks
    # only every `frequency` steps up to `end_step`, so end_step must be a multiple of it or the target is missed.
    end_step = max(1, steps_per_epoch * max(1, config.epochs - 1))
    frequency = min(10, end_step)
    end_step -= end_step % frequency
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=config.target_sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )

    def wrap(layer: Any) -> Any:
        if layer.name in PRUNABLE_LAYERS:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # The wrappers wrap the trained layers themselves, so the pruned model starts from the trained weights (and
    # shares them: ``model`` is pruned in place too).
    pruned = keras.models.clone_model(model, clone_function=wrap)
    compile_for_distillation(pruned, num_labels, distill_config, config.learning_rate)
    pruned.fit(
        list(inputs),
        targets,
        epochs=config.epochs,
        batch_size=distill_config.batch_size,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        shuffle=True,
        verbose=verbose,
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    sparsity = sparsity_of(stripped)
    sizes = {name: stripped.get_layer(name).get_weights()[0].size for name in PRUNABLE_LAYERS}
    overall = sum(sparsity[n] * sizes[n] for n in sizes) / sum(sizes.values())
    return stripped, PruneResult(sparsity=sparsity, overall_sparsity=float(overall))
