"""ScoreCalibration: one temperature on the student's logits, fitted on the validation split (Guo et al., 2017).

A distilled student's scores inherit the distillation temperature and the teacher's confidence, so a ``score`` of
0.9 need not be right 9 times in 10. Dividing the logits by one fitted temperature keeps every label (the argmax
does not move) and makes the scores mean what they say. The temperature is folded into the student's last dense
layer (``W / T``, ``b / T``) before export, so the artifacts carry it and no runtime, on any platform, has to know
it exists. Rejected: a ``temperature`` field in the manifest applied by each runtime (one more thing the Python
and Kotlin runtimes must agree on, for no gain); vector or matrix scaling (more parameters fitted on a few hundred
validation texts, and they can change labels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeopt.errors import ConfigError, StageError
from edgeopt.evaluate import expected_calibration_error

__all__ = ["ScoreCalibration", "fit_temperature", "fold_temperature", "LOGITS_LAYER"]

LOGITS_LAYER = "logits"
_TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class ScoreCalibration:
    """A fitted temperature and what it did on the validation split.

    Attributes:
        temperature: Logits are divided by it (> 1 softens overconfident scores).
        validation_texts: Texts it was fitted on.
        ece_before: Expected calibration error on them before.
        ece_after: The same after dividing by ``temperature``.
    """

    temperature: float
    validation_texts: int
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict[str, float | int]:
        """JSON form for the manifest."""
        return asdict(self)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(-1, keepdims=True)
    log_probs = scaled - np.log(np.exp(scaled).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> ScoreCalibration:
    """The temperature that minimizes the negative log-likelihood of ``labels`` (golden-section search on log T).

    The NLL of one temperature is unimodal in log T, so a bracketing search needs no gradient or optimizer
    library and always stays in range.

    Raises:
        StageError: No validation texts, or logits and labels of different lengths.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(logits) == 0 or len(logits) != len(labels):
        raise StageError(
            f"calibration needs one label per validation text, got {len(logits)} logits and {len(labels)} labels"
        )
    lo, hi = np.log(_TEMPERATURE_RANGE[0]), np.log(_TEMPERATURE_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logits, labels, np.exp(a)), _nll(logits, labels, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logits, labels, np.exp(b))
    temperature = float(np.exp((lo + hi) / 2))
    return ScoreCalibration(
        temperature=temperature,
        validation_texts=len(labels),
        ece_before=expected_calibration_error(logits, labels),
        ece_after=expected_calibration_error(logits / temperature, labels),
    )


def fold_temperature(model: Any, temperature: float) -> None:
    """Divide the output of ``model``'s ``logits`` dense layer by ``temperature``, in place.

    Raises:
        StageError: The model has no dense layer named ``logits``, or the temperature is not positive.
    """
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    try:
        layer = model.get_layer(LOGITS_LAYER)
    except ValueError as exc:
        raise StageError(f"{model.name} has no layer named {LOGITS_LAYER!r} to fold a temperature into") from exc
    layer.set_weights([w / temperature for w in layer.get_weights()])
