"""Tiny real things for the pipeline-stage tests: a WordPiece tokenizer, a toy corpus, a trained toy student.

A plain module (not a conftest): the stage tests import what they need and build it in module-scoped
fixtures, so TensorFlow models are built once per test module.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.profiles import StudentSpec

__all__ = [
    "SPECIAL_TOKENS",
    "SPAM_WORDS",
    "HAM_WORDS",
    "FILLER_WORDS",
    "UNUSED_TOKENS",
    "UNREACHABLE_TOKENS",
    "MAX_SEQ_LEN",
    "NUM_LABELS",
    "wordpiece_vocab",
    "write_wordpiece_tokenizer",
    "write_bpe_tokenizer",
    "toy_corpus",
    "tiny_spec",
    "encode",
    "ToyTask",
    "make_toy_task",
    "train_toy_student",
    "keras_logits",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPAM_WORDS = ("free", "money", "win", "prize", "cash", "offer", "click", "now")
# "meeting" and "reviewing" split into "meet ##ing" / "review ##ing": the corpus uses multi-character pieces.
HAM_WORDS = ("meeting", "agenda", "project", "notes", "report", "team", "reviewing", "lunch")
FILLER_WORDS = ("the", "a", "to", "for", "you", "we", "is", "on")
# In the vocabulary, never produced by the corpus: vocabulary pruning must drop them.
UNUSED_TOKENS = ("banana", "zebra", "guitar", "##ly", "##er", "##ed")
# Tokens a lowercasing BERT tokenizer can never output (see write_wordpiece_tokenizer's ``unreachable``).
UNREACHABLE_TOKENS = ("[unused0]", "...", "Free", "##!", "##中")
MAX_SEQ_LEN = 16
NUM_LABELS = 2


def wordpiece_vocab(specials_last: bool = False) -> list[str]:
    """The ~70-token teacher vocabulary, [PAD] first so its id is 0.

    Args:
        specials_last: Put [CLS], [SEP] and [MASK] after the unused tokens, so that pruning changes their ids.
    """
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = ["##" + c for c in "aeinost"] + ["##ing"]
    words = [w for w in (*SPAM_WORDS, *HAM_WORDS, *FILLER_WORDS) if w not in ("meeting", "reviewing")]
    body = [*letters, *pieces, *words, "meet", "review", *UNUSED_TOKENS]
    if specials_last:
        return [*SPECIAL_TOKENS[:2], *body, *SPECIAL_TOKENS[2:]]
    return [*SPECIAL_TOKENS, *body]


def write_wordpiece_tokenizer(
    path: Path, specials_last: bool = False, processor: str = "template", unreachable: bool = False
) -> Path:
    """Write a BERT-style lowercase WordPiece ``tokenizer.json`` ([CLS] $A [SEP]) to ``path``.

    Args:
        path: Where to write it.
        specials_last: See :func:`wordpiece_vocab`.
        processor: ``"template"`` (TemplateProcessing) or ``"bert"`` (BertProcessing) post-processor.
        unreachable: Append :data:`UNREACHABLE_TOKENS`, as BERT's vocabulary holds such tokens.
    """
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors

    tokens = wordpiece_vocab(specials_last) + (list(UNREACHABLE_TOKENS) if unreachable else [])
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if processor == "bert":
        tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def write_bpe_tokenizer(path: Path) -> Path:
    """Write a tiny byte-pair-encoding ``tokenizer.json`` (not WordPiece) to ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "f": 2, "r": 3, "e": 4, "fr": 5, "ee": 6}
    tokenizer = Tokenizer(models.BPE(vocab, [("f", "r"), ("e", "e")], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    # Guards the fixture itself: the file must really declare a non-WordPiece model.
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["type"] == "BPE"
    return path


def toy_corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` separable texts: label 1 (spam) texts hold spam words, label 0 (ham) texts hold ham words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        topic = SPAM_WORDS if label else HAM_WORDS
        words = rng.choices(topic, k=rng.randint(2, 4)) + rng.choices(FILLER_WORDS, k=rng.randint(1, 4))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize())
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def tiny_spec(target_sparsity: float = 0.5, architecture: str = "cnn") -> StudentSpec:
    """The student size used by the stage tests: embedding 8, hidden 16, kernel 3, dense 8."""
    return StudentSpec(
        architecture=architecture,
        embedding_dim=8,
        hidden_dim=16,
        kernel_size=3,
        dense_dim=8,
        target_sparsity=target_sparsity,
    )


def encode(tokenizer_json: Path, texts: list[str], max_seq_len: int = MAX_SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int32 arrays, tokenized by the runtime's tokenizer."""
    from edgeopt.student import encode_texts

    return encode_texts(tokenizer_json, texts, max_seq_len)


@dataclass(frozen=True)
class ToyTask:
    """A toy corpus tokenized with a vocabulary pruned to it.

    Attributes:
        texts: The texts.
        labels: Their labels (0 ham, 1 spam).
        teacher_tokenizer: The teacher's ``tokenizer.json``.
        tokenizer_json: The pruned student ``tokenizer.json``.
        vocab_size: Size of the pruned vocabulary.
        teacher_ids: For each student id, the teacher's id (from :func:`edgeopt.student.prune_vocabulary`).
        encoded: ``(input_ids, attention_mask)`` of ``texts``.
    """

    texts: list[str]
    labels: np.ndarray
    teacher_tokenizer: Path
    tokenizer_json: Path
    vocab_size: int
    teacher_ids: tuple[int, ...]
    encoded: tuple[np.ndarray, np.ndarray]


def make_toy_task(directory: Path, n: int = 64, seed: int = 0) -> ToyTask:
    """Write the teacher tokenizer into ``directory``, prune it to ``n`` toy texts and encode them."""
    from edgeopt.student import prune_vocabulary

    texts, labels = toy_corpus(n, seed)
    teacher = write_wordpiece_tokenizer(directory / "teacher" / "tokenizer.json")
    pruned = prune_vocabulary(teacher, texts, directory / "student" / "tokenizer.json")
    return ToyTask(
        texts=texts,
        labels=labels,
        teacher_tokenizer=teacher,
        tokenizer_json=pruned.tokenizer_json,
        vocab_size=pruned.size,
        teacher_ids=pruned.teacher_ids,
        encoded=encode(pruned.tokenizer_json, texts),
    )


def train_toy_student(
    vocab_size: int,
    encoded: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    epochs: int = 40,
    seed: int = 0,
    architecture: str = "cnn",
) -> Any:
    """Build the tiny student and fit it with plain cross-entropy: fast, and deterministic enough."""
    from edgeopt._tf import import_tf
    from edgeopt.student import build_student

    _, keras = import_tf()
    model = build_student(tiny_spec(architecture=architecture), vocab_size, NUM_LABELS, MAX_SEQ_LEN, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(list(encoded), labels, epochs=epochs, batch_size=16, shuffle=True, verbose=0)
    return model


def keras_logits(model: Any, encoded: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Inference-mode logits of a Keras student (dropout off)."""
    return np.asarray(model(list(encoded), training=False), dtype=np.float32)
