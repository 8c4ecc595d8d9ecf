"""Quantization-aware training (QAT) of the student with tfmot, and its export to int8 TFLite and QDQ ONNX.

Post-training quantization picks ranges after the fact; QAT instead inserts fake-quant ops (round to the int8 grid
in the forward pass, straight-through gradient) and fine-tunes on the same packed distillation targets, so the
weights learn to live on the grid. tfmot's default 8-bit scheme quantizes Dense (int8 kernel + output range) and
passes layers like Dropout and pooling through. It leaves out Conv1D, which edgeopt quantizes with the same scheme as
Dense through its own ``QuantizeConfig``, and it cannot touch Embedding, Lambda or Multiply: those stay float during
QAT and :class:`QatReport` says why for each. The TFLite converter then calibrates the ops QAT left float, so the
.tflite file is still full-integer.

Two pitfalls are handled here rather than left to the caller:

- ``quantize_apply`` rebuilds the model from its config, and Keras refuses to rebuild a Python ``lambda``; the
  student's ``mask`` Lambda is replaced by an equivalent serializable layer first.
- tfmot starts every activation range at [-6, 6] and moves it by an exponential average (decay 0.999), so a short
  fine-tune would keep ranges near that guess. The ranges start from the float model's activations instead.

tf2onnx turns the activation fake-quant ops into QuantizeLinear/DequantizeLinear pairs but folds the weight fake-quant
into float constants (values on the int8 grid); :func:`qat_to_onnx` stores those weights as int8 with a
DequantizeLinear (a quarter of their float size). The embedding table stays float in ONNX: tf2onnx does not calibrate.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.defaults import DEFAULTS
from edgeopt.distill import RecoveryData, compile_for_distillation
from edgeopt.errors import ConfigError, StageError
from edgeopt.quantize import OutputQuantization

__all__ = [
    "QatStatus",
    "QatLayer",
    "QatReport",
    "qat_layer_plan",
    "quantize_whole_model",
    "qat_finetune",
    "qat_to_tflite",
    "qat_to_onnx",
    "RANGE_INIT_SAMPLES",
]

# Rows of the training inputs used to start the activation ranges at the float model's values.
RANGE_INIT_SAMPLES = 512
# The student's attention-mask Lambda (see edgeopt.student.build_student), rebuilt as a serializable layer.
_MASK_LAMBDA = "mask"
_INT8_LEVELS = 127  # narrow-range symmetric int8: weights on [-127, 127] * scale


class QatStatus(StrEnum):
    """What QAT does with one layer."""

    QUANTIZED = "quantized"
    PASSTHROUGH = "passthrough"
    FLOAT = "float"


@dataclass(frozen=True)
class QatLayer:
    """One layer of the student and what QAT does with it.

    Attributes:
        name: The Keras layer name.
        kind: The Keras layer class.
        status: Fake-quantized, passed through (nothing to quantize), or left float.
        reason: One line saying why.
    """

    name: str
    kind: str
    status: QatStatus
    reason: str


@dataclass(frozen=True)
class QatReport:
    """What quantization-aware fine-tuning did.

    Attributes:
        layers: Every layer (inputs excluded) with its QAT status.
        epochs_run: Fine-tuning epochs.
        learning_rate: Adam learning rate of the fine-tune.
        history: Per-epoch Keras metrics (``loss``, ``label_accuracy``).
    """

    layers: tuple[QatLayer, ...]
    epochs_run: int
    learning_rate: float
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def quantized(self) -> tuple[str, ...]:
        """Names of the fake-quantized layers."""
        return tuple(layer.name for layer in self.layers if layer.status is QatStatus.QUANTIZED)

    @property
    def unsupported(self) -> tuple[QatLayer, ...]:
        """Layers QAT leaves float, each with its reason."""
        return tuple(layer for layer in self.layers if layer.status is QatStatus.FLOAT)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        data = asdict(self)
        data["layers"] = [{**asdict(layer), "status": layer.status.value} for layer in self.layers]
        return data


@functools.cache
def _custom_layers() -> dict[str, Any]:
    """Keras classes QAT needs; built on first use so that importing this module does not import TensorFlow."""
    import tensorflow_model_optimization as tfmot

    tf, keras = import_tf()
    quantizers = tfmot.quantization.keras.quantizers

    # Keras and tfmot classes are Any to mypy (no types shipped), hence misc (subclassing Any).
    class EdgeoptMaskToFloat(keras.layers.Layer):  # type: ignore[name-defined,misc]
        """``[batch, seq]`` int mask to ``[batch, seq, 1]`` float: the student's ``mask`` Lambda, serializable."""

        def call(self, mask: Any) -> Any:
            return tf.expand_dims(tf.cast(mask, tf.float32), -1)

    class EdgeoptConv1DQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):  # type: ignore[misc]
        """tfmot's 8-bit Dense scheme applied to Conv1D, which tfmot's registry leaves out."""

        def get_weights_and_quantizers(self, layer: Any) -> list[tuple[Any, Any]]:
            weight = quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)
            return [(layer.kernel, weight)]

        def get_activations_and_quantizers(self, layer: Any) -> list[tuple[Any, Any]]:
            activation = quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
            return [(layer.activation, activation)]

        def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
            layer.activation = quantize_activations[0]

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_config(self) -> dict[str, Any]:
            return {}

    return {
        "EdgeoptMaskToFloat": EdgeoptMaskToFloat,
        "EdgeoptConv1DQuantizeConfig": EdgeoptConv1DQuantizeConfig,
    }


