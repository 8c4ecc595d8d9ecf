"""Temperature scaling of the student's scores (edgeopt.calibrate) and the calibration error it is judged by."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeopt.calibrate import fit_temperature, fold_temperature
from edgeopt.errors import ConfigError, StageError
from edgeopt.evaluate import expected_calibration_error
from edgeopt.student import build_student
from stage_fixtures import MAX_SEQ_LEN, NUM_LABELS, keras_logits, make_toy_task, tiny_spec


def _sampled(true_logits: np.ndarray, seed: int) -> np.ndarray:
    """Labels drawn from softmax(true_logits): a model whose logits are these is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    probs = np.exp(true_logits - true_logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.array([rng.choice(len(p), p=p) for p in probs])


def test_fit_recovers_the_temperature_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(4000, 3))
    labels = _sampled(true_logits, seed=1)
    fitted = fit_temperature(true_logits * 3.0, labels)  # three times too sure
    assert fitted.temperature == pytest.approx(3.0, rel=0.1)
    assert fitted.ece_after < fitted.ece_before / 3
    assert fitted.validation_texts == 4000


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1.5, size=(4000, 2))
    assert fit_temperature(logits, _sampled(logits, seed=3)).temperature == pytest.approx(1.0, rel=0.1)


def test_fit_needs_one_label_per_text() -> None:
    with pytest.raises(StageError, match="got 2 logits and 1 labels"):
        fit_temperature(np.zeros((2, 2)), np.zeros(1))
    with pytest.raises(StageError, match="got 0 logits"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0))


def test_ece_by_hand() -> None:
    # Two texts at confidence 0.9 (one right), two at ~0.6 (both right): |0.5-0.9|*0.5 + |1-0.6|*0.5 = 0.4.
    p9, p6 = np.log(9.0), np.log(1.5)
    logits = np.array([[p9, 0.0], [p9, 0.0], [p6, 0.0], [0.0, p6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.4)
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0)) == 0.0


def test_folding_divides_the_logits_and_keeps_every_label(tmp_path: Any) -> None:
    task = make_toy_task(tmp_path, n=24)
    model = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=0)
    before = keras_logits(model, task.encoded)
    fold_temperature(model, 2.5)
    after = keras_logits(model, task.encoded)
    np.testing.assert_allclose(after, before / 2.5, rtol=1e-5, atol=1e-6)
    assert (after.argmax(-1) == before.argmax(-1)).all()
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        fold_temperature(model, 0.0)
