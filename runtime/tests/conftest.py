"""Session fixture: a tiny real bundle built with tf_keras, the TFLite converter and tf2onnx."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from edgeopt_runtime_fixtures import TinyBundle, build_bundle, build_embed_bundle


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point the default result cache at a temporary directory, never at the user's cache."""
    path = tmp_path_factory.mktemp("edgeopt-cache")
    old = os.environ.get("EDGEOPT_CACHE_DIR")
    os.environ["EDGEOPT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGEOPT_CACHE_DIR", None)
    else:
        os.environ["EDGEOPT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    start = time.perf_counter()
    bundle = build_bundle(tmp_path_factory.mktemp("bundle") / "tiny")
    print(f"tiny bundle built in {time.perf_counter() - start:.1f} s")
    return bundle


@pytest.fixture()
def bundle_copy(tiny_bundle: TinyBundle, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may corrupt."""
    return Path(shutil.copytree(tiny_bundle.path, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def embed_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """A tiny real ``embed`` bundle (float ONNX, int8 TFLite)."""
    return build_embed_bundle(tmp_path_factory.mktemp("embed-bundle") / "tiny-embed")
