"""Pruning sensitivity: how much accuracy each layer loses at each sparsity, and how much to prune where.

Each layer is magnitude-pruned on its own, to each level, without fine-tuning, and the model is evaluated; the drop
from the unpruned baseline says how much that layer tolerates. Pruning without fine-tuning overstates the loss a
fine-tuned model would show, which is what makes it a safe guide: :func:`choose_sparsities` picks, per layer, the
highest level that stays within an accuracy budget, and the result feeds :class:`edgeopt.prune.PruneConfig`'s
``per_layer`` targets (Han et al., 2015, "Learning both Weights and Connections for Efficient Neural Networks").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.errors import StageError
from edgeopt.prune import MAX_SPARSITY, PRUNABLE_LAYERS

__all__ = [
    "DEFAULT_LEVELS",
    "SensitivityTable",
    "magnitude_prune_weights",
    "pruning_sensitivity",
    "choose_sparsities",
    "keras_accuracy",
]

DEFAULT_LEVELS = (0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class SensitivityTable:
    """Accuracy of the model with one layer magnitude-pruned at a time.

    Attributes:
        baseline: Score of the unpruned model.
        layers: Layer names, in row order.
        levels: Sparsity levels, ascending, in column order.
        scores: ``scores[i][j]``: score with layer ``layers[i]`` pruned to ``levels[j]``.
        sizes: Weights in each layer's kernel (where pruning a layer pays most).
    """

    baseline: float
    layers: tuple[str, ...]
    levels: tuple[float, ...]
    scores: tuple[tuple[float, ...], ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.layers) or any(len(row) != len(self.levels) for row in self.scores):
            raise StageError(
                f"a sensitivity table needs one score per layer and level ({len(self.layers)} x {len(self.levels)}), "
                f"got rows of lengths {[len(row) for row in self.scores]}"
            )
        if len(self.sizes) != len(self.layers):
            raise StageError(f"a sensitivity table needs one size per layer, got {len(self.sizes)} for {self.layers}")
        _check_levels(self.levels)

    def drop(self, layer: str, level: float) -> float:
        """Baseline minus the score with ``layer`` pruned to ``level`` (positive: accuracy lost)."""
        if layer not in self.layers:
            raise StageError(f"layer {layer!r} is not in the sensitivity table; it has {', '.join(self.layers)}")
        if level not in self.levels:
            raise StageError(f"sparsity {level} is not in the sensitivity table; it has {_format_levels(self.levels)}")
        return self.baseline - self.scores[self.layers.index(layer)][self.levels.index(level)]

    def drops(self) -> dict[str, dict[float, float]]:
        """Every drop: layer -> level -> drop."""
        return {layer: {level: self.drop(layer, level) for level in self.levels} for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        return {
            "baseline": self.baseline,
            "levels": list(self.levels),
            "layers": {
                layer: {
                    "weights": size,
                    "scores": list(row),
                    "drops": [self.baseline - score for score in row],
                }
                for layer, size, row in zip(self.layers, self.sizes, self.scores, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityTable:
        """Read back what :meth:`to_dict` wrote."""
        layers = data["layers"]
        return cls(
            baseline=float(data["baseline"]),
            layers=tuple(layers),
            levels=tuple(float(v) for v in data["levels"]),
            scores=tuple(tuple(float(s) for s in layers[name]["scores"]) for name in layers),
            sizes=tuple(int(layers[name]["weights"]) for name in layers),
        )

    def to_markdown(self, chosen: dict[str, float] | None = None) -> str:
        """A markdown table of accuracy drops (percentage points), one row per layer.

        Args:
            chosen: Sparsity chosen per layer (from :func:`choose_sparsities`), shown as a last column.
        """
        header = ["layer", "weights", *(f"drop @ {level:.0%}" for level in self.levels)]
        if chosen is not None:
            header.append("chosen")
        lines = [
            f"Baseline score {self.baseline:.4f}; drop = baseline - score with only that layer pruned, in points.",
            "",
            "| " + " | ".join(header) + " |",
            "|"
            + "|".join(["---", "---:", *("---:" for _ in self.levels)] + (["---:"] if chosen is not None else []))
            + "|",
        ]
        for layer, size, row in zip(self.layers, self.sizes, self.scores, strict=True):
            cells = [layer, f"{size:,}", *(f"{100 * (self.baseline - score):+.1f}" for score in row)]
            if chosen is not None:
                cells.append(f"{chosen.get(layer, 0.0):.0%}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _format_levels(levels: Sequence[float]) -> str:
    return ", ".join(f"{level:g}" for level in levels)


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(levels)
    if not levels:
        raise StageError("sensitivity needs at least one sparsity level, got none")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level <= MAX_SPARSITY:
            raise StageError(f"sparsity levels must be in (0, {MAX_SPARSITY}], got {level}")
    if list(levels) != sorted(set(levels)):
        raise StageError(f"sparsity levels must be ascending and distinct, got {_format_levels(levels)}")
    return tuple(float(level) for level in levels)


def magnitude_prune_weights(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """A copy of ``kernel`` with its ``round(sparsity * size)`` smallest-magnitude weights set to zero."""
    flat = np.array(kernel, copy=True).reshape(-1)
    count = round(sparsity * flat.size)
    if count:
        flat[np.argsort(np.abs(flat), kind="stable")[:count]] = 0
    return flat.reshape(np.shape(kernel))


def pruning_sensitivity(
    model: Any,
    evaluate: Callable[[Any], float],
    layers: Sequence[str] = PRUNABLE_LAYERS,
    levels: Sequence[float] = DEFAULT_LEVELS,
) -> SensitivityTable:
    """Magnitude-prune one layer at a time to each level, without fine-tuning, and score the model each time.

    Works on a copy: ``model`` is not changed.

    Args:
        model: A trained ``tf_keras`` student.
        evaluate: Scores a model, higher is better (e.g. :func:`keras_accuracy` on held-out texts).
        layers: Names of the layers to probe; their first weight (the kernel or embedding table) is pruned.
        levels: Sparsity levels, ascending, in (0, 0.95].

    Returns:
        The baseline score and the score for every layer and level.

    Raises:
        StageError: On bad levels or a layer name the model does not have.
    """
    _, keras = import_tf()
    levels = _check_levels(levels)
    layers = tuple(layers)
    names = {layer.name for layer in model.layers}
    missing = [name for name in layers if name not in names]
    if missing:
        raise StageError(
            f"the model has no layer(s) {', '.join(map(repr, missing))} to probe; it has {', '.join(sorted(names))}"
        )
    probe = keras.models.clone_model(model)
    probe.set_weights(model.get_weights())
    baseline = float(evaluate(probe))
    scores, sizes = [], []
    for name in layers:
        layer = probe.get_layer(name)
        original = layer.get_weights()
        sizes.append(int(original[0].size))
        row = []
        for level in levels:
            layer.set_weights([magnitude_prune_weights(original[0], level), *original[1:]])
            row.append(float(evaluate(probe)))
        layer.set_weights(original)
        scores.append(tuple(row))
    return SensitivityTable(baseline=baseline, layers=layers, levels=levels, scores=tuple(scores), sizes=tuple(sizes))


def choose_sparsities(
    table: SensitivityTable, max_drop_per_layer: float, levels: Sequence[float] | None = None
) -> dict[str, float]:
    """Pick, per layer, the highest sparsity whose accuracy drop stays within ``max_drop_per_layer``.

    A level counts only if every lower level of the table also stays within the budget: pruning more zeroes a
    superset of the weights, so a drop that shrinks again at a higher level is evaluation noise, not a safer setting.

    Args:
        table: From :func:`pruning_sensitivity`.
        max_drop_per_layer: Largest score drop allowed for each layer on its own (e.g. 0.01 for one point).
        levels: Levels to choose from (a subset of the table's); all of them when None.

    Returns:
        Layer name -> chosen sparsity (0.0 where even the lowest level costs too much), ready for
        ``PruneConfig(per_layer=...)``.

    Raises:
        StageError: On a negative or NaN budget, or levels the table does not hold.
    """
    if isinstance(max_drop_per_layer, bool) or not (
        isinstance(max_drop_per_layer, int | float) and max_drop_per_layer >= 0
    ):
        raise StageError(f"the accuracy drop budget per layer must be >= 0, got {max_drop_per_layer}")
    candidates = table.levels if levels is None else _check_levels(levels)
    unknown = [level for level in candidates if level not in table.levels]
    if unknown:
        raise StageError(
            f"sparsity level(s) {_format_levels(unknown)} are not in the sensitivity table; "
            f"it has {_format_levels(table.levels)}"
        )
    # A tiny tolerance, so that a drop equal to the budget up to float rounding still counts.
    budget = max_drop_per_layer + 1e-9
    chosen = {}
    for layer in table.layers:
        best = 0.0
        # Every level of the table up to a candidate must pass, including levels not on offer.
        for level in table.levels:
            if table.drop(layer, level) > budget:
                break
            if level in candidates:
                best = level
        chosen[layer] = best
    return chosen


def keras_accuracy(
    inputs: tuple[np.ndarray, np.ndarray], labels: np.ndarray, batch_size: int = 256
) -> Callable[[Any], float]:
    """An ``evaluate`` for :func:`pruning_sensitivity`: label accuracy of a Keras student, dropout off.

    Args:
        inputs: ``(input_ids, attention_mask)`` of held-out texts.
        labels: Their labels.
        batch_size: Rows per forward pass.
    """
    labels = np.asarray(labels)
    if len(labels) == 0 or len(labels) != len(inputs[0]):
        raise StageError(f"accuracy needs one label per text, got {len(labels)} labels for {len(inputs[0])} texts")

    def accuracy(model: Any) -> float:
        predicted = []
        for start in range(0, len(labels), batch_size):
            chunk = [part[start : start + batch_size] for part in inputs]
            predicted.append(np.asarray(model(chunk, training=False)).argmax(-1))
        return float(np.mean(np.concatenate(predicted) == labels))

    return accuracy
