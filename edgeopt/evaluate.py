"""Measure artifacts the way a device would use them: through the runtime, on the held-out test split.

Each artifact (and the teacher, in the same run) gets accuracy, macro-F1, agreement with the teacher's labels, bytes
on disk (and gzipped, since that is what an app download carries), and p50 latency at batch 1 on one thread. Latency
is measured on this build host, which is not the device: use it to compare artifacts with each other, not as a
promise about the phone.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgeopt_runtime.backends import Backend

__all__ = [
    "ArtifactMetrics",
    "FidelitySet",
    "expected_calibration_error",
    "fidelity_by_bucket",
    "fidelity_set",
    "classification_scores",
    "gzip_size",
    "measure_latency_ms",
    "evaluate_artifact",
    "evaluate_teacher",
    "LATENCY_SAMPLES",
]

LATENCY_SAMPLES = 200
_WARMUP = 10
ECE_BINS = 15
FIDELITY_CROPS = 3
"""Crops of each held-out text in the fidelity set: its first line, its first sentence and one random span."""


@dataclass(frozen=True)
class FidelitySet:
    """Held-out texts and crops of them, with the teacher's label of each: how far the student follows the teacher.

    The test split alone says how the student does on texts like the training texts; apps see texts of every
    length. The crops (first line, first sentence, a random 3-20 word span) are cut from the held-out texts, so
    no training text is among them, and agreement is reported per word-count bucket.

    Attributes:
        texts: The held-out texts, then their crops.
        buckets: The word-count bucket of each text (:data:`edgeopt.augment.LENGTH_BUCKETS`).
        teacher_predicted: The teacher's label index of each text.
    """

    texts: tuple[str, ...]
    buckets: tuple[str, ...]
    teacher_predicted: np.ndarray


def fidelity_set(test_texts: Sequence[str], seed: int) -> tuple[str, ...]:
    """The texts of a fidelity set: ``test_texts`` then up to :data:`FIDELITY_CROPS` crops of each."""
    from edgeopt.augment import crop_texts

    return (*test_texts, *(crop for _, crop, _ in crop_texts(test_texts, FIDELITY_CROPS, seed)))


def fidelity_by_bucket(predicted: np.ndarray, fidelity: FidelitySet) -> dict[str, dict[str, float | int]]:
    """Agreement with the teacher per word-count bucket and over all texts (``"all"``).

    Returns:
        ``{bucket: {"texts": n, "agreement": share}}`` for each bucket that holds a text, then ``"all"``.
    """
    from edgeopt.augment import LENGTH_BUCKETS

    buckets = np.asarray(fidelity.buckets)
    agree = np.asarray(predicted) == fidelity.teacher_predicted
    out: dict[str, dict[str, float | int]] = {}
    for name, _ in LENGTH_BUCKETS:
        chosen = buckets == name
        if chosen.any():
            out[name] = {"texts": int(chosen.sum()), "agreement": float(agree[chosen].mean())}
    out["all"] = {"texts": len(agree), "agreement": float(agree.mean()) if len(agree) else 0.0}
    return out


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-class probability (equal-width bins; Guo et al., 2017).

    The gap between how sure the model says it is and how often it is right, averaged over confidence bins
    weighted by their share of texts: 0 means a score of 0.8 is right 80% of the time.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if not len(logits):
        return 0.0
    shifted = logits - logits.max(-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            ece += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(ece)


@dataclass(frozen=True)
class ArtifactMetrics:
    """How one model did on the test split.

    Attributes:
        accuracy: Share of test texts labeled correctly.
        macro_f1: F1 averaged over classes (robust to imbalance).
        agreement: Share of test texts where it gives the teacher's label.
        bytes: Size on disk.
        gzip_bytes: Size gzipped (what a download carries; shows unstructured sparsity).
        p50_ms: Median latency of one model call, batch 1, 1 thread, on the build host.
        p95_ms: 95th percentile of the same.
        ece: Expected calibration error of its scores on the test split.
        fidelity: Agreement with the teacher on held-out texts and crops of them, per word-count bucket
            (:func:`fidelity_by_bucket`); empty when not measured.
    """

    accuracy: float
    macro_f1: float
    agreement: float
    bytes: int
    gzip_bytes: int
    p50_ms: float
    p95_ms: float
    ece: float = 0.0
    fidelity: dict[str, dict[str, float | int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float | int]:
        """JSON form for manifests and reports."""
        return asdict(self)


def classification_scores(
    predicted: np.ndarray, labels: np.ndarray, teacher_predicted: np.ndarray, num_labels: int
) -> tuple[float, float, float]:
    """Return ``(accuracy, macro_f1, agreement)``."""
    from sklearn.metrics import f1_score

    accuracy = float(np.mean(predicted == labels))
    macro_f1 = float(f1_score(labels, predicted, average="macro", labels=list(range(num_labels)), zero_division=0))
    agreement = float(np.mean(predicted == teacher_predicted))
    return accuracy, macro_f1, agreement


def gzip_size(path: Path) -> int:
    """Bytes of ``path`` after gzip at the default level."""
    return len(gzip.compress(Path(path).read_bytes(), mtime=0))


def measure_latency_ms(
    run: Callable[[np.ndarray, np.ndarray], object], ids: np.ndarray, mask: np.ndarray, samples: int
) -> tuple[float, float]:
    """Time ``run`` on single rows of ``(ids, mask)``; return ``(p50, p95)`` in milliseconds."""
    count = min(samples, len(ids))
    for i in range(min(_WARMUP, count)):
        run(ids[i : i + 1], mask[i : i + 1])
    times = []
    for i in range(count):
        start = time.perf_counter()
        run(ids[i : i + 1], mask[i : i + 1])
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def artifact_backend(path: Path, threads: int | None) -> Backend:
    """The runtime's backend for an ``.onnx`` or ``.tflite`` file."""
    from edgeopt_runtime import OnnxBackend, TfliteBackend

    if path.suffix == ".onnx":
        return OnnxBackend(path, threads=threads)
    return TfliteBackend(path, threads=threads)


