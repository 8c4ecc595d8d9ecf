"""The stages build and compare share: configuration, the prepared task, the distilled student, export, measurement.

``edgeopt.pipeline.build`` and ``edgeopt.compare.compare`` are siblings over these: both :func:`prepare` the task
(data, teacher, transfer set, teacher outputs) and :func:`train_student`, then each goes its own way (one bundle, or
every technique side by side). This module imports neither of them, nor ``edgeopt.techniques``.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt._tf import import_tf, native_output_captured
from edgeopt.augment import TransferSet, TransferSource, build_transfer_set
from edgeopt.calibrate import ScoreCalibration
from edgeopt.data import TaskData, load_default, load_general_texts, load_task, stratified_split
from edgeopt.defaults import DEFAULTS
from edgeopt.distill import DistillConfig, DistillResult, distill, pack_targets
from edgeopt.errors import ConfigError, ProfileError, TeacherError
from edgeopt.evaluate import ArtifactMetrics, FidelitySet, evaluate_artifact, evaluate_teacher, fidelity_set
from edgeopt.events import Message, StageFinished, StageStarted, emit
from edgeopt.profiles import (
    RUNTIME_FORMATS,
    ExportFormat,
    ExportSpec,
    Profile,
    QuantizationScheme,
    StudentSpec,
    load_profile,
)
from edgeopt.quantize import CalibrationMethod
from edgeopt.search import (
    BYTES_PER_WEIGHT,
    CandidateOutcome,
    StudentCandidate,
    search_students,
    smallest_student_bytes,
    student_candidates,
)
from edgeopt.student import PrunedVocabulary
from edgeopt.teacher import FinetuneConfig, Teacher, TeacherKind
from edgeopt.teacher.precision import PRECISIONS
from edgeopt_runtime.manifest import Artifact, OutputQuantization

__all__ = [
    "BuildConfig",
    "artifact_record",
    "StageRecord",
    "Reporter",
    "PreparedTask",
    "TrainedStudent",
    "prepare",
    "train_student",
    "export_model",
    "export_savedmodel",
    "measure",
    "measure_teacher",
    "distill_config_for",
    "teacher_token_vectors",
    "fit_width",
    "student_spec_for",
    "export_spec_for",
    "accuracy_gate",
    "MODEL_ONNX",
    "MODEL_TFLITE",
    "MODEL_SAVEDMODEL",
    "TOKENIZER",
]

logger = logging.getLogger(__name__)

MODEL_ONNX = "model.onnx"


MODEL_TFLITE = "model.tflite"


MODEL_SAVEDMODEL = "model.savedmodel"
"""The bundle's SavedModel directory (``--formats savedmodel``), for TensorFlow Serving."""

TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class BuildConfig:
    """What to build (the settings of ``edgeopt build``); the defaults build the spam classifier for the Pixel 8.

    Where the bundle goes and whether it may replace or keep an over-budget one are arguments of
    :func:`edgeopt.pipeline.build` (``out``, ``force``, ``allow_over_budget``), not settings: ``compare`` takes the
    same config and writes elsewhere.

    Attributes:
        profile: A profile name (``edgeopt profiles list``), a path to a profile TOML file, or a loaded
            :class:`~edgeopt.profiles.Profile` (a build loads a name or path once and carries the result).
        teacher: A teacher directory or ONNX file; ``None`` fine-tunes all-MiniLM-L6-v2 on the training data.
        train: Labeled training file; ``None`` uses the built-in SpamAssassin task.
        test: Labeled test file; ``None`` holds out a seeded stratified split of ``train``.
        unlabeled: Extra texts (one a line) the teacher labels for distillation.
        text_column: Column or key holding the text in the labeled files.
        label_column: Column or key holding the label.
        seed: Seed of every random choice (split, initialization, batches).
        distill: Distillation settings; ``None`` takes temperature, alpha and intermediate weight from the profile's
            ``[student]`` table (see :func:`distill_config_for`).
        finetune: Teacher fine-tuning settings (used when the teacher has to be fine-tuned).
        teacher_seq_len: Tokens per text the teacher reads (and is fine-tuned on); None: ``finetune``'s
            for a teacher that is fine-tuned, else 128 or what the teacher takes when that is less.
        teacher_precision: The arithmetic a classifier teacher labels in (``auto``, ``float32``, ``bfloat16``;
            :mod:`edgeopt.teacher.precision`); ``auto`` takes bfloat16 autocast where the CPU has bfloat16
            arithmetic: on the project's 2-core CPU it labels ~1.5x faster and gives the same labels
            (``bench/teacher_precision.py --labeling``). The test split (the teacher's reported accuracy, the fidelity
            crops) is always labeled in float32. An ONNX teacher, and an embed build's teacher, run in float32.
        prune_epochs: Fine-tuning epochs during pruning.
        augment_copies: Augmented copies of each training text added to the transfer set (teacher-labeled);
            ``None`` takes the profile's ``[student] augment_copies`` (0 when absent).
        technique: A named technique (``edgeopt compare --list``) replacing the profile's pruning and quantization;
            ``None`` uses the profile's ``export.technique``, or its sparsity and quantization scheme.
        crop_copies: Crops of each training text (first line, first sentence, random spans) the teacher labels
            for the student; ``None`` takes the profile's ``[student] crop_copies`` (3 when absent).
        general_texts: General English texts (:func:`edgeopt.data.load_general_texts`) the teacher labels beside
            the task's texts (0: none); ``None`` takes the profile's ``[student] general_texts`` (0 when absent).
        embedding_init: ``"teacher-static"`` (each token's vector from a teacher forward pass, PCA-reduced),
            ``"teacher"`` (the teacher's input embedding table, PCA-reduced) or ``"random"``; ``None`` takes the
            profile's ``[student] embedding_init``.
        embedding_training: ``"frozen"`` (a teacher-initialized table stays as it starts), ``"trained"``, or
            ``"search"`` (distill both, keep the better on validation); ``None`` takes the profile's
            ``[student] embedding_training``.
        tokens: ``"corpus"`` (the student keeps the tokens the transfer texts use) or ``"teacher"`` (every
            teacher token); ``None`` takes the profile's ``[student] tokens``.
        calibrate: Fit a temperature on the validation split and fold it into the logits; ``None`` takes the
            profile's ``[student] calibrate``.
        student: One student configuration (:attr:`edgeopt.search.StudentCandidate.name`, e.g.
            ``cnn-attention/trained/x1``) instead of the profile's search; ``None`` searches as the profile says.
        search_budget_s: Seconds the student search may take (0: no limit); ``None`` takes the profile's
            ``[student] search_budget_s``.
        task: ``"classify"`` (a text classifier) or ``"embed"`` (a sentence embedder distilled from a
            sentence encoder, :mod:`edgeopt.embed`).
        pooling: How an embed teacher pools its token states (``mean``, ``cls``, ``max``); None reads it from a
            sentence-transformers directory. Only for ``task="embed"``.
        formats: Export formats replacing the profile's ``[export] formats`` (``onnx``, ``tflite``, ``savedmodel``;
            a sequence or one comma-separated string, in order of preference); ``None`` takes the profile's. At
            least one must be a format the runtime loads (onnx, tflite). Read by ``build``, not by ``compare``.
    """

    profile: str | Path | Profile = "pixel8"
    teacher: Path | None = None
    train: Path | None = None
    test: Path | None = None
    unlabeled: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    seed: int = 0
    distill: DistillConfig | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    teacher_seq_len: int | None = None
    teacher_precision: str = DEFAULTS["teacher_precision"]
    prune_epochs: int = DEFAULTS["prune_epochs"]
    augment_copies: int | None = None
    technique: str | None = None
    crop_copies: int | None = None
    general_texts: int | None = None
    embedding_init: str | None = None
    embedding_training: str | None = None
    tokens: str | None = None
    calibrate: bool | None = None
    student: str | None = None
    search_budget_s: float | None = None
    task: str = "classify"
    pooling: str | None = None
    formats: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("classify", "embed"):
            raise ConfigError(lambda p: f"{p('task')}={self.task!r} is not one of classify, embed")
        if self.teacher_precision not in PRECISIONS:
            raise ConfigError(
                lambda p: f"{p('teacher_precision')}={self.teacher_precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        if self.pooling is not None and self.task != "embed":
            raise ConfigError(lambda p: f"{p('pooling')} is for {p('task', 'embed')} only; drop it for a classifier")
        if self.formats is not None:
            object.__setattr__(self, "formats", _export_formats(self.formats))


def _export_formats(formats: str | Sequence[str]) -> tuple[ExportFormat, ...]:
    """``BuildConfig.formats`` as export formats, refused with one line when a bundle could not be made of them."""
    names = [f.strip() for f in formats.split(",") if f.strip()] if isinstance(formats, str) else list(formats)
    known = [f.value for f in ExportFormat]
    choices = ", ".join(known)
    runtime = " or ".join(f.value for f in RUNTIME_FORMATS)
    if not names:
        raise ConfigError(lambda p: f"{p('formats')} is empty; list at least one of {choices}")
    unknown = next((name for name in names if name not in known), None)
    if unknown is not None:
        raise ConfigError(
            lambda p: f"{p('formats')} has {unknown!r}, which is not an export format; choose from {choices}"
        )
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise ConfigError(lambda p: f"{p('formats')} lists {twice!r} twice; list each format once")
    chosen = [ExportFormat(name) for name in names]
    if not any(f in RUNTIME_FORMATS for f in chosen):
        raise ConfigError(
            lambda p: (
                f"{p('formats')} has no format the runtime loads; add {runtime} (savedmodel is for TensorFlow "
                "Serving only: a bundle needs a model the device can run)"
            )
        )
    return tuple(chosen)


@dataclass(frozen=True)
class StageRecord:
    """One stage of the build: its name, wall time and what it reported."""

    name: str
    seconds: float
    details: dict[str, Any]


class Reporter:
    """Times each stage, keeps its record for the report, and emits its events (:mod:`edgeopt.events`)."""

    def __init__(self) -> None:
        self.records: list[StageRecord] = []

    @contextmanager
    def stage(self, name: str, details: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Time a stage; the block may add entries to the yielded ``details``."""
        details = {} if details is None else details
        emit(StageStarted(name))
        start = time.perf_counter()
        yield details
        seconds = time.perf_counter() - start
        self.records.append(StageRecord(name, seconds, details))
        emit(StageFinished(name, seconds, dict(details)))

    def say(self, message: str) -> None:
        """A line for the person who started the work."""
        emit(Message(message))


def distill_config_for(
    profile: Profile,
    temperature: float | None = None,
    alpha: float | None = None,
    intermediate_weight: float | None = None,
    seed: int = 0,
) -> DistillConfig:
    """Distillation settings: the given values, else the profile's ``[student]`` values."""
    student = profile.student
    return DistillConfig(
        temperature=student.temperature if temperature is None else temperature,
        alpha=student.alpha if alpha is None else alpha,
        intermediate_weight=student.intermediate_weight if intermediate_weight is None else intermediate_weight,
        seed=seed,
    )


def student_spec_for(config: BuildConfig, profile: Profile) -> StudentSpec:
    """The profile's ``[student]`` settings with the build's overrides applied (validated like the profile)."""
    overrides: dict[str, Any] = {
        "augment_copies": config.augment_copies,
        "crop_copies": config.crop_copies,
        "general_texts": config.general_texts,
        "embedding_init": config.embedding_init,
        "embedding_training": config.embedding_training,
        "tokens": config.tokens,
        "calibrate": config.calibrate,
        "search_budget_s": config.search_budget_s,
    }
    try:
        return replace(profile.student, **{k: v for k, v in overrides.items() if v is not None})
    except ProfileError as error:
        raise ConfigError(f"build setting {error}") from None


def export_spec_for(config: BuildConfig, profile: Profile) -> ExportSpec:
    """The profile's ``[export]`` settings with the build's ``formats`` in place of its own, when given."""
    if config.formats is None:
        return profile.export
    return replace(profile.export, formats=tuple(ExportFormat(f) for f in config.formats))


def _distill_settings(config: BuildConfig, profile: Profile) -> DistillConfig:
    return replace(config.distill or distill_config_for(profile), seed=config.seed)


def _load_data(config: BuildConfig) -> TaskData:
    if config.train is None:
        if config.test is not None:
            raise ConfigError(
                lambda p: (
                    f"{p('test')} needs {p('train')}; without {p('train')} the built-in dataset brings its own "
                    "test split"
                )
            )
        data = load_default()
        if config.unlabeled is not None:
            from edgeopt.data import read_unlabeled_file

            data = replace(data, unlabeled=tuple(read_unlabeled_file(config.unlabeled)))
        return data
    return load_task(
        config.train,
        config.test,
        config.unlabeled,
        text_column=config.text_column,
        label_column=config.label_column,
        seed=config.seed,
    )


def _resolve_teacher(config: BuildConfig, data: TaskData) -> Teacher:
    from edgeopt.teacher import default_teacher, detect_teacher_kind, load_teacher

    finetune = config.finetune
    if config.teacher_seq_len is not None:
        finetune = replace(finetune, max_seq_len=config.teacher_seq_len)
    if config.teacher is None:
        return load_teacher(default_teacher(data.train, finetune), finetune.max_seq_len, config.teacher_precision)
    if detect_teacher_kind(Path(config.teacher)) is TeacherKind.SENTENCE_TRANSFORMER:
        from edgeopt.teacher import cached_finetune

        tuned = cached_finetune(Path(config.teacher), data.train, finetune)
        return load_teacher(tuned, finetune.max_seq_len, config.teacher_precision)
    return load_teacher(Path(config.teacher), config.teacher_seq_len, config.teacher_precision)


def _teacher_label_order(teacher: Teacher, label_names: tuple[str, ...]) -> np.ndarray:
    """Column order that puts the teacher's logits in the data's label order."""
    teacher_labels = teacher.label_names
    if set(teacher_labels) == set(label_names):
        return np.array([teacher_labels.index(name) for name in label_names])
    generic = tuple(f"LABEL_{i}" for i in range(len(teacher_labels)))
    if teacher_labels == generic and len(teacher_labels) == len(label_names):
        # Unnamed outputs: assume the conventional sorted order of the class names.
        return np.arange(len(label_names))
    raise TeacherError(
        f"the teacher's labels {list(teacher_labels)} do not match the data's labels {list(label_names)}; "
        "use a teacher trained on these classes or fix the label column"
    )


@dataclass
class PreparedTask:
    """The inputs every student is made from: data, teacher, and the teacher's logits (cached across runs).

    Attributes:
        profile: The hardware profile.
        data: The task's data.
        teacher: The loaded teacher.
        transfer: The transfer set: labeled training texts, then unlabeled, then augmented ones.
        transfer_texts: Its texts.
        transfer_logits: The teacher's logits for them, in the data's label order.
        test_logits: The teacher's logits for the test texts.
        fidelity: The test texts and crops of them, with the teacher's labels.
        student_spec: The student's settings (the profile's, with the build's overrides).
    """

    profile: Profile
    data: TaskData
    teacher: Teacher
    transfer: TransferSet
    transfer_texts: list[str]
    transfer_logits: np.ndarray
    test_logits: np.ndarray
    fidelity: FidelitySet
    student_spec: StudentSpec
    transfer_features: np.ndarray | None = None

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.data.label_names)


@dataclass
class TrainedStudent:
    """A distilled student and everything needed to prune, quantize and evaluate variants of it.

    Attributes:
        model: The distilled Keras student (float).
        vocab: Its pruned vocabulary (the ``tokenizer.json`` every artifact of it ships with).
        max_seq_len: Tokens per input.
        transfer_ids: ``(input_ids, attention_mask)`` of the transfer texts.
        test_ids: ``(input_ids, attention_mask)`` of the test texts.
        targets: Packed distillation targets of the transfer texts.
        fit_rows: Rows of the transfer set the student trains on.
        val_rows: Labeled rows held out for early stopping.
        distill_config: The distillation settings used.
        distilled: How distillation went.
        fidelity_ids: ``(input_ids, attention_mask)`` of the fidelity set (test texts and their crops).
        embedding_init: Where the embedding table started (``teacher`` or ``random``).
        score_calibration: The temperature folded into the logits, or None when calibration is off.
        embedding_training: Whether the embedding table was ``frozen`` or ``trained`` in the student kept.
        search: Every student candidate (:class:`edgeopt.search.CandidateResult` as JSON), in the order tried;
            the kept one has status ``chosen``.
        spec: The kept student's settings (its architecture and sizes; the profile's may say ``search``).
    """

    model: Any
    vocab: PrunedVocabulary
    max_seq_len: int
    transfer_ids: tuple[np.ndarray, np.ndarray]
    test_ids: tuple[np.ndarray, np.ndarray]
    targets: np.ndarray
    fit_rows: np.ndarray
    val_rows: np.ndarray
    distill_config: DistillConfig
    distilled: DistillResult
    fidelity_ids: tuple[np.ndarray, np.ndarray]
    embedding_init: str
    score_calibration: ScoreCalibration | None
    embedding_training: str = "trained"
    search: tuple[dict[str, Any], ...] = ()
    spec: StudentSpec | None = None

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of the given transfer rows."""
        return self.transfer_ids[0][index], self.transfer_ids[1][index]

    def calibrate_scores(self, model: Any, labels: np.ndarray) -> ScoreCalibration:
        """Fit a temperature on the validation rows' true labels and fold it into ``model``'s logits, in place.

        Args:
            model: A float Keras student (the distilled one, or a pruned copy).
            labels: The labeled training texts' labels (the validation rows index into them).
        """
        from edgeopt.calibrate import fit_temperature, fold_temperature

        logits = model.predict(list(self.rows(self.val_rows)), batch_size=256, verbose=0)
        fitted = fit_temperature(logits, np.asarray(labels)[self.val_rows])
        fold_temperature(model, fitted.temperature)
        return fitted

    def calibration(self, count: int, labeled_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded sample of training texts for calibrating int8 ranges."""
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(labeled_count, size=min(count, labeled_count), replace=False))
        return self.rows(chosen)

    def copy_model(self) -> Any:
        """A fresh copy of the float student (pruning and QAT change models in place)."""
        _, keras = import_tf()
        clone = keras.models.clone_model(self.model)
        clone.set_weights(self.model.get_weights())
        return clone


