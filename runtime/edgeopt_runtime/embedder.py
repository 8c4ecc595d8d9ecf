"""Embed texts with an ``embed`` bundle: one unit vector per text, cached like a classifier's answers."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeopt_runtime.backends import Backend, TimingHook
from edgeopt_runtime.cache import ResultStore
from edgeopt_runtime.errors import BundleInvalid, InputError
from edgeopt_runtime.manifest import EmbeddingSpec, Manifest
from edgeopt_runtime.tokenizer import TextTokenizer, clean_texts

__all__ = ["Embedding", "EmbedderStats", "TextEmbedder", "normalize_rows"]


@dataclass(frozen=True)
class Embedding:
    """One text's vector and how it was made.

    Attributes:
        vector: float32 ``[dim]``, of unit length (a zero vector stays zero).
        cached: True when it came from the result cache.
        truncated: True when the text had more tokens than ``max_seq_len`` and the tail was dropped.
    """

    vector: np.ndarray
    cached: bool
    truncated: bool

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (the vector as a list of floats)."""
        return {"embedding": [float(x) for x in self.vector], "cached": self.cached, "truncated": self.truncated}


@dataclass(frozen=True)
class EmbedderStats:
    """What one embedder did since it was loaded (this process only).

    Attributes:
        texts: Texts embedded.
        cache_hits: Texts answered from the result cache.
        deduplicated: Texts answered from an equal text earlier in the same call.
        model_rows: Texts tokenized and run through the model.
        model_calls: Calls to the backend.
    """

    texts: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    model_rows: int = 0
    model_calls: int = 0

    def to_dict(self) -> dict[str, int]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, in float32 (rows of norm 0 stay 0)."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return unit


_VECTOR_KEY = "embedding_f32"


class TextEmbedder:
    """An ``embed`` bundle ready to turn texts into vectors; build it with :func:`edgeopt_runtime.load`.

    The result cache stores each text's vector (float32, base64) under the same kind of key as a classifier's
    answers: the model fingerprint, the artifact and backend, and the text.

    Args:
        manifest: The verified manifest (``task == "embed"``).
        tokenizer: The bundle's tokenizer.
        backend: A loaded backend; its output is the unnormalized ``embedding``.
        cache: Result cache, or None for none.
    """

    def __init__(
        self, manifest: Manifest, tokenizer: TextTokenizer, backend: Backend, cache: ResultStore | None = None
    ) -> None:
        if manifest.embedding is None:
            raise BundleInvalid(f"bundle task {manifest.task!r} has no embedding spec; load it as a classifier")
        self._manifest = manifest
        self._spec: EmbeddingSpec = manifest.embedding
        self._tokenizer = tokenizer
        self._backend = backend
        self._cache = cache
        self._counts = [0, 0, 0, 0, 0]
        self._lock = threading.Lock()
        artifact = manifest.artifact_for(backend.name)
        options = {"artifact": artifact[0] if artifact else "", "backend": backend.name}
        self._key = None if cache is None else cache.key_function(manifest.fingerprint, options)
        self.timing_hook: TimingHook | None = None
        """Called after each model call with (tokenize seconds, model seconds, rows); the server's metrics."""

    @property
    def manifest(self) -> Manifest:
        """The bundle's verified manifest."""
        return self._manifest

    @property
    def dim(self) -> int:
        """Width of every vector."""
        return self._spec.dim

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint: vectors of two bundles are comparable only when theirs are equal."""
        return self._manifest.fingerprint

    @property
    def backend_name(self) -> str:
        """``"onnx"`` or ``"tflite"``."""
        return self._backend.name

    @property
    def tokenizer(self) -> TextTokenizer:
        """The bundle's tokenizer."""
        return self._tokenizer

    @property
    def cache(self) -> ResultStore | None:
        """The result cache, or None when caching is off."""
        return self._cache

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: float32 ``[len(texts), dim]``, every row of unit length.

        Raises:
            InputError: ``texts`` is empty or a plain str, or one text is invalid (named by its index).
        """
        return np.stack([e.vector for e in self.embed_details(texts)])

    def embed_details(self, texts: Sequence[str]) -> list[Embedding]:
        """Embed texts and say for each whether it was cached or truncated (see :meth:`embed`)."""
        cleaned = clean_texts(texts, "embed()")
        first: dict[str, int] = {}
        for i, text in enumerate(cleaned):
            first.setdefault(text, i)
        distinct = sorted(first.values())
        results: dict[int, Embedding] = {}
        cache, key_of = self._cache, self._key
        keys = {i: key_of(cleaned[i]) for i in distinct} if cache is not None and key_of is not None else {}
        if cache is not None and keys:
            found = cache.get_many(keys.values())
            for i in distinct:
                hit = _from_cache(found.get(keys[i]), self.dim)
                if hit is not None:
                    results[i] = hit
        todo = [i for i in distinct if i not in results]
        if todo:
            tokenize_start = time.perf_counter()
            encoded = self._tokenizer.encode_positions([cleaned[i] for i in todo], todo)
            model_start = time.perf_counter()
            raw = self._backend.run(encoded.input_ids, encoded.attention_mask)
            if self.timing_hook is not None:
                self.timing_hook(model_start - tokenize_start, time.perf_counter() - model_start, len(todo))
            if raw.shape != (len(todo), self.dim):
                raise BundleInvalid(
                    f"the {self.backend_name} model returned an embedding of shape {raw.shape}, expected "
                    f"({len(todo)}, {self.dim}); rebuild the bundle"
                )
            vectors = normalize_rows(raw)
            for i, vector, truncated in zip(todo, vectors, encoded.truncated, strict=True):
                results[i] = Embedding(vector, cached=False, truncated=bool(truncated))
            if cache is not None and keys:
                cache.put_many(
                    [(keys[i], self.fingerprint, _cache_value(results[i]), cleaned[i]) for i in todo], defer=True
                )
        out = [results[first[text]] for text in cleaned]
        with self._lock:
            counts = self._counts
            counts[0] += len(cleaned)
            counts[1] += len(distinct) - len(todo)
            counts[2] += len(cleaned) - len(distinct)
            counts[3] += len(todo)
            counts[4] += bool(todo)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text: float32 ``[dim]`` of unit length."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        vector: np.ndarray = self.embed([text])[0]
        return vector

    def stats(self) -> EmbedderStats:
        """Return what this embedder did since it was loaded."""
        with self._lock:
            return EmbedderStats(*self._counts)

    def close(self) -> None:
        """Close the result cache; the embedder must not be used afterwards."""
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> TextEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cache_value(embedding: Embedding) -> dict[str, object]:
    raw = np.asarray(embedding.vector, dtype="<f4").tobytes()
    return {_VECTOR_KEY: base64.b64encode(raw).decode("ascii"), "truncated": embedding.truncated}


def _from_cache(value: dict[str, object] | None, dim: int) -> Embedding | None:
    # A shared cache file may hold anything; a value not shaped like ours is a miss.
    if value is None:
        return None
    encoded, truncated = value.get(_VECTOR_KEY), value.get("truncated")
    if not isinstance(encoded, str) or not isinstance(truncated, bool):
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
    if len(raw) != 4 * dim:
        return None
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        return None
    return Embedding(vector, cached=True, truncated=truncated)
