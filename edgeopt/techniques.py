"""Compression techniques as data: a technique is a name and an ordered list of typed passes.

A pass is one step on a copy of the distilled student (fit the score temperature, prune by magnitude, 2:4, units
or per-layer sensitivity, zero int8 weights, quantization-aware training, post-training quantization and export,
the accuracy gate). Every pass is a frozen dataclass of its settings and registers itself by name
(:data:`PASSES`, filled by ``__init_subclass__``), so a technique can be written as data
(``Technique.from_dict``) and recorded as data (``Technique.to_dict``) in the manifest.

The registry of named techniques (:data:`TECHNIQUES`) is what ``edgeopt compare`` lays side by side and what a
profile's ``[export] technique`` or ``edgeopt build --technique`` selects; the profile's own scheme is a technique
too (:func:`profile_technique`), so ``build`` and ``compare`` run every one through :func:`run_technique`.

Rejected: one flat settings record per technique with an ``order`` switch and a ``pruning`` kind (the form before
this one): every new step needed a field, a branch in the runner and a second copy in the build's own scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeopt.distill import RecoveryData
from edgeopt.errors import ConfigError, StageError
from edgeopt.profiles import RUNTIME_FORMATS, ExportFormat, ExportSpec, QuantizationScheme, StudentSpec
from edgeopt.quantize import CalibrationMethod
from edgeopt.stages import (
    BuildConfig,
    PreparedTask,
    Reporter,
    TrainedStudent,
    export_model,
)

__all__ = [
    "Pass",
    "PASSES",
    "FitTemperature",
    "MagnitudePrune",
    "StructuredPrune",
    "SensitivityPrune",
    "Int8GridPrune",
    "QuantizationAwareTraining",
    "PostTrainingQuantization",
    "AccuracyGate",
    "Technique",
    "TechniqueRun",
    "TECHNIQUES",
    "DEFAULT_TECHNIQUES",
    "profile_technique",
    "resolve_techniques",
    "run_technique",
]


@dataclass
class TechniqueRun:
    """What the passes of one technique share while they run.

    Attributes:
        student: The distilled student (not changed; ``model`` starts as a copy of it).
        task: Data, teacher and profile.
        config: Seed and fine-tuning settings.
        out: Directory the artifacts are written to.
        formats: Formats to write (those the runtime loads: onnx, tflite).
        calibration: Representative inputs for static quantization.
        model: The float Keras model the passes transform.
        artifacts: ``{file name: runtime Artifact}`` once a pass has exported.
        details: What the passes did (JSON-able), merged from each pass's return value.
        prune_result: The magnitude-pruning result, when a pass pruned (the manifest's ``build.prune``).
    """

    student: TrainedStudent
    task: PreparedTask
    config: BuildConfig
    out: Path
    formats: set[ExportFormat]
    calibration: tuple[np.ndarray, np.ndarray]
    model: Any
    artifacts: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    prune_result: Any = None

    def recovery_data(self) -> RecoveryData:
        """What the recovery fine-tunes (pruning, unit removal, QAT) train on: the student's own training rows."""
        student = self.student
        return RecoveryData(
            student.rows(student.fit_rows),
            student.targets[student.fit_rows],
            self.task.num_labels,
            student.distill_config,
        )


PASSES: dict[str, type[Pass]] = {}
"""Every pass, by its ``name`` (filled as each class is defined)."""


@dataclass(frozen=True)
class Pass:
    """One step of a technique. Subclasses are frozen dataclasses of their settings and set ``name`` and ``stage``.

    ``apply`` transforms ``run.model`` or exports it into ``run.artifacts`` and returns what it did (merged into
    ``run.details``); ``stage`` is the build stage it is reported as.
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    exports: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            PASSES[cls.name] = cls

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass on ``run``; return what it did."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """``{"pass": name, setting: value, ...}`` with JSON-able values."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"pass": self.name, **{k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Pass:
        """The pass a :meth:`to_dict` mapping describes.

        Raises:
            ConfigError: The pass name is unknown or a setting is not one of the pass's.
        """
        settings = dict(data)
        name = settings.pop("pass", None)
        if name not in PASSES:
            raise ConfigError(f"unknown pass {name!r}; passes are {', '.join(sorted(PASSES))}")
        cls = PASSES[name]
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"pass {name!r} has no setting {', '.join(unknown)}; its settings: {', '.join(known)}")
        converters: dict[str, Callable[[Any], Any]] = {
            "scheme": QuantizationScheme,
            "calibration": CalibrationMethod,
            "m_by_n": tuple,  # JSON has a list where the setting holds a tuple
        }
        return cls(**{k: converters[k](v) if k in converters and v is not None else v for k, v in settings.items()})