def prepare(config: BuildConfig, reporter: Reporter) -> PreparedTask:
    """Load the profile, data and teacher, and get the teacher's logits for every text (from the cache if it can).

    Raises:
        EdgeoptError: A profile, data or teacher problem; nothing has been written then.
    """
    from edgeopt.teacher import TeacherLogitCache, detect_teacher_kind

    # Everything that can be checked without work is checked first, so a typo fails in a second, not in minutes.
    profile = load_profile(config.profile)
    if config.teacher is not None:
        detect_teacher_kind(Path(config.teacher))
    with reporter.stage("data") as info:
        data = _load_data(config)
        info.update(task=data.name, train=len(data.train), test=len(data.test), unlabeled=len(data.unlabeled))
    with reporter.stage("teacher") as info:
        teacher = _resolve_teacher(config, data)
        column_order = _teacher_label_order(teacher, data.label_names)
        info.update(kind=teacher.kind.value, path=str(teacher.path))
    spec = student_spec_for(config, profile)
    with reporter.stage("teacher outputs") as info, TeacherLogitCache() as logit_cache:
        general = load_general_texts(
            spec.general_texts, config.seed, exclude=(*data.train.texts, *data.test.texts, *data.unlabeled)
        )
        transfer = build_transfer_set(
            data.train,
            data.unlabeled,
            spec.augment_copies,
            config.seed,
            crop_copies=spec.crop_copies,
            general=general,
        )
        transfer_texts = list(transfer.texts)
        transfer_logits = logit_cache.get_or_compute(teacher, transfer_texts, progress=True)[:, column_order]
        # The test texts come first in the fidelity set, so its logits hold the test split's too. They are what the
        # student is measured against, so they are the teacher's exact float32 answers; only the training targets
        # take the faster arithmetic (its labels were the same on every text measured, bench/teacher_precision.py).
        fidelity_texts = fidelity_set(data.test.texts, config.seed)
        fidelity_logits = logit_cache.get_or_compute(
            teacher.with_precision("float32"), list(fidelity_texts), progress=True
        )[:, column_order]
        features = None
        if _distill_settings(config, profile).intermediate_weight > 0:
            features = logit_cache.get_or_compute_features(teacher, transfer_texts, progress=True)
        info.update(
            texts=len(transfer_texts) + len(fidelity_texts),
            precision=teacher.precision,
            general=len(general),
            crops=transfer.count(TransferSource.CROP),
            cached=logit_cache.hits,
            computed=logit_cache.misses,
        )
    from edgeopt.augment import length_bucket

    return PreparedTask(
        profile=profile,
        data=data,
        teacher=teacher,
        transfer=transfer,
        transfer_texts=transfer_texts,
        transfer_logits=transfer_logits,
        test_logits=fidelity_logits[: len(data.test)],
        fidelity=FidelitySet(
            texts=fidelity_texts,
            buckets=tuple(length_bucket(text) for text in fidelity_texts),
            teacher_predicted=fidelity_logits.argmax(-1),
        ),
        student_spec=spec,
        transfer_features=features,
    )


