"""Every development task, the teacher, a tuned TF-IDF baseline and the student's levers, side by side in one run.

Reproduce (from the repository root, after `bash scripts/setup.sh`):

    .venv/bin/python scripts/dev_tasks.py                   # writes .cache/dev-tasks/ (from the shipped datasets)
    .venv/bin/python bench/bench_tasks.py                   # every task x every variant (about an hour on 2 cores)
    .venv/bin/python bench/bench_tasks.py --tasks spam --variants shipped,no-crops

For each task (`scripts/dev_tasks.py`; `spam` is the built-in default) it fine-tunes the task's teacher (the same
`edgeopt.teacher.finetune` as `edgeopt teacher finetune`: all-MiniLM-L6-v2 end to end on the task's train split,
cached), trains TF-IDF (word 1-2 grams) + logistic regression with C tuned by 3-fold CV on the train split, and runs
`edgeopt build --profile pixel8` once per variant:

- `shipped`: the defaults (crops in the transfer set, every teacher token in the student's vocabulary, embeddings
  started from the teacher's static token vectors, the student search over the max-pool and attention-pool
  architectures, calibrated scores);
- `no-crops`, `random-init` (a random, trained table), `no-calibration`: the defaults less one lever;
- `general`: the defaults plus one opt-in lever, 8,000 teacher-labelled general texts (`--general-texts 8000`);
- `corpus-tokens`: the student keeps only the tokens its texts use (`--tokens corpus`), not every teacher token;
- `none`: crops, teacher initialization and calibration off (the student as it was before them);
- `cnn-only`: the architecture search off (`--student cnn/trained`, the max-pool student alone).

Every number is measured on the task's held-out test split, which no variant tunes on: accuracy of the int8 TFLite
artifact against the teacher's, agreement with the teacher on test texts and crops of them by length bucket
(`metrics.fidelity`), expected calibration error, size, and build time. The `spam` task also answers a hand-written
set of everyday short messages (`tests/data/everyday_messages.tsv`). Results are merged into
bench/results/tasks.json (re-running one task or variant replaces only its rows) and written as tasks.md and
tasks.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TASKS_DIR = ROOT / ".cache" / "dev-tasks"
EVERYDAY = ROOT / "tests" / "data" / "everyday_messages.tsv"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import tfidf_baseline  # noqa: E402

TASKS = ("spam", "spam-subjects", "spam-3class", "fortunes-topics", "spam-subjects-few")
OPT_IN = frozenset({"general"})
"""Variants that add a lever the defaults leave off (the others remove one the defaults have)."""
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "no-crops": {"crop_copies": 0},
    "random-init": {"embedding_init": "random"},
    "no-calibration": {"calibrate": False},
    "general": {"general_texts": 8000},
    "corpus-tokens": {"tokens": "corpus"},
    "none": {"crop_copies": 0, "embedding_init": "random", "calibrate": False},
    "cnn-only": {"student": "cnn/trained"},
}


def load_data(task: str) -> Any:
    from edgeopt.data import load_default, load_task

    if task == "spam":
        return load_default()
    folder = TASKS_DIR / task
    if not (folder / "train.jsonl").is_file():
        raise SystemExit(f"{folder} is missing; run: .venv/bin/python scripts/dev_tasks.py")
    return load_task(folder / "train.jsonl", folder / "test.jsonl")


def everyday_messages() -> list[tuple[str, str]]:
    with EVERYDAY.open(encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle, delimiter="\t")]


def build_variant(task: str, overrides: dict[str, Any], out: Path) -> tuple[Any, float]:
    from edgeopt import BuildConfig, build

    folder = TASKS_DIR / task
    files = {} if task == "spam" else {"train": folder / "train.jsonl", "test": folder / "test.jsonl"}
    start = time.perf_counter()
    result = build(BuildConfig(profile="pixel8", **files, **overrides), out, allow_over_budget=True)
    return result, time.perf_counter() - start


def everyday_check(bundle: Path, teacher_dir: Path, teacher_seq_len: int) -> dict[str, Any]:
    """Labels of the everyday short messages from the bundle (runtime) and the teacher."""
    import edgeopt_runtime
    from edgeopt.teacher import load_teacher

    rows = everyday_messages()
    texts = [t for t, _ in rows]
    student = [p.label for p in edgeopt_runtime.load(bundle, backend="tflite", cache=False).predict_batch(texts)]
    teacher = load_teacher(teacher_dir, teacher_seq_len)
    teacher_labels = [teacher.label_names[i] for i in teacher.logits(texts).argmax(-1)]
    truth = [label for _, label in rows]
    ham = [i for i, label in enumerate(truth) if label == "ham"]
    return {
        "texts": len(rows),
        "student_accuracy": float(np.mean([s == t for s, t in zip(student, truth, strict=True)])),
        "teacher_accuracy": float(np.mean([s == t for s, t in zip(teacher_labels, truth, strict=True)])),
        "agreement": float(np.mean([s == t for s, t in zip(student, teacher_labels, strict=True)])),
        "student_ham_called_spam": float(np.mean([student[i] == "spam" for i in ham])),
        "teacher_ham_called_spam": float(np.mean([teacher_labels[i] == "spam" for i in ham])),
    }


def row_of(task: str, variant: str, manifest: dict[str, Any], stages: dict[str, float], seconds: float) -> dict:
    shipped = manifest["metrics"]["model.tflite"]
    teacher = manifest["teacher"]
    build = manifest["build"]
    return {
        "task": task,
        "variant": variant,
        "teacher_accuracy": teacher["accuracy"],
        "teacher_ece": teacher.get("ece"),
        "accuracy": shipped["accuracy"],
        "onnx_accuracy": manifest["metrics"]["model.onnx"]["accuracy"],
        "accuracy_ratio": shipped["accuracy"] / teacher["accuracy"],
        "macro_f1": shipped["macro_f1"],
        "validation_accuracy": build["distill"].get("best_val_accuracy"),
        "fidelity": shipped["fidelity"],
        "ece": shipped["ece"],
        "bytes": shipped["bytes"],
        "transfer": build["transfer"],
        "temperature": (build.get("score_calibration") or {}).get("temperature"),
        "embedding_init": build["student"].get("embedding_init"),
        "embedding_training": build["student"].get("embedding_training"),
        "search": build.get("search"),
        "kept": next((c["name"] for c in build.get("search") or [] if c.get("status") == "chosen"), None),
        "build_seconds": round(seconds, 1),
        # What the student costs, apart from the teacher's fine-tune and labeling (cached after a task's first
        # build, so the whole build time of that first build is not comparable with the others).
        "teacher_seconds": round(stages.get("teacher", 0.0) + stages.get("teacher outputs", 0.0), 1),
        "student_seconds": round(seconds - stages.get("teacher", 0.0) - stages.get("teacher outputs", 0.0), 1),
        "stage_seconds": stages,
        "train_texts": build["train_texts"],
        "test_texts": build["test_texts"],
        "classes": len(manifest["labels"]),
    }


def _teacher_seconds(row: dict[str, Any]) -> float:
    stages = row.get("stage_seconds") or {}
    return float(row.get("teacher_seconds", stages.get("teacher", 0.0) + stages.get("teacher outputs", 0.0)))


def _student_seconds(row: dict[str, Any]) -> float:
    return float(row.get("student_seconds", row["build_seconds"] - _teacher_seconds(row)))


def write_outputs(rows: list[dict[str, Any]], baselines: dict[str, Any], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tasks.json").write_text(
        json.dumps({"command": command, "baselines": baselines, "rows": rows}, indent=2) + "\n"
    )
    buckets = ["<=8", "9-32", "33-128", ">128"]
    runs: dict[str, list[str]] = {}
    for r in rows:
        runs.setdefault(r.get("command") or command, []).append(f"{r['task']}/{r['variant']}")
    lines = [
        "# Development tasks: teacher, TF-IDF and the pixel8 student (int8 TFLite), held-out test splits",
        "",
        "Rows from: " + "; ".join(f"`{c}` ({', '.join(names)})" for c, names in runs.items()) + ".",
        "",
        "Fidelity: agreement with the teacher on the test texts and crops of them, by length in words.",
        "`student s`: the build without its teacher stages (fine-tune and labeling: `teacher s`, cached after a",
        "task's first build).",
        "",
        "| task | variant | student kept | teacher | TF-IDF | student | x teacher | val score | "
        + " | ".join(f"fidelity {b}" for b in buckets)
        + " | ECE (teacher) | MB | student s | teacher s |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(buckets) + "---|---|---|---|",
    ]
    for r in rows:
        fid = " | ".join(f"{r['fidelity'][b]['agreement']:.3f}" if b in r["fidelity"] else "" for b in buckets)
        base = baselines.get(r["task"], {})
        lines.append(
            f"| {r['task']} | {r['variant']} | {r.get('kept') or ''} | {r['teacher_accuracy']:.4f} "
            f"| {base.get('accuracy', float('nan')):.4f} "
            f"| {r['accuracy']:.4f} | {r['accuracy_ratio']:.3f} | {r['validation_accuracy'] or float('nan'):.4f} | "
            f"{fid} | {r['ece']:.3f} ({r['teacher_ece'] or float('nan'):.3f}) | {r['bytes'] / 1e6:.2f} | "
            f"{_student_seconds(r):.0f} | {_teacher_seconds(r):.0f} |"
        )
    everyday = [r for r in rows if r.get("everyday")]
    if everyday:
        lines += [
            "",
            "Everyday short messages (`tests/data/everyday_messages.tsv`, 25 normal + 10 spam):",
            "",
            "| task | variant | student accuracy | teacher accuracy | agreement "
            "| normal called spam: student | teacher |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in everyday:
            e = r["everyday"]
            lines.append(
                f"| {r['task']} | {r['variant']} | {e['student_accuracy']:.3f} | {e['teacher_accuracy']:.3f} | "
                f"{e['agreement']:.3f} | {e['student_ham_called_spam']:.3f} | {e['teacher_ham_called_spam']:.3f} |"
            )
    lines += ablation_lines(rows)
    (RESULTS / "tasks.md").write_text("\n".join(lines) + "\n")
    plot(rows)


def ablation_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What each lever changed, per task and on average: the shipped defaults minus the variant without a lever they
    have, or an opt-in variant (:data:`OPT_IN`) minus the shipped defaults."""
    shipped = {r["task"]: r for r in rows if r["variant"] == "shipped"}
    out = [
        "",
        "Ablation: what each lever gains, with it minus without it (the shipped defaults against the variant that",
        "removes it, or an opt-in variant against the shipped defaults). Accuracy and fidelity in points (positive:",
        "the lever helps); ECE drop (positive: better calibrated); extra MB and extra student seconds the lever costs",
        "(the build without its teacher stages; the shipped build distills two candidates).",
        "",
        "| variant | task | accuracy | fidelity <=8 | fidelity 9-32 | ECE drop | extra MB | extra student s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in [v for v in VARIANTS if v != "shipped"]:
        deltas = []
        for row in rows:
            default = shipped.get(row["task"])
            if row["variant"] != variant or default is None:
                continue
            base, r = (row, default) if variant in OPT_IN else (default, row)

            def fid(row: dict[str, Any], bucket: str) -> float:
                return row["fidelity"].get(bucket, {}).get("agreement", float("nan"))

            d = (
                100 * (base["accuracy"] - r["accuracy"]),
                100 * (fid(base, "<=8") - fid(r, "<=8")),
                100 * (fid(base, "9-32") - fid(r, "9-32")),
                r["ece"] - base["ece"],
                (base["bytes"] - r["bytes"]) / 1e6,
                _student_seconds(base) - _student_seconds(r),
            )
            deltas.append(d)
            out.append(
                f"| {variant} | {r['task']} | {d[0]:+.2f} | {d[1]:+.2f} | {d[2]:+.2f} | {d[3]:+.3f} | {d[4]:+.2f} | "
                f"{d[5]:+.0f} |"
            )
        if deltas:
            mean = np.nanmean(np.asarray(deltas), axis=0)
            out.append(
                f"| **{variant}** | **mean of {len(deltas)}** | **{mean[0]:+.2f}** | **{mean[1]:+.2f}** | "
                f"**{mean[2]:+.2f}** | **{mean[3]:+.3f}** | **{mean[4]:+.2f}** | **{mean[5]:+.0f}** |"
            )
    return out


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
    width = 0.8 / max(1, len(variants))
    for k, variant in enumerate(variants):
        by_task = {r["task"]: r for r in rows if r["variant"] == variant}
        xs = [i + k * width for i, t in enumerate(tasks) if t in by_task]
        axes[0].bar(xs, [by_task[t]["accuracy_ratio"] for t in tasks if t in by_task], width, label=variant)
        short = [by_task[t]["fidelity"].get("<=8", {}).get("agreement", np.nan) for t in tasks if t in by_task]
        axes[1].bar(xs, short, width, label=variant)
    for ax, title in zip(
        axes, ("accuracy / teacher's (test)", "agreement with teacher, texts <= 8 words"), strict=True
    ):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks, rotation=15, fontsize=8)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].axhline(0.97, color="grey", linestyle="--", linewidth=1)
    axes[1].axhline(0.95, color="grey", linestyle="--", linewidth=1)
    axes[0].set_ylim(0.8, 1.02)
    axes[1].set_ylim(0.6, 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(variants), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(RESULTS / "tasks.png")
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--report-only", action="store_true", help="rewrite tasks.md/png from tasks.json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "tasks.json").read_text())
        write_outputs(saved["rows"], saved["baselines"], saved["command"])
        return 0
    tasks = [t for t in args.tasks.split(",") if t]
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS)) + sorted(set(tasks) - set(TASKS))
    if unknown:
        raise SystemExit(f"unknown task or variant {unknown}; tasks: {TASKS}, variants: {list(VARIANTS)}")
    command = "bench/bench_tasks.py" + "".join(f" {a}" for a in sys.argv[1:])
    previous = json.loads((RESULTS / "tasks.json").read_text()) if (RESULTS / "tasks.json").is_file() else {}
    rerun = {(t, v) for t in tasks for v in variants}
    rows = [r for r in previous.get("rows", []) if (r["task"], r["variant"]) not in rerun]
    for r in rows:  # rows of earlier runs keep the command that made them
        r.setdefault("command", previous.get("command"))
    baselines = previous.get("baselines", {})
    for task in tasks:
        data = load_data(task)
        baseline = tfidf_baseline(data)
        baseline.pop("model")
        baselines[task] = baseline
        for variant in variants:
            with tempfile.TemporaryDirectory(prefix="edgeopt-tasks-") as tmp:
                result, seconds = build_variant(task, VARIANTS[variant], Path(tmp) / "bundle")
                stages = {s.name: round(s.seconds, 1) for s in result.stages}
                row = row_of(task, variant, result.manifest, stages, seconds)
                row["command"] = command
                if task == "spam":
                    teacher = next(s for s in result.stages if s.name == "teacher").details
                    row["everyday"] = everyday_check(
                        result.out, Path(teacher["path"]), result.manifest["teacher"]["max_seq_len"]
                    )
            rows.append(row)
            print(
                f"{task} {variant}: teacher {row['teacher_accuracy']:.4f} tfidf {baseline['accuracy']:.4f} "
                f"student {row['accuracy']:.4f} ({row['accuracy_ratio']:.3f}) fidelity "
                f"{ {b: round(v['agreement'], 3) for b, v in row['fidelity'].items()} } {seconds:.0f} s",
                flush=True,
            )
            order = {(t, v): i for i, (t, v) in enumerate((t, v) for t in TASKS for v in VARIANTS)}
            rows.sort(key=lambda r: order.get((r["task"], r["variant"]), 1 << 30))
            write_outputs(rows, baselines, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
