"""Load a verified bundle and classify texts with it."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeopt_runtime.backends import (
    Backend,
    BackendName,
    OnnxBackend,
    TfliteBackend,
    TimingHook,
    litert_available,
    onnxruntime_available,
)
from edgeopt_runtime.cache import ResultCache, ResultStore
from edgeopt_runtime.embedder import TextEmbedder
from edgeopt_runtime.errors import BackendUnavailable, BundleInvalid, InputError
from edgeopt_runtime.manifest import (
    TASK_EMBED,
    TASK_TEXT_CLASSIFICATION,
    TASKS,
    Manifest,
    safe_bundle_path,
    verify_bundle,
)
from edgeopt_runtime.monitor import DEFAULT_WINDOW, Monitor, MonitorReport, Reference
from edgeopt_runtime.tokenizer import Encoded, TextTokenizer, clean_text, clean_texts

__all__ = [
    "Prediction",
    "ClassifierStats",
    "TextClassifier",
    "load",
    "load_classifier",
    "load_embedder",
    "open_cache",
    "softmax",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The answer for one text.

    Attributes:
        label: The most likely label.
        score: Its softmax probability.
        scores: Softmax probability of every label.
        cached: True when the answer came from the result cache.
        latency_ms: Wall time of cache lookup + tokenize + inference (for a batch: divided by its size; for a
            cache hit: the lookup time).
        truncated: True when the text had more tokens than ``max_seq_len`` and the tail was dropped.
    """

    label: str
    score: float
    scores: dict[str, float]
    cached: bool
    latency_ms: float
    truncated: bool

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {
            "label": self.label,
            "score": self.score,
            "scores": dict(self.scores),
            "cached": self.cached,
            "latency_ms": self.latency_ms,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class ClassifierStats:
    """What one classifier did since it was loaded (this process only).

    Attributes:
        texts: Texts classified by :meth:`TextClassifier.predict` and :meth:`TextClassifier.predict_batch`.
        cache_hits: Texts answered from the result cache.
        deduplicated: Texts answered from an equal text earlier in the same batch: not looked up, tokenized or
            run again.
        model_rows: Texts tokenized and run through the model.
        model_calls: Calls to the backend (one per batch of cache misses).
    """

    texts: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    model_rows: int = 0
    model_calls: int = 0

    def to_dict(self) -> dict[str, int]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Return row-wise softmax of ``[n, k]`` logits in float64, exactly as predictions compute their scores."""
    rows = np.asarray(logits, dtype=np.float64)
    return np.asarray([_softmax_row(row) for row in rows.tolist()], dtype=np.float64).reshape(rows.shape)


class TextClassifier:
    """A bundle ready to classify texts; build it with :func:`load`.

    Args:
        manifest: The verified manifest.
        tokenizer: The bundle's tokenizer.
        backend: A loaded backend.
        cache: Result cache, or None for none.
        monitor_window: Latest predictions :meth:`monitor` summarizes.
    """

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: TextTokenizer,
        backend: Backend,
        cache: ResultStore | None = None,
        monitor_window: int = DEFAULT_WINDOW,
    ) -> None:
        self._manifest = manifest
        self._tokenizer = tokenizer
        self._backend = backend
        self._cache = cache
        self._monitor = Monitor(manifest.labels, _monitoring_reference(manifest), monitor_window)
        # texts, cache_hits, deduplicated, model_rows, model_calls: plain ints, cheaper than a dataclass
        self._counts = [0, 0, 0, 0, 0]
        self._counts_lock = threading.Lock()
        # Besides the text, what changes the answer and the fingerprint does not cover: which of the bundle's
        # models answered. Part of every cache key.
        artifact = manifest.artifact_for(backend.name)
        self._key_options = {"artifact": artifact[0] if artifact else "", "backend": backend.name}
        self._key = None if cache is None else cache.key_function(manifest.fingerprint, self._key_options)
        self.timing_hook: TimingHook | None = None
        """Called after each model call with (tokenize seconds, model seconds, rows); the server's metrics."""

    @property
    def manifest(self) -> Manifest:
        """The bundle's verified manifest."""
        return self._manifest

    @property
    def backend_name(self) -> str:
        """``"onnx"`` or ``"tflite"``."""
        return self._backend.name

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in logit order."""
        return self._manifest.labels

    @property
    def tokenizer(self) -> TextTokenizer:
        """The bundle's tokenizer (fixed to ``max_seq_len``)."""
        return self._tokenizer

    @property
    def backend(self) -> Backend:
        """The loaded backend (:class:`~edgeopt_runtime.backends.OnnxBackend` or ``TfliteBackend``)."""
        return self._backend

    @property
    def cache(self) -> ResultStore | None:
        """The result cache, or None when caching is off."""
        return self._cache

    def predict(self, text: str) -> Prediction:
        """Classify one text (from the cache when it holds the answer).

        Raises:
            InputError: ``text`` is not a str, or is empty or whitespace only.
        """
        # The single-text path of _predict without its batch bookkeeping: on a cache miss, every microsecond
        # here is one more over calling the model directly (see runtime/README.md, Performance).
        text = clean_text(text)
        start = time.perf_counter()
        cache, key_of = self._cache, self._key
        key = None
        if cache is not None and key_of is not None:
            key = key_of(text)
            found = cache.get(key)
            if found is not None:
                pred = _from_cache(found, self.labels, (time.perf_counter() - start) * 1000.0)
                if pred is not None:
                    self._record(1, 0, 0, (pred,))
                    return pred
        tokenize_start = time.perf_counter()
        pred = self._run(self._tokenizer.encode_cleaned([text]), start, tokenize_start)[0]
        if cache is not None and key is not None:
            cache.put_many([(key, self._manifest.fingerprint, _cache_value(pred), text)], defer=True)
        self._record(0, 0, 1, (pred,))
        return pred

    def cache_key(self, text: str) -> str:
        """Return the result cache's key for ``text`` (see :func:`~edgeopt_runtime.cache.cache_key`).

        Equal keys mean equal texts (after :func:`~edgeopt_runtime.tokenizer.clean_text`), so one text can never
        be answered with another's result.

        Raises:
            InputError: ``text`` is invalid (as for :meth:`predict`), or the classifier has no cache.
        """
        if self._key is None:
            raise InputError("this classifier has no result cache; load it with cache=PATH to get cache keys")
        return self._key(clean_text(text))

    def predict_batch(self, texts: Sequence[str], *, dedupe: bool = True) -> list[Prediction]:
        """Classify texts; cache misses go to the backend in one call (row by row for a batch-1 model).

        Args:
            texts: The texts, in order.
            dedupe: Look up, tokenize and run each distinct text once; its repeats get a copy of its
                prediction. Counted in :meth:`stats` as ``deduplicated``.

        Returns:
            One prediction per text, in order; the same answers as calling :meth:`predict` on each.

        Raises:
            InputError: ``texts`` is empty or a plain str, or one text is invalid (named by its index).
        """
        return self._predict(clean_texts(texts, "predict()"), dedupe=dedupe)

    def monitor(self) -> MonitorReport:
        """Return what the model answered lately and its drift from the build's reference (see ``monitor.py``)."""
        with self._counts_lock:
            return self._monitor.report()

    @property
    def monitoring_reference(self) -> Reference | None:
        """The build's summary of the bundle's answers on held-out texts (None for an older bundle)."""
        return self._monitor.reference

    def reset_monitor(self) -> None:
        """Start the monitoring window afresh (e.g. after the app shipped a report)."""
        with self._counts_lock:
            self._monitor.reset()

    def stats(self) -> ClassifierStats:
        """Return what this classifier did since it was loaded (see :class:`ClassifierStats`)."""
        with self._counts_lock:
            return ClassifierStats(*self._counts)

    def close(self) -> None:
        """Close the result cache (writing its buffered counts); the classifier must not be used afterwards."""
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> TextClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, hits: int, deduplicated: int, rows: int, answers: Sequence[Prediction]) -> None:
        # The counters of stats() and the monitor's window, under one lock.
        with self._counts_lock:
            counts = self._counts
            counts[0] += len(answers)
            counts[1] += hits
            counts[2] += deduplicated
            counts[3] += rows
            counts[4] += rows > 0
            observe = self._monitor.observe
            for p in answers:
                observe(p.label, p.score, p.truncated, p.cached, p.latency_ms)

    def _predict(self, texts: list[str], *, dedupe: bool) -> list[Prediction]:
        start = time.perf_counter()
        cache, key_of = self._cache, self._key
        fingerprint = self._manifest.fingerprint
        keys = [key_of(t) for t in texts] if cache is not None and key_of is not None else None
        distinct: list[int] = list(range(len(texts)))
        first: dict[Hashable, int] = {}
        ident: list[Hashable] = []
        if dedupe and len(texts) > 1:
            ident = list(texts)  # equal texts, equal keys: the cache key is of the text as given
            for i, name in enumerate(ident):
                first.setdefault(name, i)
            distinct = sorted(first.values())
        results: list[Prediction | None] = [None] * len(texts)
        hits = 0
        if cache is not None and keys is not None:
            if len(distinct) == 1:
                one = cache.get(keys[distinct[0]])
                found = {keys[distinct[0]]: one} if one is not None else {}
            else:
                found = cache.get_many(keys[i] for i in distinct)
            lookup_ms = (time.perf_counter() - start) * 1000.0 / len(texts)
            for i in distinct:
                results[i] = _from_cache(found.get(keys[i]), self.labels, lookup_ms)
                hits += results[i] is not None
        todo = [i for i in distinct if results[i] is None]
        if todo:
            tokenize_start = time.perf_counter()
            encoded = self._tokenizer.encode_positions([texts[i] for i in todo], todo)
            fresh = self._run(encoded, start, tokenize_start)
            for i, pred in zip(todo, fresh, strict=True):
                results[i] = pred
            if cache is not None and keys is not None:
                cache.put_many(
                    [(keys[i], fingerprint, _cache_value(pred), texts[i]) for i, pred in zip(todo, fresh, strict=True)],
                    defer=True,
                )
        out: list[Prediction] = []
        for i, answered in enumerate(results):
            if answered is None:
                source = results[first[ident[i]]]
                if source is None:  # unreachable: every distinct text was answered above
                    raise RuntimeError(f"texts[{i}] got no prediction")
                answered = replace(source, scores=dict(source.scores))
            out.append(answered)
        self._record(hits, len(texts) - len(distinct), len(todo), out)
        return out

    def _run(self, encoded: Encoded, start: float, tokenize_start: float) -> list[Prediction]:
        model_start = time.perf_counter()
        logits = self._backend.run(encoded.input_ids, encoded.attention_mask)
        if self.timing_hook is not None:
            self.timing_hook(model_start - tokenize_start, time.perf_counter() - model_start, len(encoded.input_ids))
        n, k = len(encoded.input_ids), len(self.labels)
        if logits.shape != (n, k):
            raise BundleInvalid(
                f"the {self.backend_name} model returned logits of shape {logits.shape}, expected ({n}, {k}) "
                f"for labels {list(self.labels)}; rebuild the bundle"
            )
        labels = self.labels
        latency_ms = (time.perf_counter() - start) * 1000.0 / n
        out = []
        # Python floats, not numpy: for a handful of labels, numpy's per-call cost is most of the work.
        for row, truncated in zip(logits.tolist(), encoded.truncated, strict=True):
            probs = _softmax_row(row)
            best = row.index(max(row))
            out.append(
                Prediction(
                    label=labels[best],
                    score=probs[best],
                    scores=dict(zip(labels, probs, strict=True)),
                    cached=False,
                    latency_ms=latency_ms,
                    truncated=truncated,
                )
            )
        return out