def train_student(task: PreparedTask, config: BuildConfig, work: Path, reporter: Reporter) -> TrainedStudent:
    """Prune the vocabulary, tokenize, and distill the profile's student from the teacher's soft targets."""
    from edgeopt.student import (
        build_student,
        count_parameters,
        encode_texts,
        teacher_embedding_init,
    )

    data = task.data
    spec = task.student_spec
    max_seq_len = task.profile.budget.max_seq_len
    distill_config = _distill_settings(config, task.profile)
    with reporter.stage("student vocabulary") as info:
        keep_all = spec.tokens == "teacher"
        vocab = student_vocabulary(task.teacher, task.transfer_texts, work / TOKENIZER, keep_all)
        budget_bytes = task.profile.budget.max_model_mb * 1e6
        bytes_per_weight = BYTES_PER_WEIGHT[task.profile.export.quantization.value]
        if keep_all and smallest_student_bytes(spec, vocab.size, task.num_labels, bytes_per_weight) > budget_bytes:
            # A teacher with a large vocabulary (a multilingual one has ~120k tokens) would fill the budget with
            # rows of words this task may never see: the texts' own tokens are the better use of the bytes.
            vocab = student_vocabulary(task.teacher, task.transfer_texts, work / TOKENIZER, keep_all=False)
            logger.warning(
                "the teacher's %d tokens do not fit the profile's %.1f MB in the student's table; it keeps the %d "
                "tokens its texts use (tokens = corpus)",
                vocab.teacher_vocab_size,
                task.profile.budget.max_model_mb,
                vocab.size,
            )
            keep_all, spec = False, replace(spec, tokens="corpus")
        info.update(teacher_tokens=vocab.teacher_vocab_size, kept_tokens=vocab.size, tokens=spec.tokens)
        transfer_ids = encode_texts(vocab.tokenizer_json, task.transfer_texts, max_seq_len)
        fidelity_ids = encode_texts(vocab.tokenizer_json, task.fidelity.texts, max_seq_len)
        test_ids = (fidelity_ids[0][: len(data.test)], fidelity_ids[1][: len(data.test)])
        embeddings, embedding_init = None, "random"
        if spec.embedding_init != "random":
            table, embedding_init = teacher_token_vectors(task.teacher, vocab, spec.embedding_init)
            if table is None:
                logger.warning("the teacher has no token vectors to start from; the student starts random")
            else:
                widest = max(1, round(spec.embedding_dim * max(spec.search_widths)))
                # With every teacher token kept, the PCA still fits the corpus's tokens: the directions that
                # separate this task's words, not the whole vocabulary's.
                fit_rows = vocab.corpus_rows if keep_all else None
                embeddings = teacher_embedding_init(table, range(len(table)), widest, fit_rows)
        info.update(embedding_init=embedding_init)

    # Labeled rows split into fit/validation (labeled rows come first in the transfer set); unlabeled, augmented and
    # cropped texts train on soft targets only. Copies and crops of a validation text are held out with it, and
    # early stopping watches them too: its score is accuracy on the validation texts and agreement with the teacher
    # on their crops, so the weights kept are the ones that also follow the teacher on shorter texts.
    _, val_rows = stratified_split(
        list(data.train.texts), list(data.train.labels), distill_config.validation_fraction, config.seed
    )
    val = np.asarray(val_rows, dtype=int)
    fit = task.transfer.training_rows(val).astype(int)
    watched = task.transfer.held_out_rows(val).astype(int)
    targets = pack_targets(task.transfer_logits, np.asarray(task.transfer.labels), task.num_labels)
    features = task.transfer_features

    # A frozen teacher table keeps what the teacher knows of rare words but is only as good as the teacher's
    # vectors and the student's width; a trained one adapts. Neither wins everywhere, nor does one architecture, so
    # the search (edgeopt.search) distills the candidates the profile allows and the validation split (never the
    # test split) picks one.
    pinned = None if config.student is None else StudentCandidate.parse(config.student)
    candidates = student_candidates(spec, teacher_table=embeddings is not None, pinned=pinned)
    labels = np.asarray(data.train.labels)

    def distill_candidate(candidate: StudentCandidate, candidate_spec: StudentSpec) -> CandidateOutcome:
        title = f"distill ({candidate.name})" if len(candidates) > 1 else "distill"
        with reporter.stage(title) as info:
            student = build_student(
                candidate_spec,
                vocab.size,
                task.num_labels,
                max_seq_len,
                seed=config.seed,
                embeddings=None if embeddings is None else fit_width(embeddings, candidate_spec.embedding_dim),
                train_embeddings=candidate.embedding_training == "trained",
            )
            distilled = distill(
                student,
                (transfer_ids[0][fit], transfer_ids[1][fit]),
                targets[fit],
                ((transfer_ids[0][watched], transfer_ids[1][watched]), targets[watched]),
                task.num_labels,
                distill_config,
                teacher_features=None if features is None else features[fit],
                validation_features=None if features is None else features[watched],
            )
            val_logits = student.predict([transfer_ids[0][val], transfer_ids[1][val]], batch_size=256, verbose=0)
            val_accuracy = float(np.mean(val_logits.argmax(-1) == labels[val]))
            info.update(
                parameters=count_parameters(student),
                epochs=distilled.epochs_run,
                val_accuracy=val_accuracy,
                temperature=distill_config.temperature,
                alpha=distill_config.alpha,
                intermediate_weight=distill_config.intermediate_weight,
                transfer_texts=len(task.transfer_texts),
            )
        return CandidateOutcome(student, val_accuracy, distilled.best_val_accuracy, distilled.epochs_run, distilled)

    chosen, outcome, search = search_students(
        candidates,
        spec,
        distill_candidate,
        vocab_size=vocab.size,
        num_labels=task.num_labels,
        seq_len=max_seq_len,
        max_model_bytes=budget_bytes,
        bytes_per_weight=bytes_per_weight,
        budget_s=spec.search_budget_s,
    )
    student, distilled = outcome.model, outcome.detail
    trained = TrainedStudent(
        model=student,
        vocab=vocab,
        max_seq_len=max_seq_len,
        transfer_ids=transfer_ids,
        test_ids=test_ids,
        targets=targets,
        fit_rows=fit,
        val_rows=val,
        distill_config=distill_config,
        distilled=distilled,
        fidelity_ids=fidelity_ids,
        embedding_init=embedding_init,
        score_calibration=None,
        embedding_training=chosen.embedding_training,
        search=tuple(r.to_dict() for r in search),
        spec=chosen.spec(spec),
    )
    return trained


