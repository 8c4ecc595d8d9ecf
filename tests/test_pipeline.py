"""A whole build on tiny real inputs: tiny BERT teacher, a few dozen rows, a 16-token profile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from build_fixtures import tiny_profile, toy_rows, write_csv
from edgeopt.cli import cli
from edgeopt.pipeline import BuildResult, build
from edgeopt.stages import BuildConfig


@pytest.fixture(scope="module")
def built(toy_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BuildResult, Path]]:
    root = tmp_path_factory.mktemp("build")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE_DIR", str(root / "cache"))
        config = BuildConfig(
            profile=str(tiny_profile(root)),
            teacher=toy_teacher_dir,
            train=write_csv(root / "train.csv", toy_rows(60, seed=1)),
            test=write_csv(root / "test.csv", toy_rows(20, seed=2)),
            # The profile's formats and a SavedModel for TensorFlow Serving, from the same build.
            formats=("tflite", "onnx", "savedmodel"),
        )
        import edgeopt.profiles

        parse = edgeopt.profiles.tomllib.loads
        parsed: list[str] = []
        patch.setattr(edgeopt.profiles.tomllib, "loads", lambda text: parsed.append(text) or parse(text))
        import edgeopt.pipeline

        save = edgeopt.pipeline.export_savedmodel
        patch.setattr(edgeopt.pipeline, "export_savedmodel", lambda m, *a: SAVED_MODELS.append(m) or save(m, *a))
        result = build(config, root / "bundle")
        PROFILE_PARSES.append(len(parsed))
        yield result, root


PROFILE_PARSES: list[int] = []
SAVED_MODELS: list[Any] = []  # the Keras models the builds of this module saved as model.savedmodel, in order


def test_a_build_reads_its_profile_once(built: tuple[BuildResult, Path]) -> None:
    assert PROFILE_PARSES == [1]


def test_bundle_holds_every_file_and_verifies(built: tuple[BuildResult, Path]) -> None:
    import edgeopt_runtime

    result, root = built
    names = {p.name for p in result.out.iterdir()}
    assert names == {
        "model.onnx",
        "model.nnapi.onnx",
        "model.tflite",
        "tokenizer.json",
        "manifest.json",
        "report.md",
        "report.png",
        "search.png",
        "model.savedmodel",
    }
    manifest = edgeopt_runtime.verify_bundle(result.out)
    served = {p.relative_to(result.out).as_posix() for p in (result.out / "model.savedmodel").rglob("*") if p.is_file()}
    assert "model.savedmodel/saved_model.pb" in served
    assert set(manifest.files) == (names - {"manifest.json", "model.savedmodel"}) | served
    # The runtime loads the onnx and tflite artifacts; the SavedModel is recorded beside them, for a server.
    assert {a.format for a in manifest.artifacts.values()} == {"onnx", "tflite"}
    assert sorted(manifest.raw["savedmodel"]["files"]) == sorted(served)
    assert not [p for p in root.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_the_nnapi_copy_has_fixed_shapes_and_the_shipped_answers(built: tuple[BuildResult, Path]) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    result, _ = built
    nnapi = result.manifest["build"]["nnapi"]
    length = result.manifest["max_seq_len"]
    assert nnapi["file"] == "model.nnapi.onnx" and nnapi["input_shape"] == [1, length]
    assert nnapi["fixed"]["supported_nodes"] > nnapi["dynamic"]["supported_nodes"]
    assert "## ONNX Runtime Mobile with NNAPI" in (result.out / "report.md").read_text()
    tokenizer = Tokenizer.from_file(str(result.out / "tokenizer.json"))
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length)
    shipped = ort.InferenceSession(str(result.out / "model.onnx"), providers=["CPUExecutionProvider"])
    fixed = ort.InferenceSession(str(result.out / "model.nnapi.onnx"), providers=["CPUExecutionProvider"])
    for text in ("free cash prize now", "meeting notes for the team", "lunch?"):
        encoding = tokenizer.encode(text)
        feeds = {
            "input_ids": np.asarray([encoding.ids], dtype=np.int32),
            "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int32),
        }
        np.testing.assert_allclose(fixed.run(None, feeds)[0], shipped.run(None, feeds)[0], atol=1e-5)


def test_manifest_has_the_documented_fields(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    manifest = json.loads((result.out / "manifest.json").read_text())
    for key in (
        "schema_version",
        "task",
        "labels",
        "max_seq_len",
        "inputs",
        "outputs",
        "files",
        "profile",
        "teacher",
        "metrics",
        "versions",
        "created_at",
        "fingerprint",
        "build",
    ):
        assert key in manifest, key
    assert manifest["labels"] == ["ham", "spam"]
    assert manifest["max_seq_len"] == 16
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["outputs"][0]["name"] == "logits"
    for key in ("fingerprint", "accuracy", "bytes", "p50_ms"):
        assert key in manifest["teacher"], key
    for artifact in ("model.onnx", "model.tflite"):
        metrics = manifest["metrics"][artifact]
        assert metrics["shipped"] is True
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["bytes"] > 0 and metrics["p50_ms"] > 0
        assert metrics["bytes"] == manifest["files"][artifact]["bytes"]
    tflite = manifest["artifacts"]["model.tflite"]
    assert tflite["output_dtype"] == "int8" and "scale" in tflite["output_quantization"]
    assert manifest["profile"]["name"] == "tiny"


def test_students_learn_the_separable_task(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    for artifact in ("model.onnx", "model.tflite"):
        assert result.manifest["metrics"][artifact]["accuracy"] >= 0.9, artifact


def test_both_runtimes_answer_the_same_labels(built: tuple[BuildResult, Path]) -> None:
    import edgeopt_runtime

    result, _ = built
    texts = [text for text, _ in toy_rows(12, seed=3)]
    labels = {
        backend: [p.label for p in edgeopt_runtime.load(result.out, backend=backend, cache=False).predict_batch(texts)]
        for backend in ("onnx", "tflite")
    }
    assert labels["onnx"] == labels["tflite"]


def test_report_names_every_stage(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    report = (result.out / "report.md").read_text()
    for stage in ("teacher (fp32)", "distilled student", "pruned student", "shipped TFLite", "shipped ONNX"):
        assert stage in report
    assert (result.out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [s.name for s in result.stages][:3] == ["data", "teacher", "teacher outputs"]


def test_runtime_footprint_measured_and_reported(built: tuple[BuildResult, Path]) -> None:
    # Each backend of the profile is started in fresh runtime processes on the finished bundle.
    result, _ = built
    runtime = result.manifest["build"]["runtime"]
    assert set(runtime) == {"tflite", "onnx"}
    for r in runtime.values():
        assert r["runs"] == 3 and r["cold_start_ms"] > 0 and r["import_ms"] > 0
        assert 0 < r["bundle_rss_mb"] == pytest.approx(r["peak_rss_mb"] - r["import_rss_mb"])
    report = (result.out / "report.md").read_text()
    assert "load + first prediction add tflite " in report and "runtime cold start on the build host" in report
    names = [s.name for s in result.stages]
    assert names.index("verify bundle") < names.index("runtime footprint") < names.index("report")


def test_monitoring_reference_is_the_runtime_on_the_test_split(built: tuple[BuildResult, Path]) -> None:
    # What the runtime's drift check compares with: the bundle's own answers on the held-out texts.
    result, _ = built
    reference = result.manifest["monitoring"]
    test_texts = result.manifest["build"]["test_texts"]
    assert reference["texts"] == test_texts and reference["source"].startswith(f"{test_texts} held-out")
    assert sum(reference["label_share"].values()) == pytest.approx(1.0)
    assert sum(reference["confidence_share"]) == pytest.approx(1.0)
    import edgeopt_runtime

    with edgeopt_runtime.load(result.out, cache=False) as clf:
        assert clf.monitoring_reference is not None
        assert clf.monitoring_reference.label_share == reference["label_share"]
    assert "monitoring reference (" in (result.out / "report.md").read_text()


def test_rebuild_reuses_cached_teacher_outputs(built: tuple[BuildResult, Path], toy_teacher_dir: Path) -> None:
    result, root = built
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE_DIR", str(root / "cache"))
        again = build(
            BuildConfig(
                profile=str(root / "tiny.toml"),
                teacher=toy_teacher_dir,
                train=root / "train.csv",
                test=root / "test.csv",
                formats=("tflite", "onnx", "savedmodel"),  # the bundle stays the kind the later tests read
            ),
            root / "bundle",
            force=True,
        )
    outputs = next(s for s in again.stages if s.name == "teacher outputs")
    assert outputs.details["computed"] == 0
    transfer = again.manifest["build"]["transfer"]
    fidelity = again.manifest["metrics"]["model.onnx"]["fidelity"]["all"]["texts"]
    # 60 training texts, the tiny profile's 12 general texts, 20 test texts (fidelity texts start with the test
    # texts), then crops of them.
    assert transfer["labeled"] == 60 and transfer["general"] == 12 and transfer["crop"] > 0 and fidelity > 20
    assert outputs.details["general"] == 12
    assert (
        "60 train, 0 unlabeled, 12 general (teacher-labelled fortune quotes), 20 test texts"
        in (again.out / "report.md").read_text()
    )
    assert outputs.details["cached"] == outputs.details["texts"] == sum(transfer.values()) + fidelity


def test_the_transfer_set_is_labeled_in_the_build_s_precision_and_the_test_split_in_float32(
    built: tuple[BuildResult, Path],
) -> None:
    import sqlite3

    from edgeopt.teacher.precision import resolve_precision

    result, root = built
    precision = resolve_precision("auto")
    assert result.manifest["teacher"]["transfer_set_precision"] == precision
    fingerprint = result.manifest["teacher"]["fingerprint"]
    with sqlite3.connect(root / "cache" / "teacher_logits.sqlite") as db:
        rows = dict(db.execute("SELECT teacher, COUNT(*) FROM teacher_logits GROUP BY teacher").fetchall())
    transfer = sum(result.manifest["build"]["transfer"].values())
    fidelity = result.manifest["metrics"]["model.onnx"]["fidelity"]["all"]["texts"]
    if precision == "float32":
        assert rows == {fingerprint: transfer + fidelity}
    else:  # a transfer text that is also a fidelity text is stored once per arithmetic
        assert rows == {fingerprint: fidelity, f"{fingerprint}-{precision}": transfer}


def test_cli_predict_and_inspect(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    runner = CliRunner()
    answer = runner.invoke(cli, ["predict", str(result.out), "free money win now", "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output.splitlines()[0])["label"] in ("ham", "spam")
    shown = runner.invoke(cli, ["inspect", str(result.out)])
    assert shown.exit_code == 0, shown.output
    assert "verified" in shown.output and "model.tflite" in shown.output
    as_json = runner.invoke(cli, ["inspect", str(result.out), "--json"])
    assert json.loads(as_json.output)["schema_version"] == 2


@pytest.mark.parametrize("missing", [("teacher",), ("metrics",), ("teacher", "metrics")])
def test_cli_inspect_shows_a_bundle_without_its_optional_measurements(
    built: tuple[BuildResult, Path], tmp_path: Path, missing: tuple[str, ...]
) -> None:
    import shutil

    result, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(result.out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in missing:
        del manifest[key]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    shown = CliRunner().invoke(cli, ["inspect", str(copy)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"bundle {copy}: verified")
    if "teacher" in missing:
        assert lines[-1] == "metrics: none recorded with the teacher's in this bundle's manifest"
    else:
        assert lines[-1].startswith("teacher (fp32)")  # only the teacher was measured


def test_cli_rejects_a_tampered_bundle(built: tuple[BuildResult, Path], tmp_path: Path) -> None:
    import shutil

    result, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(result.out, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    answer = CliRunner().invoke(cli, ["inspect", str(copy)])
    assert answer.exit_code != 0
    assert "model.onnx" in answer.output and "sha256" in answer.output
    assert "Traceback" not in answer.output


def test_accuracy_gate_replaces_a_too_lossy_int8_artifact(
    toy_teacher_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When int8 loses more than allowed, the build re-quantizes with sensitive layers kept float and says so."""
    import edgeopt.pipeline as pipeline
    from edgeopt.evaluate import ArtifactMetrics

    real_measure = pipeline.measure
    calls = {"n": 0}

    def first_tflite_measure_is_lossy(task, student, paths):  # noqa: ANN001, ANN202
        measured = real_measure(task, student, paths)
        calls["n"] += 1
        if calls["n"] == 1 and "model.tflite" in measured:
            # As if int8 had destroyed the model: the gate must step in and measure the replacement for real.
            measured["model.tflite"] = ArtifactMetrics(0.0, 0.0, 0.0, 1, 1, 1.0, 1.0)
        return measured

    monkeypatch.setattr(pipeline, "measure", first_tflite_measure_is_lossy)
    result = build(
        BuildConfig(
            profile=str(tiny_profile(tmp_path, max_accuracy_drop=0.5)),
            teacher=toy_teacher_dir,
            train=write_csv(tmp_path / "train.csv", toy_rows(60, seed=1)),
            test=write_csv(tmp_path / "test.csv", toy_rows(20, seed=2)),
        ),
        tmp_path / "bundle",
    )
    gate = result.manifest["build"]["accuracy_gate"]
    assert set(gate) == {"model.tflite"}
    assert gate["model.tflite"]["met"] is True
    assert result.manifest["metrics"]["model.tflite"]["accuracy"] >= 0.9
    assert result.manifest["artifacts"]["model.tflite"]["precision"] == "int8-mixed"
    assert "accuracy gate on model.tflite" in (result.out / "report.md").read_text()


