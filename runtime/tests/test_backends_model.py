from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt_runtime import BackendUnavailable, BundleInvalid, InputError, Prediction, load
from edgeopt_runtime.backends import OnnxBackend, TfliteBackend
from edgeopt_runtime.tokenizer import TextTokenizer, clean_text
from edgeopt_runtime_fixtures import LABELS, MAX_SEQ_LEN, make_texts, rewrite_manifest

BACKENDS = ["onnx", "tflite"]


@pytest.fixture(scope="module")
def keras_labels(tiny_bundle):
    tok = TextTokenizer.from_file(tiny_bundle.path / "tokenizer.json", MAX_SEQ_LEN)
    enc = tok.encode_batch(list(tiny_bundle.texts))
    logits = tiny_bundle.keras_model([enc.input_ids.astype(np.int32), enc.attention_mask.astype(np.int32)]).numpy()
    return [LABELS[i] for i in logits.argmax(axis=1)], logits


@pytest.fixture(scope="module", params=BACKENDS)
def clf(request, tiny_bundle):
    return load(tiny_bundle.path, backend=request.param, threads=1, cache=False)


def test_labels_match_keras(clf, tiny_bundle, keras_labels):
    labels, _ = keras_labels
    assert len(tiny_bundle.texts) == 30
    assert {"ham", "spam"} == set(labels)
    assert [p.label for p in clf.predict_batch(list(tiny_bundle.texts))] == labels


def test_logits_close_to_keras(clf, tiny_bundle, keras_labels):
    _, logits = keras_labels
    enc = TextTokenizer.from_file(tiny_bundle.path / "tokenizer.json", MAX_SEQ_LEN).encode_batch(
        list(tiny_bundle.texts)
    )
    got = clf._backend.run(enc.input_ids, enc.attention_mask)
    assert got.dtype == np.float32 and got.shape == (30, 2)
    tol = 1e-5 if clf.backend_name == "onnx" else 0.05  # int8 output steps are ~0.01
    np.testing.assert_allclose(got, logits, atol=tol)


def test_prediction_fields(clf):
    p = clf.predict("WIN free CASH now!!")
    assert isinstance(p, Prediction)
    assert p.label == "spam" and p.score == max(p.scores.values())
    assert list(p.scores) == list(LABELS) and sum(p.scores.values()) == pytest.approx(1.0)
    assert p.cached is False and p.truncated is False and p.latency_ms > 0
    assert clf.labels == LABELS and clf.manifest.max_seq_len == MAX_SEQ_LEN
    assert clf.backend_name in BACKENDS


def test_batch_equals_loop(clf):
    texts = make_texts(9, seed=7) + [" ".join(["free"] * 40)]
    batch = clf.predict_batch(texts)
    loop = [clf.predict(t) for t in texts]
    for b, s in zip(batch, loop, strict=True):
        assert b.label == s.label and b.truncated == s.truncated
        for label in LABELS:
            assert b.scores[label] == pytest.approx(s.scores[label], abs=1e-6)
    assert batch[-1].truncated is True


def test_bad_inputs(clf, tiny_bundle, tmp_path):
    with pytest.raises(InputError, match="^expected str, got int$"):
        clf.predict(5)
    with pytest.raises(InputError, match="empty or whitespace"):
        clf.predict(" \n")
    with pytest.raises(InputError, match=r"texts\[2\]"):
        clf.predict_batch(["a", "b", ""])
    with pytest.raises(InputError, match="^expected a list of str, got NoneType$"):
        clf.predict_batch(None)
    with pytest.raises(InputError, match="^expected a list of str, got int$"):
        clf.predict_batch(3)
    with pytest.raises(InputError, match=r"^expected a list of str, got a single bytes; use predict\(\)"):
        clf.predict_batch(b"free cash")
    assert [p.label for p in clf.predict_batch(t for t in ("free cash", "free cash"))] == ["spam", "spam"]
    assert clf.predict("free \ud800 cash").label == "spam"
    # The normalizer deletes these: the model would see [CLS] [SEP], as for an empty text.
    for unread in ("\u200b", "\u200b\u200d\ufeff", "\x00\x07"):
        with pytest.raises(InputError, match="^text has no character the model reads"):
            clf.predict(unread)
    with pytest.raises(InputError, match=r"^texts\[1\]: text has no character the model reads"):
        clf.predict_batch(["free cash", "\u200b"])
    # Named by its place in the caller's batch, not among the texts the cache did not answer.
    with load(tiny_bundle.path, cache=tmp_path / "c.sqlite") as cached:
        cached.predict("free cash")
        with pytest.raises(InputError, match=r"^texts\[2\]: text has no character the model reads"):
            cached.predict_batch(["free cash", "win now", "\u200b"])


