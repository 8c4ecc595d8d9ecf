"""What the runtime's drift monitor says on three kinds of traffic, for the default bundle.

Reproduce (repository root, after `edgeopt build --profile pixel8`):

    .venv/bin/python bench/monitor_demo.py bundles/pixel8

Each sample is 600 texts run through `TextClassifier.monitor()` (window 600) and compared with the reference the
build recorded on the held-out test split:
  (a) a seeded random half of the test split: the distribution the reference (the whole split) was taken on;
  (b) a seeded random sample of the training split: the same labels, but texts the model was trained on;
  (c) spam only (from the training split): a label shift, as when a spam wave hits.
Writes bench/results/monitor.md.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=Path("bundles/pixel8"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "monitor.md")
    args = parser.parse_args()

    from edgeopt.data import load_default
    from edgeopt_runtime import load

    data = load_default()
    rng = random.Random(0)
    train = list(zip(data.train.texts, data.train.labels, strict=True))
    rng.shuffle(train)
    spam = data.train.label_names.index("spam")
    test = list(data.test.texts)
    rng.shuffle(test)
    samples = {
        "(a) test split, random half": test[: len(test) // 2],
        "(b) training split, random": [t for t, _ in train[:600]],
        "(c) spam only": [t for t, y in train if y == spam][:600],
    }
    lines = [
        "# Drift monitor on three samples",
        "",
        f"Command: `python bench/monitor_demo.py {' '.join(sys.argv[1:])}`. Bundle `{args.bundle}`; reference: its "
        "`monitoring` key (the whole held-out test split).",
        "",
        "| sample | texts | spam share | top-class p >= 0.99 | label PSI | confidence PSI | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, texts in samples.items():
        with load(args.bundle, cache=False, monitor_window=len(texts)) as clf:
            for start in range(0, len(texts), 64):
                clf.predict_batch(texts[start : start + 64], dedupe=False)
            report, reference = clf.monitor(), clf.monitoring_reference
        if report.drift is None or reference is None:
            sys.exit(f"monitor_demo: {args.bundle} has no monitoring reference; rebuild it with this edgeopt")
        lines.append(
            f"| {name} | {report.window} | {report.label_share['spam']:.1%} | {report.confidence_share[-1]:.1%} | "
            f"{report.drift.label_psi:.3f} | {report.drift.confidence_psi:.3f} | {report.drift.status} |"
        )
    lines += [
        f"| reference | {reference.texts} | {reference.label_share['spam']:.1%} | "
        f"{reference.confidence_share[-1]:.1%} | | | |",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