def fit_width(table: np.ndarray, dim: int) -> np.ndarray:
    """A PCA-ordered starting table cut (or zero-padded) to another width: the leading components are kept."""
    if table.shape[1] >= dim:
        return table[:, :dim]
    return np.pad(table, ((0, 0), (0, dim - table.shape[1])))


def student_vocabulary(teacher: Teacher, texts: Sequence[str], out: Path, keep_all: bool) -> PrunedVocabulary:
    """The student's tokens: the teacher's own WordPiece ones, else those of all-MiniLM-L6-v2's WordPiece vocabulary.

    The student's tokenizer runs on the device, where the runtime and the Kotlin core implement WordPiece only, and
    distillation needs the teacher's outputs per text, not its tokens: a teacher with a byte-level BPE (RoBERTa,
    GPT-2) or a SentencePiece Unigram (XLM-R, ALBERT, DeBERTa-v3) tokenizer teaches a student that reads an English
    uncased WordPiece vocabulary (bert-base-uncased's, as the default teacher's package ships it), its table
    started from the teacher's vector of each of those tokens' text (:func:`teacher_token_vectors`). Rejected:
    BPE and Unigram on the device (two more tokenizers to keep equal in Python and Kotlin), and a table over the
    teacher's own vocabulary (XLM-R's 250k tokens alone are 16 MB at 64 int8 dims).

    Raises:
        MissingExtraError: The teacher's tokenizer is not WordPiece and the default teacher's package is missing.
    """
    from edgeopt.student import prune_vocabulary, tokenizer_model
    from edgeopt.teacher.runner import default_embedding_teacher

    kind = tokenizer_model(teacher.tokenizer_json)
    if kind == "WordPiece":
        return prune_vocabulary(teacher.tokenizer_json, texts, out, keep_all)
    vocab = prune_vocabulary(default_embedding_teacher() / "tokenizer.json", texts, out, keep_all)
    logger.warning(
        "the teacher's tokenizer is %s, not WordPiece: the student reads all-MiniLM-L6-v2's English uncased "
        "WordPiece tokens instead (%d kept)",
        kind,
        vocab.size,
    )
    return replace(vocab, source=f"all-MiniLM-L6-v2's WordPiece vocabulary (the teacher's tokenizer is {kind})")


