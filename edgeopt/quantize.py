"""Post-training quantization of the student for both runtimes.

Static int8 (the default for phones) calibrates activation ranges on a representative sample of training texts:
- TFLite full-integer: every op in int8, int8 logits out (their scale and zero point go into the manifest). The
  token-id inputs stay int32: ids are indices, not values to quantize.
- ONNX: tf2onnx's float graph through ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel weights
  when the profile asks. ``quant_pre_process`` runs without symbolic shape inference, which fails on tf2onnx graphs.

Dynamic-range int8 (weights only) and float16 are here too: they need no calibration data and are what a profile
picks when activations are too sensitive for static ranges.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt._tf import native_output_captured
from edgeopt.export import tflite_converter
from edgeopt_runtime.manifest import OutputQuantization

__all__ = [
    "CalibrationMethod",
    "OutputQuantization",
    "tflite_int8",
    "tflite_dynamic",
    "tflite_float16",
    "onnx_int8_static",
    "onnx_int8_dynamic",
    "tflite_output_quantization",
    "representative_dataset",
    "CalibrationReader",
    "float_compute_ops",
]

logger = logging.getLogger(__name__)


class CalibrationMethod(StrEnum):
    """How ONNX static quantization turns observed activations into ranges."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


def tflite_output_quantization(path: Path) -> OutputQuantization | None:
    """Read the output tensor's quantization from a .tflite file; ``None`` for a float output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_output_details()[0]
    if detail["dtype"] != np.int8:
        return None
    scale, zero_point = detail["quantization"]
    return OutputQuantization(scale=float(scale), zero_point=int(zero_point))


def representative_dataset(calibration: tuple[np.ndarray, np.ndarray]) -> Any:
    """A TFLite ``representative_dataset`` yielding one text at a time, inputs keyed by name."""
    ids, mask = calibration

    def generate() -> Iterator[dict[str, np.ndarray]]:
        # By name: the converter orders signature inputs alphabetically, not as the Keras model lists them.
        for i in range(len(ids)):
            yield {
                "input_ids": ids[i : i + 1].astype(np.int32),
                "attention_mask": mask[i : i + 1].astype(np.int32),
            }

    return generate


def _convert(converter: Any, path: Path) -> Path:
    with native_output_captured(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flatbuffer = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def tflite_int8(
    model: Any, calibration: tuple[np.ndarray, np.ndarray], path: Path, per_channel: bool = True
) -> OutputQuantization:
    """Full-integer TFLite: int8 weights and activations, int8 logits, calibrated on ``calibration``.

    Args:
        model: The Keras student.
        calibration: ``(input_ids, attention_mask)`` of representative texts.
        path: Where to write the .tflite file.
        per_channel: One weight scale per output channel (the converter's default) or one per tensor.

    Returns:
        The output's scale and zero point.
    """
    import tensorflow as tf

    converter = tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_output_type = tf.int8
    if not per_channel:
        # The converter has no public per-tensor switch; this flag is the one its own QuantizationDebugger reads.
        converter._experimental_disable_per_channel = True
    _convert(converter, path)
    quantization = tflite_output_quantization(path)
    if quantization is None:  # pragma: no cover - the converter honours inference_output_type
        raise RuntimeError("TFLite converter did not produce an int8 output")
    return quantization


def tflite_dynamic(model: Any, path: Path) -> Path:
    """Dynamic-range TFLite: int8 weights, float activations computed on the fly."""
    import tensorflow as tf

    converter = tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert(converter, path)


def tflite_float16(model: Any, path: Path) -> Path:
    """Float16 weights (half the size of float32; GPU delegates run them natively)."""
    import tensorflow as tf

    converter = tflite_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return _convert(converter, path)


class CalibrationReader:
    """Feeds calibration batches to ``quantize_static`` (an ``onnxruntime.quantization.CalibrationDataReader``)."""

    def __init__(self, calibration: tuple[np.ndarray, np.ndarray], batch_size: int = 16) -> None:
        ids, mask = calibration
        # Equal batches only: the entropy and percentile collectors stack per-batch outputs into one array, which a
        # short last batch makes ragged. The few rows dropped do not change the ranges measurably.
        usable = len(ids) - len(ids) % batch_size if len(ids) >= batch_size else len(ids)
        batch_size = min(batch_size, max(usable, 1))
        ids, mask = ids[:usable], mask[:usable]
        self._batches = iter(
            [
                {
                    "input_ids": ids[i : i + batch_size].astype(np.int32),
                    "attention_mask": mask[i : i + batch_size].astype(np.int32),
                }
                for i in range(0, len(ids), batch_size)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when calibration data is exhausted."""
        return next(self._batches, None)


def onnx_int8_static(
    float_model: Path,
    calibration: tuple[np.ndarray, np.ndarray],
    path: Path,
    per_channel: bool = True,
    method: CalibrationMethod = CalibrationMethod.MINMAX,
) -> Path:
    """Static int8 ONNX in QDQ format, calibrated on ``calibration``.

    Args:
        float_model: The float32 ONNX model.
        calibration: ``(input_ids, attention_mask)`` of representative texts.
        path: Where to write the quantized model.
        per_channel: One scale per output channel of each weight (more accurate) instead of per tensor.
        method: Calibration method.

    Returns:
        ``path``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod as OrtCalibrationMethod,
    )
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort_method = {
        CalibrationMethod.MINMAX: OrtCalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtCalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtCalibrationMethod.Percentile,
    }[CalibrationMethod(method)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        # ONNX Runtime's percentile calibrator print()s its range ("Percentile : (...)"); a library prints nothing.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared),
                str(path),
                CalibrationReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=ort_method,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
    return path


def onnx_int8_dynamic(float_model: Path, path: Path, per_channel: bool = False) -> Path:
    """Dynamic int8 ONNX: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(float_model), str(path), per_channel=per_channel, weight_type=QuantType.QInt8)
    return path


