"""A persistent on-device vector index in one SQLite file: add texts, search them by meaning.

Vectors of one index come from one model: the file records the bundle's fingerprint, and opening it with another
model refuses (:class:`IndexMismatch`) or, when asked, re-embeds the stored texts, so two vector spaces never mix.

Vectors are stored as int8 (one scale per vector: ``q = round(v / scale)``, ``scale = max|v| / 127``; a quarter
of float32) or float16. Search is exact: the stored vectors are read once into a float32 matrix (re-read only when
the file changed, by this or another process) and every query is one matrix-vector product in numpy. Measured in
``bench/bench_index.py`` (results in ``bench/results/index.md``); an approximate index (sqlite-vec, usearch) pays
only where that product is too slow, which the benchmark says where.

The layout (``PRAGMA application_id`` 0x65646978 "edix", ``user_version`` 1): ``meta(key TEXT PRIMARY KEY, value
TEXT)`` with ``fingerprint``, ``dim``, ``precision``; ``items(id TEXT PRIMARY KEY, text TEXT, vector BLOB, scale
REAL)``, ``text`` NULL for rows added as vectors. The Android core reads the same file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt_runtime.embedder import TextEmbedder, normalize_rows
from edgeopt_runtime.errors import EdgeoptRuntimeError, InputError

__all__ = ["Index", "IndexInvalid", "IndexMismatch", "IndexStats", "PRECISIONS", "INDEX_APPLICATION_ID"]

PRECISIONS = ("int8", "float16")
INDEX_APPLICATION_ID = 0x65646978
INDEX_SCHEMA_VERSION = 1
_INT8_MAX = 127.0


class IndexInvalid(EdgeoptRuntimeError):
    """The index file cannot be opened or used (not an index, damaged, or of a newer schema)."""


class IndexMismatch(IndexInvalid):
    """The index was filled by another model (fingerprint) than the one it is opened with."""


@dataclass(frozen=True)
class IndexStats:
    """What an index file holds.

    Attributes:
        path: The file.
        vectors: Rows stored.
        with_text: Rows whose text is stored (these can be re-embedded by a new model).
        dim: Vector width.
        precision: ``int8`` or ``float16``.
        fingerprint: The model fingerprint the vectors belong to.
        file_bytes: Size of the database file (WAL not included).
    """

    path: str
    vectors: int
    with_text: int
    dim: int
    precision: str
    fingerprint: str
    file_bytes: int

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


class Index:
    """Vectors of texts, searchable by cosine similarity, persisted in SQLite.

    Args:
        path: The index file (created if missing).
        bundle: An ``embed`` bundle directory or a loaded :class:`~edgeopt_runtime.embedder.TextEmbedder`; a
            directory is loaded without a result cache (the index stores the vectors itself).
        precision: ``int8`` (default) or ``float16``, for a new file; an existing file keeps its own.
        reembed: When the file was filled by another model: re-embed its stored texts with this one (True), or
            refuse (False, :class:`IndexMismatch`).

    Raises:
        IndexInvalid: The file is not an edgeopt index or is damaged.
        IndexMismatch: The file belongs to another model and ``reembed`` is False, or some of its rows have no
            text to re-embed.
        InputError: ``precision`` is not one of :data:`PRECISIONS`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        bundle: str | os.PathLike[str] | TextEmbedder,
        *,
        precision: str = "int8",
        reembed: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if isinstance(bundle, TextEmbedder):
            self._embedder, self._owns_embedder = bundle, False
        else:
            from edgeopt_runtime.model import load_embedder

            self._embedder, self._owns_embedder = load_embedder(bundle, cache=False), True
        self.path = Path(path)
        self._conn = _connect(self.path)
        self._matrix: np.ndarray | None = None
        self._ids: list[str] = []
        self._seen = (-1, -1)
        meta = _read_meta(self._conn, self.path)
        fingerprint = self._embedder.fingerprint
        if meta is None:
            self._dim, self._precision = self._embedder.dim, precision
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("fingerprint", fingerprint), ("dim", str(self._dim)), ("precision", precision)],
                )
        else:
            self._dim, self._precision = int(meta["dim"]), meta["precision"]
            if meta["fingerprint"] != fingerprint:
                self._switch_model(meta["fingerprint"], reembed)

    @property
    def dim(self) -> int:
        """Vector width."""
        return self._dim

    @property
    def precision(self) -> str:
        """How vectors are stored: ``int8`` or ``float16``."""
        return self._precision

    @property
    def embedder(self) -> TextEmbedder:
        """The embedder that turns texts and queries into vectors."""
        return self._embedder

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Embed ``texts`` and store them under ``ids`` (an existing id is replaced).

        Raises:
            InputError: ``ids`` and ``texts`` differ in length, an id is not a non-empty str or repeats.
        """
        checked = _check_ids(ids)
        if isinstance(texts, str) or len(texts) != len(checked):
            raise InputError(f"add() got {len(checked)} ids but {_count(texts)} texts; pass one text per id")
        vectors = self._embedder.embed(texts)
        self._store(checked, list(texts), vectors)

    def add_vectors(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors made elsewhere (by this model) under ``ids``; they are normalized first.

        Rows added this way have no text, so a new model cannot re-embed them.

        Raises:
            InputError: The array is not ``[len(ids), dim]`` of finite numbers, or an id is invalid.
        """
        checked = _check_ids(ids)
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape != (len(checked), self._dim):
            raise InputError(
                f"vectors have shape {tuple(array.shape)}; expected ({len(checked)}, {self._dim}), one row per id"
            )
        if not np.all(np.isfinite(array)):
            raise InputError("vectors hold NaN or infinite values; pass finite numbers")
        self._store(checked, [None] * len(checked), normalize_rows(array))

    def remove(self, ids: Iterable[str]) -> int:
        """Delete the rows of ``ids`` (unknown ids are ignored); return how many were deleted."""
        checked = _check_ids(list(ids), allow_repeats=True)
        with self._conn:
            deleted = sum(self._conn.execute("DELETE FROM items WHERE id = ?", (i,)).rowcount for i in checked)
        return deleted

    def search(self, query: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` stored rows nearest to ``query`` (a text, or a vector of this model), best first.

        Returns:
            ``[(id, cosine similarity)]``, at most ``k`` and at most ``len(self)``.

        Raises:
            InputError: ``k`` is not a positive integer, or the query is not a text or a ``[dim]`` vector.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k {k!r} must be a positive integer")
        if isinstance(query, str):
            vector = self._embedder.embed_one(query)
        else:
            array = np.asarray(query, dtype=np.float32)
            if array.shape != (self._dim,) or not np.all(np.isfinite(array)):
                raise InputError(f"a query vector must be {self._dim} finite numbers, got shape {array.shape}")
            vector = normalize_rows(array[None, :])[0]
        matrix, ids = self._load()
        if not ids:
            return []
        scores = matrix @ vector
        top = min(k, len(ids))
        best = np.argpartition(-scores, top - 1)[:top]
        # Ties broken by id so that equal scores give the same order on every platform.
        ordered = sorted(best.tolist(), key=lambda i: (-float(scores[i]), ids[i]))
        return [(ids[i], float(scores[i])) for i in ordered]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str):
            return False
        return self._conn.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is not None

    def stats(self) -> IndexStats:
        """Counts and settings of the file."""
        return _stats(self._conn, self.path)

    def close(self) -> None:
        """Close the file (and the embedder, when the index loaded it)."""
        self._conn.close()
        if self._owns_embedder:
            self._embedder.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def stats_of(path: str | os.PathLike[str]) -> IndexStats:
        """Counts and settings of an index file, without loading a model.

        Raises:
            IndexInvalid: The file does not exist or is not an edgeopt index.
        """
        file = Path(path)
        if not file.is_file():
            raise IndexInvalid(f"index {file} does not exist; create it with add (edgeopt-runtime index add)")
        conn = _connect(file, create=False)
        try:
            if _read_meta(conn, file) is None:
                raise IndexInvalid(f"{file} is an empty index (no model recorded); add texts to it first")
            return _stats(conn, file)
        finally:
            conn.close()

    def _store(self, ids: list[str], texts: Sequence[str | None], vectors: np.ndarray) -> None:
        blobs, scales = _encode(vectors, self._precision)
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO items(id, text, vector, scale) VALUES (?, ?, ?, ?)",
                zip(ids, texts, blobs, scales, strict=True),
            )

    def _load(self) -> tuple[np.ndarray, list[str]]:
        # data_version changes when any connection (another process too) commits to the file.
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        changes = self._conn.total_changes
        if self._matrix is None or (version, changes) != self._seen:
            rows = self._conn.execute("SELECT id, vector, scale FROM items ORDER BY id").fetchall()
            self._ids = [row[0] for row in rows]
            self._matrix = _decode([row[1] for row in rows], [row[2] for row in rows], self._precision, self._dim)
            self._seen = (version, changes)
        return self._matrix, self._ids

    def _switch_model(self, old: str, reembed: bool) -> None:
        count = len(self)
        if not reembed:
            raise IndexMismatch(
                f"index {self.path} holds {count} vectors of model {old[:12]}, not of this bundle's "
                f"{self._embedder.fingerprint[:12]}; open it with reembed=True (--reembed) to re-embed its texts "
                "with this model, or start a new index file"
            )
        textless = int(self._conn.execute("SELECT COUNT(*) FROM items WHERE text IS NULL").fetchone()[0])
        if textless:
            raise IndexMismatch(
                f"index {self.path} has {textless} rows added as vectors, without text, which this model cannot "
                "re-embed; remove them (remove(ids)) with the old model, or start a new index file"
            )
        rows = self._conn.execute("SELECT id, text FROM items ORDER BY id").fetchall()
        if self._embedder.dim != self._dim:
            self._dim = self._embedder.dim
        vectors = self._embedder.embed([row[1] for row in rows]) if rows else np.zeros((0, self._dim), np.float32)
        blobs, scales = _encode(vectors, self._precision)
        # One transaction: a crash leaves the old model's index whole, never a mix of two vector spaces.
        with self._conn:
            self._conn.executemany(
                "UPDATE items SET vector = ?, scale = ? WHERE id = ?",
                zip(blobs, scales, [row[0] for row in rows], strict=True),
            )
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (self._embedder.fingerprint,))
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'dim'", (str(self._dim),))


def _count(values: object) -> str:
    return "a str instead of a list of" if isinstance(values, str) else str(len(values))  # type: ignore[arg-type]


def _check_ids(ids: Sequence[str], allow_repeats: bool = False) -> list[str]:
    if isinstance(ids, str):
        raise InputError("ids must be a list of strings, not one str; wrap a single id in a list")
    checked = list(ids)
    for position, item in enumerate(checked):
        if not isinstance(item, str) or not item:
            raise InputError(f"ids[{position}] {item!r} must be a non-empty str (use str(id) for numbers)")
    if not allow_repeats and len(set(checked)) != len(checked):
        repeated = next(i for i in checked if checked.count(i) > 1)
        raise InputError(f"id {repeated!r} appears twice in one call; give each row its own id")
    return checked


def _encode(vectors: np.ndarray, precision: str) -> tuple[list[bytes], list[float]]:
    rows = np.asarray(vectors, dtype=np.float32)
    if precision == "float16":
        return [row.astype("<f2").tobytes() for row in rows], [1.0] * len(rows)
    peaks = np.abs(rows).max(axis=1) if len(rows) else np.zeros(0, np.float32)
    scales = np.where(peaks > 0, peaks / _INT8_MAX, 1.0).astype(np.float64)
    codes = np.clip(np.rint(rows / scales[:, None].astype(np.float32)), -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return [row.tobytes() for row in codes], [float(s) for s in scales]


def _decode(blobs: list[bytes], scales: list[float], precision: str, dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    width = 2 if precision == "float16" else 1
    if any(len(blob) != width * dim for blob in blobs):
        raise IndexInvalid(f"index rows are not {dim} {precision} values each; the file is damaged: rebuild it")
    raw = b"".join(blobs)
    if precision == "float16":
        matrix = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(len(blobs), dim)
    else:
        codes = np.frombuffer(raw, dtype=np.int8).astype(np.float32).reshape(len(blobs), dim)
        matrix = codes * np.asarray(scales, dtype=np.float32)[:, None]
    # Rounding moved each vector off unit length a little; scores stay cosines.
    return normalize_rows(matrix)


def _connect(path: Path, create: bool = True) -> sqlite3.Connection:
    if path.exists() and not path.is_file():
        raise IndexInvalid(f"index path {path} is not a file; choose a file path")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, check_same_thread=False)
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise IndexInvalid(f"{path} is not an edgeopt index ({exc}); choose another file") from None
    if app_id == 0 and not tables and not create:
        conn.close()
        raise IndexInvalid(f"{path} is an empty file, not an edgeopt index; add texts to it first")
    if app_id == 0 and not tables:
        with conn:
            conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(
                "CREATE TABLE items(id TEXT PRIMARY KEY, text TEXT, vector BLOB NOT NULL, scale REAL NOT NULL)"
            )
        conn.execute(f"PRAGMA application_id = {INDEX_APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {INDEX_SCHEMA_VERSION}")
        conn.execute("PRAGMA journal_mode = WAL")
    elif app_id != INDEX_APPLICATION_ID:
        conn.close()
        raise IndexInvalid(
            f"{path} is an SQLite file of another application, not an edgeopt index; choose another file"
        )
    elif version > INDEX_SCHEMA_VERSION:
        conn.close()
        raise IndexInvalid(f"{path} has index schema {version}, newer than this runtime reads; upgrade edgeopt-runtime")
    return conn


def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str] | None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if not meta:
        return None
    if set(meta) != {"fingerprint", "dim", "precision"} or meta["precision"] not in PRECISIONS:
        raise IndexInvalid(f"{path}: the index's settings are damaged ({sorted(meta)}); rebuild the index")
    return meta


def _stats(conn: sqlite3.Connection, path: Path) -> IndexStats:
    meta = _read_meta(conn, path) or {"fingerprint": "", "dim": "0", "precision": ""}
    vectors, with_text = conn.execute("SELECT COUNT(*), COUNT(text) FROM items").fetchone()
    return IndexStats(
        path=str(path),
        vectors=int(vectors),
        with_text=int(with_text),
        dim=int(meta["dim"]),
        precision=meta["precision"],
        fingerprint=meta["fingerprint"],
        file_bytes=path.stat().st_size,
    )