def teacher_token_vectors(teacher: Teacher, vocab: PrunedVocabulary, kind: str) -> tuple[np.ndarray | None, str]:
    """One teacher vector per student token (``[vocab.size, hidden]``) and where it came from.

    ``teacher-static`` falls back to the input embedding table for a teacher that cannot run token by token (ONNX).
    Over another model's vocabulary (:func:`student_vocabulary`) the teacher's ids and input table do not apply:
    each token's vector is then what the teacher makes of the token's text (its sentence features), model2vec's
    recipe for an outside vocabulary; an ONNX teacher, which gives logits only, leaves the table random.
    """
    if not vocab.from_teacher:
        if teacher.kind is TeacherKind.ONNX:
            return None, "random"
        return teacher.features(vocab.token_texts(), batch_size=512), "teacher-static"
    if kind == "teacher-static":
        static = teacher.static_token_vectors(vocab.teacher_ids)
        if static is not None:
            return static, "teacher-static"
    table = teacher.token_embeddings()
    if table is None or max(vocab.teacher_ids) >= len(table):
        return None, "random"
    return table[list(vocab.teacher_ids)], "teacher"


def artifact_record(fmt: str, precision: str, output_quantization: OutputQuantization | None = None) -> Artifact:
    """The manifest record of one exported model file (the one place a format becomes an ``Artifact``).

    An int8 output (a full-integer TFLite) carries its scale and zero point; every other output is float32.
    """
    if output_quantization is None:
        return Artifact(fmt, precision)
    return Artifact(fmt, precision, "int8", output_quantization)


