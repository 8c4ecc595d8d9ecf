"""Structured pruning of the student: remove whole embedding dimensions, convolution filters and dense units.

Unlike magnitude pruning, which zeroes weights in place, removing a unit removes every weight that feeds it and every
weight it feeds, so the exported .tflite / .onnx file shrinks and runs faster, with no sparse kernels needed. For the
convolutional student, filters and dense units play the part that attention heads and FFN units play in a
transformer (vocabulary rows are already pruned in :mod:`edgeopt.student`).

Units are ranked by the L1 norm of their incoming weights (Li et al., 2017, "Pruning Filters for Efficient ConvNets")
and the top fraction is kept. The smaller student is rebuilt with :func:`edgeopt.student.build_student` and the kept
slices of every affected weight are copied into it:

==============  =====================================================================================
layer            what removing unit ``j`` removes
==============  =====================================================================================
``embedding``    column ``j`` of the table, and input channel ``j`` of the convolution kernel
``conv``         filter ``j`` (kernel ``[:, :, j]`` and its bias), and row ``j`` of the dense kernel
``dense``        unit ``j`` (kernel ``[:, j]`` and its bias), and row ``j`` of the classifier kernel
==============  =====================================================================================

The kept units compute exactly what they computed before (every op between these layers is per channel: mask
multiply, ReLU, max pool), so only the removed units' contributions are lost, and a short fine-tune with the
distillation loss (:func:`structured_prune`) wins most of them back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.defaults import DEFAULTS
from edgeopt.distill import RecoveryData, compile_for_distillation, length_bucketed_batches
from edgeopt.errors import ConfigError, StageError
from edgeopt.profiles import StudentSpec

__all__ = ["STRUCTURED_LAYERS", "StructuredResult", "rank_units", "remove_units", "structured_prune"]

# Layer name -> the StudentSpec field that sizes it.
STRUCTURED_LAYERS = {"embedding": "embedding_dim", "conv": "hidden_dim", "dense": "dense_dim"}


@dataclass(frozen=True)
class StructuredResult:
    """What structured pruning removed.

    Attributes:
        params_before: Weights in the model before removal.
        params_after: Weights in the smaller model.
        units_before: Units (embedding dimensions, filters, dense units) per layer before removal.
        kept: Indices of the units kept per layer, in their original order.
        spec: The smaller student's size.
    """

    params_before: int
    params_after: int
    units_before: dict[str, int]
    kept: dict[str, tuple[int, ...]]
    spec: StudentSpec

    @property
    def units_after(self) -> dict[str, int]:
        """Units per layer after removal."""
        return {name: len(indices) for name, indices in self.kept.items()}

    @property
    def params_ratio(self) -> float:
        """``params_after / params_before``."""
        return self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports (kept indices as lists)."""
        return {
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_ratio": self.params_ratio,
            "units_before": dict(self.units_before),
            "units_after": self.units_after,
            "kept": {name: list(indices) for name, indices in self.kept.items()},
            "spec": dataclasses.asdict(self.spec),
        }


def _keep_fractions(keep: dict[str, float] | float) -> dict[str, float]:
    if isinstance(keep, dict):
        unknown = sorted(set(keep) - set(STRUCTURED_LAYERS))
        if unknown:
            raise StageError(
                f"structured pruning names unknown layer(s) {', '.join(map(repr, unknown))}; "
                f"layers with removable units are {', '.join(STRUCTURED_LAYERS)}"
            )
        fractions = {name: keep.get(name, 1.0) for name in STRUCTURED_LAYERS}
    else:
        fractions = dict.fromkeys(STRUCTURED_LAYERS, keep)
    for name, fraction in fractions.items():
        # `not 0 < f <= 1` also rejects NaN.
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 1.0:
            raise StageError(f"share of units to keep in layer {name!r} must be in (0, 1], got {fraction}")
    return {name: float(f) for name, f in fractions.items()}


def _units_to_keep(units: int, fraction: float) -> int:
    return max(1, min(units, round(fraction * units)))


def rank_units(model: Any) -> dict[str, np.ndarray]:
    """L1 norm of each unit's incoming weights, per layer in :data:`STRUCTURED_LAYERS`.

    Returns:
        Layer name -> float array with one norm per unit (embedding dimension, filter, dense unit).
    """
    table = model.get_layer("embedding").get_weights()[0]  # [vocab, embedding_dim]
    conv = model.get_layer("conv").get_weights()[0]  # [kernel_size, embedding_dim, hidden_dim]
    dense = model.get_layer("dense").get_weights()[0]  # [pooled, dense_dim]
    return {
        "embedding": np.abs(table).sum(axis=0),
        "conv": np.abs(conv).sum(axis=(0, 1)),
        "dense": np.abs(dense).sum(axis=0),
    }


def _check_spec(model: Any, spec: StudentSpec) -> None:
    sizes = {
        "embedding": model.get_layer("embedding").output_dim,
        "conv": model.get_layer("conv").filters,
        "dense": model.get_layer("dense").units,
    }
    for name, attribute in STRUCTURED_LAYERS.items():
        if getattr(spec, attribute) != sizes[name]:
            raise StageError(
                f"the student spec says {attribute}={getattr(spec, attribute)} but the model's {name!r} layer has "
                f"{sizes[name]} units; pass the StudentSpec the model was built with"
            )


