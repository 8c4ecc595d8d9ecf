"""Text augmentation and the transfer set (edgeopt.augment)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt.augment import (
    DEFAULT_METHODS,
    AugmentMethod,
    TransferSource,
    augment_texts,
    build_transfer_set,
)
from edgeopt.data import TextDataset
from edgeopt.errors import DataError, StageError

TEXTS = [
    "Free money now, click here to win",
    "Meeting agenda for the project team",
    "Lunch on Friday with the review notes",
    "Cheap prize offer ends today",
]

words = st.text(alphabet=st.characters(categories=("L", "N", "P")), min_size=1, max_size=8)
texts_strategy = st.lists(st.lists(words, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=6)


def test_copies_are_text_major_and_deterministic() -> None:
    out = augment_texts(TEXTS, copies=3, seed=7)
    assert len(out) == len(TEXTS) * 3
    assert out == augment_texts(TEXTS, copies=3, seed=7)
    assert out != augment_texts(TEXTS, copies=3, seed=8)
    # Copies depend on the text itself, not on its position or neighbours: the cache can reuse them.
    assert augment_texts([TEXTS[2]], copies=3, seed=7) == out[6:9]
    assert augment_texts(TEXTS, copies=0) == []


@pytest.mark.parametrize("method", list(AugmentMethod))
def test_each_method_changes_multi_word_texts(method: AugmentMethod) -> None:
    out = augment_texts(TEXTS, copies=4, seed=1, methods=[method.value])
    for i, text in enumerate(TEXTS):
        copies = out[i * 4 : (i + 1) * 4]
        assert all(copy != text and copy.strip() for copy in copies)
        assert len(set(copies)) > 1


def test_method_specific_edits() -> None:
    text = "alpha beta gamma delta epsilon zeta"
    source = text.split()
    for copy in augment_texts([text], copies=5, seed=3, methods=["drop"]):
        kept = copy.split()
        assert 1 <= len(kept) < len(source)
        assert all(word in source for word in kept)
    for copy in augment_texts([text], copies=5, seed=3, methods=["swap"]):
        assert sorted(copy.split()) == sorted(source)
    for copy in augment_texts([text], copies=5, seed=3, methods=["mask"], mask_token="<mask>"):
        assert "<mask>" in copy.split()
        assert len(copy.split()) == len(source)
    for copy in augment_texts([text], copies=5, seed=3, methods=["char"]):
        changed = [a != b for a, b in zip(copy.split(), source, strict=True)]
        assert any(changed)


def test_one_word_texts() -> None:
    # Neither dropping the only word nor swapping can change a one-word text: it is kept as is.
    assert augment_texts(["hello"], copies=2, methods=["drop", "swap"]) == ["hello", "hello"]
    assert augment_texts(["hello"], copies=1, methods=["mask"]) == ["[MASK]"]
    assert all(copy != "hello" and copy for copy in augment_texts(["hello"], copies=3, methods=["char"]))


@settings(max_examples=60, deadline=None)
@given(texts=texts_strategy, seed=st.integers(0, 2**31), copies=st.integers(1, 3))
def test_copies_are_never_empty(texts: list[str], seed: int, copies: int) -> None:
    for methods in (DEFAULT_METHODS, tuple(AugmentMethod)):
        out = augment_texts(texts, copies=copies, seed=seed, methods=methods, rate=0.9)
        assert len(out) == len(texts) * copies
        assert all(copy.strip() for copy in out)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"copies": -1}, StageError, "augmentation copies must be >= 0, got -1"),
        ({"rate": 0.0}, StageError, r"augmentation rate must be in \(0, 1\], got 0.0"),
        ({"rate": 1.5}, StageError, r"augmentation rate must be in \(0, 1\], got 1.5"),
        ({"methods": ["drop", "shuffle"]}, StageError, "augmentation methods must be a non-empty subset of"),
        ({"methods": []}, StageError, "augmentation methods must be a non-empty subset of"),
        ({"mask_token": "a b"}, StageError, "mask_token must be one non-empty word"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        augment_texts(TEXTS, **kwargs)


def test_empty_text_is_refused_with_its_index() -> None:
    with pytest.raises(DataError, match="^text 1 is empty or only whitespace"):
        augment_texts(["fine text", "   "])


# --- the transfer set ------------------------------------------------------------------------------------------


def _train() -> TextDataset:
    return TextDataset(texts=tuple(TEXTS), labels=(1, 0, 0, 1), label_names=("ham", "spam"))


def test_transfer_set_layout() -> None:
    unlabeled = ["win a free cash prize", "team lunch notes"]
    transfer = build_transfer_set(_train(), unlabeled, augment_copies=2, seed=0)

    assert len(transfer) == 4 + 2 + 4 * 2
    assert transfer.texts[:6] == (*TEXTS, *unlabeled)
    assert transfer.texts[6:] == tuple(augment_texts(TEXTS, copies=2, seed=0))
    assert transfer.labels == (1, 0, 0, 1, -1, -1, *([-1] * 8))
    assert transfer.sources == (("labeled",) * 4 + ("unlabeled",) * 2 + ("augmented",) * 8)
    assert all(isinstance(source, TransferSource) for source in transfer.sources)
    assert transfer.origins == (0, 1, 2, 3, 4, 5, 0, 0, 1, 1, 2, 2, 3, 3)
    counts = (transfer.count("labeled"), transfer.count(TransferSource.UNLABELED), transfer.count("augmented"))
    assert counts == (4, 2, 8)


def test_transfer_set_without_augmentation_and_with_unlabeled_augmentation() -> None:
    plain = build_transfer_set(_train(), ["extra text here"], augment_copies=0, seed=0)
    assert plain.texts == (*TEXTS, "extra text here")
    assert plain.count("augmented") == 0

    both = build_transfer_set(_train(), ["extra text here"], augment_copies=1, seed=0, augment_unlabeled=True)
    assert both.origins[5:] == (0, 1, 2, 3, 4)
    assert both.texts[-1] != "extra text here"


def test_training_rows_hold_out_validation_texts_and_their_copies() -> None:
    transfer = build_transfer_set(_train(), ["extra text here"], augment_copies=2, seed=0)
    rows = transfer.training_rows([1, 3])
    # Labeled 0 and 2, the unlabeled row 4, and the copies of rows 0 and 2 (5, 6 and 9, 10).
    np.testing.assert_array_equal(rows, [0, 2, 4, 5, 6, 9, 10])
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(transfer.training_rows([]), np.arange(len(transfer)))
