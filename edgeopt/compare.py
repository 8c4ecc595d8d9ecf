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
from pathlib import Path
from typing import Any

from edgeopt.bundle import check_output_path, staged_output
from edgeopt.evaluate import ArtifactMetrics
from edgeopt.stages import (
    BuildConfig,
    PreparedTask,
    Reporter,
    measure,
    measure_teacher,
    prepare,
    train_student,
)
from edgeopt.techniques import resolve_techniques, run_technique

__all__ = [
    "VariantResult",
    "CompareResult",
    "compare",
]


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
        config: Teacher, data and profile options, as for ``build``.
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
    preferred = task.profile.export.runtime_formats[0].value
    variants: list[VariantResult] = []
    with staged_output(out, force) as staging, tempfile.TemporaryDirectory(prefix="edgeopt-compare-") as tmp:
        work = Path(tmp)
        student = train_student(task, config, work, reporter)
        with reporter.stage("teacher metrics"):
            teacher = measure_teacher(task)
        for technique in chosen:
            with reporter.stage(f"variant {technique.name}") as info:
                out_dir = work / technique.name
                run = run_technique(technique, student, task, config, out_dir)
                artifacts, details = run.artifacts, run.details
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