def test_auto_prefers_onnx(tiny_bundle):
    assert load(tiny_bundle.path).backend_name == "onnx"


def test_load_options_checked(tiny_bundle):
    with pytest.raises(InputError, match=r"backend 'gpu' is not one of: auto, onnx, tflite"):
        load(tiny_bundle.path, backend="gpu")
    with pytest.raises(InputError, match="threads 0 must be a positive integer"):
        load(tiny_bundle.path, threads=0)


def test_load_verifies_first(bundle_copy):
    (bundle_copy / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(BundleInvalid, match="tokenizer.json has"):
        load(bundle_copy)


def test_missing_artifact_for_backend(bundle_copy):
    def drop_tflite(d):
        del d["artifacts"]["model.tflite"], d["files"]["model.tflite"]

    rewrite_manifest(bundle_copy, drop_tflite, refingerprint=True)
    with pytest.raises(BackendUnavailable, match=r"has no tflite model \(it has: onnx\); choose another --backend"):
        load(bundle_copy, backend="tflite")
    assert load(bundle_copy, backend="auto").backend_name == "onnx"


def test_wrong_label_count(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.update(labels=["a", "b", "c"]), refingerprint=True)
    clf = load(bundle_copy, backend="onnx")
    with pytest.raises(BundleInvalid, match=r"returned logits of shape \(1, 2\), expected \(1, 3\)"):
        clf.predict("hello")


def test_backend_dtype_casts_and_batch(tiny_bundle):
    onnx = OnnxBackend(tiny_bundle.path / "model.onnx", 1, seq_len=MAX_SEQ_LEN)
    lite = TfliteBackend(tiny_bundle.path / "model.tflite", 1, seq_len=MAX_SEQ_LEN)
    ids = np.zeros((3, MAX_SEQ_LEN), np.int64)
    ids[:, 0] = 2
    mask = (ids > 0).astype(np.int32)
    for backend in (onnx, lite):
        out = backend.run(ids, mask)
        assert out.shape == (3, 2) and out.dtype == np.float32
        assert backend.run(ids[:1], mask[:1]).shape == (1, 2)  # resize down after a bigger batch
    with pytest.raises(BundleInvalid, match="has length 16, manifest says 8"):
        OnnxBackend(tiny_bundle.path / "model.onnx", seq_len=8)
    with pytest.raises(BundleInvalid, match="has length 16, manifest says 8"):
        TfliteBackend(tiny_bundle.path / "model.tflite", seq_len=8)
    with pytest.raises(InputError, match="must be equal 2-D shapes"):
        onnx.run(ids, mask[:, :4])


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BundleInvalid, match="cannot be loaded by onnxruntime"):
        OnnxBackend(bad)
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(BundleInvalid, match="cannot be loaded by LiteRT"):
        TfliteBackend(bad)


def test_missing_onnxruntime(tiny_bundle, monkeypatch):
    # A None entry in sys.modules makes `import onnxruntime` fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailable, match=r"pip install edgeopt-runtime\[onnx\] \(or use --backend tflite\)"):
        load(tiny_bundle.path, backend="onnx", cache=False)
    assert load(tiny_bundle.path, backend="auto", cache=False).backend_name == "tflite"


