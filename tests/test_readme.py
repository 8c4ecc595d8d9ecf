"""README's Python API example runs as written (in a temporary directory holding tiny versions of what it names)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from build_fixtures import tiny_profile, toy_rows, write_csv

ROOT = Path(__file__).resolve().parents[1]


def _python_api_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section should hold one python block"
    return blocks[0]


def test_the_python_api_example_runs(
    make_classifier_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example names a teacher, a data file and the pixel8 profile; tiny real ones stand in for them.
    (tmp_path / "my-teacher").symlink_to(make_classifier_dir("bert"), target_is_directory=True)
    write_csv(tmp_path / "tickets.csv", toy_rows(40, seed=5))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    tiny = tiny_profile(profiles)
    (profiles / "pixel8.toml").write_text(tiny.read_text().replace('name = "tiny"', 'name = "pixel8"'))
    tiny.unlink()
    monkeypatch.setenv("EDGEOPT_PROFILES_DIR", str(profiles))
    monkeypatch.chdir(tmp_path)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_python_api_example(), "README.md", "exec"), {"__name__": "readme"})

    lines = printed.getvalue().splitlines()
    assert lines[0] == "['data', 'teacher', 'teacher outputs']"
    within, accuracy = lines[1].split()
    assert within in ("True", "False") and 0.0 <= float(accuracy) <= 1.0
    assert lines[2] == "output bundle already exists; pass force=True to replace it or choose another out"
    assert (tmp_path / "bundle" / "manifest.json").is_file()
