"""Measure a bundle on this machine: cold start, latency, cache hit/miss cost, batch throughput.

This is what ``edgeopt-runtime bench BUNDLE`` runs. Every number comes from this process except the cold
start, which needs a fresh interpreter each time: :func:`cold_start` runs ``python -c`` children and takes
the median.

Definitions (all wall time, ``time.perf_counter``):

* **import**: importing ``edgeopt_runtime``, ``tokenizers`` and the backend package in a fresh process.
* **cold start**: ``load()`` (verify every file, load tokenizer and model, open a new cache file) plus the
  first ``predict()``, in that fresh process, after the imports.
* **memory**: that process's resident set size after the imports, and its peak during ``load()`` and the
  first ``predict()``; their difference is what the bundle costs in RAM (model, tokenizer, backend buffers,
  cache connection).
* **direct**: ``tokenizer.encode(text)`` + ``backend.run(...)``: the model with no runtime around it.
* **uncached**: ``predict(text)`` with the cache off.
* **miss**: ``predict(text)`` with the cache on and a key it has never seen (lookup + model + store).
* **hit**: ``predict(text)`` again for the same text.
* **loop / batch**: texts per second of ``predict`` in a loop vs ``predict_batch`` in chunks of
  ``batch_size``, cache off, distinct texts.

Direct, uncached and miss calls are interleaved text by text, their order rotating from one text to the
next, so that drift in machine load and warm CPU caches favour none of the three.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeopt_runtime.backends import BackendName, litert_available, onnxruntime_available
from edgeopt_runtime.cache import ResultCache
from edgeopt_runtime.errors import BackendUnavailable, InputError
from edgeopt_runtime.manifest import verify_bundle

__all__ = [
    "SAMPLE_TEXTS",
    "Latency",
    "ColdStart",
    "BackendReport",
    "available_backends",
    "cold_start",
    "bench_backend",
    "unique_texts",
]

# Short and long, ham-like and spam-like: enough variety for tokenization cost to be realistic.
SAMPLE_TEXTS: tuple[str, ...] = (
    "Hi team, the meeting moved to 3pm tomorrow; the agenda is attached.",
    "WIN a FREE cruise now!!! Click here to claim your prize before midnight.",
    "Can you send me the report from last week? Thanks.",
    "URGENT: your account has been suspended, verify your password at this link.",
    "Lunch on Friday? The new place on the corner has good soup.",
    "Cheap meds online, no prescription needed, discreet shipping worldwide.",
    "The build failed on the release branch again; I think the new test is flaky. "
    "Could someone look at the log before we tag the release? I attached the last three runs and the "
    "diff of the configuration that changed on Monday. " * 3,
    "Dear friend, I am a prince and need your help to transfer ten million dollars. "
    "You will receive a generous share for your trouble. Reply with your bank details. " * 4,
)

_COLD_START_CODE = r"""
import json, sys, time
try:
    import resource
except ImportError:  # not on Windows
    resource = None

def memory_mb():
    # (resident now, peak resident) in MiB. Linux: /proc, whose peak can be reset (below); elsewhere the
    # peak of the whole process from getrusage.
    try:
        with open("/proc/self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        if resource is None:
            return None, None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak /= 2**20 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return peak, peak

def reset_peak():
    # Linux >= 4.0: the peak restarts from the current RSS, so that the imports' own peak does not hide the
    # bundle's.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

t0 = time.perf_counter()
import edgeopt_runtime, tokenizers
if sys.argv[2] == "onnx":
    import onnxruntime
else:
    try:
        import ai_edge_litert.interpreter
    except ImportError:
        import tflite_runtime.interpreter
t1 = time.perf_counter()
rss1 = memory_mb()[0]
reset_peak()
t_load = time.perf_counter()
clf = edgeopt_runtime.load(sys.argv[1], backend=sys.argv[2], threads=int(sys.argv[3]) or None, cache=sys.argv[4])
if isinstance(clf, edgeopt_runtime.TextEmbedder):
    clf.embed_one(sys.argv[5])
else:
    clf.predict(sys.argv[5])
t2 = time.perf_counter()
peak = memory_mb()[1]
clf.close()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "cold_start_ms": (t2 - t_load) * 1e3, "import_rss_mb": rss1,
                  "peak_rss_mb": peak}))