@dataclass(frozen=True)
class FitTemperature(Pass):
    """Fit one temperature on the validation split and fold it into the logits, so scores mean what they say."""

    name: ClassVar[str] = "temperature"
    stage: ClassVar[str] = "calibrate"

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        student = run.student
        student.score_calibration = student.calibrate_scores(run.model, np.asarray(run.task.data.train.labels))
        return {"temperature": student.score_calibration.temperature}


@dataclass(frozen=True)
class MagnitudePrune(Pass):
    """tfmot magnitude pruning to ``sparsity`` (or an m:n pattern on the dense layer), fine-tuned on the targets."""

    name: ClassVar[str] = "magnitude"
    stage: ClassVar[str] = "prune"
    sparsity: float = 0.5
    m_by_n: tuple[int, int] | None = None

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt.prune import PruneConfig, prune

        epochs = run.config.prune_epochs
        if self.m_by_n is None:
            config = PruneConfig(target_sparsity=self.sparsity, epochs=epochs)
        else:
            config = PruneConfig(target_sparsity=0.0, epochs=epochs, m_by_n=(self.m_by_n[0], self.m_by_n[1]))
        run.model, run.prune_result = prune(run.model, run.recovery_data(), config)
        return {
            "sparsity": run.prune_result.overall_sparsity,
            "prune": run.prune_result.to_dict(),
            "target": config.target_sparsity,
            "reached": run.prune_result.overall_sparsity,
        }


@dataclass(frozen=True)
class StructuredPrune(Pass):
    """Remove ``fraction`` of the embedding dims, conv filters and dense units (lowest L1 norm), fine-tuned."""

    name: ClassVar[str] = "structured"
    stage: ClassVar[str] = "structured prune"
    fraction: float = 0.5

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt.structured import structured_prune

        spec = run.student.spec or run.task.student_spec
        run.model, result = structured_prune(
            run.model, spec, self.fraction, run.recovery_data(), epochs=run.config.prune_epochs
        )
        return {"structured": result.to_dict()}


@dataclass(frozen=True)
class SensitivityPrune(Pass):
    """Per-layer sparsity from a pruning sensitivity analysis on validation, then magnitude pruning to it.

    Each layer may cost a third of the profile's accuracy budget.
    """

    name: ClassVar[str] = "sensitivity"
    stage: ClassVar[str] = "sensitivity prune"

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt.prune import PruneConfig, prune
        from edgeopt.sensitivity import choose_sparsities, keras_accuracy, pruning_sensitivity

        student, task = run.student, run.task
        val_labels = np.asarray(task.data.train.labels)[student.val_rows]
        table = pruning_sensitivity(run.model, keras_accuracy(student.rows(student.val_rows), val_labels))
        per_layer = choose_sparsities(table, max_drop_per_layer=task.profile.budget.max_accuracy_drop / 3)
        config = PruneConfig(target_sparsity=0.0, epochs=run.config.prune_epochs, per_layer=per_layer)
        run.model, run.prune_result = prune(run.model, run.recovery_data(), config)
        return {"per_layer": per_layer, "sensitivity": table.to_dict(), "sparsity": run.prune_result.overall_sparsity}


@dataclass(frozen=True)
class Int8GridPrune(Pass):
    """Put the weights on their int8 grid and zero ``sparsity`` of them (quantize, then prune; no fine-tuning)."""

    name: ClassVar[str] = "int8-grid-prune"
    stage: ClassVar[str] = "int8-grid prune"
    sparsity: float = 0.5
    per_channel: bool = True

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt.quantize import prune_on_int8_grid

        return {"sparsity": prune_on_int8_grid(run.model, self.sparsity, per_channel=self.per_channel)}


@dataclass(frozen=True)
class QuantizationAwareTraining(Pass):
    """Fine-tune with fake quantization (tfmot) on conv and dense, then convert to int8 (exports)."""

    name: ClassVar[str] = "qat"
    stage: ClassVar[str] = "quantization-aware training"
    exports: ClassVar[bool] = True

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt.qat import qat_finetune, qat_to_onnx, qat_to_tflite
        from edgeopt.stages import artifact_record

        qat_model, report = qat_finetune(run.model, run.recovery_data())
        if ExportFormat.TFLITE in run.formats:
            q = qat_to_tflite(qat_model, run.calibration, run.out / "model.tflite")
            run.artifacts["model.tflite"] = artifact_record("tflite", "int8-qat", q)
        if ExportFormat.ONNX in run.formats:
            qat_to_onnx(qat_model, run.out / "model.onnx", run.student.max_seq_len)
            run.artifacts["model.onnx"] = artifact_record("onnx", "int8-qat")
        return {
            "qat": {
                **report.to_dict(),
                "quantized": list(report.quantized),
                "kept_float": {layer.name: layer.reason for layer in report.unsupported},
            }
        }


