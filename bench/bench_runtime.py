"""Benchmark edgeopt-runtime on the default bundle: cache vs python-diskcache, miss cost, cold start, batching.

Reproduce (from the repository root; the bundle is what `edgeopt build --profile pixel8` writes):

    .venv/bin/python bench/bench_runtime.py bundles/pixel8

It waits (polling every 30 s, up to --wait-s) for BUNDLE/manifest.json, then measures in this one run:
  (a) ResultCache.put / .get vs diskcache.Cache.set / .get: the same N keys (cache keys of the test texts)
      and the same values (real prediction dicts), both caches in one fresh temporary directory, calls
      interleaved key by key (the order alternating) so that load drift hits both alike;
  (b) per backend, the cost of a cache miss: `predict` with the cache on and an unseen key vs the model
      alone (tokenize + backend run) on the same text, interleaved (edgeopt_runtime.bench);
  (c) per backend, cold start (load + verify + first predict) in fresh processes, median of 5, with the import
      time reported apart, and the peak memory those processes add for the bundle;
  (d) per backend, `predict_batch` (chunks of 32) vs a loop of `predict`, texts per second;
  (e) ONNX vs TFLite labels on the whole default test split (edgeopt.data.load_default().test).
Results: bench/results/runtime.json and bench/results/runtime.md; the load average is recorded before and after.
The runtime itself never imports edgeopt; this script does, for the test split only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = Path("bundles/pixel8")
RESULTS = ROOT / "bench" / "results"


def wait_for_bundle(bundle: Path, wait_s: float, poll_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while not (bundle / "manifest.json").is_file():
        if time.monotonic() >= deadline:
            sys.exit(f"bench_runtime: {bundle}/manifest.json did not appear within {wait_s:.0f} s; build it first")
        print(f"waiting for {bundle}/manifest.json ...", flush=True)
        time.sleep(poll_s)


def _summary(ns: list[int]) -> dict[str, float]:
    us = sorted(x / 1000 for x in ns)
    return {
        "p50_us": statistics.median(us),
        "p95_us": us[min(len(us) - 1, round(0.95 * len(us)) - 1)],
        "mean_us": statistics.fmean(us),
        "n": len(us),
    }


def bench_cache(texts: list[str], values: list[dict], fingerprint: str, n: int) -> dict:
    """(a): ResultCache vs diskcache, same keys, values and directory, interleaved."""
    import hashlib

    import diskcache

    from edgeopt_runtime.cache import ResultCache

    # Storage alone: any distinct 64-hex keys (a real key is an HMAC of the token ids; see TextClassifier).
    keys = [hashlib.sha256(f"{fingerprint}\n{texts[i % len(texts)]} #{i}".encode()).hexdigest() for i in range(n)]
    vals = [values[i % len(values)] for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="bench-runtime-cache-") as tmp:
        ours = ResultCache(Path(tmp) / "results.sqlite")
        theirs = diskcache.Cache(str(Path(tmp) / "diskcache"))
        timings: dict[str, list[int]] = {"ours_set": [], "theirs_set": [], "ours_get": [], "theirs_get": []}
        clock = time.perf_counter_ns

        def timed(name: str, fn, *args) -> object:
            start = clock()
            out = fn(*args)
            timings[name].append(clock() - start)
            return out

        for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
            pair = [("ours_set", ours.put, (k, fingerprint, v)), ("theirs_set", theirs.set, (k, v))]
            for name, fn, args in pair if i % 2 else pair[::-1]:
                timed(name, fn, *args)
        wrong = 0
        for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
            pair = [("ours_get", ours.get, (k,)), ("theirs_get", theirs.get, (k,))]
            for name, fn, args in pair if i % 2 else pair[::-1]:
                wrong += timed(name, fn, *args) != v
        stats = ours.stats()
        ours.close()
        theirs.close()
    out = {name: _summary(ns) for name, ns in timings.items()}
    out["wrong_values"] = wrong
    out["ours_entries"] = stats.entries
    out["get_ratio"] = out["ours_get"]["p50_us"] / out["theirs_get"]["p50_us"]
    out["set_ratio"] = out["ours_set"]["p50_us"] / out["theirs_set"]["p50_us"]
    out["diskcache_version"] = diskcache.__version__
    return out


def agreement(bundle: Path, texts: list[str], labels: list[str], backends: list[str]) -> dict:
    """(e): labels of every backend on the test split, their agreement and accuracy."""
    from edgeopt_runtime import load

    got = {}
    for name in backends:
        with load(bundle, backend=name, threads=1, cache=False) as clf:
            got[name] = [p.label for i in range(0, len(texts), 64) for p in clf.predict_batch(texts[i : i + 64])]
    out: dict = {
        "texts": len(texts),
        "accuracy": {b: sum(a == y for a, y in zip(got[b], labels, strict=True)) / len(texts) for b in got},
    }
    if len(backends) == 2:
        a, b = (got[x] for x in backends)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        out.update(agree=same, disagree=len(texts) - same, agreement=same / len(texts))
    return out


def write_markdown(result: dict, path: Path) -> None:
    c = result["cache"]
    lines = [
        "# edgeopt-runtime benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Bundle: `{result['bundle']}` (fingerprint `{result['fingerprint'][:12]}`, max_seq_len "
        f"{result['max_seq_len']}); {result['machine']}; load average before {result['load_before']}, "
        f"after {result['load_after']}; threads 1.",
        "",
        f"## (a) Result cache vs python-diskcache {c['diskcache_version']} (N = {c['ours_set']['n']}, same keys, "
        "values and disk)",
        "",
        "| operation | ResultCache p50 us | diskcache p50 us | ratio | ResultCache p95 us | diskcache p95 us |",
        "|---|---|---|---|---|---|",
    ]
    for op, ours, theirs, ratio in (
        ("get (hit)", "ours_get", "theirs_get", "get_ratio"),
        ("set", "ours_set", "theirs_set", "set_ratio"),
    ):
        lines.append(
            f"| {op} | {c[ours]['p50_us']:.1f} | {c[theirs]['p50_us']:.1f} | {c[ratio]:.2f} | "
            f"{c[ours]['p95_us']:.1f} | {c[theirs]['p95_us']:.1f} |"
        )
    lines += [
        "",
        f"Values read back wrong: {c['wrong_values']}. Target: ratio <= 1.00 for both.",
        "",
        "## (b-d) Per backend (texts from the default test split)",
        "",
        "| backend | import ms | cold start ms | bundle RAM MiB | direct p50 ms | miss p50 ms | miss overhead | "
        "hit p50 ms | uncached p50 ms | loop texts/s | batch(32) texts/s | batch / loop |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["backends"]:
        ram = r["cold"]["bundle_rss_mb"]
        lines.append(
            f"| {r['backend']} | {r['cold']['import_ms']:.0f} | {r['cold']['cold_start_ms']:.1f} | "
            f"{'n/a' if ram is None else f'{ram:.1f}'} | "
            f"{r['direct']['p50_ms']:.3f} | {r['miss']['p50_ms']:.3f} | {r['miss_overhead']:+.1%} | "
            f"{r['hit']['p50_ms']:.3f} | {r['uncached']['p50_ms']:.3f} | {r['loop_texts_per_s']:.0f} | "
            f"{r['batch_texts_per_s']:.0f} | {r['batch_speedup']:.2f} |"
        )
    lines += [
        "",
        "Targets: miss overhead <= +10% over direct (tokenize + run); cold start (load + verify + first "
        "predict, import excluded) <= 200 ms, aim 100. Bundle RAM: peak resident memory after load + first "
        "predict minus that after the imports, same fresh processes (median).",
        "",
        "## (e) ONNX vs TFLite on the default test split",
        "",
    ]
    e = result["agreement"]
    acc = ", ".join(f"{b} {a:.4f}" for b, a in e["accuracy"].items())
    if "agreement" in e:
        lines.append(
            f"{e['texts']} texts: same label on {e['agree']} ({e['agreement']:.2%}), different on "
            f"{e['disagree']}. Accuracy: {acc}."
        )
    else:
        lines.append(f"{e['texts']} texts; accuracy: {acc}.")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--wait-s", type=float, default=1200.0, help="wait this long for the bundle")
    parser.add_argument("--cache-n", type=int, default=2000, help="keys for (a)")
    parser.add_argument("--n", type=int, default=300, help="timed calls per measurement for (b) and (d)")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    wait_for_bundle(args.bundle, args.wait_s)

    from edgeopt.data import load_default
    from edgeopt_runtime import load
    from edgeopt_runtime.bench import available_backends, bench_backend

    test = load_default().test
    texts, labels = list(test.texts), [test.label_names[y] for y in test.labels]
    load_before = [round(x, 2) for x in os.getloadavg()]
    with load(args.bundle, cache=False) as clf:
        manifest = clf.manifest
        values = [
            {"label": p.label, "score": p.score, "scores": p.scores, "truncated": p.truncated}
            for p in clf.predict_batch(texts[:200])
        ]
    backends = available_backends(args.bundle)
    print("(a) cache vs diskcache ...", flush=True)
    cache = bench_cache(texts, values, manifest.fingerprint, args.cache_n)
    print(f"    get p50 ratio {cache['get_ratio']:.2f}, set p50 ratio {cache['set_ratio']:.2f}", flush=True)
    reports = []
    for name in backends:
        print(f"(b-d) {name} ...", flush=True)
        r = bench_backend(args.bundle, name, texts, n=args.n, threads=1, cold_runs=args.cold_runs)
        print(
            f"    miss overhead {r.miss_overhead:+.1%}, cold start {r.cold.cold_start_ms:.1f} ms "
            f"(import {r.cold.import_ms:.0f} ms), batch/loop x{r.batch_speedup:.2f}",
            flush=True,
        )
        reports.append(r.to_dict())
    print("(e) agreement ...", flush=True)
    agree = agreement(args.bundle, texts, labels, backends)
    print(f"    {agree}", flush=True)
    result = {
        "command": "python bench/bench_runtime.py " + " ".join(sys.argv[1:]),
        "bundle": str(args.bundle),
        "fingerprint": manifest.fingerprint,
        "max_seq_len": manifest.max_seq_len,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cache": cache,
        "backends": reports,
        "agreement": agree,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
