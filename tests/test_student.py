"""Vocabulary pruning, text encoding and the CNN student (edgeopt.student)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from edgeopt.errors import StageError
from edgeopt.profiles import STUDENT_ARCHITECTURES
from edgeopt.student import (
    INIT_EMBEDDING_STD,
    build_student,
    count_parameters,
    encode_texts,
    prune_vocabulary,
    teacher_embedding_init,
    tokenizer_model,
)
from stage_fixtures import (
    MAX_SEQ_LEN,
    NUM_LABELS,
    SPECIAL_TOKENS,
    UNREACHABLE_TOKENS,
    UNUSED_TOKENS,
    ToyTask,
    keras_logits,
    make_toy_task,
    tiny_spec,
    toy_corpus,
    write_bpe_tokenizer,
    write_wordpiece_tokenizer,
)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> ToyTask:
    return make_toy_task(tmp_path_factory.mktemp("student"), n=48)


@pytest.fixture(scope="module")
def student(task: ToyTask) -> Any:
    return build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=0)


def _vocab(tokenizer_json: Path) -> dict[str, int]:
    return json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]


def _teacher_tokens(task: ToyTask) -> set[str]:
    teacher = Tokenizer.from_file(str(task.teacher_tokenizer))
    return {token for text in task.texts for token in teacher.encode(text).tokens}


def _is_single_piece(token: str) -> bool:
    return len(token) == 1 or (token.startswith("##") and len(token) == 3)


# --- vocabulary pruning -------------------------------------------------------------------------------------


def test_prune_vocabulary_keeps_specials_single_pieces_and_used_tokens(task: ToyTask) -> None:
    teacher_vocab = _vocab(task.teacher_tokenizer)
    kept = set(_vocab(task.tokenizer_json))
    expected = set(SPECIAL_TOKENS) | {t for t in teacher_vocab if _is_single_piece(t)} | _teacher_tokens(task)
    assert kept == expected
    assert not kept & set(UNUSED_TOKENS)
    assert "##ing" in kept  # a multi-character subword piece the corpus uses
    assert task.vocab_size == len(kept) < len(teacher_vocab)


def test_prune_vocabulary_result_maps_student_ids_to_teacher_ids(tmp_path: Path) -> None:
    texts, _ = toy_corpus(24, seed=3)
    teacher_json = write_wordpiece_tokenizer(tmp_path / "teacher.json")
    pruned = prune_vocabulary(teacher_json, texts, tmp_path / "out" / "tokenizer.json")
    teacher_vocab, student_vocab = _vocab(teacher_json), _vocab(pruned.tokenizer_json)
    assert pruned.tokenizer_json == tmp_path / "out" / "tokenizer.json"
    assert pruned.teacher_vocab_size == len(teacher_vocab)
    assert pruned.size == len(pruned.teacher_ids) == len(student_vocab)
    assert sorted(student_vocab.values()) == list(range(pruned.size))  # dense ids
    for token, new_id in student_vocab.items():
        assert pruned.teacher_ids[new_id] == teacher_vocab[token]
    assert list(pruned.teacher_ids) == sorted(pruned.teacher_ids)
    assert student_vocab["[PAD]"] == 0


def test_pruned_tokenizer_gives_the_teachers_tokens_on_the_corpus(task: ToyTask) -> None:
    teacher = Tokenizer.from_file(str(task.teacher_tokenizer))
    student = Tokenizer.from_file(str(task.tokenizer_json))
    for text in task.texts:
        want, got = teacher.encode(text), student.encode(text)
        assert got.tokens == want.tokens, text
        assert [task.teacher_ids[i] for i in got.ids] == want.ids, text
        assert max(got.ids) < task.vocab_size


def test_unseen_word_splits_into_kept_single_pieces(task: ToyTask) -> None:
    student = Tokenizer.from_file(str(task.tokenizer_json))
    # "zest" is not in the corpus; it splits into single-character pieces rather than [UNK].
    assert student.encode("zest").tokens == ["[CLS]", "z", "##e", "##s", "##t", "[SEP]"]


def test_keep_all_keeps_every_teacher_token_and_marks_the_corpus_rows(tmp_path: Path) -> None:
    texts, _ = toy_corpus(24, seed=3)
    teacher_json = write_wordpiece_tokenizer(tmp_path / "teacher.json")
    corpus = prune_vocabulary(teacher_json, texts, tmp_path / "corpus.json")
    full = prune_vocabulary(teacher_json, texts, tmp_path / "full.json", keep_all=True)
    teacher_vocab = _vocab(teacher_json)
    student_vocab = _vocab(full.tokenizer_json)
    assert set(student_vocab) == set(teacher_vocab)
    assert all(full.teacher_ids[row] == teacher_vocab[token] for token, row in student_vocab.items())
    # The corpus rows are the tokens the texts use (and the specials), by their ids in each table.
    used_by_full = {full.teacher_ids[row] for row in full.corpus_rows}
    used_by_corpus = {corpus.teacher_ids[row] for row in corpus.corpus_rows}
    assert used_by_full == used_by_corpus
    assert not {teacher_vocab[t] for t in UNUSED_TOKENS} & used_by_full
    # "banana" is no text's word: with every token kept it stays one piece, as the teacher reads it, where the
    # corpus vocabulary splits it into letters.
    assert Tokenizer.from_file(str(full.tokenizer_json)).encode("banana").tokens == ["[CLS]", "banana", "[SEP]"]
    assert len(Tokenizer.from_file(str(corpus.tokenizer_json)).encode("banana").tokens) == 8


@pytest.mark.parametrize("keep_all", [False, True])
def test_tokens_the_tokenizer_cannot_output_get_no_row(tmp_path: Path, keep_all: bool) -> None:
    texts, _ = toy_corpus(24, seed=3)
    texts += ["Free!!! ... wow...", "cash中 FREE, [unused0] now!"]
    teacher_json = write_wordpiece_tokenizer(tmp_path / "teacher.json", unreachable=True)
    teacher = Tokenizer.from_file(str(teacher_json))
    # The fixture's claim, checked by the tokenizer itself: no text it meets brings these tokens out.
    produced = {token for text in texts for token in teacher.encode(text).tokens}
    assert not produced & set(UNREACHABLE_TOKENS)
    pruned = prune_vocabulary(teacher_json, texts, tmp_path / "student.json", keep_all=keep_all)
    student_vocab = _vocab(pruned.tokenizer_json)
    assert not set(student_vocab) & set(UNREACHABLE_TOKENS)
    if keep_all:
        assert set(student_vocab) == set(_vocab(teacher_json)) - set(UNREACHABLE_TOKENS)
    # Leaving them out changes no text's tokens (with every other token kept, not even a new text's).
    student = Tokenizer.from_file(str(pruned.tokenizer_json))
    for text in [*texts, "Banana zest!"] if keep_all else texts:
        assert student.encode(text).tokens == teacher.encode(text).tokens, text
        assert [pruned.teacher_ids[i] for i in student.encode(text).ids] == teacher.encode(text).ids, text


def test_pruned_file_loads_in_tokenizers_and_the_runtime(task: ToyTask) -> None:
    from edgeopt_runtime import TextTokenizer

    Tokenizer.from_file(str(task.tokenizer_json))
    runtime = TextTokenizer.from_file(task.tokenizer_json, MAX_SEQ_LEN)
    assert runtime.pad_id == 0
    encoded = runtime.encode_batch(task.texts[:3])
    assert encoded.input_ids.shape == (3, MAX_SEQ_LEN)


def test_pruned_file_drops_teacher_truncation_and_padding(tmp_path: Path) -> None:
    teacher_json = write_wordpiece_tokenizer(tmp_path / "teacher.json")
    spec = json.loads(teacher_json.read_text(encoding="utf-8"))
    spec["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
    teacher_json.write_text(json.dumps(spec), encoding="utf-8")
    pruned = prune_vocabulary(teacher_json, ["free money win prize now"], tmp_path / "student.json")
    written = json.loads(pruned.tokenizer_json.read_text(encoding="utf-8"))
    assert written["truncation"] is None and written["padding"] is None
    # The corpus was tokenized without the teacher's truncation: every word of the text is kept.
    assert {"win", "prize", "now"} <= set(written["model"]["vocab"])


@pytest.mark.parametrize("processor", ["template", "bert"])
def test_post_processor_special_ids_are_remapped(tmp_path: Path, processor: str) -> None:
    texts, _ = toy_corpus(24, seed=4)
    teacher_json = write_wordpiece_tokenizer(tmp_path / "teacher.json", specials_last=True, processor=processor)
    pruned = prune_vocabulary(teacher_json, texts, tmp_path / "student.json")
    teacher_vocab, student_vocab = _vocab(teacher_json), _vocab(pruned.tokenizer_json)
    cls_id, sep_id = student_vocab["[CLS]"], student_vocab["[SEP]"]
    # Guards the test: the ids must actually move, or a missing remap would go unnoticed.
    assert (cls_id, sep_id) != (teacher_vocab["[CLS]"], teacher_vocab["[SEP]"])
    encoding = Tokenizer.from_file(str(pruned.tokenizer_json)).encode(texts[0])
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
    assert (encoding.ids[0], encoding.ids[-1]) == (cls_id, sep_id)
    ids, _ = encode_texts(pruned.tokenizer_json, texts[:2], MAX_SEQ_LEN)
    assert ids[0, 0] == cls_id and sep_id in ids[0]
    added = json.loads(pruned.tokenizer_json.read_text(encoding="utf-8"))["added_tokens"]
    assert {t["content"]: t["id"] for t in added} == {t: student_vocab[t] for t in SPECIAL_TOKENS}


def test_non_wordpiece_tokenizer_is_a_stage_error(tmp_path: Path) -> None:
    bpe = write_bpe_tokenizer(tmp_path / "bpe.json")
    with pytest.raises(StageError, match=r"needs a WordPiece tokenizer, but .*bpe\.json is 'BPE'"):
        prune_vocabulary(bpe, ["free"], tmp_path / "student.json")
    assert not (tmp_path / "student.json").exists()
    assert tokenizer_model(bpe) == "BPE"


def test_token_texts_are_the_tokens_without_their_continuation_prefix(tmp_path: Path) -> None:
    teacher = write_wordpiece_tokenizer(tmp_path / "teacher.json")
    pruned = prune_vocabulary(teacher, ["free money"], tmp_path / "student.json")
    assert tokenizer_model(pruned.tokenizer_json) == "WordPiece"
    vocab = json.loads(pruned.tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    texts = pruned.token_texts()
    assert len(texts) == pruned.size
    assert texts[vocab["free"]] == "free" and texts[vocab["##s"]] == "s" and texts[vocab["[CLS]"]] == "[CLS]"
    assert pruned.from_teacher and not dataclasses.replace(pruned, source="another vocabulary").from_teacher


# --- encoding -----------------------------------------------------------------------------------------------


def test_encode_texts_pads_truncates_and_returns_int32(task: ToyTask) -> None:
    long_text = " ".join(["free money"] * 20)
    ids, mask = encode_texts(task.tokenizer_json, ["free", long_text], MAX_SEQ_LEN)
    assert ids.dtype == mask.dtype == np.int32
    assert ids.shape == mask.shape == (2, MAX_SEQ_LEN)
    assert mask[0].tolist() == [1, 1, 1] + [0] * (MAX_SEQ_LEN - 3)
    assert ids[0, 3:].tolist() == [0] * (MAX_SEQ_LEN - 3)
    assert mask[1].sum() == MAX_SEQ_LEN


# --- the student model --------------------------------------------------------------------------------------


def test_build_student_contract(student: Any, task: ToyTask) -> None:
    assert [t.name.split(":")[0] for t in student.inputs] == ["input_ids", "attention_mask"]
    assert [t.dtype.name for t in student.inputs] == ["int32", "int32"]
    assert tuple(student.inputs[0].shape) == (None, MAX_SEQ_LEN)
    logits = keras_logits(student, (task.encoded[0][:5], task.encoded[1][:5]))
    assert logits.shape == (5, NUM_LABELS)
    assert np.isfinite(logits).all()


def test_count_parameters_matches_the_architecture(student: Any, task: ToyTask) -> None:
    spec, vocab = tiny_spec(), task.vocab_size
    embedding = vocab * spec.embedding_dim
    conv = spec.kernel_size * spec.embedding_dim * spec.hidden_dim + spec.hidden_dim
    dense = spec.hidden_dim * spec.dense_dim + spec.dense_dim
    head = spec.dense_dim * NUM_LABELS + NUM_LABELS
    assert count_parameters(student) == embedding + conv + dense + head


@pytest.fixture(scope="module", params=STUDENT_ARCHITECTURES)
def any_student(request: pytest.FixtureRequest, task: ToyTask) -> Any:
    return build_student(tiny_spec(architecture=request.param), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=0)


def test_every_architecture_keeps_the_contract(any_student: Any, task: ToyTask) -> None:
    test_build_student_contract(any_student, task)
    for name in ("embedding", "conv", "pool", "dense", "logits"):  # what pruning, distillation and calibration use
        any_student.get_layer(name)


def test_attention_student_adds_a_score_and_a_second_pool(task: ToyTask) -> None:
    spec = tiny_spec(architecture="cnn-attention")
    model = build_student(spec, task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    embedding = task.vocab_size * spec.embedding_dim
    conv = spec.kernel_size * spec.embedding_dim * spec.hidden_dim + spec.hidden_dim
    score = spec.hidden_dim + 1
    dense = 2 * spec.hidden_dim * spec.dense_dim + spec.dense_dim  # reads [max pool; attention pool]
    head = spec.dense_dim * NUM_LABELS + NUM_LABELS
    assert count_parameters(model) == embedding + conv + score + dense + head


def test_attention_weights_cover_only_the_texts_tokens(task: ToyTask) -> None:
    from edgeopt._tf import import_tf

    _, keras = import_tf()
    model = build_student(tiny_spec(architecture="cnn-attention"), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN)
    probe = keras.Model(model.inputs, model.get_layer("attention_weights").output)
    ids, mask = task.encoded
    weights = np.asarray(probe([ids, mask], training=False))[..., 0]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert (weights[mask == 0] < 1e-6).all()
    assert (weights[mask == 1] > 1e-4).all()


def test_logits_ignore_ids_at_padded_positions(any_student: Any, task: ToyTask) -> None:
    student = any_student
    ids, mask = task.encoded
    rng = np.random.default_rng(0)
    assert (mask == 0).any()  # guards the test: there must be padding to change
    noisy = np.where(mask == 0, rng.integers(1, task.vocab_size, ids.shape), ids).astype(np.int32)
    base = keras_logits(student, (ids, mask))
    np.testing.assert_allclose(keras_logits(student, (noisy, mask)), base, atol=1e-6)
    # The same change at real positions must change the logits (the comparison above can fail).
    changed = np.where(mask == 1, rng.integers(5, task.vocab_size, ids.shape), ids).astype(np.int32)
    assert not np.allclose(keras_logits(student, (changed, mask)), base, atol=1e-6)


def test_build_student_is_seeded(task: ToyTask) -> None:
    a = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=7)
    b = build_student(tiny_spec(), task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=7)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_unknown_architecture_is_a_stage_error() -> None:
    spec = dataclasses.replace(tiny_spec())
    # StudentSpec itself rejects unknown architectures; reach build_student's own check the only way left.
    object.__setattr__(spec, "architecture", "lstm")
    with pytest.raises(
        StageError, match=r"unknown student architecture 'lstm'; this version builds cnn, cnn-attention$"
    ):
        build_student(spec, 10, NUM_LABELS, MAX_SEQ_LEN)


# --- initialization from the teacher ------------------------------------------------------------------------


def test_teacher_init_is_the_pca_of_the_kept_teacher_rows(task: ToyTask) -> None:
    rng = np.random.default_rng(0)
    hidden = 24
    teacher_table = rng.normal(size=(max(task.teacher_ids) + 5, hidden)).astype(np.float32)
    table = teacher_embedding_init(teacher_table, task.teacher_ids, dim=8)
    assert table.shape == (task.vocab_size, 8) and table.dtype == np.float32
    assert table.std() == pytest.approx(INIT_EMBEDDING_STD, rel=1e-4)
    # Same subspace as an SVD of the centered kept rows, component by component up to sign.
    rows = teacher_table[list(task.teacher_ids)].astype(np.float64)
    rows -= rows.mean(0)
    u, s, _ = np.linalg.svd(rows, full_matrices=False)
    reference = u[:, :8] * s[:8]
    for k in range(8):
        corr = np.corrcoef(table[:, k], reference[:, k])[0, 1]
        assert abs(corr) == pytest.approx(1.0, abs=1e-4)
    # Components keep their order of importance (no whitening).
    assert np.all(np.diff(table.var(0)) <= 1e-9)


def test_teacher_init_fits_the_pca_and_scale_on_the_given_rows_only(task: ToyTask) -> None:
    rng = np.random.default_rng(3)
    teacher_table = rng.normal(size=(max(task.teacher_ids) + 1, 12))
    fit_rows = list(range(0, len(task.teacher_ids), 2))
    table = teacher_embedding_init(teacher_table, task.teacher_ids, dim=5, fit_rows=fit_rows)
    assert table.shape == (task.vocab_size, 5)
    assert table[fit_rows].std() == pytest.approx(INIT_EMBEDDING_STD, rel=1e-4)
    # Fitted on the chosen rows alone, those rows come out as the PCA of themselves...
    alone = teacher_embedding_init(teacher_table, [task.teacher_ids[r] for r in fit_rows], dim=5)
    np.testing.assert_allclose(np.abs(table[fit_rows]), np.abs(alone), rtol=1e-4, atol=1e-6)
    # ...and every other row goes through the same projection, not one of its own.
    assert not np.allclose(np.abs(table), np.abs(teacher_embedding_init(teacher_table, task.teacher_ids, dim=5)))


def test_teacher_init_pads_a_narrow_teacher(task: ToyTask) -> None:
    teacher_table = np.random.default_rng(1).normal(size=(max(task.teacher_ids) + 1, 4))
    table = teacher_embedding_init(teacher_table, task.teacher_ids, dim=6)
    assert table.shape == (task.vocab_size, 6) and np.all(table[:, 4:] == 0)


def test_teacher_init_refuses_ids_outside_the_table(task: ToyTask) -> None:
    with pytest.raises(StageError, match="teacher's embedding table has 3 rows"):
        teacher_embedding_init(np.zeros((3, 8)), task.teacher_ids, dim=4)


def test_build_student_starts_from_the_given_table(task: ToyTask) -> None:
    spec = tiny_spec()
    table = np.random.default_rng(2).normal(size=(task.vocab_size, spec.embedding_dim)).astype(np.float32)
    model = build_student(spec, task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=0, embeddings=table)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], table)
    with pytest.raises(StageError, match=r"initial embeddings have shape \(3, 2\)"):
        build_student(spec, task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, embeddings=np.zeros((3, 2)))


def test_a_frozen_table_keeps_its_starting_value_while_the_rest_trains(task: ToyTask) -> None:
    from edgeopt.distill import DistillConfig, compile_for_distillation, pack_targets

    spec = tiny_spec()
    table = np.random.default_rng(3).normal(size=(task.vocab_size, spec.embedding_dim)).astype(np.float32)
    model = build_student(spec, task.vocab_size, NUM_LABELS, MAX_SEQ_LEN, embeddings=table, train_embeddings=False)
    dense_before = model.get_layer("dense").get_weights()[0].copy()
    compile_for_distillation(model, NUM_LABELS, DistillConfig(), 1e-2)
    targets = pack_targets(np.zeros((len(task.labels), NUM_LABELS)), task.labels, NUM_LABELS)
    model.fit(list(task.encoded), targets, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], table)
    assert not np.allclose(model.get_layer("dense").get_weights()[0], dense_before)
