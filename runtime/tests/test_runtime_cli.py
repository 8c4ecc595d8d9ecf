from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt_runtime.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_predict_json_console_script(tiny_bundle):
    exe = Path(sys.executable).parent / "edgeopt-runtime"
    proc = subprocess.run(
        [
            str(exe),
            "predict",
            str(tiny_bundle.path),
            "free cash prize",
            "hello team lunch",
            "--json",
            "--backend",
            "onnx",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["text"] for r in rows] == ["free cash prize", "hello team lunch"]
    assert [r["label"] for r in rows] == ["spam", "ham"]
    assert set(rows[0]) == {"text", "label", "score", "scores", "cached", "latency_ms", "truncated"}
    assert rows[0]["scores"]["spam"] == rows[0]["score"]


def test_predict_plain(tiny_bundle, capsys):
    assert main(["predict", str(tiny_bundle.path), "win money", " ".join(["hello"] * 30), "--backend", "tflite"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("spam\t0.")
    assert lines[1].startswith("ham\t") and lines[1].endswith("\t(truncated)")


def test_verify(tiny_bundle, capsys):
    assert main(["verify", str(tiny_bundle.path)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {tiny_bundle.path}: 4 files verified, labels ham, spam")


def test_errors_are_one_line_exit_2(bundle_copy, capsys):
    (bundle_copy / "model.onnx").unlink()
    assert main(["verify", str(bundle_copy)]) == 2
    assert capsys.readouterr().err == (
        f"edgeopt-runtime: error: {bundle_copy / 'model.onnx'} is listed in manifest.json but missing; rebuild or "
        "re-copy the bundle\n"
    )
    assert main(["predict", str(bundle_copy / "nope"), "hi"]) == 2
    assert capsys.readouterr().err == (
        f"edgeopt-runtime: error: bundle directory {bundle_copy / 'nope'} does not exist or is not a directory\n"
    )


def test_bad_text_exit_2(tiny_bundle, capsys):
    assert main(["predict", str(tiny_bundle.path), "ok", "   "]) == 2
    assert capsys.readouterr().err == (
        "edgeopt-runtime: error: texts[1]: text is empty or whitespace only; pass at least one word\n"
    )


def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict"])
    assert exc.value.code == 2


def test_every_command_and_option_documented():
    readme = README.read_text(encoding="utf-8")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert f"edgeopt-runtime {name}" in readme, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in readme, f"{name} {flag} is not in runtime/README.md"


def test_bench_json(tiny_bundle, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("free cash prize\n\nhello team lunch\n", encoding="utf-8")
    args = ["bench", str(tiny_bundle.path), "-n", "12", "--cold-runs", "1", "--batch-size", "4"]
    assert main([*args, "--texts", str(texts), "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in reports] == ["onnx", "tflite"]
    for r in reports:
        assert r["direct"]["n"] == r["miss"]["n"] == r["hit"]["n"] == 12
        assert r["hit"]["p50_ms"] > 0 and r["miss"]["p50_ms"] > 0  # which is faster is bench/, not a unit test
        assert r["cold"]["runs"] == 1 and r["cold"]["cold_start_ms"] > 0 and r["cold"]["import_ms"] > 0
        cold = r["cold"]
        assert 0 < cold["import_rss_mb"] <= cold["peak_rss_mb"] < 2048  # MiB, Linux
        assert cold["bundle_rss_mb"] == pytest.approx(cold["peak_rss_mb"] - cold["import_rss_mb"])
        assert r["batch_size"] == 4 and r["loop_texts_per_s"] > 0 and r["batch_texts_per_s"] > 0
        assert r["miss_overhead"] == pytest.approx(r["miss"]["p50_ms"] / r["direct"]["p50_ms"] - 1)


def test_bench_table_and_errors(tiny_bundle, tmp_path, capsys):
    assert main(["bench", str(tiny_bundle.path), "--backend", "tflite", "-n", "5", "--cold-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "tflite   cold start: load+predict" in out and "miss overhead" in out and "onnx" not in out
    assert "tflite   memory: " in out and "MiB for load+predict" in out
    assert main(["bench", str(tiny_bundle.path), "-n", "0"]) == 2
    assert capsys.readouterr().err == "edgeopt-runtime: error: --n 0 must be a positive integer\n"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert main(["bench", str(tiny_bundle.path), "--texts", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"edgeopt-runtime: error: --texts {empty} has no non-empty line; put one text per line\n"
    )


def test_cache_clear_on_a_disabled_cache_fails_with_the_reason(tmp_path, capsys):
    import sqlite3

    from edgeopt_runtime.cache import ResultCache

    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", "f" * 64, {"x": 1})
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")  # written by a newer edgeopt-runtime: this one must not touch it
    assert main(["cache", "clear", "--cache", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "edgeopt-runtime: warning: result cache disabled: cache schema version 99 is newer than this "
        "edgeopt-runtime reads (1); upgrade edgeopt-runtime or use another cache file",
        f"edgeopt-runtime: error: cannot clear {path}: the cache is disabled (cache schema version 99 is newer than "
        "this edgeopt-runtime reads (1); upgrade edgeopt-runtime or use another cache file)",
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


@pytest.mark.parametrize("action", ["stats", "clear"])
def test_cache_commands_on_a_missing_path_create_nothing(tmp_path, capsys, action):
    path = tmp_path / "sub" / "c.sqlite"
    assert main(["cache", action, "--cache", str(path)]) == 0
    assert capsys.readouterr().err == f"no cache at {path}: nothing has been cached there yet\n"
    assert list(tmp_path.iterdir()) == []


def test_cache_stats_refuses_a_file_that_is_not_a_cache(tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text("name,label\nbob,ham\n")
    assert main(["cache", "stats", "--cache", str(path)]) == 2
    reason = (
        f"{path} is not an edgeopt cache (a 19-byte file that is not an SQLite database); left as it was: point the "
        "cache at a new file or an edgeopt cache"
    )
    assert capsys.readouterr().err.splitlines() == [
        f"edgeopt-runtime: warning: result cache disabled: {reason}",
        f"edgeopt-runtime: error: cannot read {path}: the cache is disabled ({reason})",
    ]
    assert path.read_text() == "name,label\nbob,ham\n"


def test_embed_prints_unit_vectors(embed_bundle, capsys):
    assert main(["embed", str(embed_bundle.path), "free cash", "team lunch", "--no-cache", "--backend", "onnx"]) == 0
    rows = [[float(x) for x in line.split()] for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(len(r) == 6 for r in rows)
    assert all(abs(sum(x * x for x in r) - 1.0) < 1e-4 for r in rows)
    assert main(["embed", str(embed_bundle.path), "free cash", "--json", "--no-cache"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) == {"text", "embedding", "cached", "truncated"} and len(row["embedding"]) == 6


def test_verify_names_an_embedder(embed_bundle, capsys):
    assert main(["verify", str(embed_bundle.path)]) == 0
    assert "files verified, embedder of 6 dims (mean pooling), max_seq_len 16" in capsys.readouterr().out


def test_index_add_search_stats_remove(embed_bundle, tmp_path, capsys):
    texts = tmp_path / "notes.tsv"
    texts.write_text("n1\tfree cash prize now\nn2\tlunch with the team tomorrow\nn3\tthanks for the report\n")
    index = str(tmp_path / "notes.index")
    bundle = str(embed_bundle.path)
    assert main(["index", "add", index, bundle, str(texts)]) == 0
    assert capsys.readouterr().out == "added 3 texts; the index holds 3\n"
    assert main(["index", "search", index, bundle, "team lunch tomorrow", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["id"] == "n2" and hits[0]["score"] >= hits[1]["score"]
    assert main(["index", "stats", index, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["vectors"], stats["dim"], stats["precision"]) == (3, 6, "int8")
    assert main(["index", "remove", index, bundle, "n1", "n9"]) == 0
    assert capsys.readouterr().out == "removed 1; the index holds 2\n"


def test_index_errors_are_one_line(embed_bundle, tiny_bundle, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    index = str(tmp_path / "i.index")
    assert main(["index", "add", index, str(embed_bundle.path), str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"edgeopt-runtime: error: FILE {bad} line 1: expected 'ID<TAB>TEXT'; separate the id by one tab\n"
    )
    assert main(["embed", str(tiny_bundle.path), "hi", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeopt-runtime: error: bundle ") and "has task 'text-classification', not 'embed'" in err
    assert err.count("\n") == 1
