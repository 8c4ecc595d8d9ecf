"""Cheap text augmentation, crops, and the distillation transfer set (labeled + unlabeled + augmented + crops).

A student learns more of the teacher's function from more texts, and the teacher labels any text for free: edited
copies of the training texts (Tang et al., 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks") probe the teacher around each example. The edits are small and mostly keep the label, but the label is
not trusted: augmented texts carry only the teacher's soft targets (label -1).

Crops (first line, first sentence, random spans) teach the student what the teacher does on short texts, which a
corpus of long documents never shows it.

Every edit is drawn from a generator seeded by ``(seed, copy, text)``: the same text always gets the same copies,
whatever dataset it sits in, so the teacher cache serves them on rebuilds.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from edgeopt.data import first_line
from edgeopt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from edgeopt.data import TextDataset

__all__ = [
    "AugmentMethod",
    "CropKind",
    "DEFAULT_METHODS",
    "LENGTH_BUCKETS",
    "TransferSource",
    "TransferSet",
    "augment_texts",
    "build_transfer_set",
    "crop_texts",
    "length_bucket",
]


class AugmentMethod(StrEnum):
    """One kind of edit.

    ``drop`` deletes words, ``swap`` swaps adjacent words, ``mask`` replaces words with the mask token (which a
    BERT-family teacher was pre-trained on), ``char`` replaces, deletes or inserts one letter inside words.
    """

    DROP = "drop"
    SWAP = "swap"
    MASK = "mask"
    CHAR = "char"


DEFAULT_METHODS: tuple[AugmentMethod, ...] = (AugmentMethod.DROP, AugmentMethod.SWAP, AugmentMethod.MASK)
_REDRAWS = 4


class TransferSource(StrEnum):
    """Where a transfer-set text comes from."""

    LABELED = "labeled"
    UNLABELED = "unlabeled"
    GENERAL = "general"
    AUGMENTED = "augmented"
    CROP = "crop"


class CropKind(StrEnum):
    """One way of cutting a shorter text out of a longer one.

    ``first-line`` is the first non-blank line (an email's subject, a document's title), ``first-sentence`` the
    text up to its first sentence end, ``span`` a random run of 3-20 consecutive words.
    """

    FIRST_LINE = "first-line"
    FIRST_SENTENCE = "first-sentence"
    SPAN = "span"


# Word-count buckets of the fidelity report: (name, most words); the last has no upper bound.
LENGTH_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("<=8", 8),
    ("9-32", 32),
    ("33-128", 128),
    (">128", None),
)
_SPAN_WORDS = (3, 20)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MAX_SENTENCE_WORDS = 64


@dataclass(frozen=True)
class TransferSet:
    """The texts the student is distilled on.

    Rows are ordered labeled, then unlabeled, then general (:func:`edgeopt.data.load_general_texts`), then augmented,
    then crops.

    Attributes:
        texts: The texts.
        labels: The label of each labeled text; -1 for every other text (soft targets only).
        sources: Where each text comes from.
        origins: For an augmented or cropped text, the row it was made from; for any other text, its own row.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    sources: tuple[TransferSource, ...]
    origins: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def count(self, source: TransferSource | str) -> int:
        """Number of rows from ``source``."""
        return sum(s == source for s in self.sources)

    def training_rows(self, validation_rows: Collection[int]) -> np.ndarray:
        """Rows to train on when ``validation_rows`` (labeled rows) are held out for early stopping.

        Augmented copies and crops of a held-out text are held out too: a near-copy in training would leak the
        validation text and make early stopping trust an inflated accuracy.

        Returns:
            Sorted int64 row indices.
        """
        held_out = {int(row) for row in validation_rows}
        return np.asarray(
            [row for row, origin in enumerate(self.origins) if row not in held_out and origin not in held_out],
            dtype=np.int64,
        )

    def held_out_rows(self, validation_rows: Collection[int]) -> np.ndarray:
        """``validation_rows`` and then the augmented copies and crops made from them (none of them trains).

        Early stopping watches all of these: the validation texts for accuracy, their crops for agreement with
        the teacher on shorter texts (a crop carries the teacher's label only).

        Returns:
            int64 row indices: ``validation_rows`` in their order, then the rows made from them in row order.
        """
        held_out = [int(row) for row in validation_rows]
        chosen = set(held_out)
        derived = [row for row, origin in enumerate(self.origins) if origin in chosen and row not in chosen]
        return np.asarray(held_out + derived, dtype=np.int64)