def prune_on_int8_grid(model: Any, sparsity: float, per_channel: bool = True) -> float:
    """Quantize-then-prune: snap weights to their int8 grid, then zero the smallest int8 codes, without fine-tuning.

    This is the "other order" of prune -> quantize: the int8 grid is fixed by the dense weights first, then pruning
    removes the weights whose int8 codes are smallest. Nothing is retrained afterwards (fine-tuning would move the
    weights off the grid again), which is why it usually loses more than pruning first.

    Args:
        model: A float Keras student; its prunable layers are changed in place.
        sparsity: Share of each layer's kernel to zero.
        per_channel: One symmetric scale per output channel (else one per tensor).

    Returns:
        The overall sparsity reached over the pruned kernels.
    """
    from edgeopt.prune import PRUNABLE_LAYERS

    zeros = total = 0
    for name in PRUNABLE_LAYERS:
        layer = model.get_layer(name)
        weights = layer.get_weights()
        kernel = weights[0]
        axes = tuple(range(kernel.ndim - 1)) if per_channel else None
        scale = np.max(np.abs(kernel), axis=axes, keepdims=per_channel) / 127.0
        scale = np.where(scale == 0, 1.0, scale)
        codes = np.round(kernel / scale)
        threshold = np.quantile(np.abs(codes), sparsity)
        codes[np.abs(codes) <= threshold] = 0
        weights[0] = (codes * scale).astype(kernel.dtype)
        layer.set_weights(weights)
        zeros += int(np.sum(codes == 0))
        total += codes.size
    return zeros / total


# Ops that move, reshape or index data without arithmetic on its values: they need no int8 kernel.
_LAYOUT_OPS = frozenset(
    {
        "CAST",
        "CONCATENATION",
        "EXPAND_DIMS",
        "FILL",
        "GATHER",
        "PACK",
        "QUANTIZE",
        "DEQUANTIZE",
        "RESHAPE",
        "SHAPE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "TRANSPOSE",
        "Cast",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "DequantizeLinear",
        "Expand",
        "Gather",
        "QuantizeLinear",
        "Range",
        "Reshape",
        "Shape",
        "Slice",
        "Squeeze",
        "Transpose",
        "Unsqueeze",
    }
)


def float_compute_ops(path: Path) -> tuple[str, ...]:
    """The arithmetic ops of a quantized model that still compute in float, sorted (empty: all int8).

    TFLite: an op counts as float when it reads or writes a float32 tensor. ONNX (QDQ): an op counts as float when
    one of its float inputs does not come from a ``DequantizeLinear`` (ONNX Runtime fuses ``DQ -> op -> Q`` into an
    int8 kernel and runs anything else in float). Ops that only move data (casts, reshapes, gathers, concatenation)
    are left out: they have no arithmetic to quantize.

    Args:
        path: A ``.tflite`` or ``.onnx`` file.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        found = {
            op["op_name"]
            for op in interpreter._get_ops_details()
            if op["op_name"] not in _LAYOUT_OPS
            and any(dtypes.get(int(i)) == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)
        }
        return tuple(sorted(found))
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    elem_type = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    elem_type.update({t.name: t.data_type for t in graph.initializer})
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    shape_only = {out for node in graph.node if node.op_type in ("Shape", "Constant") for out in node.output}
    found = {
        node.op_type
        for node in graph.node
        if node.op_type not in _LAYOUT_OPS
        and any(
            elem_type.get(name) == onnx.TensorProto.FLOAT and name not in dequantized and name not in shape_only
            for name in node.input
            if name
        )
    }
    return tuple(sorted(found))
