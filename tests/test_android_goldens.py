"""The Android demo's golden files must describe what the current runtime does.

The JVM tests (``android-demo/core/run-tests.sh``) compare the Kotlin core with these files; this test makes sure
the files still match the Python runtime, so a runtime change cannot leave the Android side checked against stale
answers. It needs no bundle: it re-tokenizes the golden texts with the committed ``tokenizer.json``, recomputes
cache keys, labels and fingerprints, and reads the committed Python cache database. The embed goldens
(``golden/embed/``) likewise: token ids, cache keys and fingerprints recomputed, the runtime's ``TextEmbedder`` fed
the recorded raw model outputs (a replay backend) must give the recorded unit vectors bit for bit, and the
runtime's ``Index`` opened on the committed index files must rank every query as recorded.
"""

from __future__ import annotations

import base64
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
from edgeopt_runtime.embedder import TextEmbedder, normalize_rows
from edgeopt_runtime.index import INDEX_APPLICATION_ID, INDEX_SCHEMA_VERSION, Index
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

EMBED = GOLDEN / "embed"
STALE_EMBED = (
    "android embed goldens are stale ({what}); regenerate them: python scripts/make_android_goldens.py "
    "--embed-bundle BUNDLE --out android-demo/core/src/test/resources/golden/ "
    "(BUNDLE: edgeopt build --task embed --profile pixel8)"
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


# --- embed goldens -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embed_goldens() -> dict[str, Any]:
    path = EMBED / SCRIPT.EMBED_GOLDENS_NAME
    if not path.is_file():
        pytest.fail(STALE_EMBED.format(what=f"{path} is missing"))
    return json.loads(path.read_text(encoding="utf-8"))


def _f32(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")


def _entries(goldens: dict[str, Any]) -> list[dict[str, Any]]:
    """The embedder cases that are not errors, then the queries: every text with recorded model outputs."""
    return [c for c in goldens["cases"] if "error" not in c] + goldens["queries"]


def _raw(goldens: dict[str, Any], backend: str, entry: dict[str, Any]) -> np.ndarray:
    """The recorded raw model output of one text, as the backend returns it (int8 dequantized the runtime's way)."""
    raw = _f32(entry["raw_f32"])
    quant = goldens["backends"][backend]["output_quantization"]
    if quant is not None:
        codes = np.asarray(entry["raw_int8"], dtype=np.float32)
        assert codes.min() >= -128 and codes.max() <= 127
        dequantized = (quant["scale"] * (codes - quant["zero_point"])).astype(np.float32)
        np.testing.assert_array_equal(dequantized, raw)
    return raw


class _ReplayBackend:
    """A backend answering the recorded raw outputs for exactly the token ids they were recorded for."""

    def __init__(self, goldens: dict[str, Any], name: str) -> None:
        self.name = name
        self._rows = {tuple(e["input_ids"]): _raw(goldens, name, e["backends"][name]) for e in _entries(goldens)}

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        try:
            return np.stack([self._rows[tuple(row.tolist())] for row in input_ids])
        except KeyError:
            pytest.fail(STALE_EMBED.format(what="the runtime now feeds the model other token ids"))


def _embedder(goldens: dict[str, Any], backend: str, cache: ResultCache | None = None) -> TextEmbedder:
    manifest = read_manifest(EMBED)
    tokenizer = TextTokenizer.from_file(EMBED / "tokenizer.json", manifest.max_seq_len)
    return TextEmbedder(manifest, tokenizer, _ReplayBackend(goldens, backend), cache)


def test_embed_versions_match_the_runtime(embed_goldens: dict[str, Any]) -> None:
    runtime = embed_goldens["runtime"]
    assert embed_goldens["format"] == SCRIPT.EMBED_GOLDEN_FORMAT, STALE_EMBED.format(what="golden layout changed")
    assert runtime["schema_version"] == SCHEMA_VERSION, STALE_EMBED.format(what="manifest schema_version")
    assert runtime["cache_schema_version"] == CACHE_SCHEMA_VERSION, STALE_EMBED.format(what="cache schema")
    assert runtime["index_schema_version"] == INDEX_SCHEMA_VERSION, STALE_EMBED.format(what="index schema")
    assert runtime["index_application_id"] == INDEX_APPLICATION_ID, STALE_EMBED.format(what="index application_id")


def test_embed_texts_are_the_scripts(embed_goldens: dict[str, Any]) -> None:
    assert [(c["name"], c["text"]) for c in embed_goldens["cases"]] == list(SCRIPT.EMBED_TEXTS), STALE_EMBED.format(
        what="EMBED_TEXTS changed"
    )
    assert [tuple(t) for t in embed_goldens["index"]["texts"]] == list(SCRIPT.INDEX_TEXTS), STALE_EMBED.format(
        what="INDEX_TEXTS changed"
    )
    assert [q["text"] for q in embed_goldens["queries"]] == list(SCRIPT.QUERIES), STALE_EMBED.format(
        what="QUERIES changed"
    )
    assert embed_goldens["index"]["ks"] == list(SCRIPT.SEARCH_KS), STALE_EMBED.format(what="SEARCH_KS changed")


def test_embed_tokenizer_and_manifest_are_the_bundles(embed_goldens: dict[str, Any]) -> None:
    bundle = embed_goldens["bundle"]
    assert sha256_file(EMBED / "tokenizer.json") == bundle["tokenizer_sha256"], STALE_EMBED.format(what="tokenizer")
    manifest = read_manifest(EMBED)
    assert manifest.task == "embed" and manifest.embedding is not None
    assert manifest.fingerprint == bundle["fingerprint"], STALE_EMBED.format(what="manifest.json")
    assert compute_fingerprint(manifest) == manifest.fingerprint, STALE_EMBED.format(what="fingerprint rule")
    assert manifest.embedding.to_dict() == {k: bundle[k] for k in ("dim", "pooling", "normalized")}
    assert manifest.files[manifest.tokenizer_file].sha256 == bundle["tokenizer_sha256"]
    assert embed_goldens["fingerprint_cases"] == SCRIPT.embed_fingerprint_cases(manifest), STALE_EMBED.format(
        what="fingerprint_cases"
    )


def test_embed_token_ids_and_keys_are_what_the_runtime_computes_now(embed_goldens: dict[str, Any]) -> None:
    bundle = embed_goldens["bundle"]
    tokenizer = TextTokenizer.from_file(EMBED / "tokenizer.json", bundle["max_seq_len"])
    for case in embed_goldens["cases"]:
        if "error" in case:
            with pytest.raises(InputError) as info:
                tokenizer.encode(case["text"])
            assert str(info.value) == case["error"]["message"], STALE_EMBED.format(what=f"error of {case['name']}")
    for entry in _entries(embed_goldens):
        enc = tokenizer.encode(entry["text"])
        assert enc.input_ids[0].tolist() == entry["input_ids"], STALE_EMBED.format(what=f"ids of {entry['text']!r}")
        assert enc.truncated[0] == entry["truncated"], STALE_EMBED.format(what=f"truncation of {entry['text']!r}")
        for backend, info in embed_goldens["backends"].items():
            options = SCRIPT.key_options(backend, info["artifact"])
            assert options == info["key_options"]
            key = SCRIPT.key_of(tokenizer, bundle["fingerprint"], entry["text"], options)[0]
            assert key == entry["backends"][backend]["cache_key"], STALE_EMBED.format(what="cache keys")
    assert any(c.get("truncated") for c in embed_goldens["cases"]), "no embed golden text exceeds max_seq_len"


def test_the_runtime_embedder_gives_the_golden_vectors(embed_goldens: dict[str, Any]) -> None:
    # The recorded raw outputs through the runtime's own TextEmbedder: its vectors, bit for bit.
    entries = _entries(embed_goldens)
    for backend in embed_goldens["backends"]:
        vectors = _embedder(embed_goldens, backend).embed([e["text"] for e in entries])
        for entry, vector in zip(entries, vectors, strict=True):
            want = _f32(entry["backends"][backend]["vector_f32"])
            np.testing.assert_array_equal(vector, want, err_msg=STALE_EMBED.format(what=f"vector of {entry['text']!r}"))
            raw = _raw(embed_goldens, backend, entry["backends"][backend])
            np.testing.assert_array_equal(normalize_rows(raw[None])[0], want)


def test_the_python_embed_cache_file_reads_back(embed_goldens: dict[str, Any], tmp_path: Path) -> None:
    info = embed_goldens["cache"]
    committed = tmp_path / "committed.sqlite"
    shutil.copyfile(EMBED / info["file"], committed)
    fresh = tmp_path / "fresh.sqlite"
    secret = bytes.fromhex(info["secret_hex"])
    assert secret == SCRIPT.GOLDEN_SECRET
    cases = [c for c in embed_goldens["cases"] if "error" not in c]
    # The current runtime, fed the same outputs, must store the very values the committed file holds.
    with ResultCache(fresh, ttl_s=info["ttl_s"], clock=lambda: info["clock"], secret=secret) as cache:
        _embedder(embed_goldens, info["backend"], cache).embed([c["text"] for c in cases])
    with sqlite3.connect(committed) as a, sqlite3.connect(fresh) as b:
        query = "SELECT key, fingerprint, value, text, size, created_at, expires_at FROM results ORDER BY key"
        assert a.execute(query).fetchall() == b.execute(query).fetchall(), STALE_EMBED.format(what="embed cache file")
    a.close()
    b.close()
    with ResultCache(committed, ttl_s=info["ttl_s"], clock=lambda: info["clock"], secret=secret) as cache:
        for case in cases:
            want = case["backends"][info["backend"]]
            value = cache.get(want["cache_key"])
            assert value == {"embedding_f32": want["vector_f32"], "truncated": case["truncated"]}


def test_the_runtime_index_ranks_the_golden_queries(embed_goldens: dict[str, Any], tmp_path: Path) -> None:
    index_info = embed_goldens["index"]
    texts = {i: t for i, t in index_info["texts"]}
    embedder = _embedder(embed_goldens, index_info["backend"])
    for precision, info in index_info["files"].items():
        path = tmp_path / info["file"]
        shutil.copyfile(EMBED / info["file"], path)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA application_id").fetchone()[0] == INDEX_APPLICATION_ID
            assert conn.execute("PRAGMA user_version").fetchone()[0] == INDEX_SCHEMA_VERSION
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            stored = dict(conn.execute("SELECT id, text FROM items").fetchall())
        conn.close()
        assert meta == {
            "fingerprint": embed_goldens["bundle"]["fingerprint"],
            "dim": str(embed_goldens["bundle"]["dim"]),
            "precision": precision,
        }, STALE_EMBED.format(what=f"{info['file']} settings")
        assert stored == texts and info["rows"] == len(texts), STALE_EMBED.format(what=f"{info['file']} rows")
        with Index(path, embedder) as index:
            assert index.precision == precision
            for query in embed_goldens["queries"]:
                for backend, entry in query["backends"].items():
                    vector = _f32(entry["vector_f32"])
                    for k, want in entry["results"][precision].items():
                        got = index.search(vector, int(k))
                        what = f"{precision} ranking of {query['text']!r} ({backend}, k={k})"
                        assert [i for i, _ in got] == [i for i, _ in want], STALE_EMBED.format(what=what)
                        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=1e-6)
                        assert want == entry["results"][precision][str(max(SCRIPT.SEARCH_KS))][: int(k)]
                if index_info["backend"] in query["backends"]:
                    full = query["backends"][index_info["backend"]]["results"][precision][str(max(SCRIPT.SEARCH_KS))]
                    assert [i for i, _ in index.search(query["text"], len(texts))] == [i for i, _ in full]


@pytest.mark.skipif(
    not os.environ.get("EDGEOPT_ANDROID_EMBED_BUNDLE"),
    reason="set EDGEOPT_ANDROID_EMBED_BUNDLE to an embed bundle to compare",
)
def test_embed_goldens_regenerate_identically(embed_goldens: dict[str, Any], tmp_path: Path) -> None:
    SCRIPT.make_embed_goldens(Path(os.environ["EDGEOPT_ANDROID_EMBED_BUNDLE"]), tmp_path)
    fresh = json.loads((tmp_path / SCRIPT.EMBED_GOLDENS_NAME).read_text(encoding="utf-8"))
    assert fresh == embed_goldens, STALE_EMBED.format(what="the bundle gives other embed goldens")
    for name in SCRIPT.INDEX_DB_NAMES.values():
        query = "SELECT id, text, vector, scale FROM items ORDER BY id"
        committed = shutil.copyfile(EMBED / name, tmp_path / f"committed-{name}")
        with sqlite3.connect(tmp_path / name) as a, sqlite3.connect(committed) as b:
            assert a.execute(query).fetchall() == b.execute(query).fetchall(), STALE_EMBED.format(what=name)
        a.close()
        b.close()
