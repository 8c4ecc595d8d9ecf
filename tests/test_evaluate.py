"""Scores, sizes and latency of artifacts (edgeopt.evaluate)."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.augment import crop_texts, length_bucket
from edgeopt.evaluate import (
    FIDELITY_CROPS,
    ArtifactMetrics,
    FidelitySet,
    classification_scores,
    evaluate_artifact,
    expected_calibration_error,
    fidelity_by_bucket,
    fidelity_set,
    gzip_size,
    measure_latency_ms,
)
from edgeopt.export import to_onnx, to_tflite
from edgeopt.quantize import tflite_int8
from stage_fixtures import NUM_LABELS, ToyTask, make_toy_task, train_toy_student

# --- classification_scores ----------------------------------------------------------------------------------

PREDICTED = np.array([0, 1, 1, 0, 2, 2])
LABELS = np.array([0, 1, 0, 0, 2, 1])
TEACHER = np.array([0, 1, 1, 1, 2, 2])
# Per-class F1 by hand: class 0 has tp 2, fp 0, fn 1 -> 0.8; class 1 tp 1, fp 1, fn 1 -> 0.5;
# class 2 tp 1, fp 1, fn 0 -> 2/3.
F1_PER_CLASS = (0.8, 0.5, 2 / 3)


def test_classification_scores_exact_values() -> None:
    accuracy, macro_f1, agreement = classification_scores(PREDICTED, LABELS, TEACHER, num_labels=3)
    assert accuracy == pytest.approx(4 / 6)
    assert macro_f1 == pytest.approx(sum(F1_PER_CLASS) / 3)
    assert agreement == pytest.approx(5 / 6)


def test_macro_f1_counts_a_class_missing_from_the_test_split_as_zero() -> None:
    _, macro_f1, _ = classification_scores(PREDICTED, LABELS, TEACHER, num_labels=4)
    assert macro_f1 == pytest.approx(sum(F1_PER_CLASS) / 4)


def test_classification_scores_perfect() -> None:
    labels = np.array([1, 0, 1, 1])
    assert classification_scores(labels, labels, labels, num_labels=2) == (1.0, 1.0, 1.0)


# --- gzip_size ----------------------------------------------------------------------------------------------


def test_gzip_size_of_compressible_and_random_files(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(100_000))
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(10_000))
    assert gzip_size(zeros) < 1_000
    assert gzip_size(zeros) == len(gzip.compress(bytes(100_000), mtime=0))
    assert gzip_size(noise) > 10_000  # incompressible: gzip only adds its header
    assert gzip_size(noise) == gzip_size(noise)  # mtime=0: the same file always gives the same size


# --- measure_latency_ms -------------------------------------------------------------------------------------


def test_measure_latency_returns_ordered_positive_percentiles() -> None:
    calls: list[int] = []

    def run(ids: np.ndarray, mask: np.ndarray) -> None:
        assert ids.shape == mask.shape == (1, 4)  # single rows, as on a device
        calls.append(int(ids[0, 0]))
        time.sleep(0.0005 * (1 + ids[0, 0] % 3))

    ids = np.arange(20, dtype=np.int32).repeat(4).reshape(20, 4)
    p50, p95 = measure_latency_ms(run, ids, np.ones_like(ids), samples=15)
    assert 0.4 < p50 <= p95 < 1_000
    assert len(calls) == 10 + 15  # warm-up calls, then one timed call per sample
    assert calls[10:] == ids[:15, 0].tolist()


def test_measure_latency_samples_at_most_the_rows_it_has() -> None:
    calls: list[int] = []
    ids = np.zeros((3, 4), dtype=np.int32)
    p50, p95 = measure_latency_ms(lambda i, m: calls.append(1), ids, ids, samples=100)
    assert len(calls) == 3 + 3
    assert 0 < p50 <= p95


# --- evaluate_artifact --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("evaluate-task"), n=80)


@pytest.fixture(scope="module")
def artifacts(task: ToyTask, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Few epochs, so the student makes some mistakes and accuracy is not trivially 1.0.
    model = train_toy_student(task.vocab_size, task.encoded, task.labels, epochs=2)
    d = tmp_path_factory.mktemp("evaluate-artifacts")
    tflite_int8(model, task.encoded, d / "int8.tflite")
    return {
        "onnx": to_onnx(model, d / "model.onnx", task.encoded[0].shape[1]),
        "tflite": to_tflite(model, d / "model.tflite"),
        "int8.tflite": d / "int8.tflite",
    }


def _direct_logits(path: Path, encoded: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Logits straight from ONNX Runtime or LiteRT, without the edgeopt runtime's backends."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"input_ids": encoded[0], "attention_mask": encoded[1]})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner: Any = interpreter.get_signature_runner("serving_default")
    rows = [
        runner(input_ids=encoded[0][i : i + 1], attention_mask=encoded[1][i : i + 1])["logits"]
        for i in range(len(encoded[0]))
    ]
    raw = np.concatenate(rows)
    if raw.dtype == np.int8:
        scale, zero_point = interpreter.get_output_details()[0]["quantization"]
        return scale * (raw.astype(np.float32) - zero_point)
    return raw


@pytest.mark.parametrize("kind", ["onnx", "tflite", "int8.tflite"])
def test_evaluate_artifact_matches_a_direct_computation(artifacts: dict[str, Path], task: ToyTask, kind: str) -> None:
    path = artifacts[kind]
    rng = np.random.default_rng(0)
    teacher = np.where(rng.random(len(task.labels)) < 0.2, 1 - task.labels, task.labels)
    metrics = evaluate_artifact(path, task.encoded, task.labels, teacher, NUM_LABELS, latency_samples=5)

    predicted = _direct_logits(path, task.encoded).argmax(-1)
    accuracy, macro_f1, agreement = classification_scores(predicted, task.labels, teacher, NUM_LABELS)
    assert metrics.accuracy == pytest.approx(float(np.mean(predicted == task.labels)))
    assert (metrics.accuracy, metrics.macro_f1, metrics.agreement) == pytest.approx((accuracy, macro_f1, agreement))
    assert metrics.bytes == path.stat().st_size
    assert metrics.gzip_bytes == gzip_size(path)
    assert 0 < metrics.p50_ms <= metrics.p95_ms
    assert set(metrics.to_dict()) == {f.name for f in ArtifactMetrics.__dataclass_fields__.values()}


def test_toy_student_is_imperfect_enough_to_test_scores(artifacts: dict[str, Path], task: ToyTask) -> None:
    # Guards the test above: with every label right, a wrong accuracy formula could still give 1.0.
    predicted = _direct_logits(artifacts["onnx"], task.encoded).argmax(-1)
    assert 0.0 < np.mean(predicted == task.labels) < 1.0


# --- evaluate_teacher -------------------------------------------------------------------------------------


def _teacher_onnx(path: Path, with_token_type_ids: bool) -> Path:
    """A real two-label ONNX "teacher" with int64 inputs: logits = [sum(mask), sum(ids * mask)]."""
    import onnx
    from onnx import TensorProto, helper

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_type_ids else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in names]
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("ReduceSum", ["attention_mask", "axes"], ["length"], keepdims=1),
        helper.make_node("ReduceSum", ["masked", "axes"], ["total"], keepdims=1),
        helper.make_node("Concat", ["length", "total"], ["sums"], axis=1),
        helper.make_node("Cast", ["sums"], ["logits"], to=TensorProto.FLOAT),
    ]
    if with_token_type_ids:
        # Consumes token_type_ids so ONNX Runtime requires it: zeros leave the logits unchanged.
        nodes[0] = helper.make_node("Add", ["input_ids", "token_type_ids"], ["ids"])
        nodes.insert(1, helper.make_node("Mul", ["ids", "attention_mask"], ["masked"]))
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph(nodes, "teacher", inputs, [output], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("with_token_type_ids", [False, True])
def test_evaluate_teacher_scores_logits_and_times_the_onnx_model(
    task: ToyTask, tmp_path: Path, with_token_type_ids: bool
) -> None:
    from edgeopt.evaluate import evaluate_teacher

    onnx_path = _teacher_onnx(tmp_path / "teacher.onnx", with_token_type_ids)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 0.5]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1])
    metrics = evaluate_teacher(
        logits,
        labels,
        onnx_path,
        task.texts[:6],
        task.tokenizer_json,
        max_seq_len=16,
        weights_bytes=12_345,
        num_labels=2,
        latency_samples=4,
    )
    assert metrics.accuracy == pytest.approx(3 / 4)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)  # class 0: P 1/2, R 1; class 1: P 1, R 2/3
    assert metrics.agreement == 1.0
    assert metrics.bytes == 12_345
    assert metrics.gzip_bytes == gzip_size(onnx_path)
    assert 0 < metrics.p50_ms <= metrics.p95_ms


# --- fidelity on texts of every length ------------------------------------------------------------------------


def test_fidelity_by_bucket_counts_agreement_per_length() -> None:
    texts = ("one two", "a " * 20, "b " * 40, "c " * 200, "three words here")
    fidelity = FidelitySet(
        texts=texts,
        buckets=tuple(length_bucket(t) for t in texts),
        teacher_predicted=np.array([0, 1, 1, 0, 1]),
    )
    got = fidelity_by_bucket(np.array([0, 0, 1, 0, 0]), fidelity)
    assert got == {
        "<=8": {"texts": 2, "agreement": 0.5},
        "9-32": {"texts": 1, "agreement": 0.0},
        "33-128": {"texts": 1, "agreement": 1.0},
        ">128": {"texts": 1, "agreement": 1.0},
        "all": {"texts": 5, "agreement": 0.6},
    }


def test_fidelity_set_is_the_texts_then_their_crops() -> None:
    texts = ("Lunch at noon\nHi all. The usual place works for me, bring the numbers and the plan.", "short")
    made = fidelity_set(texts, seed=0)
    assert made[:2] == texts
    assert list(made[2:]) == [crop for _, crop, _ in crop_texts(texts, FIDELITY_CROPS, 0)]
    assert len(made) == 2 + 3


def test_evaluate_artifact_measures_fidelity_and_ece(artifacts: dict[str, Path], task: ToyTask) -> None:
    path = artifacts["int8.tflite"]
    texts = tuple(task.texts)
    teacher = np.asarray(task.labels)
    fidelity = FidelitySet(texts, tuple(length_bucket(t) for t in texts), teacher)
    metrics = evaluate_artifact(
        path, task.encoded, task.labels, teacher, NUM_LABELS, latency_samples=0, fidelity=(fidelity, task.encoded)
    )
    logits = _direct_logits(path, task.encoded)
    assert metrics.fidelity == fidelity_by_bucket(logits.argmax(-1), fidelity)
    assert metrics.fidelity["all"]["agreement"] == pytest.approx(metrics.agreement)
    assert metrics.ece == pytest.approx(expected_calibration_error(logits, task.labels), abs=1e-6)
    assert evaluate_artifact(path, task.encoded, task.labels, teacher, NUM_LABELS, 0).fidelity == {}
