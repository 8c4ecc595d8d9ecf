"""Static int8 with an accuracy gate: keep the layers that int8 hurts most in float until the gate holds.

Static int8 usually costs a point or less, but one layer with outlier weights or an extreme activation range can cost
far more. :func:`run_accuracy_gate` quantizes everything first; if accuracy drops more than allowed, it measures each
layer's sensitivity (how much closer the int8 model's logits get to the float model's, on the calibration texts, when
only that layer is kept float), then keeps layers float in that order, one more per step, until the gate holds or
every layer is float. Each step is evaluated with the caller's ``evaluate``; the best artifact is always written:
the first one that meets the gate (fewest float layers), else the most accurate one (fewest float layers on a tie).

Both formats use their toolchain's official mechanism to keep nodes float:

- TFLite: ``tf.lite.experimental.QuantizationDebugger`` calibrates once;
  ``QuantizationDebugOptions(denylisted_nodes=...)`` and ``get_nondebug_quantized_model()`` give each variant
  without recalibrating. Inputs stay int32, logits int8.
- ONNX: ``onnxruntime.quantization.quantize_static(..., nodes_to_exclude=...)`` on the pre-processed float model (the
  node names refer to that model).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt._tf import native_output_captured
from edgeopt.errors import ConfigError, StageError
from edgeopt.quantize import (
    CalibrationReader,
    OutputQuantization,
    representative_dataset,
    tflite_output_quantization,
)

__all__ = [
    "GateFormat",
    "LayerSensitivity",
    "GateStep",
    "GateResult",
    "run_accuracy_gate",
]

logger = logging.getLogger(__name__)


class GateFormat(StrEnum):
    """Which artifact the gate quantizes."""

    TFLITE = "tflite"
    ONNX = "onnx"


@dataclass(frozen=True)
class LayerSensitivity:
    """How much int8 in one layer costs.

    Attributes:
        name: Node name (ONNX) or output tensor name (TFLite) the toolchain uses to keep it float.
        error: Relative squared error of the logits against the float model with only this layer kept float.
        gain: Error with every layer int8 minus ``error``: how much keeping this layer float helps (higher first).
    """

    name: str
    error: float
    gain: float


@dataclass(frozen=True)
class GateStep:
    """One artifact the gate tried.

    Attributes:
        kept_float: Layers kept float in this step.
        accuracy: What ``evaluate`` returned.
        bytes: Size of the artifact.
        met: Whether the accuracy met the gate.
    """

    kept_float: tuple[str, ...]
    accuracy: float
    bytes: int
    met: bool


@dataclass(frozen=True)
class GateResult:
    """The artifact the gate kept and how it got there.

    Attributes:
        format: ``tflite`` or ``onnx``.
        path: The artifact written (the best step).
        accuracy: Its accuracy.
        bytes: Its size.
        met: Whether it meets ``accuracy >= reference_accuracy - max_drop``.
        kept_float: The layers it keeps float.
        reference_accuracy: Accuracy of the float model.
        max_drop: Accuracy the caller allowed int8 to cost.
        steps: Every step tried, all-int8 first.
        sensitivities: Layer sensitivities, most sensitive first (empty when all-int8 met the gate).
        output_quantization: Scale and zero point of int8 logits (TFLite); ``None`` for float logits.
    """

    format: GateFormat
    path: Path
    accuracy: float
    bytes: int
    met: bool
    kept_float: tuple[str, ...]
    reference_accuracy: float
    max_drop: float
    steps: tuple[GateStep, ...]
    sensitivities: tuple[LayerSensitivity, ...]
    output_quantization: OutputQuantization | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        data = asdict(self)
        data["format"] = self.format.value
        data["path"] = str(self.path)
        return data


class _TfliteVariants:
    """Full-integer TFLite variants of one Keras model, calibrated once, with chosen nodes kept float."""

    def __init__(self, model: Any, calibration: tuple[np.ndarray, np.ndarray], per_channel: bool) -> None:
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        from edgeopt.export import tflite_converter

        converter = tflite_converter(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(calibration)
        if not per_channel:
            # The debugger reads this converter flag itself; there is no public per-tensor switch.
            converter._experimental_disable_per_channel = True
        self._options = tf.lite.experimental.QuantizationDebugOptions
        with native_output_captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_options=self._options(fully_quantize=True)
            )
        # NumericVerify tensors are named "NumericVerify/<tensor><digit>:<index>"; denylisting wants <tensor>.
        float_names = {
            d["name"] for d in Interpreter(model_content=self._debugger.calibrated_model).get_tensor_details()
        }
        verified = [
            d["name"]
            for d in Interpreter(model_content=self._debugger.quant_model).get_tensor_details()
            if d["name"].startswith("NumericVerify/")
        ]
        self.candidates: list[str] = []
        for name in verified:
            stem = name[len("NumericVerify/") :].rsplit(":", 1)[0]
            for tensor in (stem, stem[:-1]):
                if tensor in float_names and tensor not in self.candidates:
                    self.candidates.append(tensor)
                    break

    def write(self, kept_float: tuple[str, ...], path: Path) -> None:
        with native_output_captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the debugger builds tf.lite.Interpreter, which warns it is deprecated
            self._debugger.options = self._options(denylisted_nodes=list(kept_float), fully_quantize=True)
            flatbuffer = self._debugger.get_nondebug_quantized_model()
        path.write_bytes(flatbuffer)


class _OnnxVariants:
    """QDQ int8 variants of one float ONNX model, with chosen nodes kept float."""

    _PASSIVE = {"QuantizeLinear", "DequantizeLinear"}

    def __init__(self, float_model: Path, calibration: tuple[np.ndarray, np.ndarray], per_channel: bool, work: Path):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self._calibration = calibration
        self._per_channel = per_channel
        self._prepared = work / "prepared.onnx"
        quant_pre_process(str(float_model), str(self._prepared), skip_symbolic_shape=True)
        probe = work / "probe.onnx"
        self.write((), probe)
        float_nodes = {node.name for node in onnx.load(str(self._prepared)).graph.node}
        quantized = onnx.load(str(probe)).graph
        dequantized = {out for node in quantized.node if node.op_type == "DequantizeLinear" for out in node.output}
        # A node is quantized when quantize_static fed it through DequantizeLinear; those are the ones to try.
        self.candidates = [
            node.name
            for node in quantized.node
            if node.op_type not in self._PASSIVE
            and node.name in float_nodes
            and any(i in dequantized for i in node.input)
        ]

    def write(self, kept_float: tuple[str, ...], path: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        quantize_static(
            str(self._prepared),
            str(path),
            CalibrationReader(self._calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=self._per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(kept_float),
            extra_options={"CalibTensorRangeSymmetric": False},
        )


def _logits(path: Path, calibration: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from edgeopt_runtime import OnnxBackend, TfliteBackend

    backend = OnnxBackend(path) if path.suffix == ".onnx" else TfliteBackend(path)
    return np.asarray(backend.run(calibration[0], calibration[1]), dtype=np.float64)


def _relative_error(logits: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((logits - reference) ** 2) / max(float(np.mean(reference**2)), 1e-12))


def _float_logits(fmt: GateFormat, source: Any, calibration: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    if fmt is GateFormat.ONNX:
        return _logits(Path(source), calibration)
    return np.asarray(source(list(calibration), training=False), dtype=np.float64)


def run_accuracy_gate(
    fmt: GateFormat | str,
    source: Any,
    calibration: tuple[np.ndarray, np.ndarray],
    evaluate: Callable[[Path], float],
    reference_accuracy: float,
    max_drop: float,
    out: Path,
    per_channel: bool = True,
    max_steps: int | None = None,
) -> GateResult:
    """Static int8 that keeps the most sensitive layers float until ``accuracy >= reference - max_drop``.

    Args:
        fmt: ``"tflite"`` (``source`` is the Keras student) or ``"onnx"`` (``source`` is the float .onnx path).
        source: The float model.
        calibration: ``(input_ids, attention_mask)`` of representative texts; also where sensitivity is measured.
        evaluate: Returns the accuracy of an artifact file (e.g. through the runtime on a validation split).
        reference_accuracy: Accuracy of the float model on the same data ``evaluate`` uses.
        max_drop: Accuracy int8 may cost, in the same unit (0.01 = one point).
        out: Where to write the kept artifact.
        per_channel: One weight scale per output channel (more accurate) instead of per tensor.
        max_steps: At most this many fallback steps after all-int8 (``None``: until every layer is float).

    Returns:
        The kept artifact with every step tried; ``met`` is False when no step met the gate.

    Raises:
        StageError: An unknown format, a negative ``max_drop``/``max_steps``, or a missing float ONNX file.
    """
    try:
        fmt = GateFormat(fmt)
    except ValueError:
        raise StageError(f"unknown gate format {fmt!r}; choose 'tflite' or 'onnx'") from None
    if not max_drop >= 0:
        raise ConfigError(f"max_drop must be >= 0 (accuracy the int8 model may lose), got {max_drop}")
    if max_steps is not None and max_steps < 0:
        raise ConfigError(f"max_steps must be >= 0 or None, got {max_steps}")
    if fmt is GateFormat.ONNX and not Path(source).is_file():
        raise StageError(f"float ONNX model {source} does not exist; export it with edgeopt.export.to_onnx first")
    if len(calibration[0]) == 0:
        raise StageError("the calibration set is empty; pass at least one (input_ids, attention_mask) row")
    threshold = reference_accuracy - max_drop
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".{fmt.value}"
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gate-") as tmp:
        work = Path(tmp)
        if fmt is GateFormat.ONNX:
            variants: Any = _OnnxVariants(Path(source), calibration, per_channel, work)
        else:
            variants = _TfliteVariants(source, calibration, per_channel)
        steps: list[GateStep] = []
        files: list[Path] = []

        def attempt(kept: tuple[str, ...]) -> GateStep:
            path = work / f"step-{len(steps)}{suffix}"
            variants.write(kept, path)
            accuracy = float(evaluate(path))
            step = GateStep(kept, accuracy, path.stat().st_size, accuracy >= threshold)
            logger.info("int8 gate step %d: %d float layer(s), accuracy %.4f", len(steps), len(kept), accuracy)
            steps.append(step)
            files.append(path)
            return step

        sensitivities: list[LayerSensitivity] = []
        if not attempt(()).met:
            try:
                reference = _float_logits(fmt, source, calibration)
                base_error = _relative_error(_logits(files[0], calibration), reference)
                for name in variants.candidates:
                    probe = work / f"probe{suffix}"
                    variants.write((name,), probe)
                    error = _relative_error(_logits(probe, calibration), reference)
                    sensitivities.append(LayerSensitivity(name, error, base_error - error))
                # Stable sort: equal gains keep graph order.
                sensitivities.sort(key=lambda s: -s.gain)
                order = [s.name for s in sensitivities][:max_steps]
                for count in range(1, len(order) + 1):
                    if attempt(tuple(order[:count])).met:
                        break
            except Exception as exc:  # a toolchain failure mid-search must not lose the artifacts already made
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                logger.warning("int8 gate search stopped after %d step(s): %s", len(steps), first_line)
        met = [i for i, step in enumerate(steps) if step.met]
        best = met[0] if met else max(range(len(steps)), key=lambda i: (steps[i].accuracy, -len(steps[i].kept_float)))
        shutil.copyfile(files[best], out)
    chosen = steps[best]
    return GateResult(
        format=fmt,
        path=out,
        accuracy=chosen.accuracy,
        bytes=chosen.bytes,
        met=chosen.met,
        kept_float=chosen.kept_float,
        reference_accuracy=reference_accuracy,
        max_drop=max_drop,
        steps=tuple(steps),
        sensitivities=tuple(sensitivities),
        output_quantization=tflite_output_quantization(out) if fmt is GateFormat.TFLITE else None,
    )
