from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt_runtime.errors import BundleInvalid, InputError
from edgeopt_runtime.manifest import read_manifest
from edgeopt_runtime.tokenizer import TextTokenizer, clean_text
from edgeopt_runtime_fixtures import MAX_SEQ_LEN, VOCAB


@pytest.fixture(scope="module")
def tok(tiny_bundle):
    return TextTokenizer.from_bundle(read_manifest(tiny_bundle.path), tiny_bundle.path)


def test_encode_shapes_and_padding(tok):
    enc = tok.encode("Hello TEAM")
    assert enc.input_ids.dtype == np.int64 and enc.attention_mask.dtype == np.int64
    assert enc.input_ids.shape == enc.attention_mask.shape == (1, MAX_SEQ_LEN)
    ids = enc.input_ids[0].tolist()
    assert ids[:4] == [VOCAB.index(t) for t in ("[CLS]", "hello", "team", "[SEP]")]
    assert ids[4:] == [VOCAB.index("[PAD]")] * (MAX_SEQ_LEN - 4)
    assert enc.attention_mask[0].tolist() == [1] * 4 + [0] * (MAX_SEQ_LEN - 4)
    assert enc.truncated == (False,)
    assert tok.pad_id == VOCAB.index("[PAD]")


def test_truncation_flag(tok):
    exact = " ".join(["free"] * (MAX_SEQ_LEN - 2))  # fills the window with [CLS] and [SEP]
    longer = exact + " cash"
    enc = tok.encode_batch([exact, longer, "hello"])
    assert enc.input_ids.shape == (3, MAX_SEQ_LEN)
    assert enc.truncated == (False, True, False)
    assert enc.input_ids[1, -1] == VOCAB.index("[SEP]")
    assert enc.attention_mask[1].sum() == MAX_SEQ_LEN


@pytest.mark.parametrize(
    ("value", "message"),
    [(3, "expected str, got int"), (b"x", "expected str, got bytes"), (None, "expected str, got NoneType")],
)
def test_non_str(tok, value, message):
    with pytest.raises(InputError, match=f"^{message}$"):
        tok.encode(value)


@pytest.mark.parametrize("value", ["", "   ", "\n\t \u3000"])
def test_empty(tok, value):
    with pytest.raises(InputError, match="text is empty or whitespace only"):
        tok.encode(value)


def test_batch_errors_name_index(tok):
    with pytest.raises(InputError, match=r"^texts\[1\]: expected str, got int$"):
        tok.encode_batch(["ok", 1])
    with pytest.raises(InputError, match="texts is empty"):
        tok.encode_batch([])
    with pytest.raises(InputError, match="got a single str"):
        tok.encode_batch("hello")


def test_lone_surrogates_replaced(tok):
    assert clean_text("a\ud800b") == "a\ufffdb"
    assert clean_text("x\ud83d\ude00") == "x\U0001f600"  # a well-formed pair is joined, not replaced
    enc = tok.encode("free \udcff cash")
    # BertNormalizer's clean_text drops U+FFFD like any invalid character, as BERT does.
    assert enc.input_ids[0, :4].tolist() == [VOCAB.index(t) for t in ("[CLS]", "free", "cash", "[SEP]")]


def test_bad_tokenizer_file(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleInvalid, match="is not a valid tokenizers file"):
        TextTokenizer.from_file(bad, 8)


def _raw(tok: TextTokenizer, text: str) -> tuple[list[int], bool]:
    # The tokenizers library on the whole text, as TextTokenizer did before it cut long texts.
    e = tok._tokenizer.encode(text)
    return e.ids, bool(e.overflowing)


def test_long_text_head_matches_whole_text(tok):
    import random

    rng = random.Random(3)
    pieces = VOCAB[5:] + [
        "caf\u00e9",
        "\u00fcber",
        "\u4e2d\u6587",
        "zzzunknown",
        "\x00",
        "\u200b",
        "!!",
        "\t",
        "\n\n",
        "  ",
    ]
    texts = []
    for n in (3000, 4095, 4200, 9000, 20000):
        words = []
        while sum(len(w) + 1 for w in words) < n:
            words.append(rng.choice(pieces))
        texts.append(" ".join(words))
    # A long text whose head holds no tokens (only dropped characters): it must be tokenized in full.
    texts.append("\x00 " * 3000 + "free cash prize")
    texts.append("x" * 6000)  # no space to cut at
    enc = tok.encode_batch(texts)
    for i, text in enumerate(texts):
        ids, overflow = _raw(tok, text)
        assert enc.input_ids[i].tolist() == ids, i
        assert enc.truncated[i] == overflow, i
    assert enc.truncated[-2] is False and VOCAB.index("free") in enc.input_ids[-2]


def test_huge_text_is_fast(tok):
    import time

    text = "free cash now hello team " * 400_000  # 10 MB
    start = time.perf_counter()
    enc = tok.encode(text)
    assert time.perf_counter() - start < 0.5
    assert enc.truncated == (True,)
    assert enc.input_ids[0].tolist() == _raw(tok, text[:5000])[0]


_PIECES = [*VOCAB[5:], "zzzzzzzzzzzzzzzzzzzzunknown", "caf\u00e9", "\u4e2d", "\x00", "!!", "\t", "\n", "   "]


@settings(max_examples=60, deadline=None)
@given(
    # Each text draws from a few pieces only, so some are all long words or all dropped characters.
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=3).flatmap(
        lambda pool: st.lists(st.sampled_from(pool), min_size=40, max_size=600)
    ),
    st.sampled_from([" ", "\n", ""]),
)
def test_head_first_tokenization_equals_whole_text(tok, pieces, sep):
    # Texts around the head limits (256 characters here, then 4x per retry): long unknown words, dropped
    # characters and whitespace make the first head fall short of max_seq_len tokens, so it must grow.
    text = sep.join(pieces)
    if not text.strip():
        text += " free"
    ids, overflow = _raw(tok, text)
    if sum(tok._tokenizer.encode(text).attention_mask) <= tok._special_tokens:
        # Only characters the normalizer deletes (NUL here): refused, however long the text.
        with pytest.raises(InputError, match="no character the model reads"):
            tok.encode(text)
        return
    enc = tok.encode(text)
    assert enc.input_ids[0].tolist() == ids
    assert enc.truncated == (overflow,)
