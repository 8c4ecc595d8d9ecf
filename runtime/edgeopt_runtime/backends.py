"""Inference backends: ONNX Runtime and LiteRT (the successor of TensorFlow Lite).

Both take ``input_ids`` / ``attention_mask`` arrays ``[n, max_seq_len]`` and return float32 logits
``[n, num_labels]``. A model with a fixed batch dimension of 1 is run once per row; a dynamic one once per
batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeopt_runtime.errors import BackendUnavailable, BundleInvalid, InputError
from edgeopt_runtime.manifest import OutputQuantization

__all__ = [
    "BackendName",
    "TimingHook",
    "Backend",
    "OnnxBackend",
    "TfliteBackend",
    "onnxruntime_available",
    "litert_available",
]

_INPUT_NAMES = ("input_ids", "attention_mask")
_ORT_DTYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


TimingHook = Callable[[float, float, int], None]
"""``(tokenize_s, model_s, rows)`` of one model call of a classifier or embedder (cache hits make none)."""


class BackendName(StrEnum):
    """Inference backend choices; ``AUTO`` picks ONNX Runtime when installed, else LiteRT."""

    AUTO = "auto"
    ONNX = "onnx"
    TFLITE = "tflite"


class Backend(Protocol):
    """What :class:`~edgeopt_runtime.model.TextClassifier` needs from a backend."""

    name: str

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Return float32 logits ``[n, num_labels]``."""
        ...


def _importable(module: str) -> bool:
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None  # None marks a module blocked from import
    return importlib.util.find_spec(module) is not None


def onnxruntime_available() -> bool:
    """Return True when ``onnxruntime`` can be imported (without importing it)."""
    return _importable("onnxruntime")


def litert_available() -> bool:
    """Return True when ``ai_edge_litert`` or the legacy ``tflite_runtime`` can be imported."""
    return _importable("ai_edge_litert") or _importable("tflite_runtime")


def _check_inputs(input_ids: np.ndarray, attention_mask: np.ndarray) -> None:
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
        raise InputError(
            f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must be equal 2-D shapes [n, seq]"
        )


def _dequantize(values: np.ndarray, quant: OutputQuantization | None, source: str) -> np.ndarray:
    if values.dtype in (np.int8, np.uint8):
        if quant is None:
            raise BundleInvalid(f"{source} returns {values.dtype} logits without scale/zero point; rebuild the bundle")
        return (quant.scale * (values.astype(np.float32) - quant.zero_point)).astype(np.float32)
    return values.astype(np.float32, copy=False)


def _find_input(names: list[str], wanted: str, source: str) -> int:
    # Exact name first; converters decorate names ("serving_default_input_ids:0"), so then a substring.
    for i, name in enumerate(names):
        if name == wanted:
            return i
    hits = [i for i, name in enumerate(names) if wanted in name]
    if len(hits) != 1:
        raise BundleInvalid(
            f"{source}: cannot find exactly one input named like {wanted!r} among {names}; rebuild the bundle"
        )
    return hits[0]


