"""The build pipeline: teacher -> distilled student -> pruned -> int8 -> ONNX + TFLite -> verified bundle.

The order is the one that loses least: distill first (the student learns from the teacher's soft targets), prune the
trained student while fine-tuning on the same targets, quantize last (calibration ranges are taken on the final
weights). Every stage is timed, every artifact is measured through the runtime, and the budgets of the profile are
checked before anything appears at the output path.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgeopt import __version__
from edgeopt.augment import TransferSource
from edgeopt.bundle import check_output_path, staged_output
from edgeopt.embed import EMBED_TASK
from edgeopt.errors import BudgetError
from edgeopt.evaluate import ArtifactMetrics
from edgeopt.profiles import ExportFormat, Profile, QuantizationScheme, load_profile
from edgeopt.record import BundleRecord, ClassifierBuild, EmbedBuild
from edgeopt.search import StudentCandidate
from edgeopt.stages import (
    MODEL_ONNX,
    TOKENIZER,
    BuildConfig,
    PreparedTask,
    Reporter,
    StageRecord,
    accuracy_gate,
    export_savedmodel,
    export_spec_for,
    measure,
    measure_teacher,
    prepare,
    train_student,
)
from edgeopt.techniques import FitTemperature, profile_technique, resolve_techniques, run_technique

__all__ = [
    "BuildResult",
    "build",
    "monitoring_reference",
    "runtime_footprint",
    "MIN_BACKEND_AGREEMENT",
    "backend_agreement",
    "backend_disagreement_problem",
    "REPORT",
    "CHART",
]

logger = logging.getLogger(__name__)

REPORT = "report.md"
CHART = "report.png"


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


def build(
    config: BuildConfig,
    out: Path | str = Path("bundles/pixel8"),
    *,
    force: bool = False,
    allow_over_budget: bool = False,
) -> BuildResult:
    """Run the whole pipeline and write a verified bundle to ``out``.

    Progress goes out as :mod:`edgeopt.events` (to ``logging`` unless the caller listens); nothing is printed.

    Args:
        config: What to build.
        out: The bundle directory to write.
        force: Replace ``out`` if it exists.
        allow_over_budget: Keep a bundle that misses the profile's budgets (marked as such) instead of failing.

    Returns:
        The build's result; the bundle is at ``result.out``.

    Raises:
        EdgeoptError: Any problem a user can fix (data, profile, teacher, budgets, output path); nothing is left at
            ``out`` then.
    """
    from edgeopt.report import SEARCH_CHART, write_chart, write_report, write_search_chart

    reporter = Reporter()
    out = Path(out)
    check_output_path(out, force)
    # Loaded once: every later stage reads this Profile (load_profile passes a Profile through). A build's own
    # formats (--formats) replace the profile's, so the manifest's profile records what the bundle holds.
    profile = load_profile(config.profile)
    config = replace(config, profile=replace(profile, export=export_spec_for(config, profile)))
    if config.task == EMBED_TASK:
        return _build_embedder(config, out, force, allow_over_budget, reporter)
    if config.student is not None:
        StudentCandidate.parse(config.student)  # a malformed --student fails now, not after the teacher
    technique_name = config.technique or load_profile(config.profile).export.technique
    if technique_name:
        resolve_techniques([technique_name])  # a typo fails now, not after training
    task = prepare(config, reporter)
    with staged_output(out, force) as staging, tempfile.TemporaryDirectory(prefix="edgeopt-") as tmp:
        record = _make_bundle(config, task, staging, Path(tmp), reporter, allow_over_budget)
        build_record = record.build
        problems = build_record.budget_problems
        # The runtime verifies what it loads, so the staged bundle gets its manifest before it is measured; the
        # last write adds the report (edgeopt.record explains why there are two).
        shipped_extra = () if build_record.nnapi is None else (MODEL_NNAPI_ONNX,)
        record.write_manifest(staging, extra_files=shipped_extra)
        with reporter.stage("verify bundle") as info:
            answers = _labels_per_backend(staging, task.data.test.texts, task.profile)
            agreement = backend_agreement(answers)
            info.update(backends=",".join(answers), texts=len(task.data.test.texts), agreement=agreement)
            build_record.backend_agreement = agreement
            disagreement = backend_disagreement_problem(answers)
            if disagreement is not None:
                if not allow_over_budget:
                    raise BudgetError(
                        lambda p: f"{disagreement}; pass {p('allow_over_budget', True)} to keep the bundle anyway"
                    )
                problems.append(disagreement)
                build_record.within_budget = False
        with reporter.stage("monitoring reference") as info:
            record.monitoring = monitoring = monitoring_reference(staging, task.data.test.texts, task.profile)
            info.update(texts=monitoring["texts"], **monitoring["label_share"])
        with reporter.stage("runtime footprint") as info:
            build_record.runtime = runtime = runtime_footprint(staging, task.data.test.texts[0], task.profile)
            info.update({f"{name}_ram_mib": round(r["bundle_rss_mb"], 1) for name, r in runtime.items()})
        with reporter.stage("report"):
            readable = record.readable()
            write_chart(readable, staging / CHART)
            charts = (CHART,) if write_search_chart(readable, staging / SEARCH_CHART) is None else (CHART, SEARCH_CHART)
            write_report(readable, [asdict(r) for r in reporter.records], staging / REPORT)
            manifest = record.write_manifest(staging, extra_files=(*shipped_extra, REPORT, *charts))
    reporter.say(f"bundle written to {out}")
    return BuildResult(
        out=out,
        manifest=manifest,
        stages=tuple(reporter.records),
        within_budget=not problems,
        budget_problems=tuple(problems),
    )


def _make_bundle(
    config: BuildConfig, task: PreparedTask, staging: Path, work: Path, reporter: Reporter, allow_over_budget: bool
) -> BundleRecord[ClassifierBuild]:
    """Train, prune, export and measure; write the models and tokenizer into ``staging``; return their record."""
    from edgeopt import export
    from edgeopt.student import count_parameters

    profile = task.profile
    student = train_student(task, config, work, reporter)
    shutil.copyfile(student.vocab.tokenizer_json, staging / TOKENIZER)
    dense_tflite = export.to_tflite(student.model, work / "student-dense-fp32.tflite")

    # One code path: a named technique, or the profile's own scheme as a technique (profile_technique).
    technique_name = config.technique or profile.export.technique
    if technique_name:
        named = resolve_techniques([technique_name])[0]
        # A named technique's fine-tuning (pruning, QAT) starts from the calibrated student and keeps roughly its
        # scale; the profile's own scheme fits the temperature after pruning instead.
        first = (FitTemperature(),) if task.student_spec.calibrate else ()
        technique = replace(named, passes=(*first, *named.passes))
    else:
        technique = profile_technique(profile.name, task.student_spec, profile.export)
    run = run_technique(technique, student, task, config, staging, set(profile.export.runtime_formats), reporter)
    artifacts, pruned_model, calibration = run.artifacts, run.model, run.calibration
    scheme = technique.quantization
    technique_record = (
        {**technique.to_dict(), "description": technique.description, "details": run.details}
        if technique_name
        else None
    )
    with reporter.stage("float references"):
        float_onnx = export.to_onnx(pruned_model, work / "student-fp32.onnx", student.max_seq_len)
        float_tflite = export.to_tflite(pruned_model, work / "student-fp32.tflite")

    with reporter.stage("evaluate") as info:
        teacher_metrics = measure_teacher(task)
        metrics = measure(
            task,
            student,
            {
                "student-dense-fp32.tflite": dense_tflite,
                "student-fp32.onnx": float_onnx,
                "student-fp32.tflite": float_tflite,
                **{name: staging / name for name in artifacts},
            },
        )
        info.update(
            teacher_accuracy=teacher_metrics.accuracy,
            **{f"{n}_accuracy": metrics[n].accuracy for n in artifacts},
        )

    gate: dict[str, Any] = {}
    too_lossy = [
        name
        for name in artifacts
        if teacher_metrics.accuracy - metrics[name].accuracy > profile.budget.max_accuracy_drop
    ]
    if too_lossy and scheme is QuantizationScheme.INT8_STATIC and not technique.gates:
        with reporter.stage("accuracy gate") as info:
            gated, gate = accuracy_gate(
                task,
                student,
                pruned_model,
                float_onnx,
                calibration,
                staging,
                {name: artifacts[name].format for name in too_lossy},
                profile.export.per_channel,
            )
            artifacts.update(gated)
            metrics.update(measure(task, student, {name: staging / name for name in too_lossy}))
            info.update(**{name: ",".join(g["kept_float"]) or "none" for name, g in gate.items()})

    problems = _budget_problems(profile, teacher_metrics, {n: metrics[n] for n in artifacts})
    if problems and not allow_over_budget:
        raise _budget_error(profile, problems)

    nnapi = None
    if profile.export.nnapi_onnx and MODEL_ONNX in artifacts:
        with reporter.stage("nnapi onnx") as info:
            nnapi = _nnapi_onnx(staging, student.max_seq_len)
            info.update(dynamic=nnapi["dynamic"]["verdict"], fixed=nnapi["fixed"]["verdict"])
    # The float student the int8 files were made from (for QAT: before its fake-quantized fine-tuning), which is
    # what the float references measured, for TensorFlow Serving.
    savedmodel = _savedmodel(profile, pruned_model, staging, student.max_seq_len, "student-fp32.tflite", reporter)

    import edgeopt_runtime

    data = task.data
    teacher = task.teacher
    return BundleRecord(
        labels=tuple(data.label_names),
        max_seq_len=student.max_seq_len,
        artifacts=artifacts,
        profile=profile.to_dict(),
        teacher={
            "fingerprint": teacher.fingerprint,
            "kind": teacher.kind.value,
            "max_seq_len": teacher.max_seq_len,
            "transfer_set_precision": teacher.precision,
            **{k: teacher_metrics.to_dict()[k] for k in _TEACHER_METRICS},
        },
        metrics={name: {**m.to_dict(), "shipped": name in artifacts} for name, m in metrics.items()},
        versions=_versions(edgeopt_runtime.__version__),
        build=ClassifierBuild(
            task=data.name,
            data_source=data.source,
            data_fingerprint=data.fingerprint(),
            train_texts=len(data.train),
            unlabeled_texts=len(data.unlabeled),
            augmented_texts=task.transfer.count(TransferSource.AUGMENTED),
            test_texts=len(data.test),
            seed=config.seed,
            distill={
                **asdict(student.distill_config),
                "epochs_run": student.distilled.epochs_run,
                "best_val_accuracy": student.distilled.best_val_accuracy,
            },
            student={
                **asdict(student.spec or task.student_spec),
                "embedding_init": student.embedding_init,
                "embedding_training": student.embedding_training,
                "vocabulary": student.vocab.size,
                "vocabulary_source": student.vocab.source,
                "parameters": count_parameters(student.model),
            },
            transfer={source.value: task.transfer.count(source) for source in TransferSource},
            search=list(student.search),
            score_calibration=None if student.score_calibration is None else student.score_calibration.to_dict(),
            prune=None if run.prune_result is None else run.prune_result.to_dict(),
            technique=technique_record,
            quantization=scheme.value,
            per_channel=profile.export.per_channel,
            calibration_samples=len(calibration[0]),
            within_budget=not problems,
            budget_problems=problems,
            accuracy_gate=gate,
            nnapi=nnapi,
        ),
        savedmodel=savedmodel,
    )


def _savedmodel(
    profile: Profile, model: Any, staging: Path, max_seq_len: int, measured_as: str, reporter: Reporter
) -> dict[str, Any] | None:
    """Write ``model.savedmodel/`` when the profile's (or the build's) formats list savedmodel; its record or None."""
    if ExportFormat.SAVEDMODEL not in profile.export.formats:
        return None
    with reporter.stage("savedmodel") as info:
        record = export_savedmodel(model, staging, max_seq_len, measured_as)
        info.update(files=len(record["files"]), signature=record["signature"])
    return record


MODEL_NNAPI_ONNX = "model.nnapi.onnx"

MIN_EMBED_BACKEND_COSINE = 0.99
"""Least mean cosine between the vectors two shipped artifacts of an embedder give the same texts (the embedder's
twin of :data:`MIN_BACKEND_AGREEMENT`: two converters' int8 models cannot agree bit for bit)."""


def _build_embedder(
    config: BuildConfig, out: Path, force: bool, allow_over_budget: bool, reporter: Reporter
) -> BuildResult:
    """The ``embed`` task's build: distill the sentence encoder, prune, int8, export, measure, verify, bundle."""
    from edgeopt import export
    from edgeopt.embed import NEIGHBOURS, evaluate_embedder, prepare_embed, prune_embedder, train_embedder
    from edgeopt.errors import ConfigError
    from edgeopt.report import write_embed_report
    from edgeopt.stages import export_model
    from edgeopt.student import count_parameters
    from edgeopt_runtime.manifest import EmbeddingSpec

    unsupported = [name for name in ("technique", "student", "augment_copies") if getattr(config, name) is not None]
    if unsupported:
        raise ConfigError(
            lambda p: (
                f"{', '.join(p(n) for n in unsupported)} not available for {p('task', EMBED_TASK)} yet: an embedder is "
                "built by the profile's own scheme (prune, int8); drop it"
            )
        )
    if config.general_texts is not None:
        raise ConfigError(
            lambda p: (
                f"{p('general_texts')} not available for {p('task', EMBED_TASK)} yet: an embedder distills on "
                f"{p('train')}'s texts (or the shipped corpus) and crops of them; drop it"
            )
        )
    task = prepare_embed(config, reporter)
    profile = task.profile
    spec = task.student_spec
    with staged_output(out, force) as staging, tempfile.TemporaryDirectory(prefix="edgeopt-") as tmp:
        work = Path(tmp)
        trained = train_embedder(task, config, work, reporter)
        shutil.copyfile(trained.vocab.tokenizer_json, staging / TOKENIZER)
        model, prune_record = trained.model, None
        if spec.target_sparsity > 0:
            with reporter.stage("prune") as info:
                model, prune_record = prune_embedder(trained, task, config.prune_epochs)
                info.update(sparsity=round(prune_record["overall_sparsity"], 3))
        scheme = profile.export.quantization
        calibration = trained.calibration(profile.export.calibration_samples, config.seed)
        with reporter.stage("export") as info:
            artifacts = export_model(
                model,
                scheme,
                set(profile.export.runtime_formats),
                calibration,
                staging,
                trained.max_seq_len,
                per_channel=profile.export.per_channel,
            )
            info.update(files=",".join(artifacts), quantization=scheme.value)
        with reporter.stage("evaluate") as info:
            references = {
                "student-dense-fp32.onnx": export.to_onnx(
                    trained.model, work / "student-dense-fp32.onnx", trained.max_seq_len
                ),
                "student-fp32.onnx": export.to_onnx(model, work / "student-fp32.onnx", trained.max_seq_len),
            }
            paths = {**references, **{name: staging / name for name in artifacts}}
            metrics = {
                name: evaluate_embedder(path, trained.held_out_ids, task.held_out_vectors)
                for name, path in paths.items()
            }
            info.update({f"{name}_recall": round(metrics[name].agreement.neighbour_recall, 4) for name in artifacts})
        problems = _size_problems(profile, {name: metrics[name].bytes for name in artifacts})
        if problems and not allow_over_budget:
            raise _budget_error(profile, problems)
        savedmodel = _savedmodel(profile, model, staging, trained.max_seq_len, "student-fp32.onnx", reporter)
        import edgeopt_runtime

        teacher = task.teacher
        embedding = EmbeddingSpec(dim=task.dim, pooling=teacher.pooling, normalized=True)
        build_record = EmbedBuild(
            task=f"{task.corpus.name} (embed)",
            data_source=task.corpus.source,
            train_texts=len(task.corpus.train),
            transfer_texts=len(task.transfer),
            transfer={source.value: task.transfer.count(source) for source in TransferSource},
            held_out_texts=len(task.corpus.held_out),
            held_out_corpus=len(task.held_out_texts),
            neighbours=NEIGHBOURS,
            seed=config.seed,
            distill={
                **asdict(trained.distill_config),
                "epochs_run": trained.distilled.epochs_run,
                "best_val_cosine": trained.distilled.best_val_cosine,
            },
            student={
                **asdict(trained.spec),
                "embedding_init": trained.embedding_init,
                "vocabulary": trained.vocab.size,
                "vocabulary_source": trained.vocab.source,
                "parameters": count_parameters(trained.model),
            },
            prune=prune_record,
            quantization=scheme.value,
            per_channel=profile.export.per_channel,
            calibration_samples=len(calibration[0]),
            within_budget=not problems,
            budget_problems=problems,
        )
        record = BundleRecord(
            labels=(),
            embedding=embedding,
            max_seq_len=trained.max_seq_len,
            artifacts=artifacts,
            profile=profile.to_dict(),
            teacher={
                "fingerprint": teacher.fingerprint,
                "kind": teacher.kind.value,
                "path": str(teacher.path),
                "pooling": teacher.pooling,
                "normalized": teacher.normalized,
                "max_seq_len": teacher.max_seq_len,
                "bytes": teacher.weights_bytes(),
            },
            metrics={name: {**m.to_dict(), "shipped": name in artifacts} for name, m in metrics.items()},
            versions=_versions(edgeopt_runtime.__version__),
            build=build_record,
            savedmodel=savedmodel,
        )
        # Written before the runtime measures the staged bundle, and again with the report (edgeopt.record).
        record.write_manifest(staging, extra_files=())
        with reporter.stage("verify bundle") as info:
            cosine = _embed_backend_agreement(staging, task.corpus.held_out, profile)
            info.update(
                backends=",".join(f.value for f in profile.export.runtime_formats), mean_cosine=round(cosine, 4)
            )
            build_record.backend_mean_cosine = cosine
            if cosine < MIN_EMBED_BACKEND_COSINE:
                disagreement = (
                    f"the shipped artifacts' vectors of the held-out texts have a mean cosine of {cosine:.4f}, "
                    f"below the {MIN_EMBED_BACKEND_COSINE} a bundle promises (one converter lost more than the other)"
                )
                if not allow_over_budget:
                    raise BudgetError(
                        lambda p: f"{disagreement}; pass {p('allow_over_budget', True)} to keep the bundle anyway"
                    )
                problems.append(disagreement)
                build_record.within_budget = False
        with reporter.stage("runtime footprint") as info:
            build_record.runtime = runtime = runtime_footprint(staging, task.corpus.held_out[0], profile)
            info.update({f"{name}_ram_mib": round(r["bundle_rss_mb"], 1) for name, r in runtime.items()})
        with reporter.stage("report"):
            write_embed_report(record.readable(), [asdict(r) for r in reporter.records], staging / REPORT)
            manifest = record.write_manifest(staging, extra_files=(REPORT,))
    reporter.say(f"bundle written to {out}")
    return BuildResult(
        out=out,
        manifest=manifest,
        stages=tuple(reporter.records),
        within_budget=not problems,
        budget_problems=tuple(problems),
    )


def _embed_backend_agreement(bundle: Path, texts: Sequence[str], profile: Profile) -> float:
    """Least mean cosine, over pairs of the profile's backends, between their vectors of ``texts`` (1.0 for one)."""
    import numpy as np

    import edgeopt_runtime

    vectors = []
    for fmt in profile.export.runtime_formats:
        with edgeopt_runtime.load_embedder(bundle, backend=fmt.value, threads=1, cache=False) as embedder:
            vectors.append(np.concatenate([embedder.embed(list(texts[i : i + 64])) for i in range(0, len(texts), 64)]))
    cosines = [float(np.mean(np.sum(a * b, axis=1))) for i, a in enumerate(vectors) for b in vectors[i + 1 :]]
    return min(cosines, default=1.0)


def _nnapi_onnx(staging: Path, max_seq_len: int) -> dict[str, Any]:
    """Write the fixed-shape copy of the shipped ONNX model and ONNX Runtime's NNAPI verdict on both."""
    from edgeopt import export

    export.fixed_shape_onnx(staging / MODEL_ONNX, staging / MODEL_NNAPI_ONNX, max_seq_len)
    return {
        "file": MODEL_NNAPI_ONNX,
        "input_shape": [1, max_seq_len],
        "dynamic": export.nnapi_partitions(staging / MODEL_ONNX),
        "fixed": export.nnapi_partitions(staging / MODEL_NNAPI_ONNX),
    }


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
    return problems + _size_problems(profile, {name: m.bytes for name, m in shipped.items()})


def _size_problems(profile: Profile, sizes: Mapping[str, int]) -> list[str]:
    """One line per shipped file over the profile's size budget."""
    most = profile.budget.max_model_mb
    return [
        f"{name} is {size / 1e6:.2f} MB, over the {most} MB budget" for name, size in sizes.items() if size > most * 1e6
    ]


def _budget_error(profile: Profile, problems: Sequence[str]) -> BudgetError:
    return BudgetError(
        lambda p: (
            f"the {profile.name} budget is not met: {'; '.join(problems)}; "
            f"pass {p('allow_over_budget', True)} to keep the bundle anyway, or pick a roomier profile"
        )
    )


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


_TEACHER_METRICS = ("accuracy", "macro_f1", "bytes", "gzip_bytes", "p50_ms", "ece")


def monitoring_reference(bundle: Path, texts: Sequence[str], profile: Profile) -> dict[str, Any]:
    """What the finished bundle answers on held-out texts, through the runtime: the drift reference.

    The runtime's monitor (:mod:`edgeopt_runtime.monitor`) summarizes the latest answers on the device the same
    way (label shares, confidence histogram, truncated share) and reports their drift from this.

    Returns:
        The manifest's ``monitoring`` object.
    """
    import edgeopt_runtime

    backend = profile.export.runtime_formats[0].value
    window = max(1, len(texts))
    with edgeopt_runtime.load_classifier(bundle, backend=backend, threads=1, cache=False, monitor_window=window) as clf:
        for start in range(0, len(texts), 64):
            clf.predict_batch(list(texts[start : start + 64]), dedupe=False)
        report = clf.monitor()
    return report.to_reference(f"{len(texts)} held-out test texts, {backend} backend, at build time").to_dict()


def runtime_footprint(bundle: Path, text: str, profile: Profile, runs: int = 3) -> dict[str, dict[str, Any]]:
    """Cold start and memory of the bundle in fresh runtime processes on this host, per backend of the profile.

    Each process imports the runtime, loads the bundle (verifying it) and answers one text, as an app's first
    launch does (:func:`edgeopt_runtime.bench.cold_start`). ``bundle_rss_mb`` is the peak resident memory that
    load and the first prediction add, which the report puts beside the profile's ``max_runtime_ram_mb``.
    The device's own numbers will differ (another CPU, another build of the backend); this catches a bundle
    that is far off.

    Returns:
        Per backend name: medians of ``import_ms``, ``cold_start_ms``, ``import_rss_mb``, ``peak_rss_mb``,
        ``bundle_rss_mb`` (None where the platform does not report memory), and ``runs``.
    """
    from edgeopt_runtime.bench import cold_start

    return {
        fmt.value: cold_start(bundle, fmt.value, runs=runs, threads=1, text=text).to_dict()
        for fmt in profile.export.runtime_formats
    }


MIN_BACKEND_AGREEMENT = 0.99
"""Least share of test texts on which every shipped artifact must give the same label.

The ONNX and TFLite artifacts are one student quantized by two converters (ONNX Runtime's static quantizer, the
TFLite converter), so they cannot agree bit for bit: a text on the decision boundary may get two labels (1 of
1,174 on the default task, bench/results/runtime.md). An app may switch backends, so the build measures the
agreement on the whole test split through the runtime and refuses a bundle below this share: then one converter
lost much more than the other. Rejected: demanding equal labels on every text (no two quantizers give that) and
warning only (the bundle promised both artifacts answer alike). The result cache never serves one backend's
answer for the other: the artifact and backend are part of every key."""


def _labels_per_backend(bundle: Path, texts: Sequence[str], profile: Profile) -> dict[str, list[str]]:
    """Load the finished bundle through the runtime once per backend of the profile and label ``texts``."""
    import edgeopt_runtime

    answers = {}
    for fmt in profile.export.runtime_formats:
        with edgeopt_runtime.load_classifier(bundle, backend=fmt.value, threads=1, cache=False) as model:
            chunks = (list(texts[start : start + 64]) for start in range(0, len(texts), 64))
            answers[fmt.value] = [p.label for chunk in chunks for p in model.predict_batch(chunk)]
    return answers


def backend_agreement(answers: Mapping[str, Sequence[str]]) -> float:
    """Share of texts on which every backend gave the same label (1.0 for one backend)."""
    rows = list(zip(*answers.values(), strict=True))
    return sum(len(set(row)) == 1 for row in rows) / len(rows) if rows else 1.0


def backend_disagreement_problem(answers: Mapping[str, Sequence[str]]) -> str | None:
    """One line when the backends agree on fewer than :data:`MIN_BACKEND_AGREEMENT` of the texts, else None."""
    agreement = backend_agreement(answers)
    if agreement >= MIN_BACKEND_AGREEMENT:
        return None
    texts = len(next(iter(answers.values())))
    return (
        f"the {' and '.join(answers)} artifacts give the same label on {agreement:.2%} of the {texts} test texts, "
        f"below the {MIN_BACKEND_AGREEMENT:.0%} a bundle promises (one converter lost more than the other: "
        "compare their accuracy in report.md, or ship one format with a profile whose export.formats lists it)"
    )