def test_profile_selects_technique_and_distillation(toy_teacher_dir: Path, tmp_path: Path) -> None:
    """A profile's optional export.technique and [student] distillation keys drive the build."""
    import edgeopt_runtime

    profile = tiny_profile(tmp_path)
    text = profile.read_text()
    text = text.replace("threads = 4", 'threads = 4\ntechnique = "structured50-int8"')
    text = text.replace(
        "target_sparsity = 0.25", "target_sparsity = 0.25\ntemperature = 3.0\nalpha = 0.7\naugment_copies = 1"
    )
    profile.write_text(text)
    result = build(
        BuildConfig(
            profile=str(profile),
            teacher=toy_teacher_dir,
            train=write_csv(tmp_path / "train.csv", toy_rows(60, seed=1)),
            test=write_csv(tmp_path / "test.csv", toy_rows(20, seed=2)),
        ),
        tmp_path / "bundle",
        # What this test checks is which technique and distillation settings the profile selects. On 20 toy test
        # texts one label that int8 TFLite and int8 ONNX round differently is 95% agreement, under the bundle's 99%
        # promise (it happened once the toy teacher fine-tuned in bfloat16); that check has tests of its own.
        allow_over_budget=True,
    )
    built = result.manifest["build"]
    assert (built["distill"]["temperature"], built["distill"]["alpha"]) == (3.0, 0.7)
    assert built["augmented_texts"] == built["train_texts"]  # one augmented copy of each training text
    assert built["technique"]["name"] == "structured50-int8"
    structured = built["technique"]["details"]["structured"]
    assert structured["params_after"] < structured["params_before"]
    for backend in ("onnx", "tflite"):
        model = edgeopt_runtime.load(result.out, backend=backend, cache=False)
        assert model.predict("free money win now").label in ("ham", "spam")


