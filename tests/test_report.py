"""The report's lines: runtime RAM against the budget, cold start, monitoring, fidelity, calibration, the search."""

from __future__ import annotations

from pathlib import Path

from edgeopt.report import (
    _calibration_lines,
    _fidelity_lines,
    _monitoring_lines,
    _runtime_lines,
    _runtime_ram,
    _search_lines,
    _search_table,
    _transfer_lines,
    write_search_chart,
)

BUDGET = {"max_runtime_ram_mb": 24}


def _runtime(onnx_mib: float | None, tflite_mib: float) -> dict:
    def one(mib: float | None) -> dict:
        return {"bundle_rss_mb": mib, "cold_start_ms": 20.0, "import_ms": 80.0, "runs": 3}

    return {"runtime": {"onnx": one(onnx_mib), "tflite": one(tflite_mib)}}


def test_runtime_ram_against_the_budget() -> None:
    # MiB measured, MB budgeted: 22.5 MiB is 23.6 MB (within 24), 23 MiB is 24.1 MB (over).
    assert "onnx 22.5 MiB, tflite 12.0 MiB on the build host (within it on this host" in _runtime_ram(
        _runtime(22.5, 12.0), BUDGET
    )
    assert "(OVER on this host for onnx;" in _runtime_ram(_runtime(23.0, 12.0), BUDGET)
    assert "tflite 12.0 MiB" in _runtime_ram(_runtime(None, 12.0), BUDGET)  # a platform without RSS for one
    assert _runtime_ram({}, BUDGET) == "not measured on this host"
    assert _runtime_lines(_runtime(22.5, 12.0)) == [
        "- runtime cold start on the build host (fresh process: load, verify, first prediction; median of 3): "
        "onnx 20 ms (+80 ms imports), tflite 20 ms (+80 ms imports)"
    ]


def test_monitoring_line() -> None:
    reference = {
        "source": "10 held-out test texts",
        "label_share": {"ham": 0.7, "spam": 0.3},
        "confidence_edges": [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
        "confidence_share": [0.0, 0.1, 0.0, 0.0, 0.0, 0.2, 0.3, 0.4],
        "truncated_share": 0.25,
    }
    (line,) = _monitoring_lines(reference)
    assert "answers ham 70.0%, spam 30.0%; top-class probability >= 0.9 for 90.0%, below 0.6 for 10.0%" in line
    assert "25.0% of texts truncated" in line
    assert _monitoring_lines(None) == []


def _manifest_with_fidelity() -> dict:
    def fid(short: float) -> dict:
        return {
            "<=8": {"texts": 40, "agreement": short},
            ">128": {"texts": 10, "agreement": 1.0},
            "all": {"texts": 50, "agreement": (40 * short + 10) / 50},
        }

    return {
        "teacher": {"accuracy": 0.9, "ece": 0.05},
        "artifacts": {"model.tflite": {"precision": "int8"}},
        "metrics": {
            "student-dense-fp32.tflite": {"accuracy": 0.9, "fidelity": fid(0.95)},
            "model.tflite": {"accuracy": 0.88, "fidelity": fid(0.9), "ece": 0.031},
        },
        "build": {
            "transfer": {"labeled": 100, "unlabeled": 0, "augmented": 0, "crop": 250},
            "score_calibration": {
                "temperature": 3.0,
                "validation_texts": 10,
                "ece_before": 0.2,
                "ece_after": 0.04,
            },
        },
    }


def test_fidelity_table_per_length_bucket() -> None:
    lines = _fidelity_lines(_manifest_with_fidelity())
    assert "by length in words (<=8 words 40, >128 words 10)." in lines[4]
    assert lines[6] == "| model | <=8 | >128 | all |"
    assert lines[8] == "| distilled student (fp32) | 0.9500 | 1.0000 | 0.9600 |"
    assert lines[9] == "| shipped TFLite (int8) | 0.9000 | 1.0000 | 0.9200 |"
    assert _fidelity_lines({"teacher": {}, "metrics": {}, "artifacts": {}}) == []


def test_calibration_and_transfer_lines() -> None:
    manifest = _manifest_with_fidelity()
    (line,) = _calibration_lines(manifest)
    assert line == (
        "- calibration: logits divided by 3.000 (fitted on 10 validation texts, folded into the last layer); "
        "validation ECE 0.2000 -> 0.0400; test ECE of the shipped models: shipped TFLite (int8) 0.0310 "
        "(teacher 0.0500)"
    )
    manifest["build"]["score_calibration"] = None
    assert _calibration_lines(manifest) == ["- calibration: off (scores are the student's raw softmax)"]
    assert _transfer_lines(manifest["build"]) == [
        "- transfer set (texts the teacher labeled for the student): 100 labeled, 250 crop"
    ]


def _search(*rows: tuple[str, str, float | None, int]) -> list[dict]:
    return [
        {
            "name": name,
            "status": status,
            "parameters": size,
            "model_bytes": size,
            "macs": 10 * size,
            "validation_accuracy": accuracy,
            "validation_score": None if accuracy is None else accuracy - 0.01,
            "epochs": None if accuracy is None else 4,
            "seconds": None if accuracy is None else 12.3,
        }
        for name, status, accuracy, size in rows
    ]


def test_search_line_and_table_list_every_candidate() -> None:
    build = {
        "search": _search(
            ("cnn-attention/trained/x1", "chosen", 0.91, 1_500_000),
            ("cnn/trained/x1", "distilled", 0.9, 1_400_000),
            ("cnn/trained/x8", "over size budget", None, 9_000_000),
        )
    }
    assert _search_lines(build) == [
        "- student search: 3 candidates, 2 distilled, kept cnn-attention/trained/x1 (table below)"
    ]
    table = _search_table(build)
    assert "| cnn-attention/trained/x1 | chosen | 1,500,000 | 1.50 | 15,000,000 | 0.9100 | 0.9000 | 4 | 12 |" in table
    assert "| cnn/trained/x8 | over size budget | 9,000,000 | 9.00 | 90,000,000 |  |  |  |  |" in table
    assert table[-1] == "![student search: validation accuracy vs size](search.png)"
    one = {"search": build["search"][:1]}
    assert _search_lines(one) == [] and _search_table(one) == []


def test_search_chart_is_drawn_only_when_two_students_compare(tmp_path: Path) -> None:
    manifest = {
        "build": {
            "task": "toy",
            "search": _search(("a/trained/x1", "chosen", 0.9, 10), ("b/trained/x1", "distilled", 0.8, 5)),
        },
        "profile": {"name": "tiny", "budget": {"max_model_mb": 5.0}},
    }
    path = write_search_chart(manifest, tmp_path / "search.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest["build"]["search"][1]["validation_accuracy"] = None
    assert write_search_chart(manifest, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_stage_chart_labels_do_not_overlap() -> None:
    import json

    from edgeopt.report import stage_figure, stage_rows

    # A real pixel8 manifest: the fp32 ONNX and TFLite students (same accuracy, 5.52 MB) and the shipped int8 pair
    # (1.39 MB) sit almost on top of each other.
    golden = Path(__file__).resolve().parents[1] / "android-demo/core/src/test/resources/golden/manifest.json"
    manifest = json.loads(golden.read_text())
    metrics = manifest["metrics"]
    metrics["model.onnx"] = {**metrics["model.onnx"], "accuracy": metrics["model.tflite"]["accuracy"]}
    fig = stage_figure(manifest)
    renderer = fig.canvas.get_renderer()
    names = {row for row, _ in stage_rows(manifest)}
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts if t.get_text() in names]
    assert len(boxes) == len(names) == 6
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert overlapping == []
