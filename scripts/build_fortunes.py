"""Rebuild edgeopt's general-text corpus from Debian's fortune packages.

Source: Debian packages ``fortunes`` and ``fortunes-min`` (BSD-3-Clause, from BSD's fortune), fetched with
``apt-get download`` (no root needed) and unpacked with ``dpkg-deb``.

    python scripts/build_fortunes.py                    # downloads the two packages into a temporary folder
    python scripts/build_fortunes.py --fortunes-dir DIR # reuse an unpacked usr/share/games/fortunes

Writes edgeopt/datasets/fortunes.jsonl.gz byte-for-byte reproducibly and prints the counts. Each line is
``{"file": FILE, "text": QUOTE}``: every quote of every fortune file (entries split on ``\\n%\\n``, stripped, the
quote's own line breaks and indentation kept), in file-name order then file order. Two uses: the general texts a
build's teacher labels beside the task's own (``edgeopt.data.load_general_texts``), and the ``fortunes-topics``
development task (``scripts/dev_tasks.py``). See edgeopt/datasets/PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fortunes", "fortunes-min")
DEFAULT_OUTPUT = REPO / "edgeopt" / "datasets" / "fortunes.jsonl.gz"
COPYRIGHT = "fortunes-copyright.txt"
"""The packages' copyright file, shipped beside the data: the BSD licence asks binary copies to reproduce it."""

__all__ = ["COPYRIGHT", "PACKAGES", "fetch_fortunes", "read_fortunes", "write_jsonl_gz", "main"]


def fetch_fortunes(workdir: Path) -> Path:
    """Download and unpack Debian's fortune packages into ``workdir``; return the fortunes directory."""
    for package in PACKAGES:
        subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True)
    for deb in sorted(workdir.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "root")], check=True)
    return workdir / "root" / "usr" / "share" / "games" / "fortunes"


def read_fortunes(directory: Path) -> list[dict[str, str]]:
    """Every quote of every fortune file in ``directory`` (the ``.dat`` indexes and ``.u8`` links skipped)."""
    records = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8"):
            continue
        content = path.read_text(encoding="utf-8", errors="replace")
        records += [{"file": path.name, "text": entry.strip()} for entry in content.split("\n%\n") if entry.strip()]
    return records


def _copyright(directory: Path) -> bytes:
    """The ``fortunes`` package's copyright file, beside ``usr/share/games/fortunes`` in the unpacked tree."""
    return (directory.parents[1] / "doc" / "fortunes" / "copyright").read_bytes()


def write_jsonl_gz(records: Sequence[dict[str, str]], path: Path) -> None:
    """Gzip JSON Lines with a fixed header (mtime 0, no name), so equal records give equal bytes."""
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fortunes-dir", type=Path, help="an unpacked usr/share/games/fortunes (else downloaded)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.fortunes_dir is not None:
        records, copyright_text = read_fortunes(args.fortunes_dir), _copyright(args.fortunes_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            directory = fetch_fortunes(Path(tmp))
            records, copyright_text = read_fortunes(directory), _copyright(directory)
    write_jsonl_gz(records, args.out)
    (args.out.parent / COPYRIGHT).write_bytes(copyright_text)
    counts = Counter(r["file"] for r in records)
    print(json.dumps({"quotes": len(records), "files": len(counts), "bytes": args.out.stat().st_size}))
    print(json.dumps(dict(sorted(counts.items()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