"""


@dataclass(frozen=True)
class Latency:
    """Percentiles of a list of timings, in milliseconds.

    Attributes:
        p50_ms: Median.
        p95_ms: 95th percentile (nearest rank).
        mean_ms: Mean.
        n: Number of timings.
    """

    p50_ms: float
    p95_ms: float
    mean_ms: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarize timings given in seconds."""
        if not seconds:
            raise InputError("no timings to summarize; pass at least one")
        ordered = sorted(seconds)
        p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
        return cls(
            p50_ms=statistics.median(ordered) * 1e3,
            p95_ms=p95 * 1e3,
            mean_ms=statistics.fmean(ordered) * 1e3,
            n=len(ordered),
        )


@dataclass(frozen=True)
class ColdStart:
    """Median over fresh processes.

    Attributes:
        import_ms: Importing the runtime, ``tokenizers`` and the backend package.
        cold_start_ms: ``load()`` + first ``predict()`` after the imports.
        runs: Number of processes.
        import_rss_mb: Resident memory of the process after the imports (MiB); None where the platform does
            not report it.
        peak_rss_mb: Peak resident memory during ``load()`` + first ``predict()`` (MiB; on Linux the peak is
            reset after the imports, elsewhere it is the whole process's).
    """

    import_ms: float
    cold_start_ms: float
    runs: int
    import_rss_mb: float | None = None
    peak_rss_mb: float | None = None

    @property
    def bundle_rss_mb(self) -> float | None:
        """Memory the bundle adds at its peak: ``peak_rss_mb - import_rss_mb`` (model, tokenizer, buffers)."""
        if self.import_rss_mb is None or self.peak_rss_mb is None:
            return None
        return self.peak_rss_mb - self.import_rss_mb

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, ``bundle_rss_mb`` included."""
        return {**self.__dict__, "bundle_rss_mb": self.bundle_rss_mb}


@dataclass(frozen=True)
class BackendReport:
    """Everything measured for one backend (see the module docstring for definitions).

    Attributes:
        backend: ``"onnx"`` or ``"tflite"``.
        threads: Inference threads used.
        cold: Import and cold start, fresh processes.
        direct: Tokenize + backend run.
        uncached: ``predict`` with the cache off.
        miss: ``predict`` with the cache on, unseen key.
        hit: ``predict`` with the cache on, seen key.
        loop_texts_per_s: ``predict`` in a loop.
        batch_texts_per_s: ``predict_batch`` in chunks of ``batch_size``.
        batch_size: Chunk size for ``predict_batch``.
    """

    backend: str
    threads: int
    cold: ColdStart
    direct: Latency
    uncached: Latency
    miss: Latency
    hit: Latency
    loop_texts_per_s: float
    batch_texts_per_s: float
    batch_size: int

    @property
    def miss_overhead(self) -> float:
        """Median miss latency over median direct latency, minus 1 (0.05 = 5% slower)."""
        return self.miss.p50_ms / self.direct.p50_ms - 1.0

    @property
    def batch_speedup(self) -> float:
        """Batch throughput over loop throughput."""
        return self.batch_texts_per_s / self.loop_texts_per_s

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, derived ratios included."""
        out: dict[str, Any] = {"backend": self.backend, "threads": self.threads}
        out["cold"] = self.cold.to_dict()
        for name in ("direct", "uncached", "miss", "hit"):
            out[name] = dict(getattr(self, name).__dict__)
        out.update(
            loop_texts_per_s=self.loop_texts_per_s,
            batch_texts_per_s=self.batch_texts_per_s,
            batch_size=self.batch_size,
            miss_overhead=self.miss_overhead,
            batch_speedup=self.batch_speedup,
        )
        return out


def available_backends(bundle_dir: str | os.PathLike[str]) -> list[str]:
    """Return the backends that the bundle has a model for and that are installed, ONNX first."""
    manifest = verify_bundle(bundle_dir)
    out = []
    if manifest.artifact_for("onnx") is not None and onnxruntime_available():
        out.append(BackendName.ONNX.value)
    if manifest.artifact_for("tflite") is not None and litert_available():
        out.append(BackendName.TFLITE.value)
    if not out:
        raise BackendUnavailable(
            f"no backend can run {bundle_dir}; pip install edgeopt-runtime[onnx] or edgeopt-runtime[tflite]"
        )
    return out


def unique_texts(texts: Sequence[str], n: int) -> list[str]:
    """Return ``n`` distinct texts made from ``texts`` (a numbered suffix once they run out)."""
    if not texts:
        raise InputError("no texts to benchmark with; pass at least one")
    return [t if i < len(texts) else f"{t} (ref {i})" for i, t in enumerate(texts[i % len(texts)] for i in range(n))]


