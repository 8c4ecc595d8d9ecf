"""Write edgeopt's development tasks: labeled train/test files of several kinds, built offline and reproducibly.

The student is judged on tasks nobody tuned it on, so it is developed on tasks of different shapes (short and long
texts, 2 and many classes, few and many examples), each with a test split that no tuning looks at:

| task | texts | classes | train | source |
|---|---|---|---|---|
| spam | emails (subject + body) | 2 | 4,696 emails + 3,090 subjects | the default (`edgeopt build`, no file) |
| spam-subjects | subject lines only | 2 | ~3,100 | the shipped default, same email split |
| spam-3class | emails | 3 (easy ham / hard ham / spam) | 4,696 | the shipped default, folder names |
| fortunes-topics | fortune-cookie quotes | 19 topic files | ~6,800 | Debian fortunes + fortunes-min (BSD) |
| spam-subjects-few | subject lines | 2 | 400 | a stratified sample of spam-subjects' train, same test |

    python scripts/dev_tasks.py [--out .cache/dev-tasks]

Each task is a directory with ``train.jsonl`` and ``test.jsonl`` (keys ``text``, ``label``) and ``task.json``
(counts and provenance). The fortune quotes are the ones edgeopt ships (``edgeopt/datasets/fortunes.jsonl.gz``,
rebuilt from Debian's packages by ``scripts/build_fortunes.py``). Subject lines are cleaned as the default task
cleans them (``edgeopt.data``: first line, reply prefixes and list tags cut); a test subject that also occurs in
train is dropped from test, so test holds only unseen subjects.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.resources
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgeopt.data import DEFAULT_DATASET, fortune_quotes, stratified_split, subject_line  # noqa: E402

__all__ = ["TASKS", "FORTUNE_TOPICS", "build_tasks", "main"]

TASKS = ("spam-subjects", "spam-3class", "fortunes-topics", "spam-subjects-few")
# Topic files of at least ~150 quotes; the catch-all files (cookie, fortunes, miscellaneous, people, platitudes,
# wisdom, zippy, ...) are left out: their quotes are not about one subject, so no model could learn the file name.
FORTUNE_TOPICS = (
    "art",
    "computers",
    "definitions",
    "drugs",
    "education",
    "ethnic",
    "food",
    "kids",
    "law",
    "linux",
    "literature",
    "love",
    "men-women",
    "perl",
    "politics",
    "science",
    "sports",
    "startrek",
    "work",
)
FEW_TRAIN = 400
SEED = 0
TEST_FRACTION = 0.2

Row = tuple[str, str]


def _shipped_records() -> list[dict[str, str]]:
    resource = importlib.resources.files("edgeopt.datasets") / DEFAULT_DATASET
    lines = gzip.decompress(resource.read_bytes()).decode("utf-8").split("\n")
    return [json.loads(line) for line in lines if line]


def _unique(rows: Sequence[Row]) -> list[Row]:
    """Keep the first row of each text; drop a text that occurs with two labels."""
    labels: dict[str, set[str]] = {}
    for text, label in rows:
        labels.setdefault(text, set()).add(label)
    seen: set[str] = set()
    out = []
    for text, label in rows:
        if text and len(labels[text]) == 1 and text not in seen:
            seen.add(text)
            out.append((text, label))
    return out


def spam_subjects(records: Sequence[dict[str, str]]) -> tuple[list[Row], list[Row]]:
    """Subject lines of the default split's emails; test keeps only subjects not in train."""
    train = _unique([(subject_line(r["text"]), r["label"]) for r in records if r["split"] == "train"])
    known = {text for text, _ in train}
    test = _unique([(subject_line(r["text"]), r["label"]) for r in records if r["split"] == "test"])
    return train, [row for row in test if row[0] not in known]


def spam_3class(records: Sequence[dict[str, str]]) -> tuple[list[Row], list[Row]]:
    """The default split's emails, labeled by folder: easy ham, hard ham or spam."""
    group = {"easy-ham-1": "easy_ham", "easy-ham-2": "easy_ham", "hard-ham-1": "hard_ham"}

    def rows(split: str) -> list[Row]:
        return [(r["text"], group.get(r["group"], "spam")) for r in records if r["split"] == split]

    return rows("train"), rows("test")


def few(train: Sequence[Row], count: int, seed: int) -> list[Row]:
    """A stratified sample of ``count`` rows of ``train``."""
    fraction = count / len(train)
    _, chosen = stratified_split([t for t, _ in train], [lbl for _, lbl in train], fraction, seed)
    return [train[i] for i in sorted(chosen)]


def fortunes_topics(seed: int) -> tuple[list[Row], list[Row]]:
    """Quotes of the topic files, labeled by file, whitespace kept; a seeded stratified 80/20 split."""
    quotes = fortune_quotes()
    rows: list[Row] = [(q["text"], topic) for topic in FORTUNE_TOPICS for q in quotes if q["file"] == topic]
    rows = _unique(rows)
    train_idx, test_idx = stratified_split([t for t, _ in rows], [lbl for _, lbl in rows], TEST_FRACTION, seed)
    return [rows[i] for i in train_idx], [rows[i] for i in test_idx]


def _write(task_dir: Path, name: str, train: Sequence[Row], test: Sequence[Row], source: str) -> dict[str, object]:
    task_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        with (task_dir / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for text, label in rows:
                handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    words = [len(t.split()) for t, _ in [*train, *test]]
    info: dict[str, object] = {
        "name": name,
        "source": source,
        "train": len(train),
        "test": len(test),
        "classes": len({label for _, label in train}),
        "train_labels": dict(sorted(Counter(label for _, label in train).items())),
        "median_words": sorted(words)[len(words) // 2],
    }
    (task_dir / "task.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def build_tasks(out: Path, tasks: Sequence[str] = TASKS) -> list[dict[str, object]]:
    """Write the chosen tasks under ``out``; return their summaries."""
    records = _shipped_records()
    made = []
    subjects = spam_subjects(records)
    shipped = "the shipped SpamAssassin split (edgeopt/datasets/PROVENANCE.md)"
    for name in tasks:
        if name == "spam-subjects":
            made.append(_write(out / name, name, *subjects, f"subject lines of {shipped}"))
        elif name == "spam-subjects-few":
            train = few(subjects[0], FEW_TRAIN, SEED)
            made.append(_write(out / name, name, train, subjects[1], f"{FEW_TRAIN} subject lines of {shipped}"))
        elif name == "spam-3class":
            made.append(_write(out / name, name, *spam_3class(records), f"emails of {shipped}, by folder"))
        elif name == "fortunes-topics":
            train, test = fortunes_topics(SEED)
            source = f"Debian fortunes + fortunes-min (BSD), {len(FORTUNE_TOPICS)} topic files"
            made.append(_write(out / name, name, train, test, source))
        else:
            raise SystemExit(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "dev-tasks")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    args = parser.parse_args(argv)
    for info in build_tasks(args.out, [t for t in args.tasks.split(",") if t]):
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
