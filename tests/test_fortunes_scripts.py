"""The fortune-quote scripts: the shipped corpus' builder and the fortunes-topics development task made from it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build_fortunes = _script("build_fortunes")
dev_tasks = _script("dev_tasks")


def _fake_tree(root: Path) -> Path:
    games = root / "usr" / "share" / "games" / "fortunes"
    games.mkdir(parents=True)
    (games / "work").write_text("Work is love made visible.\n\t\t-- Kahlil Gibran\n%\n\n%\nDon't panic.\n")
    (games / "art").write_text("Art is long.\n%\nLife is short.")
    (games / "art.dat").write_bytes(b"\x00\x00\x00\x02index")
    (games / "art.u8").symlink_to("art")
    doc = root / "usr" / "share" / "doc" / "fortunes"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("BSD licence text\n")
    return games


def test_builder_keeps_every_quote_with_its_file_and_writes_the_same_bytes_twice(tmp_path: Path) -> None:
    games = _fake_tree(tmp_path)
    assert build_fortunes.read_fortunes(games) == [
        {"file": "art", "text": "Art is long."},
        {"file": "art", "text": "Life is short."},
        {"file": "work", "text": "Work is love made visible.\n\t\t-- Kahlil Gibran"},
        {"file": "work", "text": "Don't panic."},
    ]
    first, second = tmp_path / "a" / "fortunes.jsonl.gz", tmp_path / "b" / "fortunes.jsonl.gz"
    for out in (first, second):
        assert build_fortunes.main(["--fortunes-dir", str(games), "--out", str(out)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert (first.parent / build_fortunes.COPYRIGHT).read_text() == "BSD licence text\n"


def test_fortunes_topics_task_comes_from_the_shipped_quotes(tmp_path: Path) -> None:
    (info,) = dev_tasks.build_tasks(tmp_path, ["fortunes-topics"])
    assert (info["train"], info["test"], info["classes"]) == (6207, 1552, 19)
    rows = {
        split: [json.loads(line) for line in (tmp_path / "fortunes-topics" / f"{split}.jsonl").open()]
        for split in ("train", "test")
    }
    assert not {r["text"] for r in rows["train"]} & {r["text"] for r in rows["test"]}
    assert set(Counter(r["label"] for r in rows["test"])) == set(dev_tasks.FORTUNE_TOPICS)
