"""What a build records about its bundle: typed while the build runs, then written to the manifest from one place.

:class:`BundleRecord` gathers what the manifest says (labels, artifacts, profile, teacher, metrics) and how the
bundle was made (:class:`ClassifierBuild` or :class:`EmbedBuild`, the manifest's ``build`` object); the stages
after export fill in what they measure on the staged bundle (backend agreement, runtime footprint, monitoring
reference) as typed attributes. :meth:`BundleRecord.write_manifest` is the one place a manifest is made from it,
and :meth:`BundleRecord.readable` the one JSON view the report and chart read.

The manifest is written twice on purpose: the runtime verifies every file a manifest lists before it loads a
bundle, so the staged bundle needs one before the build can measure it through the runtime; the report comes from
those measurements, and the second write adds its hash. (Rejected: measuring through the runtime with verification
turned off, which would measure a different code path from the one apps run.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from edgeopt.stages import TOKENIZER
from edgeopt_runtime.manifest import (
    TASK_EMBED,
    TASK_TEXT_CLASSIFICATION,
    Artifact,
    EmbeddingSpec,
    build_manifest,
    write_manifest,
)

__all__ = ["BundleRecord", "ClassifierBuild", "EmbedBuild"]


@dataclass
class ClassifierBuild:
    """How a classifier bundle was made (the manifest's ``build``); every key is documented in README's manifest."""

    task: str
    data_source: str
    data_fingerprint: str
    train_texts: int
    unlabeled_texts: int
    augmented_texts: int
    test_texts: int
    seed: int
    distill: dict[str, Any]
    student: dict[str, Any]
    transfer: dict[str, int]
    search: list[dict[str, Any]]
    score_calibration: dict[str, Any] | None
    prune: dict[str, Any] | None
    technique: dict[str, Any] | None
    quantization: str
    per_channel: bool
    calibration_samples: int
    within_budget: bool
    budget_problems: list[str]
    accuracy_gate: dict[str, Any]
    nnapi: dict[str, Any] | None
    # Measured on the staged bundle through the runtime, after the first manifest is written.
    backend_agreement: float | None = None
    runtime: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``build`` object (plain JSON values)."""
        return asdict(self)


@dataclass
class EmbedBuild:
    """How an embedder bundle was made (the manifest's ``build``)."""

    task: str
    data_source: str
    train_texts: int
    transfer_texts: int
    transfer: dict[str, int]
    held_out_texts: int
    held_out_corpus: int
    neighbours: int
    seed: int
    distill: dict[str, Any]
    student: dict[str, Any]
    prune: dict[str, Any] | None
    quantization: str
    per_channel: bool
    calibration_samples: int
    within_budget: bool
    budget_problems: list[str]
    # Measured on the staged bundle through the runtime, after the first manifest is written.
    backend_mean_cosine: float | None = None
    runtime: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``build`` object (plain JSON values)."""
        return asdict(self)


BuildT = TypeVar("BuildT", ClassifierBuild, EmbedBuild)


@dataclass
class BundleRecord(Generic[BuildT]):
    """Everything a bundle's manifest says, gathered as the build runs.

    ``BundleRecord[ClassifierBuild]`` for a classifier, ``BundleRecord[EmbedBuild]`` for an embedder.

    Attributes:
        labels: Class names in logit order (empty for an embedder).
        max_seq_len: Tokens per text the shipped models take.
        artifacts: The shipped model files by bundle-relative name.
        profile: The hardware profile, as built for (``Profile.to_dict``).
        teacher: The teacher: fingerprint, kind, and what was measured of it.
        metrics: What each artifact (shipped and reference) measured, by file name.
        versions: The tools the bundle was made with.
        build: How it was made.
        embedding: An embedder's vectors (None: a classifier).
        savedmodel: The TensorFlow Serving directory's record, when one was written.
        monitoring: The drift reference (:func:`edgeopt.pipeline.monitoring_reference`), once measured.
    """

    labels: tuple[str, ...]
    max_seq_len: int
    artifacts: dict[str, Artifact]
    profile: dict[str, Any]
    teacher: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    versions: dict[str, str]
    build: BuildT
    embedding: EmbeddingSpec | None = None
    savedmodel: dict[str, Any] | None = None
    monitoring: dict[str, Any] | None = field(default=None)

    @property
    def savedmodel_files(self) -> tuple[str, ...]:
        """The SavedModel's files, listed under the manifest's ``files`` so that verifying a bundle checks them."""
        return () if self.savedmodel is None else tuple(self.savedmodel["files"])

    def _extra(self) -> dict[str, Any]:
        # Keys the runtime keeps without knowing them: "build" records how the bundle was made, for people and
        # tools; "monitoring" is the reference the runtime's drift check compares with; "savedmodel" describes the
        # TensorFlow Serving directory, which is no runtime artifact.
        extra: dict[str, Any] = {"build": self.build.to_dict()}
        if self.monitoring is not None:
            extra["monitoring"] = self.monitoring
        if self.savedmodel is not None:
            extra["savedmodel"] = self.savedmodel
        return extra

    def write_manifest(self, staging: Path, extra_files: tuple[str, ...]) -> dict[str, Any]:
        """Hash the staged bundle's files and write its manifest from this record; the manifest as written."""
        manifest = build_manifest(
            staging,
            labels=self.labels,
            max_seq_len=self.max_seq_len,
            artifacts=self.artifacts,
            tokenizer_file=TOKENIZER,
            extra_files=(*self.savedmodel_files, *extra_files),
            profile=self.profile,
            teacher=self.teacher,
            metrics=self.metrics,
            versions=self.versions,
            task=TASK_TEXT_CLASSIFICATION if self.embedding is None else TASK_EMBED,
            embedding=self.embedding,
        )
        manifest = replace(manifest, raw={**manifest.raw, **self._extra()})
        write_manifest(staging, manifest)
        return manifest.to_dict()

    def readable(self) -> dict[str, Any]:
        """The record as plain JSON values: what the report and its charts read."""
        view: dict[str, Any] = {
            "labels": self.labels,
            "max_seq_len": self.max_seq_len,
            "artifacts": {name: artifact.to_dict() for name, artifact in self.artifacts.items()},
            "profile": self.profile,
            "teacher": self.teacher,
            "metrics": self.metrics,
            "versions": self.versions,
            **self._extra(),
        }
        if self.embedding is not None:
            view = {"task": TASK_EMBED, **view, **self.embedding.to_dict()}
        return view
