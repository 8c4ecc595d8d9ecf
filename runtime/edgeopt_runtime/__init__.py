"""edgeopt-runtime: verify an edgeopt bundle and classify or embed text with ONNX Runtime or LiteRT.

Importing this package is cheap: onnxruntime and LiteRT are imported only when a backend is loaded.

Example:
    >>> import edgeopt_runtime
    >>> clf = edgeopt_runtime.load("bundles/spam")          # doctest: +SKIP
    >>> clf.predict("WIN a FREE prize now").label           # doctest: +SKIP
    'spam'
"""

from __future__ import annotations

from edgeopt_runtime._version import __version__
from edgeopt_runtime.backends import BackendName, OnnxBackend, TfliteBackend
from edgeopt_runtime.cache import CacheStats, CacheWarning, ResultCache, ResultStore
from edgeopt_runtime.embedder import EmbedderStats, Embedding, TextEmbedder
from edgeopt_runtime.errors import (
    BackendUnavailable,
    BundleInvalid,
    CacheError,
    EdgeoptRuntimeError,
    InputError,
)
from edgeopt_runtime.index import Index, IndexInvalid, IndexMismatch, IndexStats
from edgeopt_runtime.manifest import EmbeddingSpec, Manifest, read_manifest, verify_bundle
from edgeopt_runtime.model import (
    ClassifierStats,
    Prediction,
    TextClassifier,
    load,
    load_classifier,
    load_embedder,
    open_cache,
)
from edgeopt_runtime.monitor import Drift, MonitorReport, Reference
from edgeopt_runtime.remote_cache import MemcachedCache, NetworkCacheStats, RedisCache
from edgeopt_runtime.tokenizer import Encoded, TextTokenizer

__all__ = [
    "__version__",
    "load",
    "load_classifier",
    "load_embedder",
    "TextClassifier",
    "TextEmbedder",
    "Embedding",
    "EmbedderStats",
    "EmbeddingSpec",
    "Index",
    "IndexStats",
    "IndexInvalid",
    "IndexMismatch",
    "Prediction",
    "ClassifierStats",
    "MonitorReport",
    "Drift",
    "Reference",
    "BackendName",
    "OnnxBackend",
    "TfliteBackend",
    "Manifest",
    "read_manifest",
    "verify_bundle",
    "TextTokenizer",
    "Encoded",
    "ResultCache",
    "ResultStore",
    "RedisCache",
    "MemcachedCache",
    "NetworkCacheStats",
    "open_cache",
    "CacheStats",
    "CacheWarning",
    "EdgeoptRuntimeError",
    "BundleInvalid",
    "BackendUnavailable",
    "InputError",
    "CacheError",
]