def evaluate_artifact(
    path: Path,
    encoded: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    teacher_predicted: np.ndarray,
    num_labels: int,
    latency_samples: int = LATENCY_SAMPLES,
    fidelity: tuple[FidelitySet, tuple[np.ndarray, np.ndarray]] | None = None,
) -> ArtifactMetrics:
    """Evaluate one .onnx or .tflite file through the runtime's backend for it.

    Args:
        path: The artifact.
        encoded: ``(input_ids, attention_mask)`` of the test texts, tokenized by the runtime's tokenizer.
        labels: True label indices.
        teacher_predicted: The teacher's label indices on the same texts.
        num_labels: Number of classes.
        latency_samples: How many single-text calls to time.
        fidelity: A fidelity set and its ``(input_ids, attention_mask)``: measure agreement with the teacher on it.

    Returns:
        The artifact's metrics.
    """
    batch_backend = artifact_backend(path, threads=None)

    def run_all(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.concatenate([batch_backend.run(ids[i : i + 64], mask[i : i + 64]) for i in range(0, len(ids), 64)])

    ids, mask = encoded
    logits = run_all(ids, mask)
    accuracy, macro_f1, agreement = classification_scores(logits.argmax(-1), labels, teacher_predicted, num_labels)
    by_bucket = {} if fidelity is None else fidelity_by_bucket(run_all(*fidelity[1]).argmax(-1), fidelity[0])
    p50 = p95 = 0.0  # latency_samples=0: accuracy only (e.g. inside a search loop)
    if latency_samples > 0:
        p50, p95 = measure_latency_ms(artifact_backend(path, threads=1).run, ids, mask, latency_samples)
    return ArtifactMetrics(
        accuracy=accuracy,
        macro_f1=macro_f1,
        agreement=agreement,
        bytes=path.stat().st_size,
        gzip_bytes=gzip_size(path),
        p50_ms=p50,
        p95_ms=p95,
        ece=expected_calibration_error(logits, labels),
        fidelity=by_bucket,
    )


def _padded_teacher_tokens(
    tokenizer_json: Path, texts: Sequence[str], max_seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's own tokens of ``texts``, padded to ``max_seq_len`` as the runtime pads a student's.

    Not the runtime's tokenizer: that one is the student's (WordPiece, ``[PAD]``), and a teacher may pad with
    another token (RoBERTa's BPE pads with ``<pad>``).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    pad = next((t for t in ("[PAD]", "<pad>") if tokenizer.token_to_id(t) is not None), "[PAD]")
    tokenizer.enable_truncation(max_seq_len)
    tokenizer.enable_padding(length=max_seq_len, pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    return ids, np.asarray([e.attention_mask for e in encodings], dtype=np.int64)


def evaluate_teacher(
    teacher_logits: np.ndarray,
    labels: np.ndarray,
    onnx_path: Path,
    texts: Sequence[str],
    tokenizer_json: Path,
    max_seq_len: int,
    weights_bytes: int,
    num_labels: int,
    latency_samples: int = 50,
) -> ArtifactMetrics:
    """Score the teacher from its test logits and time its fp32 ONNX export at batch 1 on one thread.

    The teacher is timed in ONNX Runtime, like the students, so the speed ratio compares models, not frameworks.
    """
    import onnxruntime as ort

    predicted = teacher_logits.argmax(-1)
    accuracy, macro_f1, _ = classification_scores(predicted, labels, predicted, num_labels)
    ids, mask = _padded_teacher_tokens(tokenizer_json, texts[:latency_samples], max_seq_len)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}

    def run(ids: np.ndarray, mask: np.ndarray) -> object:
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
        if "token_type_ids" in input_names:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return session.run(None, {k: v for k, v in feed.items() if k in input_names})

    p50, p95 = measure_latency_ms(run, ids, mask, latency_samples)
    return ArtifactMetrics(
        accuracy=accuracy,
        macro_f1=macro_f1,
        agreement=1.0,
        bytes=weights_bytes,
        gzip_bytes=gzip_size(onnx_path),
        p50_ms=p50,
        p95_ms=p95,
        ece=expected_calibration_error(teacher_logits, labels),
    )
