"""The Android demo's golden files must describe what the current runtime does.

The JVM tests (``android-demo/core/run-tests.sh``) compare the Kotlin core with these files; this test makes sure
the files still match the Python runtime, so a runtime change cannot leave the Android side checked against stale
answers. It needs no bundle: it re-tokenizes the golden texts with the committed ``tokenizer.json``, recomputes
cache keys, labels and fingerprints, and reads the committed Python cache database.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from edgeopt_runtime import InputError, ResultCache, TextTokenizer
from edgeopt_runtime.cache import CACHE_SCHEMA_VERSION
from edgeopt_runtime.manifest import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    compute_fingerprint,
    read_manifest,
    sha256_file,
)
from edgeopt_runtime.model import softmax
from edgeopt_runtime.tokenizer import clean_text

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "android-demo/core/src/test/resources/golden"
STALE = (
    "android goldens are stale ({what}); regenerate them: python scripts/make_android_goldens.py "
    "--bundle BUNDLE --out android-demo/core/src/test/resources/golden/ (BUNDLE: edgeopt build --profile pixel8)"
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_android_goldens", REPO / "scripts/make_android_goldens.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


@pytest.fixture(scope="module")
def goldens() -> dict[str, Any]:
    path = GOLDEN / "goldens.json"
    if not path.is_file():
        pytest.fail(STALE.format(what=f"{path} is missing"))
    return json.loads(path.read_text(encoding="utf-8"))


def _valid(goldens: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in goldens["cases"] if "error" not in c]


def test_versions_match_the_runtime(goldens: dict[str, Any]) -> None:
    assert goldens["format"] == SCRIPT.GOLDEN_FORMAT, STALE.format(what="golden layout changed")
    assert goldens["runtime"]["schema_version"] == SCHEMA_VERSION, STALE.format(what="manifest schema_version")
    assert goldens["bundle"]["schema_version"] in SUPPORTED_SCHEMA_VERSIONS, STALE.format(what="bundle schema")
    assert goldens["runtime"]["cache_schema_version"] == CACHE_SCHEMA_VERSION, STALE.format(what="cache schema")


def test_texts_are_the_scripts(goldens: dict[str, Any]) -> None:
    got = [(c["name"], c["text"]) for c in goldens["cases"]]
    assert got == list(SCRIPT.GOLDEN_TEXTS), STALE.format(what="GOLDEN_TEXTS changed")


def test_tokenizer_and_manifest_are_the_bundles(goldens: dict[str, Any]) -> None:
    bundle = goldens["bundle"]
    assert sha256_file(GOLDEN / "tokenizer.json") == bundle["tokenizer_sha256"], STALE.format(what="tokenizer")
    manifest = read_manifest(GOLDEN)
    assert manifest.fingerprint == bundle["fingerprint"], STALE.format(what="manifest.json")
    assert compute_fingerprint(manifest) == manifest.fingerprint, STALE.format(what="fingerprint rule")
    assert manifest.files[manifest.tokenizer_file].sha256 == bundle["tokenizer_sha256"]
    assert list(manifest.labels) == bundle["labels"] and manifest.max_seq_len == bundle["max_seq_len"]


def test_token_ids_are_what_the_runtime_produces_now(goldens: dict[str, Any]) -> None:
    tokenizer = TextTokenizer.from_file(GOLDEN / "tokenizer.json", goldens["bundle"]["max_seq_len"])
    for case in goldens["cases"]:
        if "error" in case:
            with pytest.raises(InputError) as info:
                tokenizer.encode(case["text"])
            assert str(info.value) == case["error"]["message"], STALE.format(what=f"error of {case['name']}")
            continue
        enc = tokenizer.encode(case["text"])
        assert enc.input_ids[0].tolist() == case["input_ids"], STALE.format(what=f"ids of {case['name']}")
        assert enc.attention_mask[0].tolist() == case["attention_mask"], STALE.format(what=f"mask of {case['name']}")
        assert enc.truncated[0] == case["truncated"], STALE.format(what=f"truncation of {case['name']}")
    assert any(c.get("truncated") for c in goldens["cases"]), "no golden text exceeds max_seq_len"


def test_cache_keys_are_what_the_runtime_computes_now(goldens: dict[str, Any]) -> None:
    bundle = goldens["bundle"]
    assert bytes.fromhex(goldens["cache"]["secret_hex"]) == SCRIPT.GOLDEN_SECRET, STALE.format(what="secret")
    tokenizer = TextTokenizer.from_file(GOLDEN / "tokenizer.json", bundle["max_seq_len"])
    for backend, info in goldens["backends"].items():
        options = SCRIPT.key_options(backend, info["artifact"])
        assert options == info["key_options"], STALE.format(what=f"{backend} key options")
        for case in _valid(goldens):
            key = SCRIPT.key_of(tokenizer, bundle["fingerprint"], clean_text(case["text"]), options)[0]
            assert key == case["backends"][backend]["cache_key"], STALE.format(what=f"key of {case['name']}")
    assert [c["text"] for c in goldens["key_cases"]] == list(SCRIPT.KEY_TEXTS) * len(goldens["backends"])
    for case in goldens["key_cases"]:
        options = goldens["backends"][case["backend"]]["key_options"]
        key, ids, truncated = SCRIPT.key_of(tokenizer, bundle["fingerprint"], case["text"], options)
        assert (key, ids, truncated) == (case["key"], case["input_ids"], case["truncated"]), STALE.format(
            what="key_cases"
        )


def test_fingerprint_cases_are_what_the_runtime_computes_now(goldens: dict[str, Any]) -> None:
    assert goldens["fingerprint_cases"] == SCRIPT.fingerprint_cases(read_manifest(GOLDEN)), STALE.format(
        what="fingerprint_cases"
    )


def test_labels_follow_from_the_golden_logits(goldens: dict[str, Any]) -> None:
    labels = goldens["bundle"]["labels"]
    quant = (goldens["backends"].get("tflite") or {}).get("output_quantization")
    for case in _valid(goldens):
        for backend, got in case["backends"].items():
            logits = np.asarray([got["logits"]], dtype=np.float32)
            if "int8_logits" in got:
                # The README's contract for int8 outputs: real = scale * (q - zero_point), in float32.
                q = np.asarray([got["int8_logits"]], dtype=np.float32)
                dequantized = (quant["scale"] * (q - quant["zero_point"])).astype(np.float32)
                np.testing.assert_array_equal(dequantized, logits)
            probs = softmax(logits)[0]
            assert labels[int(np.argmax(probs))] == got["label"], f"{case['name']} {backend}"
            np.testing.assert_allclose(probs, got["scores"], rtol=0, atol=1e-12)


def test_the_python_cache_file_reads_back(goldens: dict[str, Any], tmp_path: Path) -> None:
    info = goldens["cache"]
    db = tmp_path / "results.sqlite"
    shutil.copyfile(GOLDEN / info["file"], db)
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert version == CACHE_SCHEMA_VERSION, STALE.format(what="cache file schema")
    secret = bytes.fromhex(info["secret_hex"])
    with ResultCache(db, ttl_s=info["ttl_s"], clock=lambda: info["clock"], secret=secret) as cache:
        for case in _valid(goldens):
            want = case["backends"][info["backend"]]
            value = cache.get(want["cache_key"])
            assert value is not None, STALE.format(what=f"no cache entry for {case['name']}")
            assert value["label"] == want["label"]
            assert [value["scores"][label] for label in goldens["bundle"]["labels"]] == want["scores"]
        assert cache.get(info["expired_key"]) is None
        assert cache.get(info["foreign_key"]) is not None


@pytest.mark.skipif(
    not os.environ.get("EDGEOPT_ANDROID_BUNDLE"), reason="set EDGEOPT_ANDROID_BUNDLE to a bundle to compare"
)
def test_goldens_regenerate_identically(goldens: dict[str, Any], tmp_path: Path) -> None:
    SCRIPT.make_goldens(Path(os.environ["EDGEOPT_ANDROID_BUNDLE"]), tmp_path)
    fresh = json.loads((tmp_path / "goldens.json").read_text(encoding="utf-8"))
    assert fresh == goldens, STALE.format(what="the bundle gives other goldens")
