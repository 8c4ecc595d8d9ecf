"""The on-device vector index: SQLite, exact search, tied to the model that filled it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import edgeopt_runtime
from edgeopt_runtime import Index, IndexInvalid, IndexMismatch, InputError
from edgeopt_runtime_fixtures import EMBED_DIM, TinyBundle, rewrite_manifest


@pytest.fixture()
def embedder(embed_bundle: TinyBundle):  # type: ignore[no-untyped-def]
    with edgeopt_runtime.load_embedder(embed_bundle.path, backend="onnx", cache=False) as model:
        yield model


def _ids(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


@pytest.mark.parametrize("precision", ["int8", "float16"])
def test_search_finds_what_exact_numpy_search_finds(
    embedder: edgeopt_runtime.TextEmbedder, embed_bundle: TinyBundle, tmp_path: Path, precision: str
) -> None:
    texts = list(embed_bundle.texts)
    with Index(tmp_path / "i.sqlite", embedder, precision=precision) as index:
        index.add(_ids(len(texts)), texts)
        assert len(index) == len(texts) and "doc-3" in index and "nope" not in index
        vectors = embedder.embed(texts)
        for q in range(0, len(texts), 7):
            hits = index.search(texts[q], k=5)
            exact = np.argsort(-(vectors @ vectors[q]), kind="stable")[:5]
            assert hits[0][0] == f"doc-{q}" and hits[0][1] == pytest.approx(1.0, abs=0.02)
            # Stored at lower precision, scores move by a few thousandths: the same neighbours come back.
            assert len({h for h, _ in hits} & {f"doc-{i}" for i in exact}) >= 4
            assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_the_index_persists_and_reopens(embedder: edgeopt_runtime.TextEmbedder, tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    with Index(path, embedder) as index:
        index.add(["a", "b"], ["free cash prize", "lunch with the team tomorrow"])
    with Index(path, embedder) as again:
        assert len(again) == 2
        assert again.search("lunch tomorrow", k=1)[0][0] == "b"
        stats = again.stats()
    assert (stats.vectors, stats.with_text, stats.dim, stats.precision) == (2, 2, EMBED_DIM, "int8")
    assert Index.stats_of(path) == stats


def test_add_replaces_remove_deletes_and_vectors_search(embedder: edgeopt_runtime.TextEmbedder, tmp_path: Path) -> None:
    with Index(tmp_path / "i.sqlite", embedder, precision="float16") as index:
        index.add(["a", "b"], ["free cash", "team lunch"])
        index.add(["a"], ["team lunch"])
        assert len(index) == 2
        index.add_vectors(["v"], embedder.embed(["free cash"]) * 3.0)
        hit, score = index.search(embedder.embed_one("free cash"), k=1)[0]
        assert hit == "v" and score == pytest.approx(1.0, abs=1e-3)
        assert index.remove(["a", "missing"]) == 1 and len(index) == 2
        assert index.search("anything", k=10)[-1][0] in {"b", "v"}


def test_another_model_is_refused_or_reembeds(embed_bundle: TinyBundle, tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    with Index(path, embed_bundle.path) as index:
        index.add(["a", "b"], ["free cash", "team lunch"])
    other = Path(shutil.copytree(embed_bundle.path, tmp_path / "v2"))
    rewrite_manifest(other, lambda d: d.update(pooling="max"), refingerprint=True)
    with pytest.raises(IndexMismatch, match=r"holds 2 vectors of model .*open it with reembed=True"):
        Index(path, other)
    with Index(path, other, reembed=True) as index:
        assert index.stats().fingerprint == edgeopt_runtime.read_manifest(other).fingerprint
        assert index.search("team lunch", k=1)[0][0] == "b"


def test_rows_without_text_block_a_reembed(embed_bundle: TinyBundle, tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    with Index(path, embed_bundle.path) as index:
        index.add_vectors(["v"], np.ones((1, EMBED_DIM), np.float32))
    other = Path(shutil.copytree(embed_bundle.path, tmp_path / "v2"))
    rewrite_manifest(other, lambda d: d.update(pooling="cls"), refingerprint=True)
    with pytest.raises(IndexMismatch, match="1 rows added as vectors, without text"):
        Index(path, other, reembed=True)
    with Index(path, embed_bundle.path) as index:  # the failed re-embed changed nothing
        assert len(index) == 1


def test_bad_input_is_refused_with_the_value(embedder: edgeopt_runtime.TextEmbedder, tmp_path: Path) -> None:
    with Index(tmp_path / "i.sqlite", embedder) as index:
        with pytest.raises(InputError, match="2 ids but 1 texts"):
            index.add(["a", "b"], ["x"])
        with pytest.raises(InputError, match=r"ids\[0\] 3 must be a non-empty str"):
            index.add([3], ["x"])  # type: ignore[list-item]
        with pytest.raises(InputError, match="appears twice"):
            index.add(["a", "a"], ["x", "y"])
        with pytest.raises(InputError, match=r"expected \(1, 6\)"):
            index.add_vectors(["a"], np.ones((1, 5)))
        with pytest.raises(InputError, match="k 0 must be a positive integer"):
            index.search("x", k=0)
        assert len(index) == 0
    with pytest.raises(InputError, match="precision 'int4'"):
        Index(tmp_path / "j.sqlite", embedder, precision="int4")


def test_a_foreign_file_is_refused_and_left_alone(embedder: edgeopt_runtime.TextEmbedder, tmp_path: Path) -> None:
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes(x)")
    before = other.read_bytes()
    with pytest.raises(IndexInvalid, match="another application, not an edgeopt index"):
        Index(other, embedder)
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just text " * 50)
    with pytest.raises(IndexInvalid, match="is not an edgeopt index"):
        Index(text, embedder)
    assert other.read_bytes() == before
    with pytest.raises(IndexInvalid, match="does not exist"):
        Index.stats_of(tmp_path / "missing.sqlite")


def test_stats_of_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.index"
    empty.write_bytes(b"")
    with pytest.raises(IndexInvalid, match="is an empty file, not an edgeopt index"):
        Index.stats_of(empty)
    assert empty.read_bytes() == b""