def export_model(
    model: Any,
    scheme: QuantizationScheme,
    formats: set[ExportFormat],
    calibration: tuple[np.ndarray, np.ndarray],
    out: Path,
    max_seq_len: int,
    per_channel: bool = True,
    stem: str = "model",
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX,
) -> dict[str, Any]:
    """Write ``model`` in each format with one quantization scheme; return ``{file name: runtime Artifact}``.

    ONNX Runtime's CPU kernels gain nothing from float16 weights, so a float16 scheme ships float32 ONNX.
    """
    from edgeopt import export, quantize

    artifacts: dict[str, Any] = {}
    if ExportFormat.TFLITE in formats:
        name = f"{stem}.tflite"
        path = out / name
        if scheme is QuantizationScheme.INT8_STATIC:
            q = quantize.tflite_int8(model, calibration, path, per_channel=per_channel)
            artifacts[name] = artifact_record("tflite", "int8", q)
        elif scheme is QuantizationScheme.INT8_DYNAMIC:
            quantize.tflite_dynamic(model, path)
            artifacts[name] = artifact_record("tflite", "int8-dynamic")
        elif scheme is QuantizationScheme.FLOAT16:
            quantize.tflite_float16(model, path)
            artifacts[name] = artifact_record("tflite", "float16")
        else:
            export.to_tflite(model, path)
            artifacts[name] = artifact_record("tflite", "float32")
    if ExportFormat.ONNX in formats:
        name = f"{stem}.onnx"
        path = out / name
        if scheme in (QuantizationScheme.INT8_STATIC, QuantizationScheme.INT8_DYNAMIC):
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                float_onnx = export.to_onnx(model, Path(tmp) / "float.onnx", max_seq_len)
                if scheme is QuantizationScheme.INT8_STATIC:
                    quantize.onnx_int8_static(
                        float_onnx, calibration, path, per_channel=per_channel, method=calibration_method
                    )
                    artifacts[name] = artifact_record("onnx", "int8")
                else:
                    quantize.onnx_int8_dynamic(float_onnx, path, per_channel=per_channel)
                    artifacts[name] = artifact_record("onnx", "int8-dynamic")
        else:
            export.to_onnx(model, path, max_seq_len)
            artifacts[name] = artifact_record("onnx", "float32")
    return artifacts


