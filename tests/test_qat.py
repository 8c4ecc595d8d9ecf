"""Quantization-aware training (edgeopt.qat) on the toy student, checked through the real runtimes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.distill import DistillConfig, RecoveryData, pack_targets
from edgeopt.errors import ConfigError, StageError
from edgeopt.qat import (
    QatReport,
    QatStatus,
    qat_finetune,
    qat_layer_plan,
    qat_to_onnx,
    qat_to_tflite,
    quantize_whole_model,
)
from stage_fixtures import MAX_SEQ_LEN, NUM_LABELS, ToyTask, keras_logits, make_toy_task, train_toy_student


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("qat-task"), n=64)


@pytest.fixture(scope="module")
def model(task: ToyTask) -> Any:
    return train_toy_student(task.vocab_size, task.encoded, task.labels)


@pytest.fixture(scope="module")
def float_labels(model: Any, task: ToyTask) -> np.ndarray:
    labels = keras_logits(model, task.encoded).argmax(-1)
    # Guards the agreement checks below: the float student must solve the toy task.
    assert np.mean(labels == task.labels) == 1.0
    return labels


@pytest.fixture(scope="module")
def trained(model: Any, task: ToyTask, float_labels: np.ndarray) -> tuple[Any, QatReport, list[np.ndarray]]:
    before = [w.copy() for w in model.get_weights()]
    targets = pack_targets(keras_logits(model, task.encoded), task.labels, NUM_LABELS)
    data = RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig(batch_size=16))
    qat_model, report = qat_finetune(model, data, epochs=2)
    return qat_model, report, before


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qat-artifacts")


def test_report_names_every_layer_qat_leaves_float(trained: tuple[Any, QatReport, list[np.ndarray]]) -> None:
    _, report, _ = trained
    assert report.quantized == ("conv", "dense", "logits")
    unsupported = {layer.name: layer for layer in report.unsupported}
    assert set(unsupported) == {"embedding", "mask", "mask_embeddings", "mask_conv"}
    assert unsupported["embedding"].kind == "Embedding" and "Embedding" in unsupported["embedding"].reason
    assert unsupported["mask"].kind == "Lambda" and "Lambda" in unsupported["mask"].reason
    for layer in report.layers:
        assert layer.reason and "\n" not in layer.reason
    assert {layer.name for layer in report.layers if layer.status is QatStatus.PASSTHROUGH} == {
        "pool",
        "dropout_pool",
        "dropout_dense",
    }
    assert report.epochs_run == 2 and len(report.history["loss"]) == 2
    assert json.loads(json.dumps(report.to_dict()))["layers"][0]["status"] == "float"


def test_qat_fine_tune_leaves_the_student_unchanged(
    model: Any, trained: tuple[Any, QatReport, list[np.ndarray]]
) -> None:
    _, _, before = trained
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_whole_model_quantization_names_the_unsupported_layer(model: Any) -> None:
    with pytest.raises(StageError, match=r"layer 'embedding' \(Embedding\) is not in its 8-bit scheme.*qat_finetune"):
        quantize_whole_model(model)


def test_plan_matches_report(model: Any, trained: tuple[Any, QatReport, list[np.ndarray]]) -> None:
    assert qat_layer_plan(model) == trained[1].layers


def test_qat_tflite_is_full_integer_and_agrees_with_float(
    trained: tuple[Any, QatReport, list[np.ndarray]], task: ToyTask, float_labels: np.ndarray, out: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt_runtime import TfliteBackend

    path = out / "qat.tflite"
    quantization = qat_to_tflite(trained[0], task.encoded, path)
    interpreter = Interpreter(model_path=str(path))
    assert sorted(d["name"].split(":")[0].split("_", 2)[-1] for d in interpreter.get_input_details()) == [
        "attention_mask",
        "input_ids",
    ]
    assert {d["dtype"] for d in interpreter.get_input_details()} == {np.int32}
    (output,) = interpreter.get_output_details()
    assert output["dtype"] == np.int8 and output["quantization"] == pytest.approx(
        (quantization.scale, quantization.zero_point)
    )
    # Weights are int8: no float32 tensor is bigger than the cast attention mask.
    biggest_float = max(
        (int(np.prod(d["shape"])) for d in interpreter.get_tensor_details() if d["dtype"] == np.float32), default=0
    )
    assert biggest_float <= MAX_SEQ_LEN
    logits = TfliteBackend(path, seq_len=MAX_SEQ_LEN).run(*task.encoded)
    assert logits.shape == (len(task.texts), NUM_LABELS)
    assert np.mean(logits.argmax(-1) == float_labels) == 1.0


def test_qat_onnx_is_qdq_with_int8_weights_and_agrees_with_float(
    trained: tuple[Any, QatReport, list[np.ndarray]], task: ToyTask, float_labels: np.ndarray, out: Path
) -> None:
    import onnx

    from edgeopt_runtime import OnnxBackend

    qat_model = trained[0]
    path = qat_to_onnx(qat_model, out / "qat.onnx", MAX_SEQ_LEN)
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(int8_weights) == 3  # conv, dense and logits kernels
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.input] == [
        ("input_ids", onnx.TensorProto.INT32),
        ("attention_mask", onnx.TensorProto.INT32),
    ]
    assert [o.name for o in graph.output] == ["logits"]
    logits = OnnxBackend(path, seq_len=MAX_SEQ_LEN).run(*task.encoded)
    assert np.mean(logits.argmax(-1) == float_labels) == 1.0
    # The QDQ graph computes what the fake-quant Keras model computes.
    np.testing.assert_allclose(logits, keras_logits(qat_model, task.encoded), atol=1e-3)


def test_qat_refuses_bad_settings_and_foreign_lambdas(model: Any, task: ToyTask) -> None:
    from edgeopt._tf import import_tf

    tf, keras = import_tf()
    targets = np.zeros((len(task.texts), 2 * NUM_LABELS + 1), dtype=np.float32)
    data = RecoveryData(task.encoded, targets, NUM_LABELS, DistillConfig())
    with pytest.raises(ConfigError, match="QAT epochs must be >= 1, got 0"):
        qat_finetune(model, data, epochs=0)
    with pytest.raises(
        StageError,
        match=r"^recovery inputs and targets must have the same rows, got 64, 64 and 3; pass the rows the targets "
        r"were packed for$",
    ):
        RecoveryData(task.encoded, targets[:3], NUM_LABELS, DistillConfig())
    ids = keras.Input((MAX_SEQ_LEN,), dtype="int32", name="input_ids")
    mask = keras.Input((MAX_SEQ_LEN,), dtype="int32", name="attention_mask")
    x = keras.layers.Lambda(lambda t: tf.cast(t, tf.float32), name="to_float")(ids)
    foreign = keras.Model([ids, mask], keras.layers.Dense(NUM_LABELS, name="logits")(x))
    with pytest.raises(StageError, match="layer 'to_float' is a Lambda"):
        qat_finetune(foreign, data)
