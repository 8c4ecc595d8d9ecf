"""Search latency of edgeopt_runtime.Index at 10k and 100k vectors, beside its baseline in the same run.

Reproduce (from the repository root; the bundle is what `edgeopt build --task embed --profile pixel8` writes):

    .venv/bin/python bench/bench_index.py bundles/pixel8-embed

For each set of vectors (10,000 and 100,000 random unit vectors of the bundle's width: search cost does not depend
on what the vectors mean; and 10,000 fortune quotes embedded by the bundle, where an approximate index's recall is
what it would be on an app's texts) and each stored precision (int8, float16), in one process:
  - `add_vectors` time per 1,000 vectors, the file size, and the first search after opening the file (it reads
    every vector into memory);
  - p50/p95 of `Index.search(vector, k=10)` over 200 queries, against the baseline of the same exact search on a
    float32 numpy matrix already in memory (`matrix @ q` + argpartition), interleaved query by query;
  - recall@10 of the index's answers against the float32 baseline's (what int8/float16 storage costs);
  - the same for usearch's HNSW graph (the approximate index the runtime would use if it paid), built from the same
    vectors at the same precision on one thread, saved and restored from a file.
Numpy is set to one thread (OPENBLAS/OMP_NUM_THREADS=1), as a phone app's background search would run.
Results: bench/results/index.json and bench/results/index.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SIZES = (10_000, 100_000)
REAL_SIZE = 10_000
QUERIES = 200
K = 10


def _percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": statistics.median(ordered), "p95_ms": ordered[round(0.95 * (len(ordered) - 1))]}


def run(bundle: Path) -> dict:
    import edgeopt_runtime

    embedder = edgeopt_runtime.load_embedder(bundle, backend="onnx", threads=1, cache=False)
    rows = []
    for kind, vectors, queries in _datasets(embedder):
        size = len(vectors)
        ids = [f"v{i:06d}" for i in range(size)]
        for precision in ("int8", "float16"):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bench.index"
                with edgeopt_runtime.Index(path, embedder, precision=precision) as index:
                    start = time.perf_counter()
                    for chunk in range(0, size, 10_000):
                        index.add_vectors(ids[chunk : chunk + 10_000], vectors[chunk : chunk + 10_000])
                    add_ms = (time.perf_counter() - start) * 1000.0
                file_bytes = path.stat().st_size
                with edgeopt_runtime.Index(path, embedder) as index:
                    start = time.perf_counter()
                    index.search(queries[0], k=K)
                    first_ms = (time.perf_counter() - start) * 1000.0
                    ours, base, recall = _against_numpy(
                        # An id is "v" + its row: the row is read back from it at no cost.
                        lambda q: {int(h[1:]) for h, _ in index.search(q, k=K)},
                        vectors,
                        queries,
                    )
            exact = "edgeopt_runtime.Index (exact)"
            for row in (
                _row(exact, vectors, precision, file_bytes, add_ms, first_ms, ours, base, recall),
                _usearch_row(vectors, queries, precision),
            ):
                row["vectors_are"] = kind
                rows.append(row)
                print(json.dumps(row), flush=True)
    embedder.close()
    return {
        "bundle": str(bundle),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy on 1 thread",
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def _datasets(embedder: object) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, vectors, queries): random unit vectors at each size (search cost does not depend on what vectors
    mean, but an approximate index's recall does: random 384-dim vectors are its worst case), then 10,000 real
    ones, the shipped fortune quotes embedded by the bundle, queried by 200 other quotes."""
    from edgeopt.data import fortune_quotes

    rng = np.random.default_rng(0)
    dim = embedder.dim  # type: ignore[attr-defined]
    found = []
    for size in SIZES:
        vectors = rng.normal(size=(size, dim)).astype(np.float32)
        queries = rng.normal(size=(QUERIES, dim)).astype(np.float32)
        found.append(("random", vectors / np.linalg.norm(vectors, axis=1, keepdims=True), queries))
    texts = sorted({" ".join(q["text"].split()) for q in fortune_quotes()})
    chosen = [texts[i] for i in rng.permutation(len(texts))[: REAL_SIZE + QUERIES]]
    embedded = np.asarray(embedder.embed(chosen), dtype=np.float32)  # type: ignore[attr-defined]
    found.append(("fortune quotes, embedded by the bundle", embedded[:REAL_SIZE], embedded[REAL_SIZE:]))
    return [(kind, v, q / np.linalg.norm(q, axis=1, keepdims=True)) for kind, v, q in found]