def export_savedmodel(model: Any, out: Path, max_seq_len: int, measured_as: str) -> dict[str, Any]:
    """Write the float ``model`` as ``out/model.savedmodel`` (TensorFlow Serving); return its manifest record.

    ``measured_as`` names the manifest's ``metrics`` entry of the same float model (its float TFLite or ONNX
    export, run through the runtime), recorded so a reader finds the SavedModel's accuracy.

    It is not one of the manifest's ``artifacts``: those are the files the runtime loads, one file each, and the
    runtime has no SavedModel backend. The record (the manifest's top-level ``savedmodel``, a key the runtime keeps
    and ignores) names the directory, the signature and its tensors, and lists every file in it; the build lists
    those files under ``files`` too, so ``edgeopt-runtime verify`` checks their sizes and hashes. (They are not in
    the fingerprint, which covers what the runtime answers with: ``.onnx``, ``.tflite`` and ``.json`` files.)
    """
    from edgeopt import export

    path = export.to_savedmodel(model, out / MODEL_SAVEDMODEL, max_seq_len)
    output = export.EMBEDDING_OUTPUT_NAME if export.EMBEDDING_HEAD in model.output_names else export.OUTPUT_NAME
    inputs = [{"name": n, "shape": ["batch", max_seq_len], "dtype": ["int32"]} for n in ("input_ids", "attention_mask")]
    return {
        "dir": MODEL_SAVEDMODEL,
        "format": ExportFormat.SAVEDMODEL.value,
        "precision": "float32",
        "signature": export.SERVING_SIGNATURE,
        "measured_as": measured_as,
        "inputs": inputs,
        "outputs": [{"name": output, "shape": ["batch", int(model.output_shape[-1])], "dtype": ["float32"]}],
        "files": sorted(p.relative_to(out).as_posix() for p in path.rglob("*") if p.is_file()),
    }


def measure_teacher(task: PreparedTask) -> ArtifactMetrics:
    """Score the teacher on the test split and time its fp32 ONNX export (cached by fingerprint)."""
    from edgeopt.cache_dirs import cache_dir

    teacher = task.teacher
    teacher_onnx = cache_dir() / "teacher-onnx" / f"{teacher.fingerprint}.onnx"
    if not teacher_onnx.is_file():
        with native_output_captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's tracer warns about shapes it treats as constants
            teacher.export_onnx(teacher_onnx)
    return evaluate_teacher(
        task.test_logits,
        np.asarray(task.data.test.labels),
        teacher_onnx,
        task.data.test.texts,
        teacher.tokenizer_json,
        teacher.max_seq_len,
        teacher.weights_bytes(),
        task.num_labels,
    )


def measure(task: PreparedTask, student: TrainedStudent, paths: dict[str, Path]) -> dict[str, ArtifactMetrics]:
    """Evaluate each artifact through the runtime on the test split."""
    labels = np.asarray(task.data.test.labels)
    teacher_predicted = task.test_logits.argmax(-1)
    fidelity = (task.fidelity, student.fidelity_ids)
    # LiteRT's first interpreter writes an INFO line about its XNNPACK delegate straight to fd 2.
    with native_output_captured():
        return {
            name: evaluate_artifact(
                path, student.test_ids, labels, teacher_predicted, task.num_labels, fidelity=fidelity
            )
            for name, path in paths.items()
        }


def accuracy_gate(
    task: PreparedTask,
    student: TrainedStudent,
    model: Any,
    float_onnx: Path,
    calibration: tuple[np.ndarray, np.ndarray],
    out: Path,
    formats: dict[str, str],
    per_channel: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Quantize to int8, keeping the most sensitive layers float until int8 costs no more than the profile allows.

    The gate judges on the validation split (never the test split): int8 may lose at most the profile's allowed drop
    against the float student there. The best artifact found is written even when the gate cannot be met, so a
    build always ends with the least lossy int8 model it could make.

    Args:
        task: Data, teacher and profile.
        student: The trained student (its validation rows and targets).
        model: The float Keras model to quantize (TFLite).
        float_onnx: Its float ONNX export (ONNX).
        calibration: Representative inputs.
        out: Directory the artifacts are written to.
        formats: ``{file name: "tflite" | "onnx"}`` to produce.
        per_channel: Per-channel weight scales.

    Returns:
        ``({file name: runtime Artifact}, {file name: what the gate did})``.
    """
    from edgeopt.accuracy_gate import run_accuracy_gate
    from edgeopt.evaluate import evaluate_artifact

    val_inputs = student.rows(student.val_rows)
    val_labels = np.asarray(task.data.train.labels)[student.val_rows]
    teacher_val = student.targets[student.val_rows][:, : task.num_labels].argmax(-1)

    def accuracy(path: Path) -> float:
        return evaluate_artifact(path, val_inputs, val_labels, teacher_val, task.num_labels, 0).accuracy

    reference = accuracy(float_onnx)
    artifacts: dict[str, Any] = {}
    report: dict[str, Any] = {}
    for name, fmt in formats.items():
        result = run_accuracy_gate(
            fmt,
            model if fmt == "tflite" else float_onnx,
            calibration,
            accuracy,
            reference,
            task.profile.budget.max_accuracy_drop,
            out / name,
            per_channel=per_channel,
        )
        artifacts[name] = artifact_record(fmt, "int8-mixed", result.output_quantization)
        report[name] = {
            "met": result.met,
            "kept_float": list(result.kept_float),
            "validation_accuracy": result.accuracy,
            "float_validation_accuracy": reference,
            "steps": [asdict(step) for step in result.steps],
        }
    return artifacts, report