def cold_start(
    bundle_dir: str | os.PathLike[str], backend: str, *, runs: int = 5, threads: int = 1, text: str = "hello"
) -> ColdStart:
    """Time import and ``load()`` + first ``predict()`` in ``runs`` fresh Python processes; return medians.

    Each process also reports its peak resident memory after the imports and after the first prediction.

    Each process gets a new, empty cache file, as a first launch of an app would.

    Raises:
        InputError: A child process failed (its last stderr line is in the message).
    """
    imports, colds, import_rss, peak_rss = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as tmp:
        for i in range(runs):
            cache = str(Path(tmp) / f"cold-{i}.sqlite")
            args = [str(bundle_dir), backend, str(threads), cache, text]
            proc = subprocess.run(
                [sys.executable, "-c", _COLD_START_CODE, *args], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise InputError(f"cold-start child for {backend} failed: {last}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            imports.append(got["import_ms"])
            colds.append(got["cold_start_ms"])
            if got["import_rss_mb"] is not None:
                import_rss.append(got["import_rss_mb"])
                peak_rss.append(got["peak_rss_mb"])
    return ColdStart(
        import_ms=statistics.median(imports),
        cold_start_ms=statistics.median(colds),
        runs=runs,
        import_rss_mb=statistics.median(import_rss) if import_rss else None,
        peak_rss_mb=statistics.median(peak_rss) if peak_rss else None,
    )


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_backend(
    bundle_dir: str | os.PathLike[str],
    backend: str,
    texts: Sequence[str] = SAMPLE_TEXTS,
    *,
    n: int = 200,
    threads: int = 1,
    batch_size: int = 32,
    cold_runs: int = 5,
    warmup: int = 10,
) -> BackendReport:
    """Measure one backend on ``n`` distinct texts made from ``texts``.

    Args:
        bundle_dir: The bundle.
        backend: ``"onnx"`` or ``"tflite"``.
        texts: Sample inputs (repeated with a numbered suffix up to ``n``).
        n: Timed calls per measurement.
        threads: Inference threads.
        batch_size: Chunk size for ``predict_batch``.
        cold_runs: Fresh processes for the cold start.
        warmup: Untimed calls before timing.

    Returns:
        The report.
    """
    from edgeopt_runtime.model import TextClassifier, load_classifier

    inputs = unique_texts(texts, n + warmup)
    cold = cold_start(bundle_dir, backend, runs=cold_runs, threads=threads, text=inputs[0])
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as tmp:
        plain = load_classifier(bundle_dir, backend=backend, threads=threads, cache=False)
        tok, model = plain.tokenizer, plain.backend
        # The same tokenizer and model session for all three paths: with separate sessions the interleaving
        # leaves the weights of whichever session ran least recently colder in the CPU caches, which alone
        # made "miss" look ~30% slower than "direct".
        cached = TextClassifier(plain.manifest, tok, model, ResultCache(Path(tmp) / "c.sqlite", ttl_s=None))

        def direct(text: str) -> None:
            enc = tok.encode(text)
            model.run(enc.input_ids, enc.attention_mask)

        for text in inputs[:warmup]:
            direct(text)
            plain.predict(text)
            cached.predict(text)
        timed = inputs[warmup:]
        calls: tuple[tuple[Callable[[str], object], list[float]], ...] = (
            (direct, []),
            (plain.predict, []),
            (cached.predict, []),
        )
        for i, text in enumerate(timed):
            for j in range(3):
                fn, out = calls[(i + j) % 3]
                out.append(_timed(fn, text))
        t_direct, t_plain, t_miss = (out for _, out in calls)
        t_hit = [_timed(cached.predict, text) for text in timed]
        start = time.perf_counter()
        for text in timed:
            plain.predict(text)
        loop_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(timed), batch_size):
            plain.predict_batch(timed[i : i + batch_size])
        batch_s = time.perf_counter() - start
        cached.close()
    return BackendReport(
        backend=backend,
        threads=threads,
        cold=cold,
        direct=Latency.of(t_direct),
        uncached=Latency.of(t_plain),
        miss=Latency.of(t_miss),
        hit=Latency.of(t_hit),
        loop_texts_per_s=len(timed) / loop_s,
        batch_texts_per_s=len(timed) / batch_s,
        batch_size=batch_size,
    )
