from __future__ import annotations

import numpy as np
import pytest
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
