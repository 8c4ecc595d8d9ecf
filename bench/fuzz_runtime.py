"""Fuzz the runtime's three doors for hostile input, each for a bounded time: manifest, tokenizer, cache file.

Reproduce (repository root; BUNDLE is what `edgeopt build --profile pixel8 --out BUNDLE` writes):

    .venv/bin/python bench/fuzz_runtime.py BUNDLE --seconds 60      # writes bench/results/fuzz_runtime.{json,md}

Each target is a hypothesis property run in rounds of 200 examples, with fresh random seeds, until its time is up:

- **manifest**: the bundle's real ``manifest.json`` mutated (keys deleted, values replaced by any JSON value,
  strings by arbitrary Unicode, the bytes truncated or flipped), then ``read_manifest`` and ``verify_bundle`` on a
  copy of the bundle: each must return or raise ``BundleInvalid`` with a one-line message, nothing else;
- **tokenizer**: ``TextTokenizer.encode`` / ``encode_batch`` on arbitrary Unicode (controls, format characters,
  lone surrogates, long runs) and on non-strings: an ``Encoded`` of the right shape or ``InputError``, nothing else;
- **cache file**: a real cache file (or another file) mutated byte-wise and opened with ``ResultCache``, then
  ``get`` / ``put``: never an exception (a ``CacheWarning`` is allowed), and a file the cache refused is left
  byte for byte as it was.

A failure is printed with hypothesis's minimal example and counted; the script exits 1 when any target failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUND = 200

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutate_json(data: Any, draw: Callable[..., Any]) -> Any:
    """Replace, delete or retype one value somewhere in ``data`` (a dict or list), in place."""
    node = data
    for _ in range(draw(st.integers(0, 3))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        children = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not children:
            break
        node = draw(st.sampled_from(children))[1]
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(_JSON)
    elif isinstance(node, list) and node:
        node[draw(st.integers(0, len(node) - 1))] = draw(_JSON)
    return data


def fuzz_manifest(bundle: Path, work: Path) -> Callable[[], None]:
    from edgeopt_runtime import BundleInvalid, read_manifest, verify_bundle

    original = (bundle / "manifest.json").read_bytes()
    copy = work / "bundle"
    shutil.copytree(bundle, copy)

    @settings(max_examples=ROUND, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        how = data.draw(st.sampled_from(["json", "bytes", "truncate"]))
        if how == "json":
            raw = _mutate_json(json.loads(original), data.draw)
            blob = json.dumps(raw, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
        elif how == "bytes":
            blob = bytearray(original)
            for _ in range(data.draw(st.integers(1, 8))):
                blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
            blob = bytes(blob)
        else:
            blob = original[: data.draw(st.integers(0, len(original)))]
        (copy / "manifest.json").write_bytes(blob)
        for fn in (read_manifest, verify_bundle):
            try:
                fn(copy)
            except BundleInvalid as exc:
                assert "\n" not in str(exc), f"two-line error: {exc!r}"

    return prop


def fuzz_tokenizer(bundle: Path) -> Callable[[], None]:
    from edgeopt_runtime import InputError, TextTokenizer, read_manifest

    manifest = read_manifest(bundle)
    tok = TextTokenizer.from_bundle(manifest, bundle)
    odd = st.sampled_from(list("\x00\x07\t\n\x0b\x1c\x1f\x7f\x85\xa0\xad\u200b\u2028\u3000\ufeff\ud800\udfff\u0301"))
    runs = st.builds(lambda c, n: c * n, odd | st.characters(), st.integers(0, 20000))
    texts = st.text(st.characters() | odd, max_size=400) | runs

    @settings(max_examples=ROUND, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(texts, st.none(), st.integers(), st.binary(max_size=20), st.lists(texts, max_size=5)))
    def prop(value: Any) -> None:
        for fn in (tok.encode, lambda v: tok.encode_batch(v if isinstance(v, list) else [v])):
            try:
                enc = fn(value)
            except InputError as exc:
                assert "\n" not in str(exc), f"two-line error: {exc!r}"
                continue
            rows = len(value) if isinstance(value, list) else 1
            assert enc.input_ids.shape == enc.attention_mask.shape == (rows, manifest.max_seq_len)
            assert len(enc.truncated) == rows

    return prop


def fuzz_cache(work: Path) -> Callable[[], None]:
    from edgeopt_runtime import ResultCache
    from edgeopt_runtime.cache import CacheWarning

    seed = work / "seed.sqlite"
    with ResultCache(seed, secret=bytes(32)) as cache:
        cache.put_many([(f"k{i}", "f" * 64, {"label": "ham", "i": i}, None) for i in range(50)])
    original = seed.read_bytes()
    target = work / "fuzzed.sqlite"

    @settings(max_examples=ROUND, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        for stale in work.glob("fuzzed.sqlite.corrupt-*"):
            stale.unlink()
        how = data.draw(st.sampled_from(["flip", "truncate", "random", "header"]))
        blob = bytearray(original)
        if how == "flip":
            for _ in range(data.draw(st.integers(1, 16))):
                blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "truncate":
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        elif how == "random":
            blob = bytearray(data.draw(st.binary(max_size=4096)))
        else:  # a damaged header: the file can no longer be told apart from someone else's
            at = data.draw(st.integers(0, 99))
            blob[at] = data.draw(st.integers(0, 255))
        target.write_bytes(bytes(blob))
        before = target.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            cache = ResultCache(target, secret=bytes(32))
            cache.get("k1")
            cache.put("new", "f" * 64, {"label": "spam"})
            cache.get_many(["k2", "new"])
            cache.stats()
            cache.close()
        if not cache.enabled and cache.disabled_reason and "left as it was" in cache.disabled_reason:
            assert target.read_bytes() == before, "a refused file was changed"

    return prop


def run_for(name: str, prop: Callable[[], None], seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    rounds, failures = 0, []
    while time.monotonic() - start < seconds:
        rounds += 1
        try:
            prop()
        except Exception as exc:  # a property that failed: hypothesis has shrunk it to a minimal example
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            print(f"  {name}: FAILED: {failures[-1]}", flush=True)
    elapsed = time.monotonic() - start
    print(f"  {name}: {rounds * ROUND} examples in {elapsed:.0f} s, {len(failures)} failing rounds", flush=True)
    return {"target": name, "seconds": round(elapsed, 1), "examples": rounds * ROUND, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle directory (edgeopt build output)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz_runtime", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeopt-fuzz-") as tmp:
        work = Path(tmp)
        targets = {
            "manifest": fuzz_manifest(args.bundle, work),
            "tokenizer": fuzz_tokenizer(args.bundle),
            "cache file": fuzz_cache(work),
        }
        results = [run_for(name, prop, args.seconds) for name, prop in targets.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Runtime fuzzing",
        "",
        f"Command: `python bench/fuzz_runtime.py {args.bundle} --seconds {args.seconds:g}`",
        "",
        "| target | examples | seconds | failing rounds |",
        "|---|---|---|---|",
        *[f"| {r['target']} | {r['examples']} | {r['seconds']} | {len(r['failures'])} |" for r in results],
        "",
        *[f"- {r['target']}: {f}" for r in results for f in r["failures"]],
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines).rstrip() + "\n")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