def remove_units(model: Any, spec: StudentSpec, keep: dict[str, float] | float) -> tuple[Any, StructuredResult]:
    """Build a smaller student that keeps the strongest units of ``model`` (no fine-tuning).

    Args:
        model: A student from :func:`edgeopt.student.build_student` (trained, possibly magnitude-pruned); not changed.
        spec: The spec ``model`` was built with.
        keep: Share of units to keep, in (0, 1]: one number for every layer in :data:`STRUCTURED_LAYERS`, or a
            mapping from layer name to share (layers left out keep all their units). Counts round to the nearest
            unit, and at least one unit stays.

    Returns:
        The smaller model (a fresh ``tf_keras`` model, not compiled) and what was removed.

    Raises:
        StageError: If ``keep`` names an unknown layer or a share outside (0, 1], or ``spec`` does not match ``model``.
    """
    from edgeopt.student import build_student, count_parameters

    fractions = _keep_fractions(keep)
    _check_spec(model, spec)
    norms = rank_units(model)
    kept: dict[str, np.ndarray] = {}
    for name, norm in norms.items():
        count = _units_to_keep(len(norm), fractions[name])
        # Stable sort, so ties keep the earlier unit; the kept units stay in their original order.
        strongest = np.argsort(-norm, kind="stable")[:count]
        kept[name] = np.sort(strongest)
    sizes: dict[str, Any] = {attribute: len(kept[name]) for name, attribute in STRUCTURED_LAYERS.items()}
    small_spec = dataclasses.replace(spec, **sizes)

    embedding_layer = model.get_layer("embedding")
    logits_layer = model.get_layer("logits")
    max_seq_len = int(model.inputs[0].shape[1])
    small = build_student(small_spec, embedding_layer.input_dim, logits_layer.units, max_seq_len)

    e, h, d = kept["embedding"], kept["conv"], kept["dense"]
    (table,) = embedding_layer.get_weights()
    conv_kernel, conv_bias = model.get_layer("conv").get_weights()
    dense_kernel, dense_bias = model.get_layer("dense").get_weights()
    logits_kernel, logits_bias = logits_layer.get_weights()
    small.get_layer("embedding").set_weights([table[:, e]])
    small.get_layer("conv").set_weights([conv_kernel[:, e][:, :, h], conv_bias[h]])
    if spec.architecture == "cnn-attention":
        # The dense layer reads [max pool; attention pool], each hidden_dim wide: filter j feeds rows j and
        # hidden_dim + j. Removing a filter also changes every position's attention score, so unlike the max-pool
        # student the kept units do not compute exactly what they did; the fine-tune absorbs it.
        score_kernel, score_bias = model.get_layer("attention_score").get_weights()
        small.get_layer("attention_score").set_weights([score_kernel[h], score_bias])
        h_rows = np.concatenate([h, h + spec.hidden_dim])
    else:
        h_rows = h
    small.get_layer("dense").set_weights([dense_kernel[h_rows][:, d], dense_bias[d]])
    small.get_layer("logits").set_weights([logits_kernel[d], logits_bias])

    result = StructuredResult(
        params_before=count_parameters(model),
        params_after=count_parameters(small),
        units_before={name: len(norm) for name, norm in norms.items()},
        kept={name: tuple(int(i) for i in indices) for name, indices in kept.items()},
        spec=small_spec,
    )
    return small, result


def structured_prune(
    model: Any,
    spec: StudentSpec,
    keep: dict[str, float] | float,
    data: RecoveryData,
    epochs: int = DEFAULTS["prune_epochs"],
    learning_rate: float = DEFAULTS["prune_learning_rate"],
    verbose: int = 0,
) -> tuple[Any, StructuredResult]:
    """Remove the weakest units (:func:`remove_units`), then fine-tune the smaller student with the distillation loss.

    Args:
        model: A trained student; not changed.
        spec: The spec ``model`` was built with.
        keep: Share of units to keep (see :func:`remove_units`).
        data: The rows, targets and loss the student was distilled with.
        epochs: Fine-tuning epochs (>= 1).
        learning_rate: Adam learning rate for fine-tuning.
        verbose: Keras verbosity.

    Returns:
        The fine-tuned smaller model and what was removed.

    Raises:
        StageError: On a bad ``keep`` or ``epochs``, or a ``spec`` that does not match ``model``.
    """
    if epochs < 1:
        raise ConfigError(f"structured pruning fine-tune epochs must be >= 1, got {epochs}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"structured pruning learning rate must be > 0, got {learning_rate}")
    _, keras = import_tf()
    small, result = remove_units(model, spec, keep)
    keras.utils.set_random_seed(data.distill.seed)
    compile_for_distillation(small, data.num_labels, data.distill, learning_rate)
    small.fit(
        length_bucketed_batches(data.inputs, data.targets, data.distill.batch_size, data.distill.seed),
        epochs=epochs,
        shuffle=False,
        verbose=verbose,
    )
    return small, result
