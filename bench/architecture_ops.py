"""Which student architectures quantize fully to int8 in LiteRT and ONNX Runtime: the architecture lever's op check.

Reproduce (from the repository root, after `bash scripts/setup.sh`; about a minute on 2 cores):

    .venv/bin/python bench/architecture_ops.py

Each architecture is built at the pixel8 profile's sizes (embedding 64, hidden 128, dense 64; 4 classes, 128
tokens, a 2,000-token vocabulary) with seeded random weights, converted to full-integer TFLite and static QDQ int8
ONNX with the same calibration texts as a build uses them (random token ids, random lengths), and checked for:

- conversion: does the converter produce a model at all;
- float ops: arithmetic ops that still compute in float (`edgeopt.quantize.float_compute_ops`; empty: all int8);
- logit error: max |int8 - float| over the float logits' range, and label agreement with the float model,
  on 64 held-out random texts.

`cnn` and `cnn-attention` are what `edgeopt.student.build_student` builds; `bilstm` and `transformer` (one layer,
2 heads) are candidates not built into edgeopt, converted here to show what each would cost.
Results: bench/results/architecture_ops.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
VOCAB, SEQ, LABELS = 2000, 128, 4
EMBED, HIDDEN, DENSE = 64, 128, 64


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, SEQ, n)
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)
    return (rng.integers(1, VOCAB, (n, SEQ)) * mask).astype(np.int32), mask


def _rejected(kind: str) -> Any:
    from edgeopt._tf import import_tf

    tf, keras = import_tf()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    ids = keras.Input((SEQ,), dtype="int32", name="input_ids")
    attention_mask = keras.Input((SEQ,), dtype="int32", name="attention_mask")
    mask = layers.Lambda(lambda m: tf.expand_dims(tf.cast(m, tf.float32), -1))(attention_mask)
    x = layers.Multiply()([layers.Embedding(VOCAB, EMBED)(ids), mask])
    if kind == "bilstm":
        x = layers.Bidirectional(layers.LSTM(HIDDEN // 2, return_sequences=True))(x)
    else:
        x = x + layers.Embedding(SEQ, EMBED)(tf.range(SEQ)[None, :])
        keys = layers.Lambda(lambda m: tf.cast(m[:, None, :], tf.bool))(attention_mask)
        x = layers.LayerNormalization()(x + layers.MultiHeadAttention(2, EMBED // 2)(x, x, attention_mask=keys))
        ffn = layers.Dense(EMBED)(layers.Dense(HIDDEN, activation="relu")(x))
        x = layers.LayerNormalization()(x + ffn)
    x = layers.GlobalMaxPooling1D()(layers.Multiply()([x, mask]))
    logits = layers.Dense(LABELS, name="logits")(layers.Dense(DENSE, activation="relu")(x))
    return keras.Model([ids, attention_mask], logits)


def _model(kind: str) -> Any:
    if kind in ("bilstm", "transformer"):
        return _rejected(kind)
    from edgeopt.profiles import StudentSpec
    from edgeopt.student import build_student

    spec = StudentSpec(kind, EMBED, HIDDEN, 3, DENSE, 0.5)
    return build_student(spec, VOCAB, LABELS, SEQ, seed=0)


def _litert_logits(path: Path, inputs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = {
        ("input_ids" if "input_ids" in d["name"] else "attention_mask"): d for d in interpreter.get_input_details()
    }
    output = interpreter.get_output_details()[0]
    scale, zero_point = output["quantization"]
    rows = []
    for i in range(len(inputs[0])):
        interpreter.set_tensor(details["input_ids"]["index"], inputs[0][i : i + 1])
        interpreter.set_tensor(details["attention_mask"]["index"], inputs[1][i : i + 1])
        interpreter.invoke()
        rows.append(scale * (interpreter.get_tensor(output["index"])[0].astype(np.float32) - zero_point))
    return np.stack(rows)


def _ort_logits(path: Path, inputs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": inputs[0], "attention_mask": inputs[1]})[0]


def _check(fmt: str, model: Any, work: Path, calibration: Any, held_out: Any, reference: np.ndarray) -> dict:
    from edgeopt.export import to_onnx
    from edgeopt.quantize import float_compute_ops, onnx_int8_static, tflite_int8

    try:
        if fmt == "tflite":
            path = work / "model.tflite"
            tflite_int8(model, calibration, path)
            logits = _litert_logits(path, held_out)
        else:
            path = work / "model.onnx"
            onnx_int8_static(to_onnx(model, work / "float.onnx", SEQ), calibration, path)
            logits = _ort_logits(path, held_out)
    except Exception as error:  # the point is to record what each converter refuses
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return {"converts": False, "error": first.split("error: ")[-1][:200]}
    spread = float(reference.max() - reference.min())
    return {
        "converts": True,
        "float_ops": list(float_compute_ops(path)),
        "bytes": path.stat().st_size,
        "max_logit_error": round(float(np.abs(logits - reference).max()) / spread, 4),
        "agreement": round(float(np.mean(logits.argmax(-1) == reference.argmax(-1))), 4),
    }


def main() -> int:
    calibration, held_out = _inputs(200, seed=1), _inputs(64, seed=2)
    rows = []
    for kind in ("cnn", "cnn-attention", "bilstm", "transformer"):
        model = _model(kind)
        reference = np.asarray(model(list(held_out), training=False))
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("tflite", "onnx"):
                work = Path(tmp) / fmt
                work.mkdir()
                row = {
                    "architecture": kind,
                    "format": fmt,
                    **_check(fmt, model, work, calibration, held_out, reference),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = ".venv/bin/python bench/architecture_ops.py"
    (RESULTS / "architecture_ops.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Student architectures in int8: conversion, ops left in float, logit error",
        "",
        f"`{command}`: pixel8 sizes, random weights, 200 calibration and 64 held-out random texts of 3-128 tokens.",
        "Logit error: max |int8 - float| as a share of the float logits' range.",
        "",
        "| architecture | format | converts | ops in float | int8 MB | logit error | label agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["converts"]:
            lines.append(
                f"| {r['architecture']} | {r['format']} | yes | {', '.join(r['float_ops']) or 'none'} | "
                f"{r['bytes'] / 1e6:.2f} | {r['max_logit_error']:.4f} | {r['agreement']:.3f} |"
            )
        else:
            lines.append(f"| {r['architecture']} | {r['format']} | no: {r['error']} | | | | |")
    (RESULTS / "architecture_ops.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
