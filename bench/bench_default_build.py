"""Benchmark the default build against its teacher and a TF-IDF baseline, side by side in one run.

Reproduce (from the repository root, after `bash scripts/setup.sh`):

    .venv/bin/python bench/bench_default_build.py                 # reuses the cached fine-tuned teacher
    .venv/bin/python bench/bench_default_build.py --fresh-cache   # times the build from an empty cache too

It builds `edgeopt build --profile pixel8` (timed), then measures, in this one process and on the same held-out
test texts, at batch 1 on one thread:
- the teacher (fine-tuned all-MiniLM-L6-v2, fp32 ONNX in ONNX Runtime),
- the shipped int8 students (TFLite in LiteRT, ONNX in ONNX Runtime), model call alone and end to end
  (tokenize + model, through edgeopt_runtime with its cache off),
- TF-IDF (word 1-2 grams) + logistic regression trained on the same split (scikit-learn), end to end,
and reports accuracy, size and latency as ratios to the teacher. Results go to bench/results/default_build.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import p50_ms, tfidf_baseline  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-cache", action="store_true", help="build from an empty cache (fine-tunes the teacher)")
    parser.add_argument("--samples", type=int, default=300, help="test texts timed per model")
    args = parser.parse_args()

    if args.fresh_cache:
        os.environ["EDGEOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeopt-bench-cache-")
    import onnxruntime as ort

    import edgeopt_runtime
    from edgeopt import BuildConfig, build
    from edgeopt.cache_dirs import cache_dir
    from edgeopt.data import load_default

    out = Path(tempfile.mkdtemp(prefix="edgeopt-bench-")) / "pixel8"
    start = time.perf_counter()
    result = build(BuildConfig(profile="pixel8"), out)
    build_s = time.perf_counter() - start
    manifest = result.manifest
    data = load_default()
    texts = list(data.test.texts[: args.samples])

    teacher = manifest["teacher"]
    teacher_onnx = cache_dir() / "teacher-onnx" / f"{teacher['fingerprint']}.onnx"
    teacher_dir = next(s for s in result.stages if s.name == "teacher").details["path"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(teacher_onnx), options, providers=["CPUExecutionProvider"])
    teacher_tok = edgeopt_runtime.TextTokenizer.from_file(Path(teacher_dir) / "tokenizer.json", teacher["max_seq_len"])
    names = {i.name for i in session.get_inputs()}

    def run_teacher(text: str) -> object:
        enc = teacher_tok.encode(text)
        feed = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(enc.input_ids)
        return session.run(None, {k: v for k, v in feed.items() if k in names})

    rows = {
        "teacher (fp32 ONNX)": {
            "accuracy": teacher["accuracy"],
            "bytes": teacher["bytes"],
            "p50_ms_model": teacher["p50_ms"],
            "p50_ms_end_to_end": p50_ms(run_teacher, texts[:100]),
        }
    }
    for name, backend in (("model.tflite", "tflite"), ("model.onnx", "onnx")):
        model = edgeopt_runtime.load(out, backend=backend, threads=1, cache=False)
        encoded = edgeopt_runtime.TextTokenizer.from_bundle(model.manifest, out).encode_batch(texts)
        backend_cls = edgeopt_runtime.TfliteBackend if backend == "tflite" else edgeopt_runtime.OnnxBackend
        backend_obj = backend_cls(out / name, threads=1)
        rows[f"student int8 ({backend})"] = {
            "accuracy": manifest["metrics"][name]["accuracy"],
            "bytes": manifest["metrics"][name]["bytes"],
            "p50_ms_model": p50_ms(
                lambda i, run=backend_obj.run, enc=encoded: run(
                    enc.input_ids[i : i + 1], enc.attention_mask[i : i + 1]
                ),
                list(range(len(texts))),
            ),
            "p50_ms_end_to_end": p50_ms(model.predict, texts),
        }
    baseline = tfidf_baseline(data, texts)
    baseline.pop("model")
    rows["TF-IDF + logistic regression"] = baseline

    for row in rows.values():
        row["size_ratio_vs_teacher"] = teacher["bytes"] / row["bytes"]
        row["accuracy_ratio_vs_teacher"] = row["accuracy"] / teacher["accuracy"]
        row["speedup_vs_teacher_end_to_end"] = (
            rows["teacher (fp32 ONNX)"]["p50_ms_end_to_end"] / row["p50_ms_end_to_end"]
        )
    summary = {
        "command": " ".join(["bench/bench_default_build.py", *sys.argv[1:]]),
        "fresh_cache": args.fresh_cache,
        "build_seconds": build_s,
        "stage_seconds": {s.name: round(s.seconds, 1) for s in result.stages},
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "fresh" if args.fresh_cache else "cached"
    (RESULTS / f"default_build_{suffix}.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"Default build ({'empty cache' if args.fresh_cache else 'teacher cached'}): {build_s:.0f} s wall",
        "",
        "| model | accuracy | x teacher acc | bytes | x smaller | p50 ms model | p50 ms end-to-end | x faster (e2e) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['accuracy_ratio_vs_teacher']:.3f} | {r['bytes']:,} | "
            f"{r['size_ratio_vs_teacher']:.1f} | {r.get('p50_ms_model', float('nan')):.3f} | "
            f"{r['p50_ms_end_to_end']:.3f} | {r['speedup_vs_teacher_end_to_end']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"default_build_{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
