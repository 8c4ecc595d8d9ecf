"""The ``edgeopt-runtime`` command: a thin argparse layer over the library.

Errors the runtime raises on purpose are printed as one line on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from edgeopt_runtime._version import __version__
from edgeopt_runtime.backends import BackendName
from edgeopt_runtime.errors import EdgeoptRuntimeError

__all__ = ["main", "build_parser"]

PROG = "edgeopt-runtime"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Verify edgeopt bundles and classify text with them."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser(
        "predict", help="classify one or more texts", description="Classify texts with a bundle."
    )
    predict.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    predict.add_argument("texts", metavar="TEXT", nargs="+", help="text to classify (quote it)")
    predict.add_argument(
        "--backend",
        choices=[b.value for b in BackendName],
        default=BackendName.AUTO.value,
        help="inference backend (default: auto = onnx when onnxruntime is installed, else tflite)",
    )
    predict.add_argument(
        "--threads", type=int, default=None, help="inference threads (default: backend decides)"
    )
    predict.add_argument("--json", action="store_true", help="print a JSON array of predictions")
    where = predict.add_mutually_exclusive_group()
    where.add_argument(
        "--cache", metavar="PATH", default=None, help="result cache file (default: user cache dir)"
    )
    where.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")

    verify = sub.add_parser(
        "verify", help="check a bundle's files against its manifest", description="Verify a bundle."
    )
    verify.add_argument("bundle", metavar="BUNDLE", help="bundle directory")

    cache = sub.add_parser(
        "cache", help="inspect or empty the result cache", description="Manage the result cache."
    )
    cache.add_argument(
        "action", choices=["stats", "clear"], help="stats: print counters and size; clear: empty it"
    )
    cache.add_argument(
        "--cache", metavar="PATH", default=None, help="result cache file (default: user cache dir)"
    )
    cache.add_argument("--json", action="store_true", help="print stats as JSON")
    return parser


def _predict(args: argparse.Namespace) -> int:
    from edgeopt_runtime.model import load

    cache = False if args.no_cache else args.cache
    classifier = load(args.bundle, backend=args.backend, threads=args.threads, cache=cache)
    predictions = classifier.predict_batch(args.texts)
    if args.json:
        rows = [{"text": text, **p.to_dict()} for text, p in zip(args.texts, predictions, strict=True)]
        print(json.dumps(rows, indent=2))
    else:
        for p in predictions:
            print(f"{p.label}\t{p.score:.4f}" + ("\t(truncated)" if p.truncated else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgeopt_runtime.manifest import verify_bundle

    manifest = verify_bundle(args.bundle)
    print(
        f"OK {args.bundle}: {len(manifest.files)} files verified, labels {', '.join(manifest.labels)}, "
        f"max_seq_len {manifest.max_seq_len}, fingerprint {manifest.fingerprint[:12]}"
    )
    return 0


def _cache(args: argparse.Namespace) -> int:
    from edgeopt_runtime.cache import ResultCache

    with ResultCache(args.cache) as cache:
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
    handlers = {"predict": _predict, "verify": _verify, "cache": _cache}
    try:
        return handlers[args.command](args)
    except EdgeoptRuntimeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