def _softmax_row(logits: list[float]) -> list[float]:
    # float64, shifted by the maximum so that exp cannot overflow.
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _monitoring_reference(manifest: Manifest) -> Reference | None:
    data = manifest.raw.get("monitoring")
    if data is None:
        return None  # a bundle built before monitoring: no drift, the rest of the monitor works
    try:
        return Reference.from_dict(data, manifest.labels)
    except InputError as exc:
        logger.warning("ignoring the bundle's monitoring reference: %s", exc)
        return None


def _cache_value(pred: Prediction) -> dict[str, object]:
    # The scores are a copy: the caller owns (and may change) pred.scores before the deferred write.
    return {"label": pred.label, "score": pred.score, "scores": dict(pred.scores), "truncated": pred.truncated}


def _from_cache(value: dict[str, object] | None, labels: tuple[str, ...], latency_ms: float) -> Prediction | None:
    # The file may be shared with other clients; anything not shaped like our value counts as a miss.
    if value is None:
        return None
    try:
        label, score, scores, truncated = value["label"], value["score"], value["scores"], value["truncated"]
    except (KeyError, TypeError):
        return None
    if label not in labels or not isinstance(scores, dict) or set(scores) != set(labels):
        return None
    return Prediction(
        label=str(label),
        score=float(score),  # type: ignore[arg-type]
        scores={name: float(scores[name]) for name in labels},
        cached=True,
        latency_ms=latency_ms,
        truncated=bool(truncated),
    )


