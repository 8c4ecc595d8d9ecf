"""Helpers that make tiny inputs for whole builds: a small profile and small labeled files."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

from edgeopt.profiles import profiles_dir

SPAM = ("free", "money", "win", "prize", "cash", "offer", "click", "now", "cheap")
HAM = ("meeting", "report", "lunch", "project", "thanks", "team", "agenda", "notes", "review")
FILLER = ("the", "a", "to", "for", "you", "we", "is", "on", "and", "of", "hello", "today")


def tiny_profile(dest: Path, **budget: object) -> Path:
    """The pixel8 profile shrunk for tests: 16 tokens, a tiny student, few calibration texts.

    Keyword arguments override ``[budget]`` values (e.g. ``max_model_mb=0.0001`` for a budget that cannot be met).
    """
    text = (profiles_dir() / "pixel8.toml").read_text(encoding="utf-8")
    values = {
        "max_seq_len": 16,
        "calibration_samples": 16,
        "embedding_dim": 8,
        "hidden_dim": 16,
        "dense_dim": 8,
        "max_accuracy_drop": 1.0,
        # A 16-unit student on 60 texts has little to spare: prune it lightly so the test measures plumbing.
        "target_sparsity": 0.25,
        **budget,
    }
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    text = text.replace('name = "pixel8"', 'name = "tiny"')
    # A few general texts keep that path in every tiny build without the cost of the default 8,000.
    text = text.replace("[student]\n", "[student]\ngeneral_texts = 12\n")
    path = dest / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def toy_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Separable spam/ham rows in the vocabulary of the tiny test tokenizer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "spam" if i % 2 else "ham"
        words = rng.choices(SPAM if label == "spam" else HAM, k=3) + rng.choices(FILLER, k=rng.randint(1, 5))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    """Write rows as CSV with a header."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
