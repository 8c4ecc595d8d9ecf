"""Atomic bundle output (edgeopt.bundle)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgeopt.bundle import check_output_path, staged_output
from edgeopt.cli import flag_spelling
from edgeopt.errors import BundleError, OutputExistsError


class _Boom(Exception):
    pass


def _tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_success_creates_out_with_the_files(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with staged_output(out, force=False) as staging:
        assert staging.is_dir()
        assert staging.parent == tmp_path
        assert staging.name == f".bundle.staging-{os.getpid()}"
        assert not out.exists()  # nothing appears at the target until the block succeeds
        (staging / "manifest.json").write_text("{}")
        (staging / "models").mkdir()
        (staging / "models" / "model.onnx").write_text("onnx")
    assert _tree(out) == {"manifest.json": "{}", "models/model.onnx": "onnx"}
    assert _leftovers(tmp_path) == []


def test_out_in_a_missing_parent_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "bundle"
    with staged_output(out, force=False) as staging:
        (staging / "x").write_text("1")
    assert _tree(out) == {"x": "1"}


def test_failure_leaves_no_out_and_no_staging(tmp_path: Path) -> None:
    parent = tmp_path / "builds"
    out = parent / "bundle"
    with pytest.raises(_Boom), staged_output(out, force=False) as staging:
        (staging / "manifest.json").write_text("{}")
        raise _Boom
    assert not out.exists()
    assert not parent.exists()  # made for the bundle, so removed with it
    assert list(tmp_path.iterdir()) == []


def test_failure_with_force_keeps_the_old_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    with pytest.raises(_Boom), staged_output(out, force=True) as staging:
        (staging / "manifest.json").write_text("new")
        raise _Boom
    assert _tree(out) == {"manifest.json": "old"}
    assert _leftovers(tmp_path) == []


def test_success_with_force_replaces_the_old_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    (out / "stale.onnx").write_text("stale")
    with staged_output(out, force=True) as staging:
        (staging / "manifest.json").write_text("new")
    assert _tree(out) == {"manifest.json": "new"}  # replaced, not merged: the stale file is gone
    assert _leftovers(tmp_path) == []


def test_a_stale_staging_dir_from_an_earlier_crash_is_cleared(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    stale = tmp_path / f".bundle.staging-{os.getpid()}"
    stale.mkdir()
    (stale / "junk").write_text("junk")
    with staged_output(out, force=False) as staging:
        assert list(staging.iterdir()) == []
        (staging / "manifest.json").write_text("{}")
    assert _tree(out) == {"manifest.json": "{}"}


def test_existing_out_without_force(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    message = f"output {out} already exists; pass force=True to replace it or choose another out"
    with pytest.raises(OutputExistsError, match=f"^{re.escape(message)}$") as caught:
        check_output_path(out, force=False)
    # The CLI spells the same fix with its flags (tests/test_cli.py checks the printed line).
    assert caught.value.message_for(flag_spelling) == (
        f"output {out} already exists; pass --force to replace it or choose another --out"
    )
    with pytest.raises(OutputExistsError, match=f"^{re.escape(message)}$"), staged_output(out, force=False):
        pytest.fail("the block must not run")
    assert _tree(out) == {"manifest.json": "old"}
    assert _leftovers(tmp_path) == []


def test_out_that_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.write_text("not a directory")
    message = f"output {out} is a file, not a directory; choose another out"
    with pytest.raises(BundleError, match=f"^{re.escape(message)}$"), staged_output(out, force=True):
        pytest.fail("the block must not run")
    assert out.read_text() == "not a directory"
    # Without force the file is reported as existing output, like a directory.
    with pytest.raises(OutputExistsError):
        check_output_path(out, force=False)


def test_check_output_path_accepts_a_new_path_and_creates_nothing(tmp_path: Path) -> None:
    check_output_path(tmp_path / "new" / "bundle", force=False)
    assert list(tmp_path.iterdir()) == []


def test_out_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "sub" / "bundle"
    message = f"cannot create {out}: {tmp_path / 'notes.txt'} is a file, not a directory; choose another out"
    with pytest.raises(BundleError, match=f"^{re.escape(message)}$"):
        check_output_path(out, force=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_on_a_virtual_file_system() -> None:
    # /proc takes no new folders, even for root (for whom os.access says every path is writable).
    with pytest.raises(BundleError, match=r"^cannot write to /proc \(.+\); choose an out in a writable directory$"):
        check_output_path(Path("/proc/edgeopt-bundle"), force=False)


def test_a_failed_build_removes_the_folders_made_for_it(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "bundle"
    with pytest.raises(RuntimeError), staged_output(out, force=False):
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []
