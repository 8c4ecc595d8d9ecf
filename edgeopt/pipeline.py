"""The build pipeline: teacher -> distilled student -> pruned -> int8 -> ONNX + TFLite -> verified bundle.

The order is the one that loses least: distill first (the student learns from the teacher's soft targets), prune the
trained student while fine-tuning on the same targets, quantize last (calibration ranges are taken on the final
weights). Every stage is timed, every artifact is measured through the runtime, and the budgets of the profile are
checked before anything appears at the output path.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt import __version__
from edgeopt._tf import native_output_captured
from edgeopt.bundle import check_output_path, staged_output
from edgeopt.data import TaskData, TextDataset, load_default, load_task, stratified_split
from edgeopt.distill import DistillConfig, DistillResult, distill, pack_targets
from edgeopt.errors import BudgetError, StageError, TeacherError
from edgeopt.evaluate import ArtifactMetrics, evaluate_artifact, evaluate_teacher
from edgeopt.profiles import ExportFormat, Profile, Quantization, load_profile
from edgeopt.prune import PruneConfig, PruneResult, prune
from edgeopt.teacher import FinetuneConfig, Teacher, TeacherKind

__all__ = ["BuildConfig", "BuildResult", "StageRecord", "build", "Reporter"]

logger = logging.getLogger(__name__)

MODEL_ONNX = "model.onnx"
MODEL_TFLITE = "model.tflite"
TOKENIZER = "tokenizer.json"
REPORT = "report.md"
CHART = "report.png"


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``edgeopt build`` takes; the defaults build the spam classifier for the Pixel 8.

    Attributes:
        profile: A profile name (``edgeopt profiles list``) or a path to a profile TOML file.
        out: The bundle directory to write.
        teacher: A teacher directory or ONNX file; ``None`` fine-tunes all-MiniLM-L6-v2 on the training data.
        train: Labeled training file; ``None`` uses the built-in SpamAssassin task.
        test: Labeled test file; ``None`` holds out a seeded stratified split of ``train``.
        unlabeled: Extra texts (one a line) the teacher labels for distillation.
        text_column: Column or key holding the text in the labeled files.
        label_column: Column or key holding the label.
        seed: Seed of every random choice (split, initialization, batches).
        force: Replace ``out`` if it exists.
        allow_over_budget: Keep a bundle that misses the profile's budgets (marked as such) instead of failing.
        distill: Distillation settings.
        finetune: Teacher fine-tuning settings (used when the teacher has to be fine-tuned).
        prune_epochs: Fine-tuning epochs during pruning.
    """

    profile: str | Path = "pixel8"
    out: Path = Path("bundles/pixel8")
    teacher: Path | None = None
    train: Path | None = None
    test: Path | None = None
    unlabeled: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    seed: int = 0
    force: bool = False
    allow_over_budget: bool = False
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    prune_epochs: int = 3


