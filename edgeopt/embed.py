"""The embed task's stages: a sentence encoder distilled into a small embedder, measured against it.

The classifier path, a second task: the same transfer set (texts and crops of every length), the same pruned
vocabulary and teacher-initialized token table, the same convolutional encoder with a linear head of the teacher's
width (``build_student(..., head="embedding")``), the same magnitude pruning and int8 export. What differs is the
target (the teacher's unit sentence vectors, :meth:`edgeopt.teacher.Teacher.embeddings`), the loss (cosine plus the
batch's similarity structure, :func:`edgeopt.distill.embedding_loss`) and the measures:

* **mean cosine** between the student's and the teacher's vector of each held-out text;
* **neighbour agreement**: recall@10 of the teacher's own 10 nearest neighbours of each held-out text among all
  held-out texts (what a search over the vectors returns);
* **Spearman** rank correlation of student vs teacher cosine similarity over random pairs of held-out texts.

The held-out corpus is the test texts and up to :data:`HELD_OUT_CROPS` crops of each (for the default task about
5,800 texts of every length); no stage trains on any of them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.augment import TransferSet, TransferSource, build_transfer_set, crop_texts
from edgeopt.data import TextDataset, load_default, read_labeled_file, read_unlabeled_file, stratified_split
from edgeopt.distill import DistillConfig, EmbedDistillResult, compile_for_embedding, distill_embeddings
from edgeopt.errors import ConfigError, DataError
from edgeopt.evaluate import gzip_size, measure_latency_ms
from edgeopt.profiles import Profile, StudentSpec, load_profile
from edgeopt.stages import TOKENIZER, BuildConfig, Reporter, student_spec_for
from edgeopt.student import PrunedVocabulary
from edgeopt.teacher import Teacher

__all__ = [
    "EMBED_TASK",
    "CLASSIFY_TASK",
    "TASKS",
    "NEIGHBOURS",
    "HELD_OUT_CROPS",
    "EMBED_WIDTH",
    "EMBED_TOKENS",
    "SIMILARITY_WEIGHT",
    "EmbedCorpus",
    "PreparedEmbedTask",
    "TrainedEmbedder",
    "EmbeddingAgreement",
    "EmbedArtifactMetrics",
    "load_embed_corpus",
    "held_out_corpus",
    "prepare_embed",
    "train_embedder",
    "prune_embedder",
    "artifact_vectors",
    "embedding_agreement",
    "evaluate_embedder",
]

logger = logging.getLogger(__name__)

CLASSIFY_TASK = "classify"
EMBED_TASK = "embed"
TASKS = (CLASSIFY_TASK, EMBED_TASK)

NEIGHBOURS = 10
"""k of the neighbour agreement (recall@k of the teacher's k nearest held-out texts)."""
HELD_OUT_CROPS = 4
"""Crops of each held-out text added to the held-out corpus (first line, first sentence, two random spans)."""
SPEARMAN_PAIRS = 20_000
"""Random pairs of held-out texts whose similarities are rank-correlated."""
HELD_OUT_SHARE = 0.15
"""Share of a user's texts held out for measurement when no test file is given."""
EMBED_WIDTH = 2.0
"""Factor on the profile's student widths (token table, filters, dense layer) for an embedder. A classifier's
student keeps what a few classes need; an embedder must keep a whole similarity space in view, and the same
widths doubled still fit pixel8's 5 MB in int8 (``bench/bench_embed.py`` measures 1x against 2x)."""
SIMILARITY_WEIGHT = 1.0
"""Weight of the batch similarity-structure term of the loss (:func:`edgeopt.distill.embedding_loss`)."""
EMBED_POOL_TOKENS = True
"""Pool the token vectors themselves (an attention-weighted mean) beside the filters (``build_student``'s
``pool_tokens``): measured in ``bench/embed_levers.py``."""
EMBED_EPOCHS = 40
"""Most distillation epochs of an embedder (early stopping on the validation cosine usually ends sooner; at 20 the
default task's embedder was still improving: ``bench/results/embed_levers.jsonl``)."""
EMBED_DROPOUT = 0.3
"""Dropout before the embedder's dense layer and head."""
EMBED_TOKENS = "corpus"
"""The embedder's vocabulary when the build does not name one (``--tokens``): the tokens of its texts. Every teacher
token pays for classifiers (README, issue 9) but not for this embedder: on the fortune quotes it left neighbour
recall and Spearman where they were (0.302 vs 0.301, 0.434 vs 0.440) and grew the model from 2.5 to 4.2 MB of
pixel8's 5 MB (``bench/results/embed-fortunes-teacher-tokens.md``); ``--tokens teacher`` still asks for it."""
EMBED_ARCHITECTURE = "cnn-attention"
"""The embedder's encoder: the attention pool reads a whole text, which a sentence vector has to summarize (the
max pool alone keeps each filter's strongest n-gram only)."""


@dataclass(frozen=True)
class EmbedCorpus:
    """The texts of an embed task: what the student learns from and what it is measured on.

    Attributes:
        name: Short name (``spamassassin`` for the shipped corpus, else the file's name).
        train: Transfer texts (the teacher embeds them and their crops).
        held_out: Texts no stage trains on (the measurement corpus is these and their crops).
        source: One line saying where the texts came from.
    """

    name: str
    train: tuple[str, ...]
    held_out: tuple[str, ...]
    source: str


def _read_texts(path: Path, text_column: str) -> list[str]:
    """Texts of a file: a table's text column (CSV/TSV/JSON Lines, labels not needed) or one text a line."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv", ".jsonl", ".json")):
        # The text column read as its own label: every row needs a text, none a label.
        return [text for text, _ in read_labeled_file(path, text_column, text_column)]
    return read_unlabeled_file(path)


def load_embed_corpus(config: BuildConfig) -> EmbedCorpus:
    """The embed task's texts: the shipped corpus's texts, or ``config.train`` (+ ``test``, ``unlabeled``).

    Without ``test`` a seeded :data:`HELD_OUT_SHARE` of the training texts is held out.

    Raises:
        DataError: A file cannot be read, or too few texts remain to hold some out.
    """
    if config.train is None:
        if config.test is not None:
            raise ConfigError(lambda p: f"{p('test')} needs {p('train')}; the shipped corpus brings its own test split")
        data = load_default()
        unlabeled = () if config.unlabeled is None else tuple(read_unlabeled_file(config.unlabeled))
        return EmbedCorpus(
            name="spamassassin",
            train=tuple(dict.fromkeys((*data.train.texts, *unlabeled))),
            held_out=data.test.texts,
            source=f"{data.source}; texts only (labels unused)",
        )
    train = _read_texts(Path(config.train), config.text_column)
    if config.unlabeled is not None:
        train += read_unlabeled_file(config.unlabeled)
    if config.test is not None:
        held_out = _read_texts(Path(config.test), config.text_column)
    else:
        distinct = list(dict.fromkeys(train))
        if len(distinct) < 20:
            raise DataError(
                lambda p: (
                    f"{config.train} holds {len(distinct)} distinct texts; an embedder needs at least 20 to hold some "
                    f"out for measuring it (or pass {p('test')})"
                )
            )
        rng = np.random.default_rng(config.seed)
        chosen = set(rng.choice(len(distinct), size=max(1, round(HELD_OUT_SHARE * len(distinct))), replace=False))
        held_out = [t for i, t in enumerate(distinct) if i in chosen]
        train = [t for i, t in enumerate(distinct) if i not in chosen]
    known = set(held_out)
    return EmbedCorpus(
        name=Path(config.train).name,
        train=tuple(t for t in dict.fromkeys(train) if t not in known),
        held_out=tuple(dict.fromkeys(held_out)),
        source=f"{config.train}" + ("" if config.test is None else f" (held out: {config.test})"),
    )


def held_out_corpus(texts: tuple[str, ...], seed: int) -> tuple[str, ...]:
    """The measurement corpus: the held-out texts, then up to :data:`HELD_OUT_CROPS` crops of each, without repeats."""
    crops = (crop for _, crop, _ in crop_texts(texts, HELD_OUT_CROPS, seed))
    return tuple(dict.fromkeys((*texts, *crops)))


@dataclass
class PreparedEmbedTask:
    """What every embedder of a task is made from.

    Attributes:
        profile: The hardware profile.
        corpus: The task's texts.
        teacher: The sentence encoder.
        transfer: Transfer texts and their crops (``origins`` tie a crop to its text).
        transfer_vectors: The teacher's unit vectors of the transfer texts.
        held_out_texts: The held-out texts and their crops (the measurement corpus).
        held_out_vectors: The teacher's unit vectors of those.
        student_spec: The student's settings (the profile's with the build's overrides, widened by
            :data:`EMBED_WIDTH`).
    """

    profile: Profile
    corpus: EmbedCorpus
    teacher: Teacher
    transfer: TransferSet
    transfer_vectors: np.ndarray
    held_out_texts: tuple[str, ...]
    held_out_vectors: np.ndarray
    student_spec: StudentSpec

    @property
    def dim(self) -> int:
        """Width of the teacher's vectors, and so of the student's."""
        return int(self.transfer_vectors.shape[1])


def _embed_student_spec(config: BuildConfig, profile: Profile) -> StudentSpec:
    spec = student_spec_for(config, profile)

    def wider(value: int) -> int:
        return max(1, round(value * EMBED_WIDTH))

    return replace(
        spec,
        architecture=EMBED_ARCHITECTURE,
        tokens=config.tokens or EMBED_TOKENS,
        embedding_dim=wider(spec.embedding_dim),
        hidden_dim=wider(spec.hidden_dim),
        dense_dim=wider(spec.dense_dim),
        search_widths=(1.0,),
    )


def prepare_embed(config: BuildConfig, reporter: Reporter) -> PreparedEmbedTask:
    """Load the profile, the texts and the sentence encoder; get its vectors of every text (cached by text).

    Raises:
        EdgeoptError: A profile, data or teacher problem; nothing has been written then.
    """
    from edgeopt.teacher import (
        TeacherLogitCache,
        default_embedding_teacher,
        detect_teacher_kind,
        load_embedding_teacher,
    )

    profile = load_profile(config.profile)
    if config.teacher is not None:
        detect_teacher_kind(Path(config.teacher))
    with reporter.stage("data") as info:
        corpus = load_embed_corpus(config)
        info.update(task=f"{corpus.name} (embed)", train=len(corpus.train), held_out=len(corpus.held_out))
    with reporter.stage("teacher") as info:
        path = default_embedding_teacher() if config.teacher is None else Path(config.teacher)
        teacher = load_embedding_teacher(path, config.pooling, config.teacher_seq_len)
        info.update(kind=teacher.kind.value, path=str(teacher.path), pooling=teacher.pooling)
    spec = _embed_student_spec(config, profile)
    with reporter.stage("teacher embeddings") as info, TeacherLogitCache() as cache:
        nothing = TextDataset(texts=(), labels=(), label_names=())
        transfer = build_transfer_set(nothing, corpus.train, 0, config.seed, crop_copies=spec.crop_copies)
        held_out = (
            *corpus.held_out,
            *(crop for _, crop, _ in crop_texts(corpus.held_out, HELD_OUT_CROPS, config.seed)),
        )
        held_out = tuple(dict.fromkeys(held_out))
        vectors = cache.get_or_compute_embeddings(teacher, [*transfer.texts, *held_out], progress=True)
        info.update(
            texts=len(vectors),
            crops=transfer.count(TransferSource.CROP),
            held_out_corpus=len(held_out),
            cached=cache.hits,
            computed=cache.misses,
        )
    return PreparedEmbedTask(
        profile=profile,
        corpus=corpus,
        teacher=teacher,
        transfer=transfer,
        transfer_vectors=vectors[: len(transfer)],
        held_out_texts=held_out,
        held_out_vectors=vectors[len(transfer) :],
        student_spec=spec,
    )


@dataclass
class TrainedEmbedder:
    """A distilled embedder and what pruning and export of it need.

    Attributes:
        model: The float Keras embedder (output ``sentence_embedding``, the teacher's width).
        vocab: Its pruned vocabulary.
        max_seq_len: Tokens per input.
        transfer_ids: ``(input_ids, attention_mask)`` of the transfer texts.
        held_out_ids: The same of the held-out corpus.
        fit_rows: Transfer rows it trains on.
        val_rows: Transfer rows held out for early stopping (texts and their crops).
        distill_config: Optimisation settings used.
        distilled: How distillation went.
        embedding_init: Where the token table started (``teacher-static``, ``teacher`` or ``random``).
        spec: The student's settings.
    """

    model: Any
    vocab: PrunedVocabulary
    max_seq_len: int
    transfer_ids: tuple[np.ndarray, np.ndarray]
    held_out_ids: tuple[np.ndarray, np.ndarray]
    fit_rows: np.ndarray
    val_rows: np.ndarray
    distill_config: DistillConfig
    distilled: EmbedDistillResult
    embedding_init: str
    spec: StudentSpec

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of the given transfer rows."""
        return self.transfer_ids[0][index], self.transfer_ids[1][index]

    def calibration(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded sample of training rows for calibrating int8 ranges."""
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(self.fit_rows, size=min(count, len(self.fit_rows)), replace=False))
        return self.rows(chosen)


def train_embedder(task: PreparedEmbedTask, config: BuildConfig, work: Path, reporter: Reporter) -> TrainedEmbedder:
    """Prune the vocabulary, start the token table from the teacher, and distill the teacher's vectors."""
    from edgeopt.stages import student_vocabulary, teacher_token_vectors
    from edgeopt.student import build_student, count_parameters, encode_texts, teacher_embedding_init

    spec = task.student_spec
    max_seq_len = task.profile.budget.max_seq_len
    distill_config = replace(config.distill or DistillConfig(epochs=EMBED_EPOCHS), seed=config.seed)
    with reporter.stage("student vocabulary") as info:
        keep_all = spec.tokens == "teacher"
        vocab = student_vocabulary(task.teacher, task.transfer.texts, work / TOKENIZER, keep_all)
        transfer_ids = encode_texts(vocab.tokenizer_json, task.transfer.texts, max_seq_len)
        held_out_ids = encode_texts(vocab.tokenizer_json, task.held_out_texts, max_seq_len)
        embeddings, embedding_init = None, "random"
        if spec.embedding_init != "random":
            table, embedding_init = teacher_token_vectors(task.teacher, vocab, spec.embedding_init)
            if table is not None:
                fit_rows = vocab.corpus_rows if keep_all else None
                embeddings = teacher_embedding_init(table, range(len(table)), spec.embedding_dim, fit_rows)
        info.update(teacher_tokens=vocab.teacher_vocab_size, kept_tokens=vocab.size, embedding_init=embedding_init)
    # Held out for early stopping: a seeded share of the texts and every crop of them (a crop of a held-out text
    # in training would leak it).
    base = [row for row, source in enumerate(task.transfer.sources) if source is not TransferSource.CROP]
    if len(base) < 2:
        raise DataError("an embedder needs at least 2 distinct training texts; add texts to the training file")
    _, val_base = stratified_split(
        [task.transfer.texts[i] for i in base], [0] * len(base), distill_config.validation_fraction, config.seed
    )
    val_texts = np.asarray([base[i] for i in val_base], dtype=int)
    fit = task.transfer.training_rows(val_texts).astype(int)
    val = task.transfer.held_out_rows(val_texts).astype(int)
    with reporter.stage("distill") as info:
        model = build_student(
            spec,
            vocab.size,
            task.dim,
            max_seq_len,
            seed=config.seed,
            embeddings=embeddings,
            head="embedding",
            pool_tokens=EMBED_POOL_TOKENS,
            dropout=EMBED_DROPOUT,
        )
        targets = task.transfer_vectors
        distilled = distill_embeddings(
            model,
            (transfer_ids[0][fit], transfer_ids[1][fit]),
            targets[fit],
            ((transfer_ids[0][val], transfer_ids[1][val]), targets[val]),
            distill_config,
            similarity_weight=SIMILARITY_WEIGHT,
        )
        info.update(
            parameters=count_parameters(model),
            epochs=distilled.epochs_run,
            val_cosine=round(distilled.best_val_cosine, 4),
            transfer_texts=len(task.transfer),
        )
    return TrainedEmbedder(
        model=model,
        vocab=vocab,
        max_seq_len=max_seq_len,
        transfer_ids=transfer_ids,
        held_out_ids=held_out_ids,
        fit_rows=fit,
        val_rows=val,
        distill_config=distill_config,
        distilled=distilled,
        embedding_init=embedding_init,
        spec=spec,
    )


def prune_embedder(trained: TrainedEmbedder, task: PreparedEmbedTask, epochs: int) -> tuple[Any, dict[str, Any]]:
    """Magnitude-prune a copy of the embedder to the profile's sparsity, fine-tuning on the teacher's vectors.

    Returns:
        The pruned float model and the pruning result (JSON).
    """
    from edgeopt._tf import import_tf
    from edgeopt.distill import RecoveryData
    from edgeopt.prune import PruneConfig, prune

    _, keras = import_tf()
    copy = keras.models.clone_model(trained.model)
    copy.set_weights(trained.model.get_weights())
    fit = trained.fit_rows
    pruned, result = prune(
        copy,
        RecoveryData(trained.rows(fit), task.transfer_vectors[fit], task.dim, trained.distill_config),
        PruneConfig(target_sparsity=task.student_spec.target_sparsity, epochs=epochs),
        compile_model=lambda model, rate: compile_for_embedding(model, rate, SIMILARITY_WEIGHT),
    )
    return pruned, result.to_dict()


@dataclass(frozen=True)
class EmbeddingAgreement:
    """How closely one embedder's vectors follow the teacher's on the held-out corpus.

    Attributes:
        mean_cosine: Mean cosine between the student's and the teacher's vector of each text.
        neighbour_recall: Recall@k of the teacher's k nearest neighbours of each text (itself excluded).
        spearman: Spearman correlation of the two models' cosine similarities over random pairs.
        texts: Size of the held-out corpus.
        pairs: Random pairs the correlation is over.
        k: Neighbours per text.
    """

    mean_cosine: float
    neighbour_recall: float
    spearman: float
    texts: int
    pairs: int
    k: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON form for manifests and reports."""
        return asdict(self)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return unit


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values), dtype=np.float64)
    return ranks


def _top_k(vectors: np.ndarray, k: int) -> np.ndarray:
    """For each row, the indices of its k most similar other rows (exact, in chunks)."""
    top = np.zeros((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 1024):
        scores = vectors[start : start + 1024] @ vectors.T
        rows = np.arange(start, start + len(scores))
        scores[rows - start, rows] = -np.inf  # a text is not its own neighbour
        top[start : start + len(scores)] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return top


def embedding_agreement(
    student: np.ndarray, teacher: np.ndarray, k: int = NEIGHBOURS, pairs: int = SPEARMAN_PAIRS, seed: int = 0
) -> EmbeddingAgreement:
    """Mean cosine, neighbour recall@k and Spearman correlation of ``student`` against ``teacher`` vectors.

    Args:
        student: ``[n, d]`` vectors (normalized here).
        teacher: ``[n, d']`` vectors of the same texts (any width: only similarities are compared, except for
            the mean cosine, which needs ``d == d'``).
        k: Neighbours per text.
        pairs: Random pairs for the correlation.
        seed: Seed of the pairs.

    Raises:
        ConfigError: Fewer than ``k + 1`` texts, or the two arrays have different row counts.
    """
    s, t = _unit(student), _unit(teacher)
    if len(s) != len(t) or len(s) < k + 1:
        raise ConfigError(f"need equal row counts and more than k={k} texts, got {len(s)} and {len(t)}")
    cosine = float(np.mean(np.sum(s * t, axis=1))) if s.shape[1] == t.shape[1] else float("nan")
    ours, theirs = _top_k(s, k), _top_k(t, k)
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]))
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(s), pairs), rng.integers(0, len(s), pairs)
    keep = left != right
    left, right = left[keep], right[keep]
    a = _ranks(np.sum(s[left] * s[right], axis=1))
    b = _ranks(np.sum(t[left] * t[right], axis=1))
    spearman = float(np.corrcoef(a, b)[0, 1])
    return EmbeddingAgreement(cosine, recall, spearman, len(s), int(keep.sum()), k)


@dataclass(frozen=True)
class EmbedArtifactMetrics:
    """One embedder artifact measured against the teacher on the held-out corpus, through the runtime's backend.

    Attributes:
        agreement: Mean cosine, neighbour recall and Spearman.
        bytes: Size on disk.
        gzip_bytes: Size gzipped.
        p50_ms: Median model call, batch 1, 1 thread, on the build host.
        p95_ms: 95th percentile of the same.
    """

    agreement: EmbeddingAgreement
    bytes: int
    gzip_bytes: int
    p50_ms: float
    p95_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the agreement's fields and the rest, flat."""
        return {
            **self.agreement.to_dict(),
            "bytes": self.bytes,
            "gzip_bytes": self.gzip_bytes,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


def artifact_vectors(path: Path, ids: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The unit vectors an ``.onnx`` or ``.tflite`` embedder gives for tokenized texts (through the runtime)."""
    from edgeopt.evaluate import artifact_backend

    backend = artifact_backend(path, threads=None)
    raw = np.concatenate([backend.run(ids[0][i : i + 64], ids[1][i : i + 64]) for i in range(0, len(ids[0]), 64)])
    return _unit(raw)


def evaluate_embedder(
    path: Path, ids: tuple[np.ndarray, np.ndarray], teacher_vectors: np.ndarray, latency_samples: int = 200
) -> EmbedArtifactMetrics:
    """Measure one embedder artifact against the teacher's vectors of the same texts."""
    from edgeopt.evaluate import artifact_backend

    agreement = embedding_agreement(artifact_vectors(path, ids), teacher_vectors)
    p50, p95 = measure_latency_ms(artifact_backend(path, threads=1).run, ids[0], ids[1], latency_samples)
    return EmbedArtifactMetrics(agreement, path.stat().st_size, gzip_size(path), p50, p95)
