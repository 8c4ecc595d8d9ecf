"""The wheels work outside the repository: built, installed into a fresh environment, run from elsewhere.

The fresh environment gets our two wheels only; their dependencies are the checked versions of this venv, seen
through a path file (its editable installs of edgeopt are not: a plain path line does not run the .pth files of the
directory it adds). ``pip check`` then proves the wheels' requirement ranges accept those versions. Rejected:
installing the dependencies from the index again (about 4 GB and minutes per run, and setup.sh already installs
them from the index on every CI machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from build_fixtures import tiny_profile, toy_rows, write_csv

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PROFILES = {"android-go", "galaxy-s24", "jetson-orin-nano", "pixel8", "raspberry-pi-4", "raspberry-pi-5"}


def _copy_sources(dest: Path) -> Path:
    # Built from a copy: an in-tree build writes build/ and *.egg-info into the checkout.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "tests")
    shutil.copytree(ROOT / "edgeopt", dest / "edgeopt", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "runtime", dest / "runtime", ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    sources = _copy_sources(root / "src")
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for project in (sources / "runtime", sources):
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, project], check=True)
    env_dir = root / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    own_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(own_site, "checked-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", *sorted(wheels.glob("*.whl"))], check=True)
    return env_dir


def test_the_wheel_ships_profiles_datasets_and_type_information(installed: Path) -> None:
    wheel = next((installed.parent / "wheels").glob("edgeopt-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"edgeopt/profiles/{name}.toml" for name in SHIPPED_PROFILES} <= names
    datasets = ("spamassassin.jsonl.gz", "fortunes.jsonl.gz", "fortunes-copyright.txt", "PROVENANCE.md")
    assert {"edgeopt/py.typed", *(f"edgeopt/datasets/{name}" for name in datasets)} <= names
    runtime_wheel = next((installed.parent / "wheels").glob("edgeopt_runtime-*.whl"))
    assert "edgeopt_runtime/py.typed" in zipfile.ZipFile(runtime_wheel).namelist()


def test_the_requirement_ranges_accept_the_checked_versions(installed: Path) -> None:
    python = installed / "bin" / "python"
    checked = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python, "check"],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_profiles_and_a_tiny_build_from_another_directory(
    installed: Path, make_classifier_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEOPT_PROFILES_DIR")}

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in args], cwd=work, env=env, capture_output=True, text=True)

    where = run(installed / "bin" / "python", "-c", "import edgeopt, edgeopt_runtime as r; print(edgeopt.__file__)")
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr

    listed = run(installed / "bin" / "edgeopt", "profiles", "list")
    assert listed.returncode == 0, listed.stderr
    assert SHIPPED_PROFILES <= {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    shown = run(installed / "bin" / "edgeopt", "profiles", "show", "pixel8")
    assert shown.returncode == 0 and "max_model_mb" in shown.stdout, shown.stdout + shown.stderr

    train = write_csv(tmp_path / "train.csv", toy_rows(40, seed=3))
    out = work / "bundle"
    teacher = make_classifier_dir("bert")
    built = run(installed / "bin" / "edgeopt", "build", "--profile", tiny_profile(tmp_path), "--teacher", teacher,
                "--train", train, "--out", out)  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    # stderr is a pipe here, as in a CI log: one line per stage and the closing line, no redrawn progress.
    lines = built.stderr.splitlines()
    assert "\r" not in built.stderr and lines, built.stderr
    assert all(line.startswith("done ") for line in lines[:-1]), built.stderr
    assert lines[-1] == f"bundle written to {out}"
    assert [line.split(" (")[0] for line in lines[:3]] == ["done data", "done teacher", "done teacher outputs"]
    verified = run(installed / "bin" / "edgeopt-runtime", "verify", out)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    predicted = run(installed / "bin" / "edgeopt-runtime", "predict", out, "--json", "--no-cache", "free cash prize")
    assert predicted.returncode == 0, predicted.stderr
    assert [p["label"] for p in json.loads(predicted.stdout)] == ["spam"]
