"""Text augmentation and the transfer set (edgeopt.augment)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt.augment import (
    DEFAULT_METHODS,
    AugmentMethod,
    CropKind,
    TransferSource,
    augment_texts,
    build_transfer_set,
    crop_texts,
    length_bucket,
)
from edgeopt.data import TextDataset
from edgeopt.errors import ConfigError, DataError

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
        ({"copies": -1}, ConfigError, "augmentation copies must be >= 0, got -1"),
        ({"rate": 0.0}, ConfigError, r"augmentation rate must be in \(0, 1\], got 0.0"),
        ({"rate": 1.5}, ConfigError, r"augmentation rate must be in \(0, 1\], got 1.5"),
        ({"methods": ["drop", "shuffle"]}, ConfigError, "augmentation methods must be a non-empty subset of"),
        ({"methods": []}, ConfigError, "augmentation methods must be a non-empty subset of"),
        ({"mask_token": "a b"}, ConfigError, "mask_token must be one non-empty word"),
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


# --- crops ---

EMAIL = "Lunch at noon\nHi all. The usual place works for me! Bring the quarterly numbers and the draft plan please."


def test_crops_are_first_line_first_sentence_then_spans() -> None:
    crops = crop_texts([EMAIL], copies=4, seed=3)
    kinds = [kind for _, _, kind in crops]
    assert kinds[:2] == [CropKind.FIRST_LINE, CropKind.FIRST_SENTENCE] and set(kinds[2:]) == {CropKind.SPAN}
    assert crops[0][1] == "Lunch at noon"
    assert crops[1][1] == "Lunch at noon Hi all."
    flat = " ".join(EMAIL.split())
    for row, crop, kind in crops:
        assert row == 0 and crop != flat
        if kind is CropKind.SPAN:
            assert 3 <= len(crop.split()) <= 20 and crop in flat
    assert len({crop for _, crop, _ in crops}) == len(crops)


def test_crops_depend_on_seed_and_text_only() -> None:
    texts = [EMAIL, " ".join(f"word{i}" for i in range(60))]
    crops = crop_texts(texts, copies=5, seed=1)
    assert crops == crop_texts(texts, copies=5, seed=1)
    assert [c for r, c, _ in crops if r == 1] == [c for _, c, _ in crop_texts(texts[1:], copies=5, seed=1)]
    assert crops != crop_texts(texts, copies=5, seed=2)
    assert crop_texts(texts, copies=0) == []


def test_a_first_sentence_equal_to_the_first_line_is_kept_once() -> None:
    kinds = [kind for _, _, kind in crop_texts(["Lunch at noon?\nHi all. See you there, bring the notes."], 2)]
    assert kinds == [CropKind.FIRST_LINE]


def test_short_texts_get_fewer_crops_and_never_themselves() -> None:
    assert crop_texts(["hello"], copies=3) == []
    assert crop_texts(["one two three"], copies=3) == []  # one line, one sentence, too short for a span
    two = crop_texts(["Subject here\nbody"], copies=3)
    assert [c for _, c, _ in two] == ["Subject here"]


@given(texts=texts_strategy, copies=st.integers(0, 6))
@settings(max_examples=60, deadline=None)
def test_every_crop_is_a_nonempty_shorter_run_of_its_texts_words(texts: list[str], copies: int) -> None:
    for row, crop, _ in crop_texts(texts, copies):
        words = " ".join(texts[row].split())
        assert crop.strip() and crop != words
        assert len(crop.split()) <= len(words.split())


def test_negative_crop_copies_is_a_stage_error() -> None:
    with pytest.raises(ConfigError, match="crop copies must be >= 0, got -1"):
        crop_texts(TEXTS, copies=-1)


def test_length_buckets() -> None:
    assert [length_bucket(" ".join(["w"] * n)) for n in (1, 8, 9, 32, 33, 128, 129)] == [
        "<=8",
        "<=8",
        "9-32",
        "9-32",
        "33-128",
        "33-128",
        ">128",
    ]


def test_transfer_set_adds_crops_as_soft_targets_with_their_origin() -> None:
    train = TextDataset(
        texts=(EMAIL, "Win cash now\nClaim your free prize today by clicking the link below right now", "short"),
        labels=(0, 1, 0),
        label_names=("ham", "spam"),
    )
    transfer = build_transfer_set(train, ["Unlabeled note\nsecond line of the note"], 0, seed=0, crop_copies=2)
    crops = [i for i, s in enumerate(transfer.sources) if s is TransferSource.CROP]
    assert transfer.count(TransferSource.CROP) == len(crops) > 0
    assert crops == list(range(4, len(transfer)))
    assert all(transfer.labels[i] == -1 for i in crops)
    assert {transfer.origins[i] for i in crops} == {0, 1, 3}  # "short" has no crop
    assert transfer.texts[crops[0]] == "Lunch at noon"
    # Crops of a validation text are held out with it.
    assert not set(crops[:2]) & set(transfer.training_rows([0]).tolist())


def test_general_texts_follow_the_unlabeled_ones_and_are_cropped_never_augmented() -> None:
    train = TextDataset(texts=("Team lunch at noon today", "Win cash now"), labels=(0, 1), label_names=("ham", "spam"))
    general = ("A journey of a thousand miles begins with one step. Then more.", "Never trust a computer. Lift it.")
    transfer = build_transfer_set(train, ["Unlabeled note"], 1, seed=0, crop_copies=2, general=general)
    assert transfer.texts[:5] == (*train.texts, "Unlabeled note", *general)
    assert transfer.sources[:5] == (
        TransferSource.LABELED,
        TransferSource.LABELED,
        TransferSource.UNLABELED,
        TransferSource.GENERAL,
        TransferSource.GENERAL,
    )
    assert transfer.labels[:5] == (0, 1, -1, -1, -1)
    made_from = {
        source: {transfer.origins[i] for i, s in enumerate(transfer.sources) if s is source}
        for source in (TransferSource.AUGMENTED, TransferSource.CROP)
    }
    assert made_from[TransferSource.AUGMENTED] == {0, 1}  # only labeled texts are augmented
    assert {3, 4} <= made_from[TransferSource.CROP]
    assert all(transfer.labels[i] == -1 for i in range(5, len(transfer)))


def test_held_out_rows_are_the_validation_rows_then_what_was_made_from_them() -> None:
    train = TextDataset(
        texts=(EMAIL, "Win cash now\nClaim your free prize today by clicking the link below", "Team lunch"),
        labels=(0, 1, 0),
        label_names=("ham", "spam"),
    )
    transfer = build_transfer_set(train, [], 1, seed=0, crop_copies=2)
    held = transfer.held_out_rows([1]).tolist()
    assert held[0] == 1 and len(held) > 2
    assert all(transfer.origins[row] == 1 for row in held)
    assert not set(held) & set(transfer.training_rows([1]).tolist())
    assert sorted(held + transfer.training_rows([1]).tolist()) == list(range(len(transfer)))