def _pick_backend(manifest: Manifest, backend: BackendName) -> BackendName:
    if backend is not BackendName.AUTO:
        return backend
    has_onnx = manifest.artifact_for("onnx") is not None
    has_tflite = manifest.artifact_for("tflite") is not None
    if has_onnx and onnxruntime_available():
        return BackendName.ONNX
    if has_tflite and litert_available():
        return BackendName.TFLITE
    # Neither usable: name the one the bundle has, so that its message gives the right pip command.
    return BackendName.ONNX if has_onnx else BackendName.TFLITE


def load(
    bundle_dir: str | os.PathLike[str],
    backend: BackendName | str = BackendName.AUTO,
    threads: int | None = None,
    cache: ResultStore | str | os.PathLike[str] | bool | None = None,
    monitor_window: int = DEFAULT_WINDOW,
) -> TextClassifier | TextEmbedder:
    """Verify a bundle and load its tokenizer and model: a classifier, or an embedder for an ``embed`` bundle.

    :func:`load_classifier` and :func:`load_embedder` do the same and refuse the other kind of bundle (and give
    a type checker the precise type).

    Args:
        bundle_dir: The bundle directory (``manifest.json``, models, ``tokenizer.json``).
        backend: ``"auto"`` (ONNX Runtime when installed, else LiteRT), ``"onnx"`` or ``"tflite"``.
        threads: Inference threads; None lets the backend decide.
        cache: Result cache: None or True for the default file
            (:func:`~edgeopt_runtime.cache.default_cache_path`), False for none, a path or ``sqlite:PATH`` for
            that file, ``redis://HOST:PORT/DB`` or ``memcached://HOST:PORT`` for a shared server (see
            :func:`open_cache`), or a cache object (:class:`~edgeopt_runtime.cache.ResultCache`,
            :class:`~edgeopt_runtime.remote_cache.RedisCache`, ...). Entries of other model fingerprints are
            purged from an SQLite cache on load.
        monitor_window: Latest predictions :meth:`TextClassifier.monitor` summarizes (classifiers only).

    Returns:
        A ready :class:`TextClassifier` or :class:`~edgeopt_runtime.embedder.TextEmbedder`.

    Raises:
        BundleInvalid: The bundle fails verification or its model does not match the manifest.
        BackendUnavailable: The backend is not installed, or the bundle has no artifact for it.
        InputError: ``backend``, ``threads`` or ``monitor_window`` is not a valid choice.
    """
    return _load(bundle_dir, backend, threads, cache, monitor_window, TASKS)


