"""Magnitude pruning of the student with tfmot, fine-tuned with the distillation loss.

Three patterns are on offer:

* unstructured magnitude pruning to a target sparsity, reached along a polynomial schedule (sparsity ramps up over
  all epochs but the last) or a constant one (the target from the first step, then fine-tuning at it);
* per-layer targets (``per_layer``), e.g. the ones :func:`edgeopt.sensitivity.choose_sparsities` picks;
* m:n structured sparsity (``m_by_n=(2, 4)``: at least 2 zeros in every 4 consecutive weights along a kernel's input
  dimension), the pattern sparse tensor cores and some mobile kernels accelerate.

Unstructured and m:n sparsity do not shrink a .tflite or .onnx file by themselves (zeros take as many bytes as any
weight); they pay off once the artifact is compressed for download (the bundle records gzip sizes) and on runtimes with
sparse kernels. Pruning that shrinks the file itself is structured: the vocabulary pruning in :mod:`edgeopt.student`
and the removal of whole filters and units in :mod:`edgeopt.structured`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.defaults import DEFAULTS
from edgeopt.distill import RecoveryData, compile_for_distillation, length_bucketed_batches
from edgeopt.errors import ConfigError, StageError

__all__ = [
    "PruneSchedule",
    "PruneConfig",
    "PruneResult",
    "prune",
    "sparsity_of",
    "satisfies_m_by_n",
    "PRUNABLE_LAYERS",
    "M_BY_N_LAYERS",
    "MAX_SPARSITY",
]

# The layers that carry almost all weights; the classifier head stays dense because it is tiny and most sensitive.
PRUNABLE_LAYERS = ("embedding", "conv", "dense")
# tfmot lays out m:n groups for rank-2 (Dense) and rank-4 (Conv2D) kernels only: the Conv1D kernel is rank 3 and makes
# its mask update fail, and an embedding is a row lookup, not a matrix product, so an m:n pattern buys it nothing.
# Those layers get unstructured pruning at their target instead.
M_BY_N_LAYERS = ("dense",)
MAX_SPARSITY = 0.95
# Masks are re-ranked at most every this many steps (tfmot's `frequency`).
_MAX_FREQUENCY = 10


class PruneSchedule(StrEnum):
    """How sparsity reaches its target during fine-tuning."""

    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"


def _check_sparsity(value: Any, what: str) -> float:
    # `not lo <= v <= hi` also rejects NaN.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= MAX_SPARSITY:
        raise ConfigError(f"{what} must be in [0, {MAX_SPARSITY}], got {value}")
    return float(value)


@dataclass(frozen=True)
class PruneConfig:
    """Settings of the pruning stage.

    Attributes:
        target_sparsity: Share of weights set to zero in each pruned layer, in [0, 0.95].
        epochs: Fine-tuning epochs while sparsity ramps up (polynomial schedule) and settles.
        learning_rate: Adam learning rate for fine-tuning (lower than distillation's: the weights are trained).
        schedule: ``"polynomial"`` ramps sparsity from 0 over all epochs but the last; ``"constant"`` applies the
            target from the first step and fine-tunes at it.
        m_by_n: ``(m, n)`` with ``0 < m < n``, e.g. ``(2, 4)``: the layers in :data:`M_BY_N_LAYERS` get at least
            ``m`` zeros in every ``n`` consecutive weights along the input dimension (their target sparsity is then
            ``m / n``). The other pruned layers stay unstructured at their target; set it to 0 to leave them dense.
        per_layer: Target sparsity per layer name (keys from :data:`PRUNABLE_LAYERS`); layers left out use
            ``target_sparsity``. A layer whose target is 0 is not pruned; an m:n pattern overrides the target of its
            layers.
    """

    target_sparsity: float = 0.5
    epochs: int = DEFAULTS["prune_epochs"]
    learning_rate: float = DEFAULTS["prune_learning_rate"]
    schedule: PruneSchedule = PruneSchedule.POLYNOMIAL
    m_by_n: tuple[int, int] | None = None
    per_layer: dict[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _check_sparsity(self.target_sparsity, "target sparsity")
        if self.epochs < 1:
            raise ConfigError(f"pruning epochs must be >= 1, got {self.epochs}")
        try:
            object.__setattr__(self, "schedule", PruneSchedule(self.schedule))
        except ValueError:
            choices = ", ".join(s.value for s in PruneSchedule)
            raise ConfigError(f"pruning schedule must be one of {choices}, got {self.schedule!r}") from None
        if self.m_by_n is not None:
            pair = tuple(self.m_by_n) if isinstance(self.m_by_n, list | tuple) else ()
            if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
                raise ConfigError(f"m_by_n must be two integers (m, n) such as (2, 4), got {self.m_by_n!r}")
            if not 0 < pair[0] < pair[1]:
                raise ConfigError(f"m_by_n needs 0 < m < n (m zeros in every n weights), got {self.m_by_n!r}")
            object.__setattr__(self, "m_by_n", pair)
        if self.per_layer is not None:
            if not isinstance(self.per_layer, dict):
                raise ConfigError(f"per-layer sparsity must map layer names to targets, got {self.per_layer!r}")
            unknown = sorted(set(self.per_layer) - set(PRUNABLE_LAYERS))
            if unknown:
                raise ConfigError(
                    f"per-layer sparsity names unknown layer(s) {', '.join(map(repr, unknown))}; "
                    f"prunable layers are {', '.join(PRUNABLE_LAYERS)}"
                )
            checked = {
                name: _check_sparsity(value, f"target sparsity of layer {name!r}")
                for name, value in self.per_layer.items()
            }
            object.__setattr__(self, "per_layer", checked)

    def layer_targets(self) -> dict[str, float]:
        """Target sparsity of every prunable layer (``m / n`` for the m:n layers)."""
        targets = {name: (self.per_layer or {}).get(name, self.target_sparsity) for name in PRUNABLE_LAYERS}
        if self.m_by_n is not None:
            targets.update({name: self.m_by_n[0] / self.m_by_n[1] for name in M_BY_N_LAYERS})
        return targets

    def layer_patterns(self) -> dict[str, str]:
        """``"m:n"`` (e.g. ``"2:4"``), ``"unstructured"`` or ``"dense"`` (not pruned) per prunable layer."""
        patterns = {}
        for name, target in self.layer_targets().items():
            if self.m_by_n is not None and name in M_BY_N_LAYERS:
                patterns[name] = f"{self.m_by_n[0]}:{self.m_by_n[1]}"
            else:
                patterns[name] = "unstructured" if target > 0 else "dense"
        return patterns


@dataclass(frozen=True)
class PruneResult:
    """What pruning reached, measured on the stripped weights.

    Attributes:
        sparsity: Share of zeros in each prunable layer's kernel.
        overall_sparsity: Share of zeros over all prunable kernels together.
        targets: The target each layer was pruned to (0 for layers left dense).
        patterns: ``"unstructured"``, ``"dense"`` or an m:n pattern such as ``"2:4"``, per layer.
        schedule: The schedule used for the unstructured layers.
        m_by_n_satisfied: Whether every m:n layer holds its pattern; None when no m:n pattern was asked for.
    """

    sparsity: dict[str, float]
    overall_sparsity: float
    targets: dict[str, float] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)
    schedule: str = PruneSchedule.POLYNOMIAL.value
    m_by_n_satisfied: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        return {
            "sparsity": dict(self.sparsity),
            "overall_sparsity": self.overall_sparsity,
            "targets": dict(self.targets),
            "patterns": dict(self.patterns),
            "schedule": self.schedule,
            "m_by_n_satisfied": self.m_by_n_satisfied,
        }


def sparsity_of(model: Any, layer_names: tuple[str, ...] = PRUNABLE_LAYERS) -> dict[str, float]:
    """Share of exact zeros in the kernel (first weight) of each named layer."""
    result = {}
    for name in layer_names:
        kernel = model.get_layer(name).get_weights()[0]
        result[name] = float(np.mean(kernel == 0))
    return result


def satisfies_m_by_n(kernel: np.ndarray, m: int, n: int) -> bool:
    """Whether ``kernel`` has at least ``m`` zeros in every ``n`` consecutive weights along its input dimension.

    The input dimension is the second-to-last axis (Keras kernels are ``[..., inputs, outputs]``). A last group
    shorter than ``n`` counts as padded with zeros, as tfmot pads it when it builds the mask.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim < 2:
        raise StageError(f"an m:n pattern needs a kernel of rank >= 2, got shape {kernel.shape}")
    # [..., inputs, outputs] -> rows of consecutive inputs, one row per output (and per leading index).
    rows = np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2])
    pad = (-rows.shape[1]) % n
    rows = np.pad(rows, ((0, 0), (0, pad)))
    zeros = (rows.reshape(rows.shape[0], -1, n) == 0).sum(axis=-1)
    return bool(np.all(zeros >= m))


