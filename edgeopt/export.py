"""Export a Keras student to float ONNX (tf2onnx), float TFLite (the TFLite converter) and a SavedModel.

All follow the bundle's model contract: inputs ``input_ids`` and ``attention_mask`` (int32,
``[batch, max_seq_len]``), output ``logits`` ``[batch, num_labels]`` (an embedder's: ``embedding``). Quantized
variants of the ONNX and TFLite files are made from these in :mod:`edgeopt.quantize`; the SavedModel, for
TensorFlow Serving, stays float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt._tf import import_tf, native_output_captured

__all__ = [
    "to_onnx",
    "to_tflite",
    "to_savedmodel",
    "tflite_converter",
    "fixed_shape_onnx",
    "nnapi_partitions",
    "ONNX_OPSET",
    "SERVING_SIGNATURE",
    "OUTPUT_NAME",
    "EMBEDDING_OUTPUT_NAME",
    "EMBEDDING_HEAD",
]

ONNX_OPSET = 17
SERVING_SIGNATURE = "serving_default"
"""The SavedModel signature TensorFlow Serving answers when a request names none."""
OUTPUT_NAME = "logits"
EMBEDDING_OUTPUT_NAME = "embedding"
EMBEDDING_HEAD = "sentence_embedding"
"""Layer name of an embedder's output (``embedding`` is taken by the token table); its ONNX output is
:data:`EMBEDDING_OUTPUT_NAME`."""


def _rename_graph_output(model_proto: Any, new_name: str) -> None:
    """Rename the single graph output (tf2onnx names it after the Keras tensor, e.g. ``logits/BiasAdd:0``)."""
    old_name = model_proto.graph.output[0].name
    if old_name == new_name:
        return
    for node in model_proto.graph.node:
        node.output[:] = [new_name if o == old_name else o for o in node.output]
        node.input[:] = [new_name if i == old_name else i for i in node.input]
    model_proto.graph.output[0].name = new_name


def to_onnx(model: Any, path: Path, max_seq_len: int) -> Path:
    """Convert ``model`` to a float32 ONNX file with a dynamic batch dimension."""
    tf, _ = import_tf()
    import onnx
    import tf2onnx

    signature = [
        tf.TensorSpec((None, max_seq_len), tf.int32, name="input_ids"),
        tf.TensorSpec((None, max_seq_len), tf.int32, name="attention_mask"),
    ]
    # tf2onnx prints conversion chatter; a library should not.
    with native_output_captured():
        model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
    embedder = EMBEDDING_HEAD in model.output_names
    _rename_graph_output(model_proto, EMBEDDING_OUTPUT_NAME if embedder else OUTPUT_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(path))
    return path


def tflite_converter(model: Any) -> Any:
    """A TFLite converter for ``model`` (callers set the quantization options)."""
    tf, _ = import_tf()
    return tf.lite.TFLiteConverter.from_keras_model(model)


def to_tflite(model: Any, path: Path) -> Path:
    """Convert ``model`` to a float32 TFLite flatbuffer."""
    converter = tflite_converter(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with native_output_captured():
        flatbuffer = converter.convert()
    path.write_bytes(flatbuffer)
    return path


def to_savedmodel(model: Any, path: Path, max_seq_len: int) -> Path:
    """Save ``model`` as a float32 SavedModel directory whose ``serving_default`` signature is the model contract.

    The signature takes ``input_ids`` and ``attention_mask`` (int32, ``[batch, max_seq_len]``) by name and returns
    ``{"logits": float32 [batch, num_labels]}`` (an embedder: ``{"embedding": [batch, dim]}``), the names and
    dtypes of the ONNX and TFLite artifacts, so a TensorFlow Serving request reads like an ONNX Runtime feed.
    """
    tf, _ = import_tf()
    name = EMBEDDING_OUTPUT_NAME if EMBEDDING_HEAD in model.output_names else OUTPUT_NAME

    # tf.function is Any to mypy (TensorFlow ships no types).
    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[
            tf.TensorSpec((None, max_seq_len), tf.int32, name="input_ids"),
            tf.TensorSpec((None, max_seq_len), tf.int32, name="attention_mask"),
        ]
    )
    def serve(input_ids: Any, attention_mask: Any) -> dict[str, Any]:
        return {name: model([input_ids, attention_mask], training=False)}

    path.parent.mkdir(parents=True, exist_ok=True)
    with native_output_captured():
        tf.saved_model.save(model, str(path), signatures={SERVING_SIGNATURE: serve})
    return path


def fixed_shape_onnx(source: Path, dest: Path, max_seq_len: int) -> Path:
    """Copy an ONNX model with its inputs fixed to ``[1, max_seq_len]`` (and its output to ``[1, num_labels]``).

    NNAPI (and CoreML) take a graph only where every tensor has a fixed size: with the dynamic batch of the shipped
    model ONNX Runtime's mobile checker finds a small share of the nodes usable (:func:`nnapi_partitions`), with the
    batch fixed nearly all. The weights and quantization are untouched, so for one text padded to ``max_seq_len``
    it answers as the dynamic model does. Rejected: shipping only the fixed model (batches then cost one call per
    text on the CPU path, and the runtime pads per batch).
    """
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(source))
    for graph_input in model.graph.input:
        make_input_shape_fixed(model.graph, graph_input.name, [1, max_seq_len])
    fix_output_shapes(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest


def nnapi_partitions(path: Path) -> dict[str, Any]:
    """ONNX Runtime's NNAPI usability check of an ONNX file, as its mobile checker computes it.

    Returns:
        ``nodes``, ``supported_nodes`` (what NNAPI could run), ``partitions`` (device hand-offs) and ``verdict``
        (``YES``, ``MAYBE`` or ``NO``: whether the NNAPI EP should be worth trying), counting a node with a dynamic
        input as unsupported, as the device will.
    """
    import logging

    import onnx
    from onnxruntime.tools.mobile_helpers import usability_checker

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=False)
    # The checker logs its own analysis at INFO on import paths we do not print.
    logging.getLogger("usability_checker").setLevel(logging.WARNING)
    info = usability_checker.check_nnapi_partitions(model, require_fixed_input_sizes=True)
    return {
        "nodes": int(info.num_nodes),
        "supported_nodes": int(info.num_supported_nodes),
        "partitions": int(info.num_partitions),
        "verdict": info.suitability().name,
    }
