"""The model2vec baseline of bench/bench_embed.py: distill a static model from the same teacher, embed, time it.

Runs in a venv of its own (model2vec[distill] 0.10 pins transformers < 5.4, edgeopt pins 5.24):

    bash bench/setup_model2vec.sh            # makes .cache/model2vec-venv
    .cache/model2vec-venv/bin/python bench/model2vec_baseline.py TEACHER_DIR TEXTS.json OUT_DIR

TEXTS.json is a JSON list of texts (the held-out corpus bench_embed.py measures on). Writes to OUT_DIR: the
distilled model (``model/``, model2vec's own format), ``vectors.npy`` (unit vectors of the texts, in order) and
``timing.json`` (distill seconds, model bytes, p50/p95 of ``encode([text])`` at batch 1 over 200 texts, one thread).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import numpy as np
    import torch
    from model2vec.distill import distill

    torch.set_num_threads(1)
    teacher, texts_file, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = distill(model_name=str(teacher), pca_dims=256)
    distill_s = time.perf_counter() - start
    model.save_pretrained(str(out / "model"))
    vectors = np.asarray(model.encode(texts), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    np.save(out / "vectors.npy", vectors)
    for text in texts[:10]:
        model.encode([text])
    times = []
    for text in texts[:200]:
        start = time.perf_counter()
        model.encode([text])
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    size = sum(p.stat().st_size for p in (out / "model").rglob("*") if p.is_file() and p.suffix == ".safetensors")
    timing = {
        "distill_s": distill_s,
        "model_bytes": size,
        "dim": int(vectors.shape[1]),
        "p50_ms": statistics.median(times),
        "p95_ms": times[round(0.95 * (len(times) - 1))],
    }
    (out / "timing.json").write_text(json.dumps(timing, indent=2), encoding="utf-8")
    print(json.dumps(timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
