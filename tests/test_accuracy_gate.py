"""The int8 accuracy gate (edgeopt.accuracy_gate) on a toy student with one layer int8 cannot represent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.accuracy_gate import GateFormat, run_accuracy_gate
from edgeopt.errors import ConfigError, StageError
from edgeopt.export import to_onnx
from stage_fixtures import MAX_SEQ_LEN, ToyTask, keras_logits, make_toy_task, train_toy_student


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("gate-task"), n=64)


@pytest.fixture(scope="module")
def model(task: ToyTask) -> Any:
    """The toy student with a huge weight row in ``dense`` on a conv channel that is always 0.

    The float model computes exactly what it did (0 * 1e4 = 0), but the outlier sets every int8 weight scale of
    ``dense`` (per channel or per tensor) so high that all its real weights round to 0: int8 destroys that one layer.
    """
    student = train_toy_student(task.vocab_size, task.encoded, task.labels)
    conv, dense = student.get_layer("conv"), student.get_layer("dense")
    kernel, bias = conv.get_weights()
    weights, dense_bias = dense.get_weights()
    channel = int(np.argmin(np.abs(weights).sum(axis=1)))
    kernel[:, :, channel] = 0.0
    bias[channel] = -1.0  # ReLU output 0 everywhere
    conv.set_weights([kernel, bias])
    weights[channel, :] = 1e4
    dense.set_weights([weights, dense_bias])
    # Guards every gate check: the float model still solves the task.
    assert np.mean(keras_logits(student, task.encoded).argmax(-1) == task.labels) == 1.0
    return student


@pytest.fixture(scope="module")
def sources(model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {"tflite": model, "onnx": to_onnx(model, tmp_path_factory.mktemp("gate-float") / "model.onnx", MAX_SEQ_LEN)}


@pytest.fixture(scope="module")
def accuracy(task: ToyTask) -> Any:
    from edgeopt_runtime import OnnxBackend, TfliteBackend

    def evaluate(path: Path) -> float:
        backend = OnnxBackend(path) if path.suffix == ".onnx" else TfliteBackend(path)
        return float(np.mean(backend.run(*task.encoded).argmax(-1) == task.labels))

    return evaluate


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_gate_finds_the_sensitive_layer_first_and_keeps_it_float(
    fmt: str, sources: dict[str, Any], task: ToyTask, accuracy: Any, tmp_path: Path
) -> None:
    out = tmp_path / f"model.{fmt}"
    result = run_accuracy_gate(fmt, sources[fmt], task.encoded, accuracy, 1.0, 0.02, out)
    assert result.steps[0].kept_float == () and result.steps[0].accuracy <= 0.6  # all-int8 is destroyed
    most_sensitive = result.sensitivities[0]
    assert "dense/" in most_sensitive.name and "logits" not in most_sensitive.name
    assert most_sensitive.gain > 10 * max(s.gain for s in result.sensitivities[1:])
    assert result.met and result.kept_float == (most_sensitive.name,)
    assert len(result.steps) == 2 and result.steps[-1].met
    assert result.path == out and out.stat().st_size == result.bytes
    assert accuracy(out) == result.accuracy == 1.0
    assert not list(tmp_path.glob(".gate-*"))  # the work directory is gone
    data = json.loads(json.dumps(result.to_dict()))
    assert data["format"] == fmt and data["kept_float"] == [most_sensitive.name]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        (output,) = Interpreter(model_path=str(out)).get_output_details()
        assert output["dtype"] == np.int8 and result.output_quantization is not None
        assert result.output_quantization.scale == pytest.approx(output["quantization"][0])


def test_gate_met_by_all_int8_measures_nothing_more(
    sources: dict[str, Any], task: ToyTask, accuracy: Any, tmp_path: Path
) -> None:
    result = run_accuracy_gate(GateFormat.ONNX, sources["onnx"], task.encoded, accuracy, 1.0, 0.6, tmp_path / "m.onnx")
    assert result.met and result.kept_float == () and len(result.steps) == 1 and result.sensitivities == ()


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_gate_that_cannot_be_met_returns_the_best_artifact(
    fmt: str, sources: dict[str, Any], task: ToyTask, accuracy: Any, tmp_path: Path
) -> None:
    out = tmp_path / f"model.{fmt}"
    result = run_accuracy_gate(fmt, sources[fmt], task.encoded, accuracy, 2.0, 0.0, out, max_steps=2)
    assert not result.met and not any(step.met for step in result.steps)
    assert len(result.steps) == 3  # all-int8, then two fallback steps
    assert result.accuracy == max(step.accuracy for step in result.steps) == 1.0
    # The most accurate step with the fewest float layers wins.
    assert result.kept_float == result.steps[1].kept_float
    assert out.is_file() and accuracy(out) == 1.0


def test_gate_rejects_bad_arguments(sources: dict[str, Any], task: ToyTask, accuracy: Any, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="unknown gate format 'coreml'; choose 'tflite' or 'onnx'"):
        run_accuracy_gate("coreml", sources["onnx"], task.encoded, accuracy, 1.0, 0.01, tmp_path / "m")
    with pytest.raises(ConfigError, match="max_drop must be >= 0"):
        run_accuracy_gate("onnx", sources["onnx"], task.encoded, accuracy, 1.0, -0.1, tmp_path / "m.onnx")
    with pytest.raises(StageError, match=r"float ONNX model .*missing.onnx does not exist"):
        run_accuracy_gate("onnx", tmp_path / "missing.onnx", task.encoded, accuracy, 1.0, 0.01, tmp_path / "m.onnx")
