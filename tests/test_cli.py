"""The CLI: help texts, and every kind of bad input gives one line, a non-zero exit and nothing written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from build_fixtures import tiny_profile, toy_rows, write_csv
from edgeopt.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_error(result: Result, expected: str | re.Pattern[str], exit_code: int = 1) -> None:
    """The run failed with ``exit_code`` and one last line ``Error: <expected>`` (exactly, or matching the pattern)."""
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(errors[0].removeprefix("Error: ")), errors[0]
    else:
        assert errors[0] == f"Error: {expected}"
    assert "Traceback" not in result.output


NOT_A_MODEL = (
    "{} is not a model directory; expected a .onnx file, a Hugging Face model directory (config.json + "
    "model.safetensors or pytorch_model.bin), a sentence-transformers directory (modules.json) or a directory with "
    "model.onnx + tokenizer.json"
)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["build"],
        ["compare"],
        ["teacher", "finetune"],
        ["profiles", "list"],
        ["profiles", "show"],
        ["inspect"],
        ["predict"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_profiles_list_and_show() -> None:
    listed = run("profiles", "list")
    assert listed.exit_code == 0
    for name in (
        "pixel8",
        "galaxy-s24",
        "android-go",
        "raspberry-pi-5",
        "raspberry-pi-4",
        "jetson-orin-nano",
    ):
        assert name in listed.output
    shown = run("profiles", "show", "pixel8")
    assert shown.exit_code == 0 and '"max_model_mb"' in shown.output


def test_unknown_profile(tmp_path: Path) -> None:
    result = run("build", "--profile", "pixel99", "--out", str(tmp_path / "out"))
    assert_error(
        result,
        "unknown profile 'pixel99'; known profiles: android-go, galaxy-s24, jetson-orin-nano, pixel8, "
        "raspberry-pi-4, raspberry-pi-5; or give a path to a .toml file",
    )
    assert not (tmp_path / "out").exists()


def test_existing_out_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("build", "--out", str(out))
    assert_error(result, f"output {out} already exists; pass --force to replace it or choose another --out")
    assert (out / "keep.txt").read_text() == "mine"


def _bad_data_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = toy_rows(20, seed=1)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"text": "hello", "label": "ham"}\n{"text": "oops"\n')
    one_label = write_csv(tmp_path / "one.csv", [(t, "ham") for t, _ in good])
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ncaf\xe9 free,spam\nhello team,ham\n".encode("latin-1"))
    return {
        "missing": (tmp_path / "nope.csv", f"{tmp_path / 'nope.csv'}: file not found; check the path"),
        "empty": (empty, f"{empty}: the file is empty; it needs a header row and at least one data row"),
        "malformed": (
            malformed,
            f"{malformed}: line 2: bad JSON (Expecting ',' delimiter); write one JSON object per line (JSON Lines)",
        ),
        "one label": (
            one_label,
            f"{one_label}: every row has label 'ham'; a classifier needs at least 2 classes; add rows of another class",
        ),
        "non-utf8": (latin1, f"{latin1}: line 2: bytes that are not UTF-8 (b'\\xe9 fr'); re-save the file as UTF-8"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "malformed", "one label", "non-utf8"])
def test_bad_training_data(case: str, tmp_path: Path) -> None:
    path, expected = _bad_data_cases(tmp_path)[case]
    out = tmp_path / "out"
    assert_error(run("build", "--train", str(path), "--out", str(out)), expected)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "malformed", "non-utf8"])
def test_bad_test_data(case: str, tmp_path: Path) -> None:
    path, expected = _bad_data_cases(tmp_path)[case]
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    out = tmp_path / "out"
    assert_error(run("build", "--train", str(train), "--test", str(path), "--out", str(out)), expected)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "non-utf8"])
def test_bad_unlabeled_data(case: str, tmp_path: Path) -> None:
    path, expected = _bad_data_cases(tmp_path)[case]
    if case == "empty":  # one text per line, no header: its own message
        expected = f"{path}: the file is empty; put one unlabeled text per line"
    if case == "non-utf8":
        expected = f"{path}: line 2: bytes that are not UTF-8 (b'\\xe9 fr'); re-save the file as UTF-8"
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    out = tmp_path / "out"
    assert_error(run("build", "--train", str(train), "--unlabeled", str(path), "--out", str(out)), expected)
    assert not out.exists()


def test_test_labels_not_in_training(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    test = write_csv(tmp_path / "test.csv", [("free money", "spam"), ("hi", "phishing")])
    result = run("build", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "out"))
    assert_error(
        result,
        f"{test}: labels ['phishing'] do not occur in training file {train} (which has ['ham', 'spam']); fix the "
        "labels or add training rows for them",
    )
    assert not (tmp_path / "out").exists()


def test_teacher_that_is_not_a_model(tmp_path: Path) -> None:
    not_a_model = tmp_path / "teacher"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    result = run("build", "--teacher", str(not_a_model), "--train", str(train), "--out", str(tmp_path / "out"))
    assert_error(result, NOT_A_MODEL.format(not_a_model))
    assert not (tmp_path / "out").exists()


def test_teacher_seq_len_beyond_the_teacher(make_classifier_dir: Callable[[str], Path], tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    teacher = str(make_classifier_dir("bert64"))
    result = run(
        "build", "--teacher", teacher, "--teacher-seq-len", "100", "--train", str(train), "--out", str(tmp_path / "out")
    )
    assert_error(result, f"max_seq_len=100 exceeds the 64 positions of {teacher}; pass --teacher-seq-len 64 or less")
    assert not (tmp_path / "out").exists()
    assert_error(
        run("build", "--teacher-seq-len", "4"),
        "Invalid value for '--teacher-seq-len': 4 is not in the range 8<=x<=512.",
        exit_code=2,
    )


def test_negative_general_texts_is_a_flag_error() -> None:
    assert_error(
        run("build", "--general-texts", "-1"),
        "Invalid value for '--general-texts': -1 is not in the range x>=0.",
        exit_code=2,
    )


def test_an_unknown_student_vocabulary_is_a_flag_error() -> None:
    assert_error(
        run("build", "--tokens", "all"),
        "Invalid value for '--tokens': 'all' is not one of 'corpus', 'teacher'.",
        exit_code=2,
    )


def test_budget_that_cannot_be_met(make_classifier_dir: Callable[[str], Path], tmp_path: Path) -> None:
    profile = tiny_profile(tmp_path, max_model_mb=0.0001)
    train = write_csv(tmp_path / "train.csv", toy_rows(40, seed=1))
    out = tmp_path / "out"
    args = [
        "build",
        "--profile",
        str(profile),
        "--teacher",
        str(make_classifier_dir("bert")),
        "--train",
        str(train),
        "--out",
        str(out),
        "--quiet",
    ]
    result = run(*args)
    assert_error(
        result,
        re.compile(
            r"the tiny budget is not met: model\.tflite is \d+\.\d\d MB, over the 0\.0001 MB budget; "
            r"model\.onnx is \d+\.\d\d MB, over the 0\.0001 MB budget; "
            r"pass --allow-over-budget to keep the bundle anyway, or pick a roomier profile"
        ),
    )
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]

    kept = run(*args, "--allow-over-budget")
    assert kept.exit_code == 0, kept.output
    assert (out / "manifest.json").is_file()
    assert "OVER BUDGET" in (out / "report.md").read_text()


def test_accuracy_drop_over_the_budget_is_named_with_the_numbers() -> None:
    from edgeopt.evaluate import ArtifactMetrics
    from edgeopt.pipeline import _budget_problems
    from edgeopt.profiles import load_profile

    def metrics(accuracy: float, size: int) -> ArtifactMetrics:
        return ArtifactMetrics(accuracy, accuracy, accuracy, size, size, 1.0, 1.0)

    problems = _budget_problems(
        load_profile("pixel8"),
        metrics(0.98, 0),
        {"model.tflite": metrics(0.95, 1_000_000), "model.onnx": metrics(0.975, 1)},
    )
    assert problems == ["model.tflite accuracy 0.9500 is 0.0300 below the teacher's, more than the allowed 0.01"]


def test_teacher_finetune_refuses_more_frozen_layers_than_the_model_has(tiny_st_dir: Path, tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    out = tmp_path / "teacher"
    result = run(
        "teacher", "finetune", "--base", str(tiny_st_dir), "--train", str(train), "--out", str(out),
        "--frozen-layers", "9",
    )  # fmt: skip
    assert_error(result, "--frozen-layers 9 but the model has 2 transformer layers; freeze at most 1")
    assert not out.exists()


def test_teacher_finetune_force_replaces_the_output_with_the_finished_teacher(
    tiny_st_dir: Path, tmp_path: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    out = tmp_path / "teacher"
    out.mkdir()
    (out / "old.txt").write_text("old")
    result = run(
        "teacher", "finetune", "--base", str(tiny_st_dir), "--train", str(train), "--out", str(out),
        "--epochs", "1", "--max-seq-len", "16", "--force", "--torch-kernels",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"fine-tuned teacher written to {out}")
    assert (out / "config.json").is_file() and not (out / "old.txt").exists()
    meta = json.loads((out / "edgeopt_finetune.json").read_text())
    assert meta["config"]["fast_kernels"] is False and meta["fast_kernels"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher", "train.csv"]


def test_teacher_finetune_errors(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    not_a_model = tmp_path / "base"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    base = ["teacher", "finetune", "--base", str(not_a_model)]
    out = tmp_path / "teacher"
    missing = tmp_path / "nope.csv"
    assert_error(run(*base, "--train", str(missing), "--out", str(out)), f"{missing}: file not found; check the path")
    assert_error(run(*base, "--train", str(train), "--out", str(out)), NOT_A_MODEL.format(not_a_model))
    assert_error(
        run(*base, "--train", str(train), "--out", str(out), "--text-column", "body"),
        f"{train}: header has no text column 'body'; the columns are ['text', 'label']; pick one with --text-column",
    )
    assert_error(
        run(*base, "--train", str(train), "--out", str(out), "--epochs", "0"),
        "Invalid value for '--epochs': 0 is not in the range x>=1.",
        exit_code=2,
    )
    assert_error(
        run(*base, "--train", str(train), "--out", str(out), "--short-epochs", "2"),
        "--short-epochs 2 must be below --epochs 2: the last epoch reads whole texts; lower --short-epochs or raise "
        "--epochs",
    )
    assert_error(
        run(*base, "--train", str(train), "--out", str(out), "--frozen-layers", "-1"),
        "Invalid value for '--frozen-layers': -1 is not in the range x>=0.",
        exit_code=2,
    )
    assert_error(
        run("teacher", "finetune", "--base", str(tmp_path / "gone"), "--train", str(train), "--out", str(out)),
        f"Invalid value for '--base': Path '{tmp_path / 'gone'}' does not exist.",
        exit_code=2,
    )
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    assert_error(
        run(*base, "--train", str(train), "--out", str(out)),
        f"output {out} already exists; pass --force to replace it or choose another --out",
    )
    assert (out / "mine.txt").read_text() == "mine"
    # --force replaces --out only with a finished teacher: a base that is not a model keeps it.
    assert_error(run(*base, "--train", str(train), "--out", str(out), "--force"), NOT_A_MODEL.format(not_a_model))
    assert (out / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "teacher", "train.csv"]
    # A bad setting is refused before --force removes anything.
    assert_error(
        run(*base, "--train", str(train), "--out", str(out), "--force", "--epochs", "1", "--short-epochs", "1"),
        "--short-epochs 1 must be below --epochs 1: the last epoch reads whole texts; lower --short-epochs or raise "
        "--epochs",
    )
    assert (out / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (
            "tflite,savedmodle",
            "--formats has 'savedmodle', which is not an export format; choose from onnx, tflite, savedmodel",
        ),
        (
            "savedmodel",
            "--formats has no format the runtime loads; add onnx or tflite (savedmodel is for TensorFlow Serving "
            "only: a bundle needs a model the device can run)",
        ),
        ("onnx,tflite,onnx", "--formats lists 'onnx' twice; list each format once"),
        (" , ", "--formats is empty; list at least one of onnx, tflite, savedmodel"),
    ],
)
def test_bad_formats_are_one_line_before_any_work(formats: str, expected: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_error(run("build", "--formats", formats, "--out", str(out)), expected)
    assert not out.exists()


def test_a_bad_teacher_precision_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_error(
        run("build", "--teacher-precision", "half", "--out", str(out)),
        "Invalid value for '--teacher-precision': 'half' is not one of 'auto', 'float32', 'bfloat16'.",
        exit_code=2,
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["build", "compare"])
def test_an_out_that_cannot_be_written_is_one_line_before_any_stage(command: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    below_a_file = tmp_path / "notes.txt" / "bundle"
    result = run(command, "--out", str(below_a_file))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: cannot create {below_a_file}: {tmp_path / 'notes.txt'} is a file, not a directory; "
        "choose another --out"
    ]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    if Path("/proc/self").is_dir():
        virtual = run(command, "--out", "/proc/edgeopt-bundle")
        assert virtual.exit_code == 1
        (line,) = virtual.output.splitlines()
        assert line.startswith("Error: cannot write to /proc (") and line.endswith(
            "); choose an --out in a writable directory"
        )


def test_library_warnings_show_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from edgeopt.cli import _user_errors
    from edgeopt_runtime.cache import CacheWarning

    @_user_errors
    def command() -> str:
        warnings.warn("result cache disabled: /x is read-only", CacheWarning, stacklevel=2)
        return "done"

    assert command() == "done"
    assert capsys.readouterr().err == "Warning: result cache disabled: /x is read-only\n"