@dataclass(frozen=True)
class StageRecord:
    """One stage of the build: its name, wall time and what it reported."""

    name: str
    seconds: float
    details: dict[str, Any]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced.

    Attributes:
        out: The bundle directory.
        manifest: The manifest as written.
        stages: The stages in order, with timings.
        within_budget: Whether the shipped artifacts meet every budget of the profile.
        budget_problems: One line per missed budget (empty when within budget).
    """

    out: Path
    manifest: dict[str, Any]
    stages: tuple[StageRecord, ...]
    within_budget: bool
    budget_problems: tuple[str, ...]


class Reporter:
    """Prints one line per stage (with rich, to stderr) unless quiet; records every stage's timing."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self._console = Console(stderr=True, quiet=quiet)
        self.records: list[StageRecord] = []

    @contextmanager
    def stage(self, name: str, details: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Time a stage; the block may add entries to the yielded ``details``."""
        details = {} if details is None else details
        start = time.perf_counter()
        with self._console.status(f"[bold]{name}[/bold] ..."):
            yield details
        seconds = time.perf_counter() - start
        self.records.append(StageRecord(name, seconds, details))
        summary = ", ".join(f"{k} {_short(v)}" for k, v in details.items() if not isinstance(v, dict | list))
        self._console.print(f"[green]done[/green] {name} ({seconds:.1f} s){': ' + summary if summary else ''}")

    def say(self, message: str) -> None:
        """Print a line of progress."""
        self._console.print(message)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _load_data(config: BuildConfig) -> TaskData:
    if config.train is None:
        if config.test is not None:
            raise StageError("--test needs --train; without --train the built-in dataset brings its own test split")
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


def _resolve_teacher(config: BuildConfig, data: TaskData, progress: bool) -> Teacher:
    from edgeopt.teacher import default_teacher, detect_teacher_kind, load_teacher

    max_seq_len = config.finetune.max_seq_len
    if config.teacher is None:
        return load_teacher(default_teacher(data.train, config.finetune, progress=progress), max_seq_len)
    if detect_teacher_kind(Path(config.teacher)) is TeacherKind.SENTENCE_TRANSFORMER:
        from edgeopt.teacher import cached_finetune

        tuned = cached_finetune(Path(config.teacher), data.train, config.finetune, progress=progress)
        return load_teacher(tuned, max_seq_len)
    return load_teacher(Path(config.teacher), max_seq_len)


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


def _calibration_rows(count: int, total: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(count, total), replace=False))


def build(config: BuildConfig, quiet: bool = False) -> BuildResult:
    """Run the whole pipeline and write a verified bundle to ``config.out``.

    Args:
        config: What to build.
        quiet: Print nothing.

    Returns:
        The build's result; the bundle is at ``result.out``.

    Raises:
        EdgeoptError: Any problem a user can fix (data, profile, teacher, budgets, output path); nothing is left at
            ``config.out`` then.
    """
    from edgeopt.cache_dirs import cache_dir
    from edgeopt.report import write_chart, write_report
    from edgeopt.teacher import TeacherLogitCache

    reporter = Reporter(quiet)
    from edgeopt.teacher import detect_teacher_kind

    # Everything that can be checked without work is checked first, so a typo fails in a second, not in minutes.
    profile = load_profile(config.profile)
    out = Path(config.out)
    check_output_path(out, config.force)
    if config.teacher is not None:
        detect_teacher_kind(Path(config.teacher))
    with reporter.stage("data") as info:
        data = _load_data(config)
        info.update(task=data.name, train=len(data.train), test=len(data.test), unlabeled=len(data.unlabeled))
    labels = data.label_names
    with reporter.stage("teacher") as info:
        teacher = _resolve_teacher(config, data, progress=not quiet)
        column_order = _teacher_label_order(teacher, labels)
        info.update(kind=teacher.kind.value, path=str(teacher.path))
    with reporter.stage("teacher outputs") as info, TeacherLogitCache() as logit_cache:
        transfer_texts = list(data.train.texts) + list(data.unlabeled)
        all_texts = transfer_texts + list(data.test.texts)
        all_logits = logit_cache.get_or_compute(teacher, all_texts, progress=not quiet)[:, column_order]
        transfer_logits = all_logits[: len(transfer_texts)]
        test_logits = all_logits[len(transfer_texts) :]
        info.update(texts=len(all_texts), cached=logit_cache.hits, computed=logit_cache.misses)

    with staged_output(out, config.force) as staging, tempfile.TemporaryDirectory(prefix="edgeopt-") as tmp:
        work = Path(tmp)
        result = _build_student_and_bundle(
            config,
            profile,
            data,
            teacher,
            transfer_texts,
            transfer_logits,
            test_logits,
            staging,
            work,
            reporter,
            cache_dir(),
        )
        with reporter.stage("report"):
            fields = result["manifest"]
            readable = {**fields, "artifacts": {k: a.to_dict() for k, a in fields["artifacts"].items()}}
            write_chart(readable, staging / CHART)
            write_report(readable, [asdict(r) for r in reporter.records], staging / REPORT)
            manifest = _write_manifest(staging, result["manifest"], extra_files=(REPORT, CHART))
        with reporter.stage("verify bundle") as info:
            info.update(_smoke_test(staging, data.test.texts[:8], profile))
    reporter.say(f"[bold]bundle written to {out}[/bold]")
    return BuildResult(
        out=out,
        manifest=manifest,
        stages=tuple(reporter.records),
        within_budget=not result["problems"],
        budget_problems=tuple(result["problems"]),
    )


def _split_validation(train: TextDataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    fit_rows, val_rows = stratified_split(list(train.texts), list(train.labels), fraction, seed)
    return np.asarray(fit_rows), np.asarray(val_rows)


def _build_student_and_bundle(
    config: BuildConfig,
    profile: Profile,
    data: TaskData,
    teacher: Teacher,
    transfer_texts: list[str],
    transfer_logits: np.ndarray,
    test_logits: np.ndarray,
    staging: Path,
    work: Path,
    reporter: Reporter,
    cache: Path,
) -> dict[str, Any]:
    from edgeopt import export, quantize
    from edgeopt.student import build_student, count_parameters, encode_texts, prune_vocabulary

    labels = data.label_names
    num_labels = len(labels)
    max_seq_len = profile.budget.max_seq_len
    distill_config = replace(config.distill, seed=config.seed)

    with reporter.stage("student vocabulary") as info:
        vocab = prune_vocabulary(teacher.tokenizer_json, transfer_texts, staging / TOKENIZER)
        info.update(teacher_tokens=vocab.teacher_vocab_size, kept_tokens=vocab.size)
        transfer_ids = encode_texts(vocab.tokenizer_json, transfer_texts, max_seq_len)
        test_ids = encode_texts(vocab.tokenizer_json, data.test.texts, max_seq_len)

    # Labeled rows split into fit/validation; unlabeled transfer texts always train (soft targets only).
    fit_rows, val_rows = _split_validation(data.train, distill_config.validation_fraction, config.seed)
    n_train = len(data.train)
    hard = np.concatenate([np.asarray(data.train.labels), np.full(len(data.unlabeled), -1)])
    targets = pack_targets(transfer_logits, hard, num_labels)
    fit_rows = np.concatenate([fit_rows, np.arange(n_train, len(transfer_texts))]).astype(int)

    def rows(arrays: tuple[np.ndarray, np.ndarray], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return arrays[0][index], arrays[1][index]

    with reporter.stage("distill") as info:
        student = build_student(profile.student, vocab.size, num_labels, max_seq_len, seed=config.seed)
        distilled: DistillResult = distill(
            student,
            rows(transfer_ids, fit_rows),
            targets[fit_rows],
            (rows(transfer_ids, val_rows), targets[val_rows]),
            num_labels,
            distill_config,
        )
        info.update(
            parameters=count_parameters(student),
            epochs=distilled.epochs_run,
            val_accuracy=distilled.best_val_accuracy,
            temperature=distill_config.temperature,
            alpha=distill_config.alpha,
        )
        dense_tflite = export.to_tflite(student, work / "student-dense-fp32.tflite")

    pruned_model = student
    prune_result: PruneResult | None = None
    if profile.student.target_sparsity > 0:
        with reporter.stage("prune") as info:
            prune_config = PruneConfig(target_sparsity=profile.student.target_sparsity, epochs=config.prune_epochs)
            pruned_model, prune_result = prune(
                student,
                rows(transfer_ids, fit_rows),
                targets[fit_rows],
                num_labels,
                distill_config,
                prune_config,
            )
            info.update(target=prune_config.target_sparsity, reached=prune_result.overall_sparsity)

    calibration = rows(transfer_ids, _calibration_rows(profile.export.calibration_samples, n_train, config.seed))
    scheme = profile.export.quantization
    formats = set(profile.export.formats)
    artifacts: dict[str, Any] = {}
    from edgeopt_runtime.manifest import Artifact
    from edgeopt_runtime.manifest import Quantization as OutputQuant

    with reporter.stage("export + quantize") as info:
        float_onnx = export.to_onnx(pruned_model, work / "student-fp32.onnx", max_seq_len)
        float_tflite = export.to_tflite(pruned_model, work / "student-fp32.tflite")
        if ExportFormat.TFLITE in formats:
            tflite_out = staging / MODEL_TFLITE
            if scheme is Quantization.INT8_STATIC:
                q = quantize.tflite_int8(pruned_model, calibration, tflite_out)
                artifacts[MODEL_TFLITE] = Artifact("tflite", "int8", "int8", OutputQuant(q.scale, q.zero_point))
            elif scheme is Quantization.INT8_DYNAMIC:
                quantize.tflite_dynamic(pruned_model, tflite_out)
                artifacts[MODEL_TFLITE] = Artifact("tflite", "int8-dynamic")
            elif scheme is Quantization.FLOAT16:
                quantize.tflite_float16(pruned_model, tflite_out)
                artifacts[MODEL_TFLITE] = Artifact("tflite", "float16")
            else:
                tflite_out.write_bytes(float_tflite.read_bytes())
                artifacts[MODEL_TFLITE] = Artifact("tflite", "float32")
        if ExportFormat.ONNX in formats:
            onnx_out = staging / MODEL_ONNX
            if scheme is Quantization.INT8_STATIC:
                quantize.onnx_int8_static(float_onnx, calibration, onnx_out, per_channel=profile.export.per_channel)
                artifacts[MODEL_ONNX] = Artifact("onnx", "int8")
            elif scheme is Quantization.INT8_DYNAMIC:
                quantize.onnx_int8_dynamic(float_onnx, onnx_out, per_channel=profile.export.per_channel)
                artifacts[MODEL_ONNX] = Artifact("onnx", "int8-dynamic")
            else:
                # ONNX Runtime's CPU kernels gain nothing from float16 weights; ship float32 there.
                onnx_out.write_bytes(float_onnx.read_bytes())
                artifacts[MODEL_ONNX] = Artifact("onnx", "float32")
        info.update(scheme=scheme.value, formats=",".join(sorted(artifacts)))

    test_labels = np.asarray(data.test.labels)
    teacher_predicted = test_logits.argmax(-1)
    metrics: dict[str, ArtifactMetrics] = {}
    with reporter.stage("evaluate") as info:
        teacher_onnx = cache / "teacher-onnx" / f"{teacher.fingerprint}.onnx"
        if not teacher_onnx.is_file():
            with native_output_captured(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's tracer warns about shapes it treats as constants
                teacher.export_onnx(teacher_onnx)
        teacher_metrics = evaluate_teacher(
            test_logits,
            test_labels,
            teacher_onnx,
            data.test.texts,
            teacher.tokenizer_json,
            teacher.max_seq_len,
            teacher.weights_bytes(),
            num_labels,
        )
        candidates = {
            "student-dense-fp32.tflite": dense_tflite,
            "student-fp32.onnx": float_onnx,
            "student-fp32.tflite": float_tflite,
            **{name: staging / name for name in artifacts},
        }
        for name, path in candidates.items():
            metrics[name] = evaluate_artifact(path, test_ids, test_labels, teacher_predicted, num_labels)
        info.update(
            teacher_accuracy=teacher_metrics.accuracy,
            **{f"{n}_accuracy": metrics[n].accuracy for n in artifacts},
        )

    problems = _budget_problems(profile, teacher_metrics, {n: metrics[n] for n in artifacts})
    if problems and not config.allow_over_budget:
        raise BudgetError(
            f"the {profile.name} budget is not met: {'; '.join(problems)}; "
            "pass --allow-over-budget to keep the bundle anyway, or pick a roomier profile"
        )

    import edgeopt_runtime

    manifest_fields: dict[str, Any] = {
        "labels": labels,
        "max_seq_len": max_seq_len,
        "artifacts": artifacts,
        "profile": profile.to_dict(),
        "teacher": {
            "fingerprint": teacher.fingerprint,
            "kind": teacher.kind.value,
            "max_seq_len": teacher.max_seq_len,
            **{k: teacher_metrics.to_dict()[k] for k in ("accuracy", "macro_f1", "bytes", "gzip_bytes", "p50_ms")},
        },
        "metrics": {name: {**m.to_dict(), "shipped": name in artifacts} for name, m in metrics.items()},
        "versions": _versions(edgeopt_runtime.__version__),
        "build": {
            "task": data.name,
            "data_source": data.source,
            "data_fingerprint": data.fingerprint(),
            "train_texts": len(data.train),
            "unlabeled_texts": len(data.unlabeled),
            "test_texts": len(data.test),
            "seed": config.seed,
            "distill": {**asdict(distill_config), "epochs_run": distilled.epochs_run},
            "student": {
                **asdict(profile.student),
                "vocabulary": vocab.size,
                "parameters": count_parameters(student),
            },
            "prune": None if prune_result is None else asdict(prune_result),
            "quantization": scheme.value,
            "per_channel": profile.export.per_channel,
            "calibration_samples": len(calibration[0]),
            "within_budget": not problems,
            "budget_problems": problems,
        },
    }
    return {"manifest": manifest_fields, "problems": problems}


def _budget_problems(profile: Profile, teacher: ArtifactMetrics, shipped: dict[str, ArtifactMetrics]) -> list[str]:
    budget = profile.budget
    problems = []
    for name, m in shipped.items():
        drop = teacher.accuracy - m.accuracy
        if drop > budget.max_accuracy_drop:
            problems.append(
                f"{name} accuracy {m.accuracy:.4f} is {drop:.4f} below the teacher's, "
                f"more than the allowed {budget.max_accuracy_drop}"
            )
        if m.bytes > budget.max_model_mb * 1_000_000:
            problems.append(f"{name} is {m.bytes / 1e6:.2f} MB, over the {budget.max_model_mb} MB budget")
    return problems


def _versions(runtime_version: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"edgeopt": __version__, "edgeopt-runtime": runtime_version, "python": platform.python_version()}
    for package in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "tf2onnx",
        "onnx",
        "onnxruntime",
        "ai-edge-litert",
        "torch",
        "transformers",
        "tokenizers",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _write_manifest(staging: Path, fields: dict[str, Any], extra_files: tuple[str, ...]) -> dict[str, Any]:
    from edgeopt_runtime.manifest import build_manifest, write_manifest

    known = {k: v for k, v in fields.items() if k != "build"}
    manifest = build_manifest(staging, tokenizer_file=TOKENIZER, extra_files=extra_files, **known)
    # The runtime keeps keys it does not know; "build" records how the bundle was made, for people and tools.
    manifest = replace(manifest, raw={**manifest.raw, "build": fields["build"]})
    write_manifest(staging, manifest)
    return manifest.to_dict()


def _smoke_test(bundle: Path, texts: tuple[str, ...], profile: Profile) -> dict[str, Any]:
    """Load the finished bundle through the runtime, once per backend, exactly as a device would."""
    import edgeopt_runtime

    answers = {}
    for fmt in profile.export.formats:
        model = edgeopt_runtime.load(bundle, backend=fmt.value, threads=1, cache=False)
        answers[fmt.value] = [p.label for p in model.predict_batch(list(texts))]
    if len({tuple(a) for a in answers.values()}) > 1:
        logger.warning("backends disagree on the smoke-test texts: %s", answers)
    return {"backends": ",".join(answers), "agree": len({tuple(a) for a in answers.values()}) == 1}