def load_classifier(
    bundle_dir: str | os.PathLike[str],
    backend: BackendName | str = BackendName.AUTO,
    threads: int | None = None,
    cache: ResultStore | str | os.PathLike[str] | bool | None = None,
    monitor_window: int = DEFAULT_WINDOW,
) -> TextClassifier:
    """:func:`load` for a ``text-classification`` bundle; another task raises :class:`BundleInvalid`."""
    model = _load(bundle_dir, backend, threads, cache, monitor_window, (TASK_TEXT_CLASSIFICATION,))
    if not isinstance(model, TextClassifier):  # unreachable: _load checked the task
        raise BundleInvalid(f"bundle {bundle_dir} is not a classifier")
    return model


def load_embedder(
    bundle_dir: str | os.PathLike[str],
    backend: BackendName | str = BackendName.AUTO,
    threads: int | None = None,
    cache: ResultStore | str | os.PathLike[str] | bool | None = None,
) -> TextEmbedder:
    """:func:`load` for an ``embed`` bundle; another task raises :class:`BundleInvalid`."""
    model = _load(bundle_dir, backend, threads, cache, DEFAULT_WINDOW, (TASK_EMBED,))
    if not isinstance(model, TextEmbedder):  # unreachable: _load checked the task
        raise BundleInvalid(f"bundle {bundle_dir} is not an embedder")
    return model


def _load(
    bundle_dir: str | os.PathLike[str],
    backend: BackendName | str,
    threads: int | None,
    cache: ResultStore | str | os.PathLike[str] | bool | None,
    monitor_window: int,
    tasks: tuple[str, ...],
) -> TextClassifier | TextEmbedder:
    if isinstance(monitor_window, bool) or not isinstance(monitor_window, int) or monitor_window < 1:
        raise InputError(f"monitor_window {monitor_window!r} must be a positive integer")
    try:
        choice = BackendName(backend)
    except ValueError:
        choices = ", ".join(b.value for b in BackendName)
        raise InputError(f"backend {backend!r} is not one of: {choices}") from None
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads {threads!r} must be a positive integer or None")
    manifest = verify_bundle(bundle_dir)
    if manifest.task not in tasks:
        wanted = " or ".join(repr(t) for t in tasks)
        if manifest.task == TASK_EMBED:
            fix = "embed with it: edgeopt_runtime.load_embedder() or `edgeopt-runtime embed`"
        elif manifest.task in TASKS:
            fix = "classify with it: edgeopt_runtime.load_classifier() or `edgeopt-runtime predict`"
        else:
            fix = "upgrade edgeopt-runtime or rebuild the bundle"
        raise BundleInvalid(f"bundle {bundle_dir} has task {manifest.task!r}, not {wanted}; {fix}")
    choice = _pick_backend(manifest, choice)
    found = manifest.artifact_for(choice.value)
    if found is None:
        have = ", ".join(sorted({a.format for a in manifest.artifacts.values()})) or "none"
        raise BackendUnavailable(
            f"bundle {bundle_dir} has no {choice.value} model (it has: {have}); choose another --backend"
        )
    name, artifact = found
    path = safe_bundle_path(Path(bundle_dir), name)
    model: Backend
    if choice is BackendName.ONNX:
        model = OnnxBackend(
            path, threads, output_quantization=artifact.output_quantization, seq_len=manifest.max_seq_len
        )
    else:
        model = TfliteBackend(path, threads, seq_len=manifest.max_seq_len)
    tokenizer = TextTokenizer.from_bundle(manifest, bundle_dir)
    result_cache = _open_cache(cache)
    if result_cache is not None:
        result_cache.keep_only(manifest.fingerprint)
    logger.debug("loaded %s with %s (%s)", bundle_dir, choice.value, name)
    if manifest.task == TASK_EMBED:
        return TextEmbedder(manifest, tokenizer, model, result_cache)
    return TextClassifier(manifest, tokenizer, model, result_cache, monitor_window)


def _open_cache(cache: ResultStore | str | os.PathLike[str] | bool | None) -> ResultStore | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        return ResultCache()
    if isinstance(cache, str | os.PathLike):
        return open_cache(cache)
    if isinstance(cache, ResultCache) or callable(getattr(cache, "key_function", None)):
        return cache
    raise InputError(f"cache {cache!r} must be None, True, False, a path, a cache URL or a ResultCache")


def open_cache(spec: str | os.PathLike[str]) -> ResultStore:
    """Open the result cache that ``spec`` names.

    Args:
        spec: ``sqlite:PATH`` or a plain path (an SQLite file on this box), ``redis://HOST[:PORT][/DB]``, or
            ``memcached://HOST[:PORT]`` (a server shared by many processes:
            :mod:`edgeopt_runtime.remote_cache`, needs ``edgeopt-runtime[serve]``).

    Raises:
        CacheError: A URL of another scheme, or a server cache that cannot be made (its client not installed).
    """
    text = os.fspath(spec)
    if text.startswith("sqlite:"):
        return ResultCache(text.removeprefix("sqlite:").removeprefix("//") or None)
    if "://" in text:
        from edgeopt_runtime.remote_cache import open_network_cache

        return open_network_cache(text)
    return ResultCache(text)
