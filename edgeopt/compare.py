"""``edgeopt compare``: one distilled student, many compression variants, measured side by side.

Users choose a technique by what it costs in accuracy against what it saves in size and time on their device, so
every variant is made from the same distilled student (teacher outputs come from the cache and the student is trained
once, so a comparison is not N builds) and measured the same way: accuracy, macro-F1 and agreement with the teacher on
the held-out split, bytes on disk and gzipped, and p50 latency at batch 1 on one thread in both ONNX Runtime and LiteRT.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.bundle import check_output_path, staged_output
from edgeopt.errors import StageError
from edgeopt.evaluate import ArtifactMetrics
from edgeopt.pipeline import (
    BuildConfig,
    PreparedTask,
    Reporter,
    TrainedStudent,
    export_model,
    measure,
    measure_teacher,
    prepare,
    train_student,
)
from edgeopt.profiles import ExportFormat, Quantization
from edgeopt.quantize import CalibrationMethod

__all__ = [
    "Pruning",
    "Order",
    "Technique",
    "TECHNIQUES",
    "DEFAULT_TECHNIQUES",
    "VariantResult",
    "CompareResult",
    "compare",
    "resolve_techniques",
    "make_variant",
]


class Pruning(StrEnum):
    """How a variant removes weights before (or after) quantization."""

    NONE = "none"
    MAGNITUDE = "magnitude"
    TWO_FOUR = "2:4"
    STRUCTURED = "structured"
    SENSITIVITY = "sensitivity"


class Order(StrEnum):
    """Whether pruning happens before quantization (the default) or after it."""

    PRUNE_THEN_QUANTIZE = "prune-then-quantize"
    QUANTIZE_THEN_PRUNE = "quantize-then-prune"


@dataclass(frozen=True)
class Technique:
    """One variant's settings; ``name`` is what ``--techniques`` takes.

    Attributes:
        name: Short identifier.
        description: One line for tables.
        quantization: Quantization scheme of the exported artifacts.
        per_channel: Per-channel int8 weight scales (else per tensor).
        calibration: ONNX static calibration method (TFLite always uses min/max of the representative dataset).
        pruning: Pruning kind.
        sparsity: Target sparsity of the pruned layers.
        order: Prune then quantize, or quantize then prune.
        qat: Quantization-aware training before conversion (int8 static only).
        gate: Keep the most quantization-sensitive layers in float until the profile's accuracy budget holds.
    """

    name: str
    description: str
    quantization: Quantization = Quantization.INT8_STATIC
    per_channel: bool = True
    calibration: CalibrationMethod = CalibrationMethod.MINMAX
    pruning: Pruning = Pruning.NONE
    sparsity: float = 0.0
    order: Order = Order.PRUNE_THEN_QUANTIZE
    qat: bool = False
    gate: bool = False

    def settings(self) -> dict[str, Any]:
        """The settings as JSON-able values."""
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items() if k != "description"}


def _technique_list() -> list[Technique]:
    int8 = Quantization.INT8_STATIC
    return [
        Technique("float32", "distilled student, no compression", Quantization.NONE),
        Technique("float16", "float16 weights (TFLite; ONNX stays float32)", Quantization.FLOAT16),
        Technique("int8-dynamic", "dynamic-range int8: int8 weights, float activations", Quantization.INT8_DYNAMIC),
        Technique("int8-static", "static int8, per-channel weights, min/max calibration", int8),
        Technique("int8-static-per-tensor", "static int8, one scale per weight tensor", int8, per_channel=False),
        Technique(
            "int8-static-entropy",
            "static int8, entropy calibration (ONNX)",
            int8,
            calibration=CalibrationMethod.ENTROPY,
        ),
        Technique(
            "int8-static-percentile",
            "static int8, percentile calibration (ONNX)",
            int8,
            calibration=CalibrationMethod.PERCENTILE,
        ),
        Technique(
            "prune50-int8",
            "magnitude pruning to 50% (fine-tuned), then static int8",
            int8,
            pruning=Pruning.MAGNITUDE,
            sparsity=0.5,
        ),
        Technique(
            "prune75-int8",
            "magnitude pruning to 75% (fine-tuned), then static int8",
            int8,
            pruning=Pruning.MAGNITUDE,
            sparsity=0.75,
        ),
        Technique(
            "int8-prune50",
            "static int8 grid first, then 50% of int8 weights zeroed (no fine-tuning)",
            int8,
            pruning=Pruning.MAGNITUDE,
            sparsity=0.5,
            order=Order.QUANTIZE_THEN_PRUNE,
        ),
        Technique(
            "sparse24-int8",
            "2:4 structured sparsity on the dense layer (fine-tuned), then static int8",
            int8,
            pruning=Pruning.TWO_FOUR,
        ),
        Technique(
            "structured50-int8",
            "half the embedding dims, conv filters and dense units removed (lowest L1 norm, fine-tuned), then int8",
            int8,
            pruning=Pruning.STRUCTURED,
            sparsity=0.5,
        ),
        Technique(
            "sensitivity-int8",
            "per-layer sparsity chosen by a pruning sensitivity analysis (fine-tuned), then static int8",
            int8,
            pruning=Pruning.SENSITIVITY,
        ),
        Technique("qat-int8", "quantization-aware training (tfmot) on conv and dense, then int8", int8, qat=True),
        Technique(
            "int8-gated",
            "static int8 with the accuracy gate: sensitive layers kept float until the accuracy budget holds",
            int8,
            gate=True,
        ),
    ]


TECHNIQUES: dict[str, Technique] = {t.name: t for t in _technique_list()}
DEFAULT_TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUES)


def resolve_techniques(names: Sequence[str] | None) -> list[Technique]:
    """Look up technique names (all of them when ``names`` is empty).

    Raises:
        StageError: A name is unknown; the message lists the known ones.
    """
    if not names:
        return [TECHNIQUES[n] for n in DEFAULT_TECHNIQUES]
    unknown = [n for n in names if n not in TECHNIQUES]
    if unknown:
        raise StageError(f"unknown technique(s) {', '.join(unknown)}; choose from: {', '.join(TECHNIQUES)}")
    return [TECHNIQUES[n] for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class VariantResult:
    """One variant, measured.

    Top-level quality and size figures are those of the profile's preferred format (its first listed format);
    ``formats`` holds every format's metrics.
    """

    technique: dict[str, Any]
    description: str
    accuracy: float
    macro_f1: float
    agreement: float
    bytes: int
    gzip_bytes: int
    p50_ms_onnx: float | None
    p50_ms_tflite: float | None
    fits_profile: bool
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as written to ``compare.json``."""
        return asdict(self)


