"""Export a Keras student to float ONNX (tf2onnx) and float TFLite (the TFLite converter).

Both artifacts follow the bundle's model contract: inputs ``input_ids`` and ``attention_mask`` (int32,
``[batch, max_seq_len]``), output ``logits`` ``[batch, num_labels]``. Quantized variants are made from these in
:mod:`edgeopt.quantize`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt._tf import import_tf, native_output_captured

__all__ = ["to_onnx", "to_tflite", "tflite_converter", "ONNX_OPSET", "OUTPUT_NAME"]

ONNX_OPSET = 17
OUTPUT_NAME = "logits"


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
    _rename_graph_output(model_proto, OUTPUT_NAME)
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