def _schedule(tfmot: Any, config: PruneConfig, target: float, total_steps: int, steps_per_epoch: int) -> Any:
    if config.schedule is PruneSchedule.CONSTANT:
        # The target holds from step 0; masks are re-ranked every `frequency` steps while the weights fine-tune.
        return tfmot.sparsity.keras.ConstantSparsity(target, begin_step=0, frequency=min(_MAX_FREQUENCY, total_steps))
    # Sparsity ramps up over all epochs but the last, which fine-tunes at the final sparsity. tfmot updates the masks
    # only every `frequency` steps up to `end_step`, so end_step must be a multiple of it or the target is missed.
    end_step = max(1, steps_per_epoch * max(1, config.epochs - 1))
    frequency = min(_MAX_FREQUENCY, end_step)
    end_step -= end_step % frequency
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end_step, frequency=frequency
    )


def prune(
    model: Any,
    data: RecoveryData,
    config: PruneConfig,
    verbose: int = 0,
    compile_model: Callable[[Any, float], None] | None = None,
) -> tuple[Any, PruneResult]:
    """Prune ``model`` as ``config`` says and fine-tune it on the distillation targets.

    Args:
        model: A trained student.
        data: The rows, targets and loss the student was distilled with.
        config: Pruning settings.
        verbose: Keras verbosity.
        compile_model: ``(model, learning_rate)`` compiling the pruned model with another loss (an embedder's:
            :func:`edgeopt.distill.compile_for_embedding`); ``data.targets`` are then what that loss takes. None: the
            classifier's distillation loss over packed targets.

    Returns:
        The stripped (plain Keras) pruned model and the sparsity it reached.

    Raises:
        StageError: If an m:n pattern is asked for with fewer than 2 training steps (tfmot sets m:n masks on step 1).
    """
    tf, keras = import_tf()
    import tensorflow_model_optimization as tfmot

    distill_config = data.distill
    keras.utils.set_random_seed(distill_config.seed)
    steps_per_epoch = math.ceil(len(data.targets) / distill_config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.m_by_n is not None and total_steps < 2:
        raise StageError(
            f"{config.m_by_n[0]}:{config.m_by_n[1]} pruning needs at least 2 training steps, got {total_steps}; "
            "raise the pruning epochs or lower the batch size"
        )
    layer_targets = config.layer_targets()
    patterns = config.layer_patterns()

    def wrap(layer: Any) -> Any:
        pattern = patterns.get(layer.name, "dense")
        if pattern == "dense":
            return layer
        schedule = _schedule(tfmot, config, layer_targets[layer.name], total_steps, steps_per_epoch)
        m_by_n = config.m_by_n if pattern != "unstructured" else None
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n)

    # The wrappers wrap the trained layers themselves, so the pruned model starts from the trained weights (and
    # shares them: ``model`` is pruned in place too).
    pruned = keras.models.clone_model(model, clone_function=wrap)
    if compile_model is None:
        compile_for_distillation(pruned, data.num_labels, distill_config, config.learning_rate)
    else:
        compile_model(pruned, config.learning_rate)
    pruned.fit(
        length_bucketed_batches(data.inputs, data.targets, distill_config.batch_size, distill_config.seed),
        epochs=config.epochs,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        shuffle=False,
        verbose=verbose,
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    sparsity = sparsity_of(stripped)
    sizes = {name: stripped.get_layer(name).get_weights()[0].size for name in PRUNABLE_LAYERS}
    overall = sum(sparsity[n] * sizes[n] for n in sizes) / sum(sizes.values())
    satisfied = None
    if config.m_by_n is not None:
        satisfied = all(
            satisfies_m_by_n(stripped.get_layer(name).get_weights()[0], *config.m_by_n) for name in M_BY_N_LAYERS
        )
    result = PruneResult(
        sparsity=sparsity,
        overall_sparsity=float(overall),
        targets={name: (t if patterns[name] != "dense" else 0.0) for name, t in layer_targets.items()},
        patterns=patterns,
        schedule=config.schedule.value,
        m_by_n_satisfied=satisfied,
    )
    return stripped, result
