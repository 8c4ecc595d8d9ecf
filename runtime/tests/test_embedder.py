"""The embed task in the runtime: manifest, loading, vectors, cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgeopt_runtime
from edgeopt_runtime import BundleInvalid, InputError, TextEmbedder
from edgeopt_runtime.manifest import EmbeddingSpec, build_manifest, read_manifest, verify_bundle
from edgeopt_runtime.tokenizer import TextTokenizer
from edgeopt_runtime_fixtures import EMBED_DIM, MAX_SEQ_LEN, TinyBundle, rewrite_manifest


def _keras_vectors(bundle: TinyBundle, texts: list[str]) -> np.ndarray:
    tok = TextTokenizer.from_file(bundle.path / "tokenizer.json", MAX_SEQ_LEN)
    enc = tok.encode_batch(texts)
    raw = np.asarray(bundle.keras_model.predict([enc.input_ids, enc.attention_mask], verbose=0))  # type: ignore[attr-defined]
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_load_returns_an_embedder_whose_vectors_are_the_models_normalized(embed_bundle: TinyBundle) -> None:
    texts = list(embed_bundle.texts[:8])
    with edgeopt_runtime.load(embed_bundle.path, backend="onnx", cache=False) as model:
        assert isinstance(model, TextEmbedder)
        vectors = model.embed(texts)
    assert vectors.shape == (8, EMBED_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, _keras_vectors(embed_bundle, texts), atol=1e-5)


def test_int8_tflite_vectors_follow_the_float_onnx_ones(embed_bundle: TinyBundle) -> None:
    texts = list(embed_bundle.texts)
    with edgeopt_runtime.load_embedder(embed_bundle.path, backend="onnx", cache=False) as onnx_model:
        a = onnx_model.embed(texts)
    with edgeopt_runtime.load_embedder(embed_bundle.path, backend="tflite", cache=False) as tflite_model:
        b = tflite_model.embed(texts)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() > 0.97, cosines.min()


def test_vectors_come_back_from_the_cache_equal(embed_bundle: TinyBundle, tmp_path: Path) -> None:
    texts = ["free cash now", "lunch with the team", "free cash now"]
    with edgeopt_runtime.load_embedder(embed_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite") as model:
        first = model.embed_details(texts)
        again = model.embed_details(texts)
        stats = model.stats()
    assert [e.cached for e in first] == [False, False, False] and [e.cached for e in again] == [True, True, True]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.vector, b.vector)
    assert stats.model_rows == 2 and stats.deduplicated == 2 and stats.cache_hits == 2


def test_bad_texts_are_refused_by_index(embed_bundle: TinyBundle) -> None:
    with edgeopt_runtime.load_embedder(embed_bundle.path, cache=False) as model:
        with pytest.raises(InputError, match=r"\[1\]"):
            model.embed(["fine", "   "])
        with pytest.raises(InputError):
            model.embed("a plain str")  # type: ignore[arg-type]


def test_each_loader_refuses_the_other_task(embed_bundle: TinyBundle, tiny_bundle: TinyBundle) -> None:
    with pytest.raises(BundleInvalid, match=r"has task 'embed', not 'text-classification'; embed with it"):
        edgeopt_runtime.load_classifier(embed_bundle.path)
    with pytest.raises(BundleInvalid, match=r"not 'embed'; classify with it"):
        edgeopt_runtime.load_embedder(tiny_bundle.path)


def test_manifest_records_dim_pooling_normalized(embed_bundle: TinyBundle) -> None:
    raw = json.loads((embed_bundle.path / "manifest.json").read_text(encoding="utf-8"))
    assert (raw["task"], raw["labels"], raw["dim"], raw["pooling"], raw["normalized"]) == ("embed", [], 6, "mean", True)
    assert raw["outputs"] == [{"name": "embedding", "shape": ["batch", EMBED_DIM]}]
    assert read_manifest(embed_bundle.path).embedding == EmbeddingSpec(EMBED_DIM, "mean", True)


def test_the_fingerprint_covers_the_embedding_spec(embed_bundle: TinyBundle, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(embed_bundle.path, tmp_path / "b"))
    rewrite_manifest(copy, lambda d: d.update(pooling="cls"))
    with pytest.raises(BundleInvalid, match="fingerprint"):
        verify_bundle(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(labels=["a", "b"]), "'labels' must be an empty list"),
        (lambda d: d.pop("dim"), "required key 'dim' is missing"),
        (lambda d: d.update(pooling="sum"), "'pooling' must be one of mean, cls, max"),
        (lambda d: d.update(normalized="yes"), "'normalized' must be true or false"),
    ],
)
def test_malformed_embed_manifests_name_the_key(embed_bundle: TinyBundle, tmp_path: Path, change, message) -> None:  # type: ignore[no-untyped-def]
    copy = Path(shutil.copytree(embed_bundle.path, tmp_path / "b"))
    rewrite_manifest(copy, change)
    with pytest.raises(BundleInvalid, match=message):
        read_manifest(copy)


def test_build_manifest_checks_the_task_and_spec(embed_bundle: TinyBundle) -> None:
    artifacts = read_manifest(embed_bundle.path).artifacts
    with pytest.raises(BundleInvalid, match="needs its embedding spec"):
        build_manifest(embed_bundle.path, labels=(), task="embed", max_seq_len=MAX_SEQ_LEN, artifacts=artifacts)
    with pytest.raises(BundleInvalid, match="task 'nope' is not one of"):
        build_manifest(embed_bundle.path, labels=("a", "b"), task="nope", max_seq_len=MAX_SEQ_LEN, artifacts=artifacts)
    with pytest.raises(BundleInvalid, match="pooling 'sum'"):
        build_manifest(
            embed_bundle.path,
            labels=(),
            task="embed",
            embedding=EmbeddingSpec(4, "sum"),
            max_seq_len=MAX_SEQ_LEN,
            artifacts=artifacts,
        )
