"""Teacher hidden features and their cache (Teacher.features, TeacherLogitCache.get_or_compute_features)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import TextDataset
from edgeopt.errors import TeacherError
from edgeopt.teacher import TeacherLogitCache, load_teacher

HIDDEN = {"bert": 16, "distilbert": 16, "minilm": 24}


def _reference_features(path: Path, texts: tuple[str, ...], max_seq_len: int) -> np.ndarray:
    """Mean of the base encoder's last hidden state, one unpadded text at a time."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_seq_len, return_tensors="pt")
            if model.config.model_type == "distilbert":
                enc.pop("token_type_ids", None)
            rows.append(model(**enc).last_hidden_state[0].mean(dim=0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])  # minilm is the BERT architecture at another width
def test_features_are_the_masked_mean_of_the_last_hidden_state(
    arch: str, make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...]
) -> None:
    path = make_classifier_dir(arch)
    teacher = load_teacher(path, max_seq_len=16)
    # batch_size 3 pads short texts beside long ones: padding must not leak into the mean.
    features = teacher.features(toy_texts, batch_size=3)
    assert features.shape == (len(toy_texts), HIDDEN[arch])
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, _reference_features(path, toy_texts, 16), atol=1e-5)
    np.testing.assert_allclose(teacher.features(toy_texts, batch_size=1), features, atol=1e-5)
    assert teacher.features([]).shape == (0, HIDDEN[arch])


def test_features_need_a_hugging_face_teacher(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    teacher = load_teacher(tiny_onnx_dir, max_seq_len=16)
    message = r"exposes logits only, but intermediate-layer distillation needs its hidden states; use a Hugging Face"
    with pytest.raises(TeacherError, match=message):
        teacher.features(["free money"])
    with TeacherLogitCache(tmp_path / "cache.sqlite") as cache, pytest.raises(TeacherError, match=message):
        cache.get_or_compute_features(teacher, ["free money"])


def test_feature_cache_is_separate_from_logits_and_persists(
    make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...], tmp_path: Path
) -> None:
    bert = load_teacher(make_classifier_dir("bert"), max_seq_len=16)
    texts = [*toy_texts, toy_texts[0]]  # a duplicate is computed once
    db = tmp_path / "cache.sqlite"
    with TeacherLogitCache(db) as cache:
        logits = cache.get_or_compute(bert, texts)
        # Cached logits of the same texts do not count as features.
        first = cache.get_or_compute_features(bert, texts)
        assert (cache.hits, cache.misses, cache.computed) == (0, 2 * len(texts), 2 * len(toy_texts))
        assert first.shape == (len(texts), 16)
        np.testing.assert_allclose(first, bert.features(texts), atol=1e-6)

        second = cache.get_or_compute_features(bert, list(reversed(texts)))
        assert (cache.hits, cache.computed) == (len(texts), 2 * len(toy_texts))
        np.testing.assert_array_equal(second, first[::-1])
        np.testing.assert_array_equal(cache.get_or_compute(bert, texts), logits)  # logits still served

        minilm = load_teacher(make_classifier_dir("minilm"), max_seq_len=16)
        assert cache.get_or_compute_features(minilm, texts[:2]).shape == (2, 24)
        assert cache.get_or_compute_features(bert, []).shape == (0, 16)

    with TeacherLogitCache(db) as reopened:
        again = reopened.get_or_compute_features(bert, ["a new text", *texts[:2]])
        assert (reopened.hits, reopened.misses, reopened.computed) == (2, 1, 1)
        np.testing.assert_array_equal(again[1:], first[:2])

    with sqlite3.connect(db) as conn:
        logit_columns = [row[1] for row in conn.execute("pragma table_info(teacher_logits)")]
        kinds = {row[0] for row in conn.execute("select distinct kind from teacher_features")}
    assert logit_columns == ["teacher", "text_sha256", "num_labels", "logits"]
    assert kinds == {"features"}


def test_toy_teacher_features_drive_intermediate_distillation(
    toy_teacher_dir: Path, toy_train: TextDataset, tmp_path: Path
) -> None:
    """End to end: real teacher features and logits -> a student trained with the intermediate loss."""
    from edgeopt.distill import PROJECTION_LAYER, DistillConfig, distill, pack_targets
    from edgeopt.student import build_student, encode_texts, prune_vocabulary
    from stage_fixtures import tiny_spec

    teacher = load_teacher(toy_teacher_dir, max_seq_len=32)
    texts = list(toy_train.texts)
    labels = np.asarray(toy_train.labels)
    with TeacherLogitCache(tmp_path / "cache.sqlite") as cache:
        logits = cache.get_or_compute(teacher, texts)
        features = cache.get_or_compute_features(teacher, texts)
    # The fine-tuned teacher's features separate the classes: class means are far apart.
    gap = np.linalg.norm(features[labels == 0].mean(0) - features[labels == 1].mean(0))
    assert gap > features.std(0).mean()

    vocab = prune_vocabulary(teacher.tokenizer_json, texts, tmp_path / "student" / "tokenizer.json")
    ids = encode_texts(vocab.tokenizer_json, texts, 16)
    targets = pack_targets(logits, labels, 2)
    fit, val = np.arange(30), np.arange(30, 40)
    student = build_student(tiny_spec(), vocab.size, 2, 16)
    config = DistillConfig(epochs=12, batch_size=8, learning_rate=1e-2, patience=12, intermediate_weight=1.0)

    result = distill(
        student,
        (ids[0][fit], ids[1][fit]),
        targets[fit],
        ((ids[0][val], ids[1][val]), targets[val]),
        2,
        config,
        teacher_features=features[fit],
        validation_features=features[val],
    )

    assert result.history["feature_loss"][-1] < 0.8 * result.history["feature_loss"][0]
    assert result.best_val_accuracy >= 0.9
    assert student.output_names == ["logits"]
    assert PROJECTION_LAYER not in [layer.name for layer in student.layers]
