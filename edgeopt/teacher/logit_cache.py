"""Teacher outputs cached per text in SQLite.

Keyed by the teacher's fingerprint and precision (:attr:`Teacher.outputs_key`), so a rebuild never runs the teacher on
the same text twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt.cache_dirs import cache_dir

if TYPE_CHECKING:
    from edgeopt.teacher.runner import Teacher

__all__ = ["TeacherLogitCache"]


class TeacherLogitCache:
    """Teacher logits (and hidden features) per text, stored in SQLite so that rebuilds skip the teacher.

    Logit rows are keyed by ``(Teacher.outputs_key, sha256 of the text)`` (the fingerprint, and the precision
    when it is not float32) and hold the logits as float32 bytes.
    Features (:meth:`Teacher.features`) live in a table of their own, keyed by ``(Teacher.outputs_key, sha256 of
    the text, kind)`` with kind ``"features"``, so the logits table keeps its layout.
    ``hits`` and ``misses`` count input texts served from the cache and texts that were not in it;
    ``computed`` counts the distinct texts the teacher was run on. All three accumulate over calls of
    :meth:`get_or_compute` and :meth:`get_or_compute_features` alike.

    Args:
        path: The SQLite file; default ``cache_dir()/teacher_logits.sqlite``.
    """

    TABLE = "teacher_logits"
    FEATURES_TABLE = "teacher_features"
    FEATURES_KIND = "features"

    def __init__(self, path: Path | None = None) -> None:
        import sqlite_utils

        self.path = Path(path) if path is not None else cache_dir() / "teacher_logits.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self._db = sqlite_utils.Database(self.path)
        # WAL lets a second build read the cache while another one writes to it.
        self._db.enable_wal()
        self._table = self._db.table(self.TABLE)
        if not self._table.exists():
            self._table.create(
                {"teacher": str, "text_sha256": str, "num_labels": int, "logits": bytes},
                pk=("teacher", "text_sha256"),
                if_not_exists=True,
            )
        self._features = self._db.table(self.FEATURES_TABLE)
        if not self._features.exists():
            self._features.create(
                {"teacher": str, "text_sha256": str, "kind": str, "dim": int, "value": bytes},
                pk=("teacher", "text_sha256", "kind"),
                if_not_exists=True,
            )

    def get_or_compute(self, teacher: Teacher, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return the teacher's logits for texts, running the teacher only on texts not cached yet.

        The misses are computed in one batched call and inserted in one transaction.

        Args:
            teacher: The teacher; its :attr:`~Teacher.outputs_key` scopes the cache entries.
            texts: The texts.
            progress: Report the teacher's progress as edgeopt.events.

        Returns:
            A float32 array ``[len(texts), len(teacher.label_names)]`` in input order.
        """
        num_labels = len(teacher.label_names)
        return self._get_or_compute(
            texts,
            lookup=lambda shas: self._lookup(
                self.TABLE, "logits", "num_labels = ?", [teacher.outputs_key, num_labels], shas
            ),
            compute=lambda missing: teacher.logits(missing, progress=progress),
            table=self._table,
            row=lambda sha, value: {
                "teacher": teacher.outputs_key,
                "text_sha256": sha,
                "num_labels": num_labels,
                "logits": value.astype("<f4").tobytes(),
            },
            width=num_labels,
        )

    def get_or_compute_features(self, teacher: Teacher, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Return the teacher's features for texts (see :meth:`Teacher.features`), computing only uncached ones.

        Args:
            teacher: The teacher; its :attr:`~Teacher.outputs_key` scopes the cache entries.
            texts: The texts.
            progress: Report the teacher's progress as edgeopt.events.

        Returns:
            A float32 array ``[len(texts), hidden_size]`` in input order.

        Raises:
            TeacherError: The teacher is an ONNX model, which exposes logits only.
        """
        return self._vectors(
            teacher, texts, self.FEATURES_KIND, lambda missing: teacher.features(missing, progress=progress)
        )

    def get_or_compute_embeddings(self, teacher: Teacher, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """The teacher's normalized sentence embeddings (:meth:`Teacher.embeddings`), computing only new ones.

        Stored beside the features under their own kind (the pooling is part of the teacher's fingerprint).

        Returns:
            float32 ``[len(texts), hidden_size]`` in input order.
        """
        return self._vectors(
            teacher, texts, "embedding", lambda missing: teacher.embeddings(missing, progress=progress)
        )

    def _vectors(
        self, teacher: Teacher, texts: Sequence[str], kind: str, compute: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """One vector per text of the features table's ``kind``, computing (with ``compute``) only uncached ones."""
        teacher._check_has_features()
        return self._get_or_compute(
            texts,
            lookup=lambda shas: self._lookup(
                self.FEATURES_TABLE, "value", "kind = ?", [teacher.outputs_key, kind], shas
            ),
            compute=compute,
            table=self._features,
            row=lambda sha, value: {
                "teacher": teacher.outputs_key,
                "text_sha256": sha,
                "kind": kind,
                "dim": len(value),
                "value": value.astype("<f4").tobytes(),
            },
            width=None,
            empty_width=teacher._hidden_size,
        )

    def _get_or_compute(
        self,
        texts: Sequence[str],
        lookup: Callable[[list[str]], dict[str, np.ndarray]],
        compute: Callable[[list[str]], np.ndarray],
        table: Any,
        row: Callable[[str, np.ndarray], dict[str, Any]],
        width: int | None,
        empty_width: Callable[[], int] | None = None,
    ) -> np.ndarray:
        """Serve each distinct text from the cache or compute it once; store what was computed in one transaction."""
        shas = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
        found = lookup(sorted(set(shas)))
        missing: dict[str, str] = {}
        for sha, text in zip(shas, texts, strict=True):
            if sha not in found:
                missing.setdefault(sha, text)
        self.misses += sum(sha not in found for sha in shas)
        self.hits += sum(sha in found for sha in shas)
        if missing:
            computed = compute(list(missing.values()))
            with self._db.atomic():
                table.insert_all(
                    [row(sha, value) for sha, value in zip(missing, computed, strict=True)],
                    replace=True,
                    batch_size=500,
                )
            self.computed += len(missing)
            found.update(zip(missing, computed, strict=True))
        if width is None:
            width = len(next(iter(found.values()))) if found else (empty_width() if empty_width else 0)
        out = np.zeros((len(texts), width), dtype=np.float32)
        for i, sha in enumerate(shas):
            out[i] = found[sha]
        return out

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> TeacherLogitCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lookup(
        self, table: str, column: str, condition: str, params: list[Any], shas: list[str]
    ) -> dict[str, np.ndarray]:
        """Rows of ``table`` for ``teacher = params[0] and <condition>`` and the given text hashes."""
        found: dict[str, np.ndarray] = {}
        # Stay well under SQLite's bound-variable limit.
        for start in range(0, len(shas), 500):
            chunk = shas[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.query(
                f"select text_sha256, {column} from {table} "
                f"where teacher = ? and {condition} and text_sha256 in ({marks})",
                [*params, *chunk],
            ):
                found[row["text_sha256"]] = np.frombuffer(row[column], dtype="<f4").astype(np.float32)
        return found