@dataclass(frozen=True)
class CompareResult:
    """All variants of one comparison, with the teacher for reference."""

    out: Path
    profile: str
    teacher: dict[str, Any]
    variants: tuple[VariantResult, ...]


def _prune_variant(
    technique: Technique, model: Any, student: TrainedStudent, task: PreparedTask, config: BuildConfig
) -> tuple[Any, dict[str, Any]]:
    """Apply the technique's pruning (before quantization) to ``model``; return the model and what was done."""
    from edgeopt.prune import PruneConfig, prune
    from edgeopt.quantize import prune_on_int8_grid

    fit_inputs = student.rows(student.fit_rows)
    fit_targets = student.targets[student.fit_rows]
    args = (fit_inputs, fit_targets, task.num_labels, student.distill_config)
    if technique.pruning is Pruning.NONE:
        return model, {}
    if technique.pruning is Pruning.MAGNITUDE and technique.order is Order.QUANTIZE_THEN_PRUNE:
        return model, {"sparsity": prune_on_int8_grid(model, technique.sparsity, per_channel=technique.per_channel)}
    if technique.pruning is Pruning.STRUCTURED:
        from edgeopt.structured import structured_prune

        smaller, result = structured_prune(
            model, student.spec or task.student_spec, technique.sparsity, *args, epochs=config.prune_epochs
        )
        return smaller, {"structured": result.to_dict()}
    if technique.pruning is Pruning.SENSITIVITY:
        from edgeopt.sensitivity import choose_sparsities, keras_accuracy, pruning_sensitivity

        val_labels = np.asarray(task.data.train.labels)[student.val_rows]
        table = pruning_sensitivity(model, keras_accuracy(student.rows(student.val_rows), val_labels))
        per_layer = choose_sparsities(table, max_drop_per_layer=task.profile.budget.max_accuracy_drop / 3)
        prune_config = PruneConfig(target_sparsity=0.0, epochs=config.prune_epochs, per_layer=per_layer)
        pruned, pruned_result = prune(model, *args, prune_config)
        return pruned, {
            "per_layer": per_layer,
            "sensitivity": table.to_dict(),
            "sparsity": pruned_result.overall_sparsity,
        }
    if technique.pruning is Pruning.TWO_FOUR:
        prune_config = PruneConfig(target_sparsity=0.0, epochs=config.prune_epochs, m_by_n=(2, 4))
    else:
        prune_config = PruneConfig(target_sparsity=technique.sparsity, epochs=config.prune_epochs)
    pruned, pruned_result = prune(model, *args, prune_config)
    return pruned, {"sparsity": pruned_result.overall_sparsity, "prune": pruned_result.to_dict()}