def _registry() -> Any:
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()


def _classify(layer: Any, registry: Any) -> QatLayer:
    _, keras = import_tf()
    kind = type(layer).__name__
    if type(layer) is keras.layers.Conv1D:
        return QatLayer(
            layer.name,
            kind,
            QatStatus.QUANTIZED,
            "int8 kernel + output range via edgeopt's QuantizeConfig (tfmot's registry leaves Conv1D out)",
        )
    if registry.supports(layer):
        config = registry.get_quantize_config(layer)
        active = (
            config.get_weights_and_quantizers(layer)
            or config.get_activations_and_quantizers(layer)
            or config.get_output_quantizers(layer)
        )
        if active:
            return QatLayer(layer.name, kind, QatStatus.QUANTIZED, "tfmot's default 8-bit scheme")
        return QatLayer(
            layer.name, kind, QatStatus.PASSTHROUGH, "nothing to quantize: the output keeps its input's int8 range"
        )
    if isinstance(layer, keras.layers.Embedding):
        reason = (
            "tfmot's 8-bit scheme leaves Embedding out (not verified against TFLite upstream); "
            "the TFLite converter still quantizes the table from calibration data"
        )
    elif isinstance(layer, keras.layers.Lambda):
        reason = "arbitrary Python code: tfmot cannot quantize a Lambda; the converter calibrates its output"
    else:
        reason = f"{kind} is not in tfmot's default 8-bit registry; the converter calibrates its output"
    return QatLayer(layer.name, kind, QatStatus.FLOAT, reason)


def qat_layer_plan(model: Any) -> tuple[QatLayer, ...]:
    """Say, for every layer of ``model`` (inputs excluded), what QAT will do with it and why.

    Args:
        model: A ``tf_keras`` functional model such as the student.

    Returns:
        One :class:`QatLayer` per layer, in model order.
    """
    _, keras = import_tf()
    registry = _registry()
    return tuple(_classify(layer, registry) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))


def quantize_whole_model(model: Any) -> Any:
    """Apply tfmot's ``quantize_model`` to the whole model, as tfmot documents it.

    This works only when tfmot supports every layer; the student has layers it does not support (use
    :func:`qat_finetune`, which quantizes what it can and leaves the rest float).

    Args:
        model: A ``tf_keras`` functional model.

    Returns:
        The QAT model.

    Raises:
        StageError: Naming the first layer tfmot cannot quantize (or tfmot's own one-line reason).
    """
    import tensorflow_model_optimization as tfmot

    _, keras = import_tf()
    registry = _registry()
    unsupported = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and not registry.supports(layer)
    ]
    hint = "use edgeopt.qat.qat_finetune, which quantizes the layers tfmot supports and leaves the rest float"
    if unsupported:
        first = unsupported[0]
        others = f" (and {len(unsupported) - 1} more: {', '.join(la.name for la in unsupported[1:])})"
        raise StageError(
            f"tfmot cannot quantize the whole model: layer {first.name!r} ({type(first).__name__}) is not in its "
            f"8-bit scheme{others if len(unsupported) > 1 else ''}; {hint}"
        )
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except Exception as exc:  # tfmot raises bare RuntimeError/ValueError/TypeError from deep inside Keras
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StageError(f"tfmot could not quantize model {model.name!r}: {first_line}; {hint}") from exc


