"""Experiment (not shipped): do the two searched students, their logits averaged, beat the better one?

    .venv/bin/python bench/ensemble_probe.py fortunes-topics 0,1,2

Distills the pinned cnn and cnn-attention students on a task's validation split (as bench/validation_levers.py does)
and scores each, the mean of their logits and the mean of their probabilities; appends to
bench/results/ensemble_probe.jsonl. Measured 2026-12-01: +0.2 to +1.3 points over the better student on
fortunes-topics, -0.3 on every seed of spam-subjects, so not built (it would also double the model).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / ".cache" / "dev-tasks"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _score(logits: np.ndarray, labels: np.ndarray, teacher: np.ndarray, buckets: np.ndarray) -> dict:
    agree = logits.argmax(-1) == teacher
    return {
        "acc": round(float(np.mean(logits[: len(labels)].argmax(-1) == labels)), 4),
        "fid": {
            b: round(float(agree[buckets == b].mean()), 4)
            for b in ("<=8", "9-32", "33-128", ">128")
            if (buckets == b).any()
        },
    }


def main() -> int:
    from edgeopt.augment import TransferSource, length_bucket
    from edgeopt.stages import BuildConfig, Reporter, prepare, train_student

    task_name = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2].split(",")]
    folder = TASKS_DIR / task_name
    files = {} if task_name == "spam" else {"train": folder / "train.jsonl", "test": folder / "test.jsonl"}
    for seed in seeds:
        outs = {}
        for name in ("cnn/trained/x1", "cnn-attention/trained/x1"):
            config = BuildConfig(profile="pixel8", calibrate=False, seed=seed, student=name, **files)
            reporter = Reporter()
            task = prepare(config, reporter)
            with tempfile.TemporaryDirectory() as work:
                student = train_student(task, config, Path(work), reporter)
            transfer = task.transfer
            held = set(student.val_rows.tolist())
            crops = [
                i
                for i, (source, origin) in enumerate(zip(transfer.sources, transfer.origins, strict=True))
                if source is TransferSource.CROP and origin in held
            ]
            # The split depends on the seed only, so both students are scored on the same rows.
            rows = np.concatenate([student.val_rows, np.asarray(crops, dtype=int)])
            outs[name] = student.model.predict(list(student.rows(rows)), batch_size=256, verbose=0)
            labels = np.asarray(task.data.train.labels)[student.val_rows]
            teacher = task.transfer_logits[rows].argmax(-1)
            buckets = np.array([length_bucket(transfer.texts[i]) for i in rows])
        a, b = outs.values()
        record = {
            "task": task_name,
            "seed": seed,
            "cnn": _score(a, labels, teacher, buckets),
            "attention": _score(b, labels, teacher, buckets),
            "mean_logits": _score((a + b) / 2, labels, teacher, buckets),
            "mean_probs": _score(np.log(_softmax(a) + _softmax(b)), labels, teacher, buckets),
        }
        print(json.dumps(record), flush=True)
        with (ROOT / "bench" / "results" / "ensemble_probe.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
