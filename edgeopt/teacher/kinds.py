"""What a teacher path is, read from disk without loading a model.

Its kind (Hugging Face classifier, sentence-transformers encoder, ONNX), weight files, labels and fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeopt.defaults import DEFAULTS
from edgeopt.errors import TeacherError

__all__ = ["DEFAULT_TEACHER_SEQ_LEN", "TeacherKind", "detect_teacher_kind"]


# Tokens per text the teacher reads unless told otherwise (and unless it takes fewer): emails are longer, but
# fine-tuning cost grows with it, and 128 already gives the default teacher 0.984 on the test split.
DEFAULT_TEACHER_SEQ_LEN: int = DEFAULTS["teacher_seq_len"]


_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


_HF_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


_HASH_CHUNK = 1 << 20


class TeacherKind(StrEnum):
    """The formats a teacher path can have."""

    HF_CLASSIFIER = "hf-classifier"
    SENTENCE_TRANSFORMER = "sentence-transformer"
    ONNX = "onnx"


_EXPECTED_LAYOUT = (
    "expected a .onnx file, a Hugging Face model directory (config.json + model.safetensors or "
    "pytorch_model.bin), a sentence-transformers directory (modules.json) or a directory with "
    "model.onnx + tokenizer.json"
)


def detect_teacher_kind(path: Path) -> TeacherKind:
    """Tell which kind of teacher a path holds, from its files alone (nothing is loaded).

    Args:
        path: A model directory or an ``.onnx`` file.

    Returns:
        ``ONNX`` for a ``.onnx`` file or a directory with ``model.onnx``; ``HF_CLASSIFIER`` for a Hugging
        Face directory whose config names a ``*ForSequenceClassification`` architecture;
        ``SENTENCE_TRANSFORMER`` for a directory with ``modules.json`` (an encoder without a task head);
        ``HF_CLASSIFIER`` for any other Hugging Face directory (:func:`load_teacher` then checks the head).

    Raises:
        TeacherError: The path does not exist or holds none of these layouts.
    """
    path = Path(path)
    if not path.exists():
        raise TeacherError(f"teacher path {path} does not exist; {_EXPECTED_LAYOUT}")
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return TeacherKind.ONNX
        raise TeacherError(f"teacher path {path} is a file but not a .onnx model; {_EXPECTED_LAYOUT}")
    if (path / "model.onnx").is_file():
        return TeacherKind.ONNX
    has_hf = (path / "config.json").is_file() and _hf_weight_files(path)
    if has_hf and _has_classifier_head(_read_json(path / "config.json")):
        return TeacherKind.HF_CLASSIFIER
    if (path / "modules.json").is_file():
        return TeacherKind.SENTENCE_TRANSFORMER
    if has_hf:
        return TeacherKind.HF_CLASSIFIER
    raise TeacherError(f"{path} is not a model directory; {_EXPECTED_LAYOUT}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeacherError(f"cannot read {path}: {exc}; it must be a JSON object") from exc
    if not isinstance(data, dict):
        raise TeacherError(f"{path} is not a JSON object; it must be a model config")
    return data


def _has_classifier_head(config: dict[str, Any]) -> bool:
    return any(str(arch).endswith("ForSequenceClassification") for arch in config.get("architectures") or [])


def _hf_weight_files(path: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in _HF_WEIGHT_GLOBS:
        files.update(p for p in path.glob(pattern) if p.is_file())
    return sorted(files)


def _onnx_file(path: Path) -> Path:
    return path if path.is_file() else path / "model.onnx"


def _weight_files(path: Path, kind: TeacherKind) -> list[Path]:
    if kind is TeacherKind.ONNX:
        model = _onnx_file(path)
        # External weights (large models) sit beside the graph as model.onnx.data or similar.
        return [model, *sorted(p for p in model.parent.glob(f"{model.name}.data*") if p.is_file())]
    return _hf_weight_files(path)


def _sha256_files(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _label_names_from_config(config: dict[str, Any], where: Path) -> tuple[str, ...]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise TeacherError(f'{where} has no id2label; add the class names, e.g. "id2label": {{"0": "ham"}}')
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except ValueError as exc:
        raise TeacherError(f"{where}: id2label keys must be integers 0..n-1, got {sorted(id2label)}") from exc
    if sorted(by_index) != list(range(len(by_index))):
        raise TeacherError(f"{where}: id2label keys must be 0..n-1 without gaps, got {sorted(by_index)}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _fingerprint(files: Sequence[Path], max_seq_len: int) -> str:
    digest = hashlib.sha256(_sha256_files(files).encode())
    digest.update(f"max_seq_len={max_seq_len}".encode())
    return digest.hexdigest()