def _annotated_copy(model: Any) -> Any:
    """Clone ``model`` with QAT annotations on the layers that can take them; Lambdas replaced or refused."""
    import tensorflow_model_optimization as tfmot

    _, keras = import_tf()
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    registry = _registry()
    custom = _custom_layers()

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.layers.Lambda):
            if layer.name != _MASK_LAMBDA:
                raise StageError(
                    f"layer {layer.name!r} is a Lambda: QAT rebuilds the model and Keras will not rebuild a Python "
                    "lambda; replace it with a Keras layer"
                )
            return custom["EdgeoptMaskToFloat"](name=layer.name)
        status = _classify(layer, registry).status
        if status is QatStatus.FLOAT:
            return layer
        if type(layer) is keras.layers.Conv1D:
            return annotate(layer, quantize_config=custom["EdgeoptConv1DQuantizeConfig"]())
        return annotate(layer)

    return keras.models.clone_model(model, clone_function=clone)


def _init_activation_ranges(qat_model: Any, float_model: Any, inputs: tuple[np.ndarray, np.ndarray]) -> None:
    """Start each ``post_activation`` range at the float layer's observed min/max instead of tfmot's [-6, 6]."""
    _, keras = import_tf()
    wrappers = {layer.layer.name: layer for layer in qat_model.layers if hasattr(layer, "layer")}
    targets = [name for name in wrappers if any("post_activation_min" in w.name for w in wrappers[name].weights)]
    if not targets:
        return
    probe = keras.Model(float_model.inputs, [float_model.get_layer(name).output for name in targets])
    sample = [array[:RANGE_INIT_SAMPLES] for array in inputs]
    outputs = probe(sample, training=False)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    for name, values in zip(targets, outputs, strict=True):
        values = np.asarray(values)
        # The range must hold 0 (int8 zero point) and must not be empty.
        low, high = min(float(values.min()), 0.0), max(float(values.max()), 1e-6)
        for weight in wrappers[name].weights:
            if weight.name.endswith("post_activation_min:0"):
                weight.assign(low)
            elif weight.name.endswith("post_activation_max:0"):
                weight.assign(high)


def qat_finetune(
    model: Any,
    data: RecoveryData,
    epochs: int = 2,
    learning_rate: float = DEFAULTS["prune_learning_rate"],
    verbose: int = 0,
) -> tuple[Any, QatReport]:
    """Make a QAT copy of the student and fine-tune it on the packed distillation targets.

    ``model`` itself is not changed. Layers tfmot supports are fake-quantized (see :func:`qat_layer_plan`); the
    others stay float and are listed in the report with the reason.

    Args:
        model: The trained (distilled, possibly pruned and stripped) student.
        data: The rows, packed targets and loss the student was distilled with.
        epochs: Fine-tuning epochs (>= 1).
        learning_rate: Adam learning rate; smaller than distillation's, the weights only adapt to the grid.
        verbose: Keras verbosity.

    Returns:
        ``(qat_model, report)``.

    Raises:
        StageError: ``epochs`` < 1, ``learning_rate`` <= 0, or a layer QAT cannot rebuild.
    """
    import tensorflow_model_optimization as tfmot

    if epochs < 1:
        raise ConfigError(f"QAT epochs must be >= 1, got {epochs}")
    if not learning_rate > 0:
        raise ConfigError(f"QAT learning rate must be > 0, got {learning_rate}")
    inputs, distill_config = data.inputs, data.distill
    _, keras = import_tf()
    keras.utils.set_random_seed(distill_config.seed)
    layers = qat_layer_plan(model)
    annotated = _annotated_copy(model)
    with tfmot.quantization.keras.quantize_scope(_custom_layers()):
        try:
            qat_model = tfmot.quantization.keras.quantize_apply(annotated)
        except Exception as exc:  # tfmot surfaces Keras rebuild errors as bare exceptions
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StageError(f"tfmot could not apply QAT to model {model.name!r}: {first_line}") from exc
    _init_activation_ranges(qat_model, model, inputs)
    compile_for_distillation(qat_model, data.num_labels, distill_config, learning_rate)
    history = qat_model.fit(
        list(inputs),
        data.targets,
        epochs=epochs,
        batch_size=distill_config.batch_size,
        shuffle=True,
        verbose=verbose,
    )
    values = {key: [float(v) for v in vs] for key, vs in history.history.items()}
    report = QatReport(layers=layers, epochs_run=len(values["loss"]), learning_rate=learning_rate, history=values)
    return qat_model, report


