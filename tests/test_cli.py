"""The CLI: help texts, and every kind of bad input gives one line, a non-zero exit and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from build_fixtures import tiny_profile, toy_rows, write_csv
from edgeopt.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output


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
    assert_one_line_error(result, "pixel99", "pixel8")
    assert not (tmp_path / "out").exists()


def test_existing_out_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("build", "--out", str(out))
    assert_one_line_error(result, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def _bad_data_cases(tmp_path: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    good = toy_rows(20, seed=1)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"text": "hello", "label": "ham"}\n{"text": "oops"\n')
    one_label = write_csv(tmp_path / "one.csv", [(t, "ham") for t, _ in good])
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ncaf\xe9 free,spam\nhello team,ham\n".encode("latin-1"))
    return {
        "missing": (tmp_path / "nope.csv", ("nope.csv",)),
        "empty": (empty, ("empty.csv",)),
        "malformed": (malformed, ("bad.jsonl", "line 2")),
        "one label": (one_label, ("one.csv", "2")),
        "non-utf8": (latin1, ("latin1.csv", "UTF-8")),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "malformed", "one label", "non-utf8"])
def test_bad_training_data(case: str, tmp_path: Path) -> None:
    path, fragments = _bad_data_cases(tmp_path)[case]
    out = tmp_path / "out"
    result = run("build", "--train", str(path), "--out", str(out))
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_test_labels_not_in_training(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    test = write_csv(tmp_path / "test.csv", [("free money", "spam"), ("hi", "phishing")])
    result = run("build", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "phishing")
    assert not (tmp_path / "out").exists()


def test_teacher_that_is_not_a_model(tmp_path: Path) -> None:
    not_a_model = tmp_path / "teacher"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    result = run("build", "--teacher", str(not_a_model), "--train", str(train), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "teacher")
    assert not (tmp_path / "out").exists()


def test_teacher_seq_len_beyond_the_teacher(make_classifier_dir: Callable[[str], Path], tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", toy_rows(20, seed=1))
    teacher = str(make_classifier_dir("bert64"))
    result = run(
        "build", "--teacher", teacher, "--teacher-seq-len", "100", "--train", str(train), "--out", str(tmp_path / "out")
    )
    assert_one_line_error(result, "exceeds the 64 positions", "--teacher-seq-len 64 or less")
    assert not (tmp_path / "out").exists()
    assert_one_line_error(run("build", "--teacher-seq-len", "4"), "--teacher-seq-len", "4")


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
    assert_one_line_error(result, "budget", "MB", "--allow-over-budget")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]

    kept = run(*args, "--allow-over-budget")
    assert kept.exit_code == 0, kept.output
    assert (out / "manifest.json").is_file()
    assert "OVER BUDGET" in (out / "report.md").read_text()


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