def augment_texts(
    texts: Sequence[str],
    copies: int = 1,
    seed: int = 0,
    methods: Sequence[AugmentMethod | str] = DEFAULT_METHODS,
    rate: float = 0.15,
    mask_token: str = "[MASK]",
) -> list[str]:
    """Make ``copies`` edited versions of each text.

    Each word is edited with probability ``rate`` by each method in turn; a text that comes out unchanged gets
    one forced edit, so a copy differs from its source whenever the methods can change it (a one-word text
    cannot be swapped or lose its only word). No copy is empty.

    Args:
        texts: Non-empty texts.
        copies: Edited versions per text, >= 0.
        seed: Seed; the same ``(seed, text)`` always gives the same copies.
        methods: Non-empty subset of ``drop``, ``swap``, ``mask``, ``char``.
        rate: Per-word edit probability of each method, in (0, 1].
        mask_token: What ``mask`` puts in place of a word: the teacher tokenizer's mask token.

    Returns:
        ``len(texts) * copies`` texts, text-major: the copies of ``texts[i]`` are at ``i * copies`` .. ``i *
        copies + copies - 1``.

    Raises:
        StageError: ``copies``, ``methods``, ``rate`` or ``mask_token`` is invalid.
        DataError: A text is empty or only whitespace.
    """
    chosen = _check_methods(methods)
    if copies < 0:
        raise ConfigError(f"augmentation copies must be >= 0, got {copies}")
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"augmentation rate must be in (0, 1], got {rate}")
    if not mask_token.strip() or any(c.isspace() for c in mask_token):
        raise ConfigError(f"mask_token must be one non-empty word, got {mask_token!r}")
    out: list[str] = []
    for index, text in enumerate(texts):
        words = text.split()
        if not words:
            raise DataError(f"text {index} is empty or only whitespace; remove it before augmenting")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        made: list[str] = []
        for copy in range(copies):
            # A few redraws avoid duplicate copies of a text where another edit exists (short texts).
            for attempt in range(_REDRAWS):
                rng = random.Random(f"{seed}:{copy}:{attempt}:{digest}")
                candidate = " ".join(_augment_words(words, rng, chosen, rate, mask_token))
                if candidate not in made:
                    break
            made.append(candidate)
        out.extend(made)
    return out


def build_transfer_set(
    train: TextDataset,
    unlabeled: Sequence[str],
    augment_copies: int,
    seed: int,
    methods: Sequence[AugmentMethod | str] = DEFAULT_METHODS,
    augment_unlabeled: bool = False,
    crop_copies: int = 0,
    general: Sequence[str] = (),
) -> TransferSet:
    """Combine labeled, unlabeled, general, augmented and cropped texts into the transfer set.

    Args:
        train: The labeled training texts (kept first, in order, so row ``i`` is ``train.texts[i]``).
        unlabeled: The task's texts without labels; the teacher labels them.
        augment_copies: Edited copies per augmented text (0: none).
        seed: Seed of the edits.
        methods: Edit methods (see :func:`augment_texts`).
        augment_unlabeled: Also augment the unlabeled texts, not only the labeled ones.
        crop_copies: Crops per labeled, unlabeled and general text (see :func:`crop_texts`; 0: none).
        general: Texts from outside the task (:func:`edgeopt.data.load_general_texts`); the teacher labels them
            and they are cropped like the task's unlabeled texts, never augmented.

    Returns:
        The transfer set; augmented and cropped rows have label -1 and record the row they came from.
    """
    n_train = len(train.texts)
    base = [*train.texts, *unlabeled, *general]
    sources = (
        [TransferSource.LABELED] * n_train
        + [TransferSource.UNLABELED] * len(unlabeled)
        + [TransferSource.GENERAL] * len(general)
    )
    to_augment = n_train + len(unlabeled) if augment_unlabeled else n_train
    augmented = augment_texts(base[:to_augment], augment_copies, seed, methods)
    origins = list(range(len(base))) + [row for row in range(to_augment) for _ in range(augment_copies)]
    # Crops of every labeled, unlabeled and general text, minus any that is already a text of the set (a subject line
    # that is also a training text keeps its true label and is not shown twice).
    known = set(base) | set(augmented)
    crops = [(row, crop) for row, crop, _ in crop_texts(base, crop_copies, seed) if crop not in known]
    return TransferSet(
        texts=tuple(base + augmented + [crop for _, crop in crops]),
        labels=tuple(train.labels) + (-1,) * (len(base) - n_train + len(augmented) + len(crops)),
        sources=tuple(sources + [TransferSource.AUGMENTED] * len(augmented) + [TransferSource.CROP] * len(crops)),
        origins=tuple(origins + [row for row, _ in crops]),
    )


def crop_texts(texts: Sequence[str], copies: int, seed: int = 0) -> list[tuple[int, str, CropKind]]:
    """Cut up to ``copies`` shorter texts out of each text: its first line, its first sentence, then random spans.

    A model distilled on whole documents only has never seen a short text; the teacher labels crops for free, so
    they teach the student what the teacher does on a subject line or a one-line message. The same crops of
    held-out texts measure that (:func:`edgeopt.evaluate.fidelity_set`). A crop is kept only when it is shorter
    than its text and differs from the text's other crops, so a short text gets fewer crops (a one-word text none).

    Args:
        texts: The texts.
        copies: Crops per text, >= 0: the first line, the first sentence, then ``copies - 2`` random spans.
        seed: Seed; the same ``(seed, text)`` always gives the same crops.

    Returns:
        ``(row of the source text, crop, kind)`` in row order.

    Raises:
        StageError: ``copies`` is negative.
    """
    if copies < 0:
        raise ConfigError(f"crop copies must be >= 0, got {copies}")
    out: list[tuple[int, str, CropKind]] = []
    if copies == 0:
        return out
    for row, text in enumerate(texts):
        words = text.split()
        flat = " ".join(words)
        rng = random.Random(f"{seed}:crop:{hashlib.sha256(text.encode('utf-8')).hexdigest()}")
        made: list[str] = []
        kinds = [CropKind.FIRST_LINE, CropKind.FIRST_SENTENCE] + [CropKind.SPAN] * max(0, copies - 2)
        for kind in kinds[:copies]:
            if kind is CropKind.FIRST_LINE:
                crop = first_line(text)
            elif kind is CropKind.FIRST_SENTENCE:
                crop = " ".join(_SENTENCE_END.split(flat, maxsplit=1)[0].split()[:_MAX_SENTENCE_WORDS])
            else:
                crop = _random_span(words, rng)
            if crop and crop != flat and crop not in made:
                made.append(crop)
                out.append((row, crop, kind))
    return out