def qat_to_tflite(qat_model: Any, calibration: tuple[np.ndarray, np.ndarray], path: Path) -> OutputQuantization:
    """Convert a QAT model to a full-integer .tflite (int8 ops, int8 logits, int32 token inputs).

    The fake-quant ranges learned in QAT are used where they exist; ``calibration`` gives ranges to the ops QAT left
    float (embedding lookup, mask multiplies).

    Args:
        qat_model: From :func:`qat_finetune`.
        calibration: ``(input_ids, attention_mask)`` of representative texts.
        path: Where to write the .tflite file.

    Returns:
        The output's scale and zero point.
    """
    from edgeopt.quantize import tflite_int8

    return tflite_int8(qat_model, calibration, path)


def _weight_scales(qat_model: Any) -> list[float]:
    """The int8 step of each fake-quantized kernel (narrow-range symmetric: ``max(|min|, |max|) / 127``)."""
    scales = []
    for layer in qat_model.layers:
        bounds = {w.name.rsplit("/", 1)[-1]: float(w.numpy()) for w in layer.weights if "kernel_m" in w.name}
        if "kernel_min:0" in bounds and "kernel_max:0" in bounds:
            magnitude = max(abs(bounds["kernel_min:0"]), abs(bounds["kernel_max:0"]))
            if magnitude > 0:
                scales.append(magnitude / _INT8_LEVELS)
    return scales


def _store_weights_int8(model_proto: Any, scales: list[float]) -> int:
    """Replace float weights that lie on an int8 grid by int8 initializers + DequantizeLinear; return how many."""
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model_proto.graph.initializer}
    weight_inputs = {node.input[1] for node in model_proto.graph.node if node.op_type in ("MatMul", "Conv", "Gemm")}
    folded = 0
    for name in sorted(weight_inputs & initializers.keys()):
        weights = numpy_helper.to_array(initializers[name]).astype(np.float64)
        for scale in scales:
            steps = weights / scale
            rounded = np.round(steps)
            if np.abs(steps - rounded).max() < 1e-3 and np.abs(rounded).max() <= _INT8_LEVELS:
                break
        else:
            continue
        model_proto.graph.initializer.remove(initializers[name])
        model_proto.graph.initializer.extend(
            [
                numpy_helper.from_array(rounded.astype(np.int8), f"{name}_int8"),
                numpy_helper.from_array(np.asarray(scale, dtype=np.float32), f"{name}_scale"),
                numpy_helper.from_array(np.asarray(0, dtype=np.int8), f"{name}_zero_point"),
            ]
        )
        # DequantizeLinear must precede its consumer in the node list (ONNX graphs are topologically sorted).
        model_proto.graph.node.insert(
            0,
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
                [name],
                name=f"{name}_DequantizeLinear",
            ),
        )
        folded += 1
    return folded


def qat_to_onnx(qat_model: Any, path: Path, max_seq_len: int) -> Path:
    """Convert a QAT model to a QDQ ONNX file: int8 weights, QuantizeLinear/DequantizeLinear on QAT activations.

    Layers QAT left float (embedding, mask multiplies, pooling) stay float here: unlike the TFLite converter,
    tf2onnx does not calibrate; run :func:`edgeopt.quantize.onnx_int8_static` on the float export for those.

    Args:
        qat_model: From :func:`qat_finetune`.
        path: Where to write the .onnx file.
        max_seq_len: Sequence length of both inputs.

    Returns:
        ``path``.

    Raises:
        StageError: tf2onnx cannot convert the fake-quant ops, or no weight could be stored as int8.
    """
    import onnx

    from edgeopt.export import to_onnx

    try:
        to_onnx(qat_model, path, max_seq_len)
    except Exception as exc:  # tf2onnx raises bare exceptions for ops it cannot map
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StageError(f"tf2onnx cannot convert the QAT model to ONNX ({first_line}); ship the TFLite file") from exc
    model_proto = onnx.load(str(path))
    if not any(node.op_type == "QuantizeLinear" for node in model_proto.graph.node):
        raise StageError(f"tf2onnx dropped the fake-quant ops of the QAT model in {path}; ship the TFLite file")
    if _store_weights_int8(model_proto, _weight_scales(qat_model)) == 0:
        raise StageError(f"no QAT weight of {path} lies on an int8 grid; was the model made by qat_finetune?")
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))
    return path