class OnnxBackend:
    """ONNX Runtime on the CPU execution provider.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads; None lets ONNX Runtime decide. Inter-op threads are always 1.
        output_quantization: Scale and zero point, when the model returns int8 logits.
        seq_len: Expected sequence length, checked against the model when the model fixes it.

    Raises:
        BackendUnavailable: ``onnxruntime`` is not installed.
        BundleInvalid: The file cannot be loaded or has no ``input_ids`` / ``attention_mask`` inputs.
    """

    name = BackendName.ONNX.value

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int | None = None,
        *,
        output_quantization: OutputQuantization | None = None,
        seq_len: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                "the onnx backend needs onnxruntime; pip install edgeopt-runtime[onnx] (or use --backend tflite)"
            ) from exc
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BundleInvalid(f"{path} cannot be loaded by onnxruntime ({first}); rebuild the bundle") from exc
        inputs = self._session.get_inputs()
        names = [i.name for i in inputs]
        self._inputs: dict[str, tuple[str, Any]] = {}
        batch_dims = set()
        for wanted in _INPUT_NAMES:
            meta = inputs[_find_input(names, wanted, str(path))]
            dtype = _ORT_DTYPES.get(meta.type)
            if dtype is None:
                raise BundleInvalid(f"{path}: input {meta.name!r} is {meta.type}, expected int32 or int64")
            if seq_len is not None and isinstance(meta.shape[1], int) and meta.shape[1] != seq_len:
                raise BundleInvalid(f"{path}: input {meta.name!r} has length {meta.shape[1]}, manifest says {seq_len}")
            self._inputs[wanted] = (meta.name, dtype)
            batch_dims.add(meta.shape[0])
        self.fixed_batch_one = batch_dims == {1}
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]
        self._quant = output_quantization

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Return float32 logits ``[n, num_labels]`` for int arrays ``[n, seq]``."""
        _check_inputs(input_ids, attention_mask)
        rows = [slice(i, i + 1) for i in range(len(input_ids))] if self.fixed_batch_one else [slice(None)]
        parts = []
        for rows_slice in rows:
            feed = {
                name: np.ascontiguousarray(arr[rows_slice], dtype=dtype)
                for arr, (name, dtype) in zip(
                    (input_ids, attention_mask),
                    (self._inputs["input_ids"], self._inputs["attention_mask"]),
                    strict=True,
                )
            }
            (out,) = self._session.run([self._output], feed)
            parts.append(np.asarray(out))
        return _dequantize(np.concatenate(parts, axis=0), self._quant, str(self.path))


def _litert_interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import (
                Interpreter,
            )  # legacy; cannot run models from new converters
        except ImportError as exc:
            raise BackendUnavailable(
                "the tflite backend needs ai-edge-litert; pip install edgeopt-runtime[tflite] (or use --backend onnx)"
            ) from exc
    return Interpreter


class TfliteBackend:
    """LiteRT (``ai_edge_litert``) interpreter; ``tflite_runtime`` only when ai-edge-litert is missing.

    The interpreter is not thread-safe, so :meth:`run` holds a lock.

    Args:
        path: The ``.tflite`` file.
        threads: Interpreter threads; None lets LiteRT decide.
        seq_len: Expected sequence length, checked against the model.

    Raises:
        BackendUnavailable: Neither ``ai_edge_litert`` nor ``tflite_runtime`` is installed.
        BundleInvalid: The file cannot be loaded or has no ``input_ids`` / ``attention_mask`` inputs.
    """

    name = BackendName.TFLITE.value

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, *, seq_len: int | None = None) -> None:
        interpreter_cls = _litert_interpreter_class()
        self.path = Path(path)
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BundleInvalid(f"{path} cannot be loaded by LiteRT ({first}); rebuild the bundle") from exc
        details = self._interp.get_input_details()
        names = [d["name"] for d in details]
        self._inputs = {wanted: details[_find_input(names, wanted, str(path))] for wanted in _INPUT_NAMES}
        for d in self._inputs.values():
            if d["dtype"] not in (np.int32, np.int64):
                raise BundleInvalid(f"{path}: input {d['name']!r} is {d['dtype'].__name__}, expected int32 or int64")
            if seq_len is not None and int(d["shape"][1]) != seq_len:
                raise BundleInvalid(f"{path}: input {d['name']!r} has length {d['shape'][1]}, manifest says {seq_len}")
        signature = self._inputs["input_ids"].get("shape_signature", self._inputs["input_ids"]["shape"])
        self.fixed_batch_one = int(signature[0]) == 1
        outputs = self._interp.get_output_details()
        named = [o for o in outputs if "logits" in o["name"]]
        self._output = (named or outputs)[0]
        self._batch = int(self._inputs["input_ids"]["shape"][0])
        self._lock = threading.Lock()

    def _resize(self, n: int) -> None:
        if n == self._batch:
            return
        for d in self._inputs.values():
            self._interp.resize_tensor_input(d["index"], [n, int(d["shape"][1])], strict=True)
        self._interp.allocate_tensors()
        self._output = next(o for o in self._interp.get_output_details() if o["index"] == self._output["index"])
        self._batch = n

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Return float32 logits ``[n, num_labels]`` for int arrays ``[n, seq]``."""
        _check_inputs(input_ids, attention_mask)
        step = 1 if self.fixed_batch_one else len(input_ids)
        parts = []
        with self._lock:
            for start in range(0, len(input_ids), step):
                self._resize(min(step, len(input_ids) - start))
                for arr, key in ((input_ids, "input_ids"), (attention_mask, "attention_mask")):
                    d = self._inputs[key]
                    self._interp.set_tensor(d["index"], np.ascontiguousarray(arr[start : start + step], d["dtype"]))
                self._interp.invoke()
                parts.append(self._interp.get_tensor(self._output["index"]).copy())
        scale, zero_point = self._output["quantization"]
        quant = OutputQuantization(scale=float(scale), zero_point=int(zero_point)) if scale else None
        return _dequantize(np.concatenate(parts, axis=0), quant, str(self.path))