def test_cli_technique_typo_fails_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "--technique", "qat-int9", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: unknown technique(s) qat-int9")
    assert not (tmp_path / "out").exists()


def _toy_build_args(profile: Path, teacher: Path, tmp_path: Path) -> list[str]:
    """`edgeopt build` on the toy task with ``profile`` and ``teacher``, quiet; the caller adds ``--out``."""
    train = write_csv(tmp_path / "train.csv", toy_rows(40, seed=1))
    return ["build", "--profile", str(profile), "--teacher", str(teacher), "--train", str(train), "--quiet"]


def test_profile_technique_is_checked_when_the_build_starts(toy_teacher_dir: Path, tmp_path: Path) -> None:
    profile = tiny_profile(tmp_path)
    profile.write_text(profile.read_text().replace("threads = 4", 'threads = 4\ntechnique = "no-such-thing"'))
    result = CliRunner().invoke(
        cli, [*_toy_build_args(profile, toy_teacher_dir, tmp_path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code != 0
    assert "unknown technique(s) no-such-thing" in result.output
    assert not (tmp_path / "out").exists()


def test_the_student_search_keeps_the_candidate_with_the_better_validation_score(
    built: tuple[BuildResult, Path],
) -> None:
    result, _ = built
    build_record = result.manifest["build"]
    search = build_record["search"]
    # The shipped profiles search both architectures, each with a trained teacher-initialized table.
    assert [c["name"] for c in search] == ["cnn-attention/trained/x1", "cnn/trained/x1"]
    best = max(search, key=lambda c: (c["validation_accuracy"], c["validation_score"]))
    assert [c["name"] for c in search if c["status"] == "chosen"] == [best["name"]]
    student = build_record["student"]
    assert (student["architecture"], student["embedding_training"]) == (best["architecture"], best["embeddings"])
    assert student["parameters"] == best["parameters"]
    assert student["embedding_init"] == "teacher-static"
    assert build_record["distill"]["best_val_accuracy"] == best["validation_score"]
    names = [s.name for s in result.stages]
    assert [n for n in names if n.startswith("distill")] == [f"distill ({c['name']})" for c in search]


def test_the_search_is_drawn_and_tabled_in_the_report(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    assert (result.out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "search.png" in result.manifest["files"]
    report = (result.out / "report.md").read_text()
    assert "## Student search" in report and "![student search: validation accuracy vs size](search.png)" in report
    for candidate in result.manifest["build"]["search"]:
        assert f"| {candidate['name']} | {candidate['status']} |" in report


def test_a_pinned_student_and_a_spent_search_budget(toy_teacher_dir: Path, tmp_path: Path) -> None:
    common = _toy_build_args(tiny_profile(tmp_path), toy_teacher_dir, tmp_path)
    runner = CliRunner()
    pinned = runner.invoke(cli, [*common, "--out", str(tmp_path / "pinned"), "--student", "cnn/frozen"])
    assert pinned.exit_code == 0, pinned.output
    manifest = json.loads((tmp_path / "pinned" / "manifest.json").read_text())
    assert [(c["name"], c["status"]) for c in manifest["build"]["search"]] == [("cnn/frozen/x1", "chosen")]
    assert manifest["build"]["student"]["architecture"] == "cnn"
    assert not (tmp_path / "pinned" / "search.png").exists()

    budgeted = runner.invoke(cli, [*common, "--out", str(tmp_path / "budget"), "--search-budget", "0.001"])
    assert budgeted.exit_code == 0, budgeted.output
    search = json.loads((tmp_path / "budget" / "manifest.json").read_text())["build"]["search"]
    assert [c["status"] for c in search] == ["chosen", "search budget spent"]


def test_a_student_that_keeps_every_teacher_token(toy_teacher_dir: Path, tmp_path: Path) -> None:
    from edgeopt_runtime import load_classifier

    common = _toy_build_args(tiny_profile(tmp_path), toy_teacher_dir, tmp_path)
    result = CliRunner().invoke(
        cli, [*common, "--out", str(tmp_path / "b"), "--student", "cnn/trained", "--tokens", "teacher"]
    )
    assert result.exit_code == 0, result.output
    teacher_vocab = json.loads((toy_teacher_dir / "tokenizer.json").read_text())["model"]["vocab"]
    shipped_vocab = json.loads((tmp_path / "b" / "tokenizer.json").read_text())["model"]["vocab"]
    assert set(shipped_vocab) == set(teacher_vocab)
    student = json.loads((tmp_path / "b" / "manifest.json").read_text())["build"]["student"]
    assert (student["tokens"], student["vocabulary"]) == ("teacher", len(teacher_vocab))
    report = (tmp_path / "b" / "report.md").read_text(encoding="utf-8")
    assert f"vocabulary of the {len(teacher_vocab):,} tokens the teacher's tokenizer can output;" in report
    # A word of the teacher's no training text holds is one token of its own on the device, not letters.
    unseen = sorted(set(teacher_vocab) - {w for text, _ in toy_rows(40, seed=1) for w in text.split()})
    word = next(w for w in unseen if w.isalpha() and len(w) > 3)
    classifier = load_classifier(tmp_path / "b", cache=False)
    assert classifier.tokenizer.encode_batch([word]).attention_mask.sum() == 3
    assert classifier.predict(word).label in ("ham", "spam")


def test_every_teacher_token_falls_back_to_the_texts_tokens_when_it_would_not_fit(
    toy_teacher_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeopt.profiles import load_profile
    from edgeopt.search import smallest_student_bytes

    teacher_tokens = len(json.loads((toy_teacher_dir / "tokenizer.json").read_text())["model"]["vocab"])
    spec = load_profile(tiny_profile(tmp_path)).student
    # One byte short of the cheapest student over the teacher's whole vocabulary.
    budget_mb = (smallest_student_bytes(spec, teacher_tokens, 2, 1) - 1) / 1e6
    config = BuildConfig(
        profile=str(tiny_profile(tmp_path, max_model_mb=budget_mb)),
        teacher=toy_teacher_dir,
        train=write_csv(tmp_path / "train.csv", toy_rows(40, seed=1)),
        student="cnn/trained",
    )
    with caplog.at_level("WARNING", logger="edgeopt.stages"):
        result = build(config, tmp_path / "b", allow_over_budget=True)
    student = result.manifest["build"]["student"]
    assert student["tokens"] == "corpus" and student["vocabulary"] < teacher_tokens
    assert f"the teacher's {teacher_tokens} tokens do not fit the profile's" in caplog.text


def test_a_malformed_student_is_refused_before_any_work(toy_teacher_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["build", "--profile", str(tiny_profile(tmp_path)), "--student", "transformer", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--student': student 'transformer' is not ARCHITECTURE/frozen|trained[/xWIDTH]; "
        "for example cnn-attention/trained/x1 (architectures: cnn, cnn-attention)"
    )
    assert not (tmp_path / "o").exists()


def test_scores_are_calibrated_last_on_the_exported_model(built: tuple[BuildResult, Path]) -> None:
    result, _ = built
    names = [s.name for s in result.stages]
    assert names.index("prune") < names.index("calibrate") < names.index("export + quantize")
    calibration = result.manifest["build"]["score_calibration"]
    assert calibration["temperature"] > 0 and calibration["validation_texts"] > 0
    assert 0 <= calibration["ece_after"] <= 1 and 0 <= calibration["ece_before"] <= 1
    assert "- calibration: logits divided by" in (result.out / "report.md").read_text()


def test_backend_agreement_and_the_disagreement_problem() -> None:
    from edgeopt.pipeline import MIN_BACKEND_AGREEMENT, backend_agreement, backend_disagreement_problem

    same = {"onnx": ["ham", "spam"] * 50, "tflite": ["ham", "spam"] * 50}
    assert backend_agreement(same) == 1.0 and backend_disagreement_problem(same) is None
    one_off = {"onnx": ["ham"] * 100, "tflite": ["spam"] + ["ham"] * 99}
    assert backend_agreement(one_off) == 0.99 == MIN_BACKEND_AGREEMENT
    assert backend_disagreement_problem(one_off) is None
    two_off = {"onnx": ["ham"] * 100, "tflite": ["spam", "spam"] + ["ham"] * 98}
    assert backend_disagreement_problem(two_off) == (
        "the onnx and tflite artifacts give the same label on 98.00% of the 100 test texts, below the 99% a bundle "
        "promises (one converter lost more than the other: compare their accuracy in report.md, or ship one format "
        "with a profile whose export.formats lists it)"
    )
    assert backend_agreement({"onnx": ["ham", "spam"]}) == 1.0


def _encode(bundle: Path, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length)
    encodings = tokenizer.encode_batch(texts)
    return (
        np.asarray([e.ids for e in encodings], dtype=np.int32),
        np.asarray([e.attention_mask for e in encodings], dtype=np.int32),
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def test_the_savedmodel_serves_what_the_tflite_artifact_answers(built: tuple[BuildResult, Path]) -> None:
    """TensorFlow's own loader runs ``serving_default``; its float answers are the int8 TFLite file's, within int8."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt._tf import import_tf

    tf, _ = import_tf()
    result, _ = built
    # The bundle on disk now (a test above rebuilds it in place) and the model its build saved.
    manifest = json.loads((result.out / "manifest.json").read_text())
    keras = SAVED_MODELS[-1]
    record, length = manifest["savedmodel"], manifest["max_seq_len"]
    assert (record["dir"], record["signature"], record["precision"]) == (
        "model.savedmodel",
        "serving_default",
        "float32",
    )
    assert [t["name"] for t in record["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["metrics"][record["measured_as"]]["shipped"] is False  # the float reference
    assert record["outputs"] == [{"name": "logits", "shape": ["batch", 2], "dtype": ["float32"]}]
    texts = [text for text, _ in toy_rows(40, seed=3)] + ["free", "meeting notes", "lunch?", "hello today"]
    ids, mask = _encode(result.out, texts, length)

    serve = tf.saved_model.load(str(result.out / record["dir"])).signatures["serving_default"]
    served = serve(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))["logits"].numpy()

    interpreter = Interpreter(model_path=str(result.out / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    raw = runner(input_ids=ids, attention_mask=mask)["logits"]
    quant = manifest["artifacts"]["model.tflite"]["output_quantization"]
    int8 = quant["scale"] * (raw.astype(np.float32) - quant["zero_point"])

    assert served.dtype == np.float32 and served.shape == (len(texts), 2)
    # The model the build saved is the float student the TFLite file was quantized from: the same graph, so equal to
    # float rounding (measured: 0.0).
    np.testing.assert_allclose(served, np.asarray(keras([ids, mask], training=False)), atol=1e-5)
    # Against int8: the same label on every text, and probabilities within 0.05 (measured: at most 0.020 apart,
    # logits at most 0.40, with an int8 output step of 0.015; the int8 loss is in the weights and activations too).
    assert (served.argmax(-1) == int8.argmax(-1)).all()
    assert np.abs(_softmax(served) - _softmax(int8)).max() <= 0.05
    assert "- TensorFlow Serving: `model.savedmodel/`" in (result.out / "report.md").read_text()


def test_a_student_over_another_vocabulary_starts_from_the_teacher_s_vectors_of_its_token_texts(
    toy_bpe_teacher_dir: Path, tmp_path: Path
) -> None:
    from edgeopt.stages import student_vocabulary, teacher_token_vectors
    from edgeopt.teacher import load_teacher

    teacher = load_teacher(toy_bpe_teacher_dir)
    vocab = student_vocabulary(teacher, [t for t, _ in toy_rows(10, seed=1)], tmp_path / "tokenizer.json", False)
    assert vocab.source == "all-MiniLM-L6-v2's WordPiece vocabulary (the teacher's tokenizer is BPE)"
    shipped = json.loads(vocab.tokenizer_json.read_text(encoding="utf-8"))["model"]
    assert shipped["type"] == "WordPiece" and len(shipped["vocab"]) == vocab.size
    vectors, init = teacher_token_vectors(teacher, vocab, "teacher-static")
    assert init == "teacher-static" and vectors is not None and vectors.shape == (vocab.size, 16)
    piece = next(t for t in shipped["vocab"] if t.startswith("##") and len(t) > 2)
    for token, text in (("free", "free"), (piece, piece[2:])):
        expected = teacher.features([text])[0]
        np.testing.assert_allclose(vectors[shipped["vocab"][token]], expected, rtol=1e-4, atol=1e-5)


def test_a_teacher_whose_tokenizer_is_not_wordpiece_teaches_a_wordpiece_student(
    toy_bpe_teacher_dir: Path, tmp_path: Path
) -> None:
    from edgeopt.teacher import load_teacher
    from edgeopt.teacher.runner import default_embedding_teacher
    from edgeopt_runtime import load_classifier

    common = _toy_build_args(tiny_profile(tmp_path), toy_bpe_teacher_dir, tmp_path)
    result = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "b"), "--student", "cnn/trained"])
    assert result.exit_code == 0, result.output
    shipped = json.loads((tmp_path / "b" / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    minilm = json.loads((default_embedding_teacher() / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    assert shipped["type"] == "WordPiece" and set(shipped["vocab"]) <= set(minilm["vocab"])
    student = json.loads((tmp_path / "b" / "manifest.json").read_text())["build"]["student"]
    source = "all-MiniLM-L6-v2's WordPiece vocabulary (the teacher's tokenizer is BPE)"
    assert (student["vocabulary_source"], student["embedding_init"]) == (source, "teacher-static")
    report = (tmp_path / "b" / "report.md").read_text(encoding="utf-8")
    assert f"vocabulary of {student['vocabulary']:,} tokens of {source};" in report
    # On texts it never trained on, the device's answers are the teacher's.
    texts = [t for t, _ in toy_rows(20, seed=7)]
    teacher_labels = load_teacher(toy_bpe_teacher_dir).logits(texts).argmax(-1)
    classifier = load_classifier(tmp_path / "b", cache=False)
    student_labels = [classifier.labels.index(p.label) for p in classifier.predict_batch(texts)]
    assert np.mean(np.asarray(student_labels) == teacher_labels) >= 0.9
