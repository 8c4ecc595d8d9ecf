"""The arithmetic a teacher's torch passes run in: float32, or bfloat16 autocast where the CPU has it.

Fine-tuning (:class:`edgeopt.teacher.FinetuneConfig`) and labeling (:func:`edgeopt.teacher.load_teacher`) take
the same three values. bfloat16 autocast keeps the weights in float32 and runs the matrix products in bfloat16;
on a CPU with bfloat16 arithmetic it is 1.3-1.7x faster with the same labels (``bench/teacher_precision.py``),
and on one without, torch emulates it more slowly than float32, which is why ``"auto"`` asks the CPU.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRECISIONS", "native_bfloat16", "resolve_precision"]

PRECISIONS = ("auto", "float32", "bfloat16")
"""``auto``: bfloat16 where the CPU has bfloat16 arithmetic (:func:`native_bfloat16`), else float32."""


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (x86 AVX512-BF16 or AMX-BF16, Arm BF16), read from /proc/cpuinfo.

    Without it torch emulates bfloat16, which is slower than float32; elsewhere than Linux: False.
    """
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            features = set(value.split())
            return bool(features & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_precision(precision: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` on a CPU with bfloat16 arithmetic, else ``"float32"``; others unchanged."""
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision
