"""BundleRecord: one typed record, written to the manifest (twice: staged, then with the report) from one place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeopt.record import BundleRecord, ClassifierBuild, EmbedBuild
from edgeopt_runtime.manifest import Artifact, EmbeddingSpec, read_manifest


def _classifier_build(**changes: Any) -> ClassifierBuild:
    values: dict[str, Any] = {
        "task": "toy",
        "data_source": "toy.jsonl",
        "data_fingerprint": "abc",
        "train_texts": 10,
        "unlabeled_texts": 0,
        "augmented_texts": 0,
        "test_texts": 4,
        "seed": 0,
        "distill": {"temperature": 2.0},
        "student": {"architecture": "cnn"},
        "transfer": {"train": 10},
        "search": [],
        "score_calibration": None,
        "prune": None,
        "technique": None,
        "quantization": "int8-static",
        "per_channel": True,
        "calibration_samples": 4,
        "within_budget": True,
        "budget_problems": [],
        "accuracy_gate": {},
        "nnapi": None,
    }
    return ClassifierBuild(**{**values, **changes})


def _staged(tmp_path: Path) -> Path:
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "model.onnx").write_bytes(b"not a real model: the manifest only hashes it")
    return tmp_path


def _record(build: Any, embedding: EmbeddingSpec | None = None) -> BundleRecord[Any]:
    return BundleRecord(
        labels=() if embedding else ("ham", "spam"),
        max_seq_len=16,
        artifacts={"model.onnx": Artifact("onnx", "int8")},
        profile={"name": "tiny"},
        teacher={"fingerprint": "t"},
        metrics={"model.onnx": {"accuracy": 0.9, "shipped": True}},
        versions={"edgeopt": "test"},
        build=build,
        embedding=embedding,
    )


def test_the_staged_manifest_then_the_final_one_carry_what_the_build_measured_in_between(tmp_path: Path) -> None:
    staging = _staged(tmp_path)
    record = _record(_classifier_build())
    first = record.write_manifest(staging, extra_files=())
    assert first["build"]["backend_agreement"] is None and first["build"]["runtime"] is None
    assert "monitoring" not in first

    record.build.backend_agreement = 0.995
    record.build.runtime = {"onnx": {"bundle_rss_mb": 12.0}}
    record.build.budget_problems.append("too slow")
    record.build.within_budget = False
    record.monitoring = {"texts": 4}
    (staging / "report.md").write_text("# report\n")
    final = record.write_manifest(staging, extra_files=("report.md",))

    on_disk = json.loads((staging / "manifest.json").read_text())
    assert on_disk == final
    assert final["build"]["backend_agreement"] == 0.995
    assert final["build"]["budget_problems"] == ["too slow"] and final["build"]["within_budget"] is False
    assert final["monitoring"] == {"texts": 4}
    assert "report.md" in final["files"]
    assert list(final["build"]) == list(_classifier_build().to_dict())  # one key order, fixed by the class
    manifest = read_manifest(staging)
    assert manifest.labels == ("ham", "spam") and manifest.task == "text-classification"


def test_the_report_reads_plain_json(tmp_path: Path) -> None:
    record = _record(_classifier_build())
    record.savedmodel = {"files": ["model.savedmodel/saved_model.pb"], "signature": "serving_default"}
    view = record.readable()
    json.dumps(view)  # raises TypeError on anything but JSON values (an Artifact, an EmbeddingSpec)
    assert view["artifacts"]["model.onnx"] == {"format": "onnx", "precision": "int8", "output_dtype": "float32"}
    assert view["savedmodel"]["signature"] == "serving_default"
    assert record.savedmodel_files == ("model.savedmodel/saved_model.pb",)


def test_an_embedder_record_writes_an_embed_manifest(tmp_path: Path) -> None:
    build = EmbedBuild(
        task="corpus (embed)",
        data_source="corpus.txt",
        train_texts=10,
        transfer_texts=30,
        transfer={"train": 10, "crop": 20},
        held_out_texts=5,
        held_out_corpus=15,
        neighbours=10,
        seed=0,
        distill={},
        student={},
        prune=None,
        quantization="int8-static",
        per_channel=True,
        calibration_samples=4,
        within_budget=True,
        budget_problems=[],
    )
    record = _record(build, EmbeddingSpec(dim=8, pooling="mean", normalized=True))
    manifest = record.write_manifest(_staged(tmp_path), extra_files=())
    assert (manifest["task"], manifest["dim"], manifest["pooling"], manifest["labels"]) == ("embed", 8, "mean", [])
    view = record.readable()
    assert (view["task"], view["dim"], view["pooling"]) == ("embed", 8, "mean")


def test_a_listed_file_that_is_missing_fails_the_write(tmp_path: Path) -> None:
    from edgeopt_runtime.errors import BundleInvalid

    with pytest.raises(BundleInvalid):
        _record(_classifier_build()).write_manifest(_staged(tmp_path), extra_files=("report.md",))
    assert not (tmp_path / "manifest.json").exists()