@dataclass(frozen=True)
class PostTrainingQuantization(Pass):
    """Export every format with one scheme: static int8 (calibrated), dynamic int8, float16 or float32."""

    name: ClassVar[str] = "ptq"
    stage: ClassVar[str] = "export + quantize"
    exports: ClassVar[bool] = True
    scheme: QuantizationScheme = QuantizationScheme.INT8_STATIC
    per_channel: bool = True
    calibration: CalibrationMethod = CalibrationMethod.MINMAX

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        run.artifacts = export_model(
            run.model,
            self.scheme,
            run.formats,
            run.calibration,
            run.out,
            run.student.max_seq_len,
            per_channel=self.per_channel,
            calibration_method=self.calibration,
        )
        return {"scheme": self.scheme.value, "formats": ",".join(sorted(run.artifacts))}


@dataclass(frozen=True)
class AccuracyGate(Pass):
    """Static int8 with the most quantization-sensitive layers kept float while int8 costs too much (exports).

    Too much: more than the profile's accuracy budget, on validation (:func:`edgeopt.stages.accuracy_gate`).
    """

    name: ClassVar[str] = "gate"
    stage: ClassVar[str] = "accuracy gate"
    exports: ClassVar[bool] = True
    per_channel: bool = True

    def apply(self, run: TechniqueRun) -> dict[str, Any]:
        """Run the pass (see the class docstring)."""
        from edgeopt import export
        from edgeopt.stages import accuracy_gate

        float_onnx = export.to_onnx(run.model, run.out.parent / f".{run.out.name}-float.onnx", run.student.max_seq_len)
        names = {f"model.{fmt.value}": fmt.value for fmt in run.formats}
        try:
            run.artifacts, gate = accuracy_gate(
                run.task, run.student, run.model, float_onnx, run.calibration, run.out, names, self.per_channel
            )
        finally:
            float_onnx.unlink(missing_ok=True)
        return {"gate": gate}