def length_bucket(text: str) -> str:
    """Name of the word-count bucket of :data:`LENGTH_BUCKETS` that ``text`` falls in."""
    count = len(text.split())
    for name, most in LENGTH_BUCKETS:
        if most is None or count <= most:
            return name
    raise AssertionError("the last bucket has no upper bound")


def _random_span(words: list[str], rng: random.Random) -> str:
    if len(words) <= _SPAN_WORDS[0]:
        return ""
    size = rng.randint(_SPAN_WORDS[0], min(_SPAN_WORDS[1], len(words) - 1))
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start : start + size])


def _check_methods(methods: Sequence[AugmentMethod | str]) -> tuple[AugmentMethod, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    valid = [m.value for m in AugmentMethod]
    bad = [m for m in methods if m not in valid]
    if bad or not methods:
        raise ConfigError(f"augmentation methods must be a non-empty subset of {valid}, got {list(methods)}")
    return tuple(dict.fromkeys(AugmentMethod(m) for m in methods))


def _augment_words(
    words: list[str], rng: random.Random, methods: tuple[AugmentMethod, ...], rate: float, mask_token: str
) -> list[str]:
    edited = list(words)
    for method in methods:
        edited = _EDITS[method](edited, rng, rate, mask_token, False)
    content = [w for w in words if w != mask_token]
    if content and all(w == mask_token for w in edited):
        # A copy with no word left carries nothing of its source; put one word back.
        edited[rng.randrange(len(edited))] = rng.choice(content)
    if edited != words:
        return edited
    # Nothing changed: force one edit, trying the methods in random order (some cannot change a one-word text).
    fallback = words
    for method in rng.sample(methods, len(methods)):
        forced = _EDITS[method](list(words), rng, rate, mask_token, True)
        if forced != words and not all(w == mask_token for w in forced):
            return forced
        if forced != words:
            fallback = forced
    return fallback


def _drop(words: list[str], rng: random.Random, rate: float, mask_token: str, force: bool) -> list[str]:
    if len(words) < 2:
        return words
    if force:
        victim = rng.randrange(len(words))
        return words[:victim] + words[victim + 1 :]
    kept = [w for w in words if rng.random() >= rate]
    return kept or [rng.choice(words)]


def _swap(words: list[str], rng: random.Random, rate: float, mask_token: str, force: bool) -> list[str]:
    words = list(words)
    pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
    if not pairs:
        return words
    for i in [rng.choice(pairs)] if force else [i for i in pairs if rng.random() < rate]:
        words[i], words[i + 1] = words[i + 1], words[i]
    return words


def _mask(words: list[str], rng: random.Random, rate: float, mask_token: str, force: bool) -> list[str]:
    if force:
        candidates = [i for i, w in enumerate(words) if w != mask_token]
        victim = rng.choice(candidates) if candidates else -1
        return [mask_token if i == victim else w for i, w in enumerate(words)]
    return [mask_token if rng.random() < rate else w for w in words]


def _char(words: list[str], rng: random.Random, rate: float, mask_token: str, force: bool) -> list[str]:
    targets = [i for i, w in enumerate(words) if w != mask_token and any(c.isalpha() for c in w)]
    if not targets:
        return words
    chosen = {rng.choice(targets)} if force else {i for i in targets if rng.random() < rate}
    return [_char_edit(w, rng) if i in chosen else w for i, w in enumerate(words)]


def _char_edit(word: str, rng: random.Random) -> str:
    at = rng.choice([i for i, c in enumerate(word) if c.isalpha()])
    new = rng.choice([c for c in string.ascii_lowercase if c != word[at].lower()])
    op = rng.choice(("replace", "delete", "insert") if len(word) > 1 else ("replace", "insert"))
    if op == "replace":
        return word[:at] + new + word[at + 1 :]
    if op == "delete":
        return word[:at] + word[at + 1 :]
    return word[:at] + new + word[at:]


_EDITS = {
    AugmentMethod.DROP: _drop,
    AugmentMethod.SWAP: _swap,
    AugmentMethod.MASK: _mask,
    AugmentMethod.CHAR: _char,
}