def test_missing_litert(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(BackendUnavailable, match=r"pip install edgeopt-runtime\[tflite\]"):
        load(tiny_bundle.path, backend="tflite", cache=False)


def test_legacy_tflite_runtime_fallback(tiny_bundle, monkeypatch):
    # Where ai-edge-litert is missing, the interpreter comes from the legacy tflite_runtime package. That
    # package no longer installs here, so the real LiteRT interpreter module stands in under the legacy name:
    # what is tested is that the fallback import path finds it and runs the bundle through its API.
    import types

    import ai_edge_litert.interpreter as litert_interpreter

    legacy = types.ModuleType("tflite_runtime")
    legacy.interpreter = litert_interpreter  # type: ignore[attr-defined]
    expected = [p.label for p in load(tiny_bundle.path, backend="tflite", cache=False).predict_batch(["free cash"])]
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", legacy)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", litert_interpreter)
    clf = load(tiny_bundle.path, backend="tflite", cache=False)
    assert [p.label for p in clf.predict_batch(["free cash"])] == expected


def test_import_is_light():
    import subprocess
    import sys

    heavy = ("onnxruntime", "tensorflow", "torch", "transformers", "edgeopt", "ai_edge_litert", "tokenizers")
    code = f"import sys, edgeopt_runtime; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_batch_dedupe_runs_each_text_once(tiny_bundle, tmp_path):
    texts = ["free cash prize", "hello team", "hello team", "free cash prize", "win money"]
    clf = load(tiny_bundle.path, backend="onnx", cache=False)
    batch = clf.predict_batch(texts)
    s = clf.stats()
    assert (s.texts, s.cache_hits, s.deduplicated, s.model_rows, s.model_calls) == (5, 0, 2, 3, 1)
    singles = [clf.predict(t) for t in texts]
    for b, one in zip(batch, singles, strict=True):
        assert (b.label, b.truncated, b.cached) == (one.label, one.truncated, False)
        assert b.scores == pytest.approx(one.scores, abs=1e-6)
    batch[0].scores["spam"] = -1.0  # each prediction owns its dict
    assert batch[3].scores["spam"] > 0
    clf.predict_batch(texts, dedupe=False)
    assert clf.stats().model_rows == 3 + 5 + 5 and clf.stats().deduplicated == 2

    with load(tiny_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite") as cached:
        first = cached.predict_batch(texts)
        assert [p.cached for p in first] == [False] * 5
        again = cached.predict_batch(texts)
        assert [p.cached for p in again] == [True] * 5
        s = cached.stats()
        assert (s.texts, s.cache_hits, s.deduplicated, s.model_rows, s.model_calls) == (10, 3, 4, 3, 1)
        assert cached.cache.stats().entries == 3
    assert not cached.cache.enabled  # closed with the classifier


def test_changing_a_prediction_leaves_the_cache_alone(tiny_bundle, tmp_path):
    # The classifier writes its cache entries later (deferred); what a caller does to its answer in the
    # meantime must not reach them.
    with load(tiny_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite") as clf:
        first = clf.predict("free cash prize")
        expected = dict(first.scores)
        first.scores["spam"] = -1.0
        assert clf.predict("free cash prize").scores == expected
        clf.cache.flush()
    with load(tiny_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite") as clf:
        again = clf.predict("free cash prize")
        assert again.cached and again.scores == expected


def test_texts_the_model_reads_apart_never_share_an_answer(tiny_bundle, tmp_path):
    # The old key collapsed whitespace with str.split, which splits on \x1c-\x1f where the BERT normalizer
    # deletes them: "free\x1ccash" (one unknown word to the model) got the cached answer of "free cash".
    tok = TextTokenizer.from_file(tiny_bundle.path / "tokenizer.json", MAX_SEQ_LEN)
    apart = ("free cash", "free\x1ccash")
    assert tok.encode(apart[0]).input_ids.tolist() != tok.encode(apart[1]).input_ids.tolist()
    plain = load(tiny_bundle.path, backend="onnx", cache=False)
    with load(tiny_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite") as clf:
        assert clf.cache_key(apart[0]) != clf.cache_key(apart[1])
        first, second = clf.predict(apart[0]), clf.predict(apart[1])
        assert not second.cached and second.scores == pytest.approx(plain.predict(apart[1]).scores, abs=1e-6)
        assert first.scores != pytest.approx(second.scores, abs=1e-6)
        assert clf.predict(apart[1]).cached and clf.predict(apart[0]).cached
        batch = clf.predict_batch(["win money", "win\x1fmoney", "win money"])
        assert [p.cached for p in batch] == [False, False, False] and clf.stats().deduplicated == 1
        assert batch[1].scores == pytest.approx(plain.predict("win\x1fmoney").scores, abs=1e-6)
        # A lone surrogate becomes U+FFFD before the tokenizer and the key see it: one text, one entry.
        assert clf.cache_key("lone \ud800") == clf.cache_key("lone \ufffd")
    with pytest.raises(InputError, match="has no result cache; load it with cache=PATH"):
        plain.cache_key("free cash")


# Characters where a text normalization and the BERT normalizer may disagree: controls (kept, deleted or spaces),
# format and zero-width characters, every kind of whitespace, combining marks, lone surrogates.
_ODD = (
    "\x00\x07\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x7f\x85\xa0\xad\u0301\u061c\u1680\u180e\u2000\u200b\u200c"
    "\u200d\u2028\u2029\u202f\u205f\u2060\u3000\ufeff\ud800\udfff"
)
_WORDS = ["free", "cash", "hello", "team", "caf\u00e9", "cafe\u0301", "\u4e2d", "\ufffd"]


@pytest.fixture(scope="module")
def keyed(tiny_bundle, tmp_path_factory):
    clf = load(tiny_bundle.path, backend="onnx", cache=tmp_path_factory.mktemp("keys") / "c.sqlite")
    yield clf
    clf.close()


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=6),
    seps=st.lists(st.text(st.sampled_from(list(_ODD)), min_size=1, max_size=3), min_size=6, max_size=6),
    edit=st.tuples(st.integers(0, 5), st.text(st.sampled_from(list(_ODD)) | st.characters(), min_size=0, max_size=3)),
)
def test_equal_keys_mean_equal_model_inputs(keyed, words, seps, edit):
    # b is a with one separator replaced: sometimes a text the model reads the same, sometimes not. Equal keys
    # must mean equal model inputs (never a wrong answer); texts that differ get different keys even when the
    # model reads them the same (a missed hit, the price of not tokenizing on a hit).
    a = " ".join(w + seps[i] for i, w in enumerate(words)) + "x"
    changed = list(seps)
    changed[edit[0]] = edit[1]
    b = " ".join(w + changed[i] for i, w in enumerate(words)) + "x"
    tok = keyed.tokenizer
    ea, eb = tok.encode(a), tok.encode(b)
    same_input = ea.input_ids.tolist() == eb.input_ids.tolist() and ea.truncated == eb.truncated
    if keyed.cache_key(a) == keyed.cache_key(b):
        assert same_input
    assert (keyed.cache_key(a) == keyed.cache_key(b)) == (clean_text(a) == clean_text(b))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-80, 80, width=32), min_size=1, max_size=6))
def test_softmax_equals_numpy(row):
    from edgeopt_runtime.model import softmax

    z = np.asarray([row], dtype=np.float32).astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    got = softmax(np.asarray([row, row[::-1]], dtype=np.float32))
    assert got.shape == (2, len(row)) and got.dtype == np.float64
    np.testing.assert_allclose(got[0], (e / e.sum(axis=1, keepdims=True))[0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got[1], got[0][::-1], rtol=1e-12, atol=1e-300)
