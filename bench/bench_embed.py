"""The embed bundle against its teacher and against model2vec distilled from the same teacher, in one run.

Reproduce (from the repository root):

    .venv/bin/edgeopt build --task embed --profile pixel8          # writes bundles/pixel8-embed
    bash bench/setup_model2vec.sh                                  # the baseline's own venv (once)
    .venv/bin/python bench/bench_embed.py bundles/pixel8-embed

On the held-out corpus of the default embed task (the 1,174 test emails of the shipped corpus and up to 4 crops of
each: what `edgeopt build --task embed` measures on; nothing here trained on them):
  - the teacher, all-MiniLM-L6-v2 as shipped, run by sentence-transformers (its own max_seq_length, 256 tokens,
    mean pooling, normalized), is the reference;
  - the student bundle through edgeopt_runtime (LiteRT and ONNX Runtime), and model2vec's `distill(pca_dims=256)` of
    the same teacher directory (bench/model2vec_baseline.py, run in its venv);
  - each: model file bytes, p50/p95 of embedding one text end to end (tokenize + model + pooling/normalize; batch 1,
    1 thread, 200 texts), and against the teacher's vectors: mean cosine (same width only), neighbour recall@10
    over the whole corpus, Spearman over 20,000 random pairs (edgeopt.embed.embedding_agreement).
Results: bench/results/embed.json and bench/results/embed.md. Another corpus (a bundle built with --train/--test):

    .venv/bin/python bench/bench_embed.py bundles/fortunes-embed --train .cache/dev-tasks/fortunes-topics/train.jsonl \
        --test .cache/dev-tasks/fortunes-topics/test.jsonl --name embed-fortunes
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
M2V_PYTHON = ROOT / ".cache" / "model2vec-venv" / "bin" / "python"
TIMED = 200


def _timing(run, texts: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for text in texts[:10]:
        run(text)
    times = []
    for text in texts[:TIMED]:
        start = time.perf_counter()
        run(text)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[round(0.95 * (len(times) - 1))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--teacher", type=Path, default=None, help="default: all-MiniLM-L6-v2 as shipped")
    parser.add_argument("--train", type=Path, default=None, help="the texts the bundle was built on (--train)")
    parser.add_argument("--test", type=Path, default=None, help="its held-out texts (--test)")
    parser.add_argument("--name", default="embed", help="results file stem (default: embed)")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    import edgeopt_runtime
    from edgeopt.embed import embedding_agreement, held_out_corpus, load_embed_corpus
    from edgeopt.stages import BuildConfig
    from edgeopt.teacher import default_embedding_teacher

    torch.set_num_threads(1)
    teacher_dir = args.teacher or default_embedding_teacher()
    corpus = held_out_corpus(load_embed_corpus(BuildConfig(task="embed", train=args.train, test=args.test)).held_out, 0)
    texts = list(corpus)
    # Timed on texts in corpus order (emails first, then their crops), the same texts for every model.
    timed = texts[:: max(1, len(texts) // TIMED)][:TIMED]
    rows: dict[str, dict] = {}

    teacher = SentenceTransformer(str(teacher_dir), device="cpu")
    start = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)  # the corpus on every core; latency below on one
    teacher_vectors = np.asarray(teacher.encode(texts, batch_size=32, normalize_embeddings=True), dtype=np.float32)
    torch.set_num_threads(1)
    teacher_bytes = sum(p.stat().st_size for p in Path(teacher_dir).glob("*.safetensors"))
    rows["teacher (all-MiniLM-L6-v2, fp32, torch)"] = {
        "bytes": teacher_bytes,
        **_timing(lambda t: teacher.encode([t], normalize_embeddings=True), timed),
        "corpus_s": time.perf_counter() - start,
        "dim": int(teacher_vectors.shape[1]),
    }

    for backend in ("tflite", "onnx"):
        with edgeopt_runtime.load_embedder(args.bundle, backend=backend, threads=1, cache=False) as embedder:
            name, _ = embedder.manifest.artifact_for(backend) or ("", None)
            vectors = np.concatenate([embedder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)])
            rows[f"edgeopt student ({backend}, int8)"] = {
                "bytes": (args.bundle / name).stat().st_size,
                **_timing(embedder.embed_one, timed),
                "dim": embedder.dim,
                "vectors": vectors,
            }

    if M2V_PYTHON.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            texts_file = Path(tmp) / "texts.json"
            texts_file.write_text(json.dumps(texts), encoding="utf-8")
            proc = subprocess.run(
                [
                    str(M2V_PYTHON),
                    str(ROOT / "bench" / "model2vec_baseline.py"),
                    str(teacher_dir),
                    str(texts_file),
                    tmp,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"model2vec baseline failed: {proc.stderr.strip().splitlines()[-1:]}")
            timing = json.loads((Path(tmp) / "timing.json").read_text(encoding="utf-8"))
            rows["model2vec distill(pca_dims=256) of the teacher"] = {
                "bytes": timing["model_bytes"],
                "p50_ms": timing["p50_ms"],
                "p95_ms": timing["p95_ms"],
                "dim": timing["dim"],
                "distill_s": timing["distill_s"],
                "vectors": np.load(Path(tmp) / "vectors.npy"),
            }
    else:
        print(f"no model2vec venv at {M2V_PYTHON}: run bench/setup_model2vec.sh for the baseline row")

    for row in rows.values():
        vectors = row.pop("vectors", teacher_vectors)
        row.update(embedding_agreement(vectors, teacher_vectors).to_dict())
    teacher_row = next(iter(rows.values()))
    result = {
        "bundle": str(args.bundle),
        "teacher": str(teacher_dir),
        "corpus": "the shipped corpus" if args.train is None else f"{args.train} (held out: {args.test})",
        "corpus_texts": len(texts),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; every model on 1 thread",
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Embeddings: the edgeopt student vs its teacher and vs model2vec of the same teacher",
        "",
        f"`.venv/bin/python bench/bench_embed.py {args.bundle}"
        + ("" if args.train is None else f" --train {args.train} --test {args.test} --name {args.name}")
        + f"` ({result['machine']}; load average {result['load_average'][0]:.2f}). Held-out corpus: {len(texts):,} "
        f"texts ({result['corpus']}: its held-out texts and crops of them). Agreement is with the teacher's vectors "
        "(sentence-transformers, as shipped); latency embeds one text end to end.",
        "",
        "| model | dim | bytes | x smaller | p50 ms | x faster | mean cosine | neighbour recall@10 | Spearman |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        cosine = "" if row["dim"] != teacher_row["dim"] else f"{row['mean_cosine']:.4f}"
        lines.append(
            f"| {name} | {row['dim']} | {row['bytes']:,} | {teacher_row['bytes'] / row['bytes']:.1f} | "
            f"{row['p50_ms']:.3f} | {teacher_row['p50_ms'] / row['p50_ms']:.1f} | {cosine} | "
            f"{row['neighbour_recall']:.4f} | {row['spearman']:.4f} |"
        )
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