@dataclass(frozen=True)
class Technique:
    """A named, ordered list of passes; ``name`` is what ``--techniques`` and ``[export] technique`` take.

    The last pass exports (post-training quantization, QAT or the accuracy gate).
    """

    name: str
    description: str
    passes: tuple[Pass, ...]

    def __post_init__(self) -> None:
        if not self.passes or not self.passes[-1].exports or any(p.exports for p in self.passes[:-1]):
            raise ConfigError(
                f"technique {self.name!r} must end with exactly one exporting pass "
                f"({', '.join(sorted(n for n, c in PASSES.items() if c.exports))})"
            )

    @property
    def quantization(self) -> QuantizationScheme:
        """The scheme of the exported artifacts (QAT and the gate produce static int8)."""
        last = self.passes[-1]
        return last.scheme if isinstance(last, PostTrainingQuantization) else QuantizationScheme.INT8_STATIC

    @property
    def gates(self) -> bool:
        """Whether the technique ends with the accuracy gate."""
        return isinstance(self.passes[-1], AccuracyGate)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "passes": [pass dicts]}`` (the manifest's ``build.technique`` adds description and details)."""
        return {"name": self.name, "passes": [p.to_dict() for p in self.passes]}

    def settings(self) -> dict[str, Any]:
        """The technique as JSON-able data (what compare.json records per variant)."""
        return self.to_dict()

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Technique:
        """A technique from ``{"name", "description"?, "passes": [{"pass": ..., ...}]}``."""
        passes = tuple(Pass.from_dict(p) for p in data.get("passes", ()))
        return Technique(str(data["name"]), str(data.get("description", "")), passes)


def _technique_list() -> list[Technique]:
    int8 = QuantizationScheme.INT8_STATIC
    ptq = PostTrainingQuantization
    return [
        Technique("float32", "distilled student, no compression", (ptq(QuantizationScheme.NONE),)),
        Technique("float16", "float16 weights (TFLite; ONNX stays float32)", (ptq(QuantizationScheme.FLOAT16),)),
        Technique(
            "int8-dynamic",
            "dynamic-range int8: int8 weights, float activations",
            (ptq(QuantizationScheme.INT8_DYNAMIC),),
        ),
        Technique("int8-static", "static int8, per-channel weights, min/max calibration", (ptq(int8),)),
        Technique(
            "int8-static-per-tensor", "static int8, one scale per weight tensor", (ptq(int8, per_channel=False),)
        ),
        Technique(
            "int8-static-entropy",
            "static int8, entropy calibration (ONNX)",
            (ptq(int8, calibration=CalibrationMethod.ENTROPY),),
        ),
        Technique(
            "int8-static-percentile",
            "static int8, percentile calibration (ONNX)",
            (ptq(int8, calibration=CalibrationMethod.PERCENTILE),),
        ),
        Technique(
            "prune50-int8", "magnitude pruning to 50% (fine-tuned), then static int8", (MagnitudePrune(0.5), ptq(int8))
        ),
        Technique(
            "prune75-int8", "magnitude pruning to 75% (fine-tuned), then static int8", (MagnitudePrune(0.75), ptq(int8))
        ),
        Technique(
            "int8-prune50",
            "static int8 grid first, then 50% of int8 weights zeroed (no fine-tuning)",
            (Int8GridPrune(0.5), ptq(int8)),
        ),
        Technique(
            "sparse24-int8",
            "2:4 structured sparsity on the dense layer (fine-tuned), then static int8",
            (MagnitudePrune(0.0, m_by_n=(2, 4)), ptq(int8)),
        ),
        Technique(
            "structured50-int8",
            "half the embedding dims, conv filters and dense units removed (lowest L1 norm, fine-tuned), then int8",
            (StructuredPrune(0.5), ptq(int8)),
        ),
        Technique(
            "sensitivity-int8",
            "per-layer sparsity chosen by a pruning sensitivity analysis (fine-tuned), then static int8",
            (SensitivityPrune(), ptq(int8)),
        ),
        Technique(
            "qat-int8",
            "quantization-aware training (tfmot) on conv and dense, then int8",
            (QuantizationAwareTraining(),),
        ),
        Technique(
            "int8-gated",
            "static int8 with the accuracy gate: sensitive layers kept float until the accuracy budget holds",
            (AccuracyGate(),),
        ),
    ]


TECHNIQUES: dict[str, Technique] = {t.name: t for t in _technique_list()}


DEFAULT_TECHNIQUES: tuple[str, ...] = tuple(TECHNIQUES)


def profile_technique(name: str, student: StudentSpec, export: ExportSpec) -> Technique:
    """A profile's own scheme as a technique (``student`` with the build's overrides applied).

    Magnitude pruning to its sparsity, the score temperature on the pruned model (pruning's fine-tune would move a
    scale fitted before it), then its quantization.
    """
    passes: list[Pass] = []
    if student.target_sparsity > 0:
        passes.append(MagnitudePrune(student.target_sparsity))
    if student.calibrate:
        passes.append(FitTemperature())
    passes.append(PostTrainingQuantization(export.quantization, per_channel=export.per_channel))
    return Technique(f"{name} profile", "the profile's sparsity and quantization scheme", tuple(passes))


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


def run_technique(
    technique: Technique,
    student: TrainedStudent,
    task: PreparedTask,
    config: BuildConfig,
    out: Path,
    formats: set[ExportFormat] | None = None,
    reporter: Reporter | None = None,
) -> TechniqueRun:
    """Apply the technique's passes, in order, to a copy of the student; its last pass writes ``out/model.*``.

    Args:
        technique: What to do.
        student: The distilled student (not changed, but its score calibration is set by a temperature pass).
        task: Data, teacher and profile.
        config: Seed and fine-tuning settings.
        out: Directory for the artifacts.
        formats: Formats to write; both when None. Only the runtime's (onnx, tflite) are a technique's to write:
            a savedmodel in ``formats`` is left to the build (:func:`edgeopt.stages.export_savedmodel`).
        reporter: Reports each pass as a stage of its own when given (the build); compare times whole variants.

    Returns:
        The finished run: artifacts, details, and the float model before quantization.
    """
    out.mkdir(parents=True, exist_ok=True)
    run = TechniqueRun(
        student=student,
        task=task,
        config=config,
        out=out,
        formats=set(formats or RUNTIME_FORMATS) & set(RUNTIME_FORMATS),
        calibration=student.calibration(task.profile.export.calibration_samples, len(task.data.train), config.seed),
        model=student.copy_model(),
    )
    for step in technique.passes:
        if reporter is None:
            run.details.update(step.apply(run))
            continue
        with reporter.stage(step.stage) as info:
            done = step.apply(run)
            run.details.update(done)
            info.update({k: v for k, v in done.items() if not isinstance(v, dict | list)})
    return run
