"""Compression techniques as data: each is a name and its settings (pruning, order, quantization, gate).

The registry (:data:`TECHNIQUES`) is what ``edgeopt compare`` lays side by side and what a profile's ``[export]
technique`` or ``edgeopt build --technique`` selects; :func:`make_variant` applies one to a distilled student. Both
commands import it from here, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import StageError
from edgeopt.profiles import ExportFormat, Quantization
from edgeopt.quantize import CalibrationMethod
from edgeopt.stages import (
    BuildConfig,
    PreparedTask,
    TrainedStudent,
    export_model,
)

__all__ = [
    "Pruning",
    "Order",
    "Technique",
    "TECHNIQUES",
    "DEFAULT_TECHNIQUES",
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
        from edgeopt.stages import accuracy_gate

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
