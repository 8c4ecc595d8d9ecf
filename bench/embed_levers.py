"""Embedder settings compared on the validation texts only: how the embed task's defaults were chosen.

Reproduce (from the repository root; the teacher's vectors are cached after one `edgeopt build --task embed`):

    .venv/bin/python bench/embed_levers.py base,epochs40,sim0,width1 0

Each variant distills the float embedder (no pruning, no export) from the shipped corpus and is scored on the
validation rows the build holds out for early stopping (a seeded 10% of the training texts and their crops; the
test split is never looked at): mean cosine, neighbour recall@10 and Spearman against the teacher's vectors.
Results are appended to bench/results/embed_levers.jsonl.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "embed_levers.jsonl"


def variants() -> dict[str, dict[str, Any]]:
    from edgeopt.distill import DistillConfig

    return {
        "base": {},
        "notokens40": {"pool_tokens": False, "distill": DistillConfig(epochs=40)},
        "tokens40": {"pool_tokens": True, "distill": DistillConfig(epochs=40)},
        "tokens40-nodrop": {"pool_tokens": True, "dropout": 0.0, "distill": DistillConfig(epochs=40)},
        "epochs40": {"distill": DistillConfig(epochs=40)},
        "lr5e-3": {"distill": DistillConfig(learning_rate=5e-3, epochs=40)},
        "sim0": {"similarity_weight": 0.0, "distill": DistillConfig(epochs=40)},
        "sim3": {"similarity_weight": 3.0, "distill": DistillConfig(epochs=40)},
        "width1": {"width": 1.0, "distill": DistillConfig(epochs=40)},
        "cnn": {"architecture": "cnn", "distill": DistillConfig(epochs=40)},
        "batch64": {"distill": DistillConfig(epochs=40, batch_size=64)},
    }


def main() -> int:
    import numpy as np

    import edgeopt.embed as embed
    from edgeopt.stages import BuildConfig, Reporter

    names = sys.argv[1].split(",")
    seeds = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0]
    table = variants()
    for seed in seeds:
        for name in names:
            settings = dict(table[name])
            embed.SIMILARITY_WEIGHT = settings.pop("similarity_weight", 1.0)
            embed.EMBED_WIDTH = settings.pop("width", 2.0)
            embed.EMBED_ARCHITECTURE = settings.pop("architecture", "cnn-attention")
            embed.EMBED_POOL_TOKENS = settings.pop("pool_tokens", True)
            embed.EMBED_DROPOUT = settings.pop("dropout", 0.3)
            config = BuildConfig(profile="pixel8", task="embed", seed=seed, **settings)
            reporter = Reporter()
            task = embed.prepare_embed(config, reporter)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as work:
                trained = embed.train_embedder(task, config, Path(work), reporter)
            seconds = time.perf_counter() - start
            rows = trained.val_rows
            student = trained.model.predict(list(trained.rows(rows)), batch_size=256, verbose=0)
            agreement = embed.embedding_agreement(student, task.transfer_vectors[rows])
            record = {
                "variant": name,
                "seed": seed,
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in agreement.to_dict().items()},
                "epochs": trained.distilled.epochs_run,
                "parameters": int(sum(np.prod(w.shape) for w in trained.model.get_weights())),
                "distill_seconds": round(seconds),
                "spec": {
                    k: getattr(trained.spec, k) for k in ("architecture", "embedding_dim", "hidden_dim", "dense_dim")
                },
            }
            print(json.dumps(record), flush=True)
            with RESULTS.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
