"""The ``edgeopt-runtime`` command: a thin argparse layer over the library.

Errors the runtime raises on purpose are printed as one line on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeopt_runtime._version import __version__
from edgeopt_runtime.backends import BackendName
from edgeopt_runtime.errors import CacheError, EdgeoptRuntimeError

__all__ = ["main", "build_parser"]

PROG = "edgeopt-runtime"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Verify edgeopt bundles, classify or embed text with them, search an index."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser("predict", help="classify one or more texts", description="Classify texts with a bundle.")
    predict.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    predict.add_argument("texts", metavar="TEXT", nargs="+", help="text to classify (quote it)")
    predict.add_argument(
        "--backend",
        choices=[b.value for b in BackendName],
        default=BackendName.AUTO.value,
        help="inference backend (default: auto = onnx when onnxruntime is installed, else tflite)",
    )
    predict.add_argument("--threads", type=int, default=None, help="inference threads (default: backend decides)")
    predict.add_argument("--json", action="store_true", help="print a JSON array of predictions")
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--cache", metavar="PATH", default=None, help="result cache file (default: user cache dir)")
    where.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")

    verify = sub.add_parser(
        "verify", help="check a bundle's files against its manifest", description="Verify a bundle."
    )
    verify.add_argument("bundle", metavar="BUNDLE", help="bundle directory")

    bench = sub.add_parser(
        "bench",
        help="measure cold start, latency, cache hit/miss cost and throughput",
        description="Benchmark a bundle on this machine, per backend (see runtime/README.md).",
    )
    bench.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    bench.add_argument(
        "--backend",
        choices=["all", BackendName.ONNX.value, BackendName.TFLITE.value],
        default="all",
        help="backend to measure (default: all that the bundle has and that are installed)",
    )
    bench.add_argument("--threads", type=int, default=1, help="inference threads (default: 1)")
    bench.add_argument("-n", "--n", type=int, default=200, help="timed calls per measurement (default: 200)")
    bench.add_argument("--batch-size", type=int, default=32, help="predict_batch chunk size (default: 32)")
    bench.add_argument("--cold-runs", type=int, default=5, help="fresh processes for the cold start (default: 5)")
    bench.add_argument(
        "--texts", metavar="FILE", default=None, help="UTF-8 file, one sample text per line (default: built in)"
    )
    bench.add_argument("--json", action="store_true", help="print the results as JSON")

    monitor = sub.add_parser(
        "monitor",
        help="summarize a bundle's answers on a file of texts and their drift from the build",
        description="Classify the texts of FILE (e.g. inputs logged in production) and report the label shares, "
        "confidence histogram and drift (PSI) from the reference the build recorded on its test split.",
    )
    monitor.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    monitor.add_argument("texts", metavar="FILE", help="UTF-8 file, one text per line (blank lines skipped)")
    monitor.add_argument(
        "--backend", choices=[b.value for b in BackendName], default=BackendName.AUTO.value, help="inference backend"
    )
    monitor.add_argument("--json", action="store_true", help="print the report as JSON")

    embed = sub.add_parser(
        "embed", help="embed texts with an embed bundle", description="Print each text's unit vector."
    )
    embed.add_argument("bundle", metavar="BUNDLE", help="embed bundle directory")
    embed.add_argument("texts", metavar="TEXT", nargs="+", help="text to embed (quote it)")
    embed.add_argument(
        "--backend", choices=[b.value for b in BackendName], default=BackendName.AUTO.value, help="inference backend"
    )
    embed.add_argument("--json", action="store_true", help="print a JSON array of {text, embedding, cached, ...}")
    embed_where = embed.add_mutually_exclusive_group()
    embed_where.add_argument("--cache", metavar="PATH", default=None, help="result cache file (default: user dir)")
    embed_where.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")

    index = sub.add_parser(
        "index",
        help="add texts to an on-device vector index and search it",
        description="A persistent vector index in one SQLite file, tied to the embed bundle that filled it.",
    )
    index_sub = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    add = index_sub.add_parser("add", help="embed the texts of FILE and store them", description="Add texts.")
    add.add_argument("index", metavar="INDEX", help="index file (created if missing)")
    add.add_argument("bundle", metavar="BUNDLE", help="embed bundle directory")
    add.add_argument("file", metavar="FILE", help="UTF-8 file, one 'ID<TAB>TEXT' per line")
    add.add_argument("--precision", choices=["int8", "float16"], default="int8", help="for a new index (default int8)")
    add.add_argument("--reembed", action="store_true", help="re-embed the index's texts if another model filled it")
    search = index_sub.add_parser("search", help="the nearest stored texts to a query", description="Search.")
    search.add_argument("index", metavar="INDEX", help="index file")
    search.add_argument("bundle", metavar="BUNDLE", help="embed bundle directory (the one that filled the index)")
    search.add_argument("query", metavar="TEXT", help="query text")
    search.add_argument("-k", type=int, default=10, help="results (default 10)")
    search.add_argument("--json", action="store_true", help="print a JSON array of {id, score}")
    remove = index_sub.add_parser("remove", help="delete rows by id", description="Remove rows.")
    remove.add_argument("index", metavar="INDEX", help="index file")
    remove.add_argument("bundle", metavar="BUNDLE", help="embed bundle directory")
    remove.add_argument("ids", metavar="ID", nargs="+", help="row ids")
    stats = index_sub.add_parser("stats", help="what an index file holds", description="Index statistics.")
    stats.add_argument("index", metavar="INDEX", help="index file")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")

    serve = sub.add_parser(
        "serve",
        help="answer HTTP clients with a bundle (needs edgeopt-runtime[serve])",
        description="Serve POST /v1/classify (or /v1/embed), /v1/model, /healthz, /readyz, /metrics and "
        "/openapi.json. SIGTERM finishes in-flight requests, SIGHUP reloads the bundle.",
    )
    serve.add_argument("bundle", metavar="BUNDLE", help="bundle directory (reloaded from this path)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this box only)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1, help="server processes sharing the port (default: 1)")
    serve.add_argument(
        "--cache",
        metavar="URL",
        default=None,
        help="result cache: sqlite:PATH, redis://HOST:PORT/DB, memcached://HOST:PORT or none "
        "(default: the user's SQLite cache file)",
    )
    serve.add_argument("--token-file", metavar="FILE", default=None, help="require 'Authorization: Bearer <token>'")
    serve.add_argument(
        "--backend", choices=[b.value for b in BackendName], default=BackendName.AUTO.value, help="inference backend"
    )
    serve.add_argument(
        "--threads", type=int, default=1, help="inference threads per model call; 0: the backend decides (default: 1)"
    )
    serve.add_argument(
        "--concurrency", type=int, default=None, help="model calls at once per process (default: cores, at most 4)"
    )
    serve.add_argument("--queue-size", type=int, default=32, help="requests that may wait; more get 429 (default: 32)")
    serve.add_argument("--timeout", type=float, default=10.0, help="seconds before a request gets 503 (default: 10)")
    serve.add_argument("--max-texts", type=int, default=64, help="most texts per request (default: 64)")
    serve.add_argument("--max-text-chars", type=int, default=20_000, help="longest text (default: 20000)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest body (default: 1 MiB)")
    serve.add_argument("--log-texts", action="store_true", help="log request texts (off: texts are private)")
    serve.add_argument(
        "--drain", type=float, default=0.0, help="on SIGTERM, seconds of /readyz 503 before closing (default: 0)"
    )

    cache = sub.add_parser("cache", help="inspect or empty the result cache", description="Manage the result cache.")
    cache.add_argument("action", choices=["stats", "clear"], help="stats: print counters and size; clear: empty it")
    cache.add_argument("--cache", metavar="PATH", default=None, help="result cache file (default: user cache dir)")
    cache.add_argument("--json", action="store_true", help="print stats as JSON")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from edgeopt_runtime.model import load_classifier

    cache = False if args.no_cache else args.cache
    with load_classifier(args.bundle, backend=args.backend, threads=args.threads, cache=cache) as classifier:
        predictions = classifier.predict_batch(args.texts)
    if args.json:
        rows = [{"text": text, **p.to_dict()} for text, p in zip(args.texts, predictions, strict=True)]
        print(json.dumps(rows, indent=2))
    else:
        for p in predictions:
            print(f"{p.label}\t{p.score:.4f}" + ("\t(truncated)" if p.truncated else ""))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from edgeopt_runtime.model import load_embedder

    cache = False if args.no_cache else args.cache
    with load_embedder(args.bundle, backend=args.backend, cache=cache) as embedder:
        rows = embedder.embed_details(args.texts)
    if args.json:
        print(json.dumps([{"text": t, **e.to_dict()} for t, e in zip(args.texts, rows, strict=True)]))
    else:
        for e in rows:
            print(" ".join(f"{x:.6f}" for x in e.vector.tolist()))
    return 0


def _read_token(path: str) -> str:
    from edgeopt_runtime.errors import InputError

    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"--token-file {path} does not exist; write a secret to it (one line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--token-file {path} cannot be read ({exc}); give a UTF-8 file with one line") from None
    if not token:
        raise InputError(f"--token-file {path} is empty; write a secret to it (one line)")
    return token


def _serve(args: argparse.Namespace) -> int:
    from edgeopt_runtime.errors import InputError
    from edgeopt_runtime.serve import ServeSettings, serve

    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise InputError(
            "serve needs starlette, uvicorn and prometheus-client: pip install 'edgeopt-runtime[serve]'"
        ) from None
    flags = {
        "max_texts": "--max-texts",
        "max_text_chars": "--max-text-chars",
        "max_body_bytes": "--max-body-bytes",
        "concurrency": "--concurrency",
        "queue_size": "--queue-size",
        "request_timeout_s": "--timeout",
        "drain_s": "--drain",
        "threads": "--threads",
    }
    token = None if args.token_file is None else _read_token(args.token_file)
    try:
        settings = ServeSettings(
            bundle=args.bundle,
            backend=args.backend,
            threads=args.threads or None,
            cache=args.cache,
            token=token,
            max_texts=args.max_texts,
            max_text_chars=args.max_text_chars,
            max_body_bytes=args.max_body_bytes,
            **({} if args.concurrency is None else {"concurrency": args.concurrency}),
            queue_size=args.queue_size,
            request_timeout_s=args.timeout,
            log_texts=args.log_texts,
            drain_s=args.drain,
        )
    except InputError as exc:
        name = str(exc).split(" ", 1)[0]
        raise InputError(str(exc).replace(name, flags.get(name, name), 1)) from None
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"{PROG}: warning: serving on {args.host} without --token-file: anyone who can reach it may use it",
            file=sys.stderr,
        )
    serve(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def _read_id_texts(path: str) -> tuple[list[str], list[str]]:
    from edgeopt_runtime.errors import InputError

    ids, texts = [], []
    for number, line in enumerate(_read_lines(path, "FILE"), start=1):
        item, tab, text = line.partition("\t")
        if not tab or not item.strip() or not text.strip():
            raise InputError(f"FILE {path} line {number}: expected 'ID<TAB>TEXT'; separate the id by one tab")
        ids.append(item.strip())
        texts.append(text)
    return ids, texts


def _index(args: argparse.Namespace) -> int:
    from edgeopt_runtime.index import Index

    if args.index_command == "stats":
        found = Index.stats_of(args.index)
        if args.json:
            print(json.dumps(found.to_dict()))
        else:
            for key, value in found.to_dict().items():
                print(f"{key}\t{value}")
        return 0
    precision = getattr(args, "precision", "int8")
    with Index(args.index, args.bundle, precision=precision, reembed=getattr(args, "reembed", False)) as index:
        if args.index_command == "add":
            ids, texts = _read_id_texts(args.file)
            index.add(ids, texts)
            print(f"added {len(ids)} texts; the index holds {len(index)}")
        elif args.index_command == "remove":
            print(f"removed {index.remove(args.ids)}; the index holds {len(index)}")
        else:
            hits = index.search(args.query, args.k)
            if args.json:
                print(json.dumps([{"id": i, "score": score} for i, score in hits]))
            else:
                for i, score in hits:
                    print(f"{score:.4f}\t{i}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgeopt_runtime.manifest import verify_bundle

    manifest = verify_bundle(args.bundle)
    spec = manifest.embedding
    what = (
        f"labels {', '.join(manifest.labels)}"
        if spec is None
        else f"embedder of {spec.dim} dims ({spec.pooling} pooling)"
    )
    print(
        f"OK {args.bundle}: {len(manifest.files)} files verified, {what}, "
        f"max_seq_len {manifest.max_seq_len}, fingerprint {manifest.fingerprint[:12]}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edgeopt_runtime.bench import SAMPLE_TEXTS, available_backends, bench_backend
    from edgeopt_runtime.errors import InputError

    for name in ("threads", "n", "batch_size", "cold_runs"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be a positive integer")
    texts: tuple[str, ...] = SAMPLE_TEXTS
    if args.texts is not None:
        texts = _read_lines(args.texts, "--texts")
    backends = available_backends(args.bundle) if args.backend == "all" else [args.backend]
    reports = [
        bench_backend(
            args.bundle,
            backend,
            texts,
            n=args.n,
            threads=args.threads,
            batch_size=args.batch_size,
            cold_runs=args.cold_runs,
        )
        for backend in backends
    ]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
        return 0
    print(f"{'backend':<8} {'metric':<26} {'p50 ms':>9} {'p95 ms':>9}")
    for r in reports:
        rows = [
            ("import (fresh process)", r.cold.import_ms, None),
            ("cold start: load+predict", r.cold.cold_start_ms, None),
            ("direct: tokenize+run", r.direct.p50_ms, r.direct.p95_ms),
            ("predict, cache off", r.uncached.p50_ms, r.uncached.p95_ms),
            ("predict, cache miss", r.miss.p50_ms, r.miss.p95_ms),
            ("predict, cache hit", r.hit.p50_ms, r.hit.p95_ms),
        ]
        for label, p50, p95 in rows:
            tail = f"{p95:>9.3f}" if p95 is not None else f"{'':>9}"
            print(f"{r.backend:<8} {label:<26} {p50:>9.3f} {tail}")
        if r.cold.bundle_rss_mb is not None:
            print(
                f"{r.backend:<8} memory: {r.cold.bundle_rss_mb:.1f} MiB for load+predict "
                f"(peak RSS {r.cold.peak_rss_mb:.1f} MiB, {r.cold.import_rss_mb:.1f} after the imports)"
            )
        print(
            f"{r.backend:<8} miss overhead {r.miss_overhead:+.1%} vs direct; "
            f"throughput loop {r.loop_texts_per_s:.0f}/s, batch({r.batch_size}) {r.batch_texts_per_s:.0f}/s "
            f"(x{r.batch_speedup:.2f})"
        )
    return 0


def _read_lines(path: str, option: str) -> tuple[str, ...]:
    from edgeopt_runtime.errors import InputError

    try:
        # The file's own newlines only: str.splitlines() also cuts at U+2028, \x1c-\x1e and \x85, which are
        # characters inside a logged text, not line ends.
        lines = [line.removesuffix("\r") for line in Path(path).read_text(encoding="utf-8").split("\n")]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{option} {path}: cannot read it ({exc}); pass a UTF-8 text file") from None
    texts = tuple(line for line in lines if line.strip())
    if not texts:
        raise InputError(f"{option} {path} has no non-empty line; put one text per line")
    return texts


def _monitor(args: argparse.Namespace) -> int:
    from edgeopt_runtime.model import load_classifier
    from edgeopt_runtime.monitor import CONFIDENCE_EDGES, MIN_DRIFT_TEXTS

    texts = _read_lines(args.texts, "FILE")
    with load_classifier(args.bundle, backend=args.backend, cache=False, monitor_window=len(texts)) as classifier:
        for start in range(0, len(texts), 64):
            classifier.predict_batch(list(texts[start : start + 64]), dedupe=False)
        report = classifier.monitor()
        reference = classifier.monitoring_reference
    if args.json:
        print(json.dumps({**report.to_dict(), "reference": reference.to_dict() if reference else None}, indent=2))
        return 0
    print(f"{report.window} texts")
    for label, share in report.label_share.items():
        expected = f" (build: {reference.label_share[label]:.1%})" if reference else ""
        print(f"  {label:<16} {share:7.1%}{expected}")
    print("top-class probability:")
    for i, share in enumerate(report.confidence_share):
        expected = f" (build: {reference.confidence_share[i]:.1%})" if reference else ""
        print(f"  [{CONFIDENCE_EDGES[i]:.2f}, {CONFIDENCE_EDGES[i + 1]:.2f}) {share:7.1%}{expected}")
    print(
        f"truncated: {report.truncated_share:.1%}" + (f" (build: {reference.truncated_share:.1%})" if reference else "")
    )
    if report.drift is not None:
        d = report.drift
        print(f"drift: {d.status} (PSI labels {d.label_psi:.3f}, confidence {d.confidence_psi:.3f})")
    elif reference is None:
        print("drift: the bundle has no monitoring reference (built before edgeopt recorded one)")
    else:
        print(f"drift: not computed (fewer than {MIN_DRIFT_TEXTS} texts)")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from edgeopt_runtime.cache import ResultCache, default_cache_path

    path = Path(args.cache) if args.cache else default_cache_path()
    if not path.exists() and not path.is_symlink():
        # Looking must not create: report the empty cache that is not there.
        print(f"no cache at {path}: nothing has been cached there yet", file=sys.stderr)
        return 0
    with ResultCache(path) as cache:
        if not cache.enabled:
            verb = "read" if args.action == "stats" else args.action
            raise CacheError(f"cannot {verb} {cache.path}: the cache is disabled ({cache.disabled_reason})")
        if args.action == "clear":
            print(f"cleared {cache.clear()} entries from {cache.path}")
            return 0
        stats = cache.stats()
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        for name, value in stats.to_dict().items():
            print(f"{name}: {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (0 ok, 2 error)."""
    args = build_parser().parse_args(argv)
    handlers = {
        "predict": _predict,
        "embed": _embed,
        "index": _index,
        "verify": _verify,
        "bench": _bench,
        "monitor": _monitor,
        "cache": _cache,
        "serve": _serve,
    }
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return handlers[args.command](args)
    except EdgeoptRuntimeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A warning as one line on stderr (Python's default adds the source file and the offending line)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