def _against_numpy(
    search: Callable[[np.ndarray], set[int]], vectors: np.ndarray, queries: np.ndarray
) -> tuple[list[float], list[float], list[float]]:
    """Time ``search`` (a query -> the rows of its top K) query by query, interleaved with the baseline (exact
    float32 search in numpy: ``vectors @ q`` + argpartition), alternating which goes first; also the recall@K of
    ``search``'s rows against the baseline's. Returns (search ms, baseline ms, recall) per query."""
    ours: list[float] = []
    base: list[float] = []
    recall: list[float] = []
    for i, q in enumerate(queries):
        found: dict[int, set[int]] = {}
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            if which == 0:
                found[0] = search(q)
            else:
                found[1] = {int(j) for j in np.argpartition(-(vectors @ q), K - 1)[:K]}
            (ours if which == 0 else base).append((time.perf_counter() - start) * 1000.0)
        recall.append(len(found[0] & found[1]) / K)
    return ours, base, recall


def _usearch_row(vectors: np.ndarray, queries: np.ndarray, precision: str) -> dict:
    """The approximate alternative: usearch's HNSW graph (default connectivity and expansion), on one thread."""
    from usearch.index import Index as HnswIndex

    size, dim = vectors.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.usearch"
        index = HnswIndex(ndim=dim, metric="cos", dtype={"int8": "i8", "float16": "f16"}[precision])
        start = time.perf_counter()
        index.add(np.arange(size), vectors, threads=1)
        add_ms = (time.perf_counter() - start) * 1000.0
        index.save(str(path))
        file_bytes = path.stat().st_size
        start = time.perf_counter()
        index = HnswIndex.restore(str(path))
        index.search(queries[0], K, threads=1)
        first_ms = (time.perf_counter() - start) * 1000.0
        ours, base, recall = _against_numpy(
            lambda q: {int(key) for key in index.search(q, K, threads=1).keys}, vectors, queries
        )
    import usearch

    engine = f"usearch {usearch.__version__} HNSW (approximate)"
    return _row(engine, vectors, precision, file_bytes, add_ms, first_ms, ours, base, recall)


def _row(
    engine: str,
    vectors: np.ndarray,
    precision: str,
    file_bytes: int,
    add_ms: float,
    first_ms: float,
    ours: list[float],
    base: list[float],
    recall: list[float],
) -> dict:
    return {
        "vectors": len(vectors),
        "dim": vectors.shape[1],
        "engine": engine,
        "precision": precision,
        "file_mb": file_bytes / 1e6,
        "add_ms_per_1000": add_ms / (len(vectors) / 1000),
        "first_search_ms": first_ms,
        "index": _percentiles(ours),
        "numpy_float32_in_memory": _percentiles(base),
        "recall_at_10_vs_float32": statistics.fmean(recall),
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# edgeopt_runtime.Index (exact) and usearch HNSW (approximate): search latency (k=10), against numpy on "
        "a float32 matrix in memory",
        "",
        f"`.venv/bin/python bench/bench_index.py {result['bundle']}` ({result['machine']}; load average "
        f"{result['load_average'][0]:.2f}). Random unit vectors of the bundle's width, or fortune quotes it "
        "embedded; 200 queries, interleaved.",
        "",
        "| vectors | are | engine | stored as | file MB | add ms / 1k | first search ms (reads all) | search p50 ms "
        "| p95 ms | numpy float32 p50 ms | x numpy | recall@10 vs float32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ours, base = r["index"], r["numpy_float32_in_memory"]
        lines.append(
            f"| {r['vectors']:,} | {r.get('vectors_are', 'random')} | "
            f"{r.get('engine', 'edgeopt_runtime.Index (exact)')} | {r['precision']} | "
            f"{r['file_mb']:.1f} | {r['add_ms_per_1000']:.1f} | "
            f"{r['first_search_ms']:.0f} | {ours['p50_ms']:.2f} | {ours['p95_ms']:.2f} | "
            f"{base['p50_ms']:.2f} | {ours['p50_ms'] / base['p50_ms']:.2f} | {r['recall_at_10_vs_float32']:.3f} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()
    result = run(args.bundle)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "index.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, RESULTS / "index.md")
    print((RESULTS / "index.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