def make_variant(
    technique: Technique,
    student: TrainedStudent,
    task: PreparedTask,
    config: BuildConfig,
    out: Path,
    formats: set[ExportFormat] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Apply one technique to a copy of the student and write ``model.<format>`` files into ``out``.

    Args:
        technique: What to do.
        student: The distilled student (not changed).
        task: Data, teacher and profile.
        config: Seed and fine-tuning settings.
        out: Directory for the artifacts.
        formats: Formats to write; both when None.

    Returns:
        ``({file name: runtime Artifact}, details of what was done, the float model before quantization)``.
    """
    from edgeopt import export
    from edgeopt_runtime.manifest import Artifact
    from edgeopt_runtime.manifest import Quantization as OutputQuant

    formats = formats or {ExportFormat.ONNX, ExportFormat.TFLITE}
    model, details = _prune_variant(technique, student.copy_model(), student, task, config)
    out.mkdir(parents=True, exist_ok=True)
    calibration = student.calibration(task.profile.export.calibration_samples, len(task.data.train), config.seed)
    artifacts: dict[str, Any] = {}

    def int8_tflite(name: str, quantization: Any) -> Any:
        if quantization is None:
            return Artifact("tflite", name, "float32")
        return Artifact("tflite", name, "int8", OutputQuant(quantization.scale, quantization.zero_point))

    if technique.qat:
        from edgeopt.qat import qat_finetune, qat_to_onnx, qat_to_tflite

        qat_model, report = qat_finetune(
            model,
            student.rows(student.fit_rows),
            student.targets[student.fit_rows],
            task.num_labels,
            student.distill_config,
        )
        if ExportFormat.TFLITE in formats:
            artifacts["model.tflite"] = int8_tflite(
                "int8-qat", qat_to_tflite(qat_model, calibration, out / "model.tflite")
            )
        if ExportFormat.ONNX in formats:
            qat_to_onnx(qat_model, out / "model.onnx", student.max_seq_len)
            artifacts["model.onnx"] = Artifact("onnx", "int8-qat")
        details["qat"] = {
            **report.to_dict(),
            "quantized": list(report.quantized),
            "kept_float": {layer.name: layer.reason for layer in report.unsupported},
        }
        return artifacts, details, model
    if technique.gate:
        from edgeopt.pipeline import accuracy_gate

        float_onnx = export.to_onnx(model, out.parent / f".{out.name}-float.onnx", student.max_seq_len)
        names = {f"model.{fmt.value}": fmt.value for fmt in formats}
        artifacts, details["gate"] = accuracy_gate(
            task, student, model, float_onnx, calibration, out, names, technique.per_channel
        )
        float_onnx.unlink(missing_ok=True)
        return artifacts, details, model
    artifacts = export_model(
        model,
        technique.quantization,
        formats,
        calibration,
        out,
        student.max_seq_len,
        per_channel=technique.per_channel,
        calibration_method=technique.calibration,
    )
    return artifacts, details, model


def _fits(task: PreparedTask, teacher: ArtifactMetrics, metrics: ArtifactMetrics) -> bool:
    budget = task.profile.budget
    return (
        metrics.bytes <= budget.max_model_mb * 1_000_000
        and teacher.accuracy - metrics.accuracy <= budget.max_accuracy_drop
    )


def compare(
    config: BuildConfig,
    out: Path,
    techniques: Sequence[str] | None = None,
    force: bool = False,
) -> CompareResult:
    """Build every requested variant from one distilled student and write ``compare.{json,md,png}`` into ``out``.

    Args:
        config: Teacher, data and profile options, as for ``build`` (``config.out`` is not used).
        out: Directory to write the comparison into (written atomically).
        techniques: Names from :data:`TECHNIQUES`; all of them when empty.
        force: Replace ``out`` if it exists.

    Returns:
        The measured variants.
    """
    from edgeopt.report import write_compare_chart, write_compare_table

    chosen = resolve_techniques(techniques)
    reporter = Reporter()
    check_output_path(out, force)
    task = prepare(config, reporter)
    preferred = task.profile.export.formats[0].value
    variants: list[VariantResult] = []
    with staged_output(out, force) as staging, tempfile.TemporaryDirectory(prefix="edgeopt-compare-") as tmp:
        work = Path(tmp)
        student = train_student(task, config, work, reporter)
        with reporter.stage("teacher metrics"):
            teacher = measure_teacher(task)
        for technique in chosen:
            with reporter.stage(f"variant {technique.name}") as info:
                out_dir = work / technique.name
                artifacts, details, _ = make_variant(technique, student, task, config, out_dir)
                measured = measure(task, student, {a.format: out_dir / name for name, a in artifacts.items()})
                main = measured.get(preferred) or next(iter(measured.values()))
                variants.append(
                    VariantResult(
                        technique=technique.settings(),
                        description=technique.description,
                        accuracy=main.accuracy,
                        macro_f1=main.macro_f1,
                        agreement=main.agreement,
                        bytes=main.bytes,
                        gzip_bytes=main.gzip_bytes,
                        p50_ms_onnx=measured["onnx"].p50_ms if "onnx" in measured else None,
                        p50_ms_tflite=measured["tflite"].p50_ms if "tflite" in measured else None,
                        fits_profile=all(_fits(task, teacher, m) for m in measured.values()),
                        formats={fmt: m.to_dict() for fmt, m in measured.items()},
                        details=details,
                    )
                )
                info.update(accuracy=main.accuracy, bytes=main.bytes)
        teacher_fields = {**teacher.to_dict(), "fingerprint": task.teacher.fingerprint}
        payload = {
            "profile": task.profile.to_dict(),
            "preferred_format": preferred,
            "teacher": teacher_fields,
            "student": {
                "vocabulary": student.vocab.size,
                "max_seq_len": student.max_seq_len,
                "distill": asdict(student.distill_config),
                "epochs_run": student.distilled.epochs_run,
            },
            "variants": [v.to_dict() for v in variants],
        }
        (staging / "compare.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        write_compare_table(payload, staging / "compare.md")
        write_compare_chart(payload, staging / "compare.png")
    reporter.say(f"comparison written to {out}")
    return CompareResult(out=out, profile=task.profile.name, teacher=teacher_fields, variants=tuple(variants))
