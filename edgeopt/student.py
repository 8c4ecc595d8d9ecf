"""The student: a small Keras encoder over the teacher's WordPiece vocabulary, or a pruned copy of it.

First, the vocabulary. By default the student keeps every teacher token (``[student] tokens = "teacher"``): a word
that no training text holds still has a row of its own, started from the teacher's vector of it, where a pruned
vocabulary splits it into letters and pieces the student learned for other words; on the development tasks that
raised every task's test accuracy (README, issue 9). ``tokens = "corpus"`` prunes the vocabulary structurally:
the teacher's tokenizer knows ~30k WordPiece tokens but a task corpus uses a fraction of them, so the student then
keeps only the tokens the corpus uses (plus special tokens and every single-character piece, so unseen words still
split into known pieces rather than [UNK]), and the embedding table and the file itself shrink with it. Either
vocabulary is written as a standard ``tokenizer.json`` so any Hugging Face tokenizers client (the runtime, the
Android demo) loads it.

Second, the architecture: a 1-D convolutional encoder (embedding -> masked convolution -> pool -> dense) sized by
the profile. On short-text classification it keeps most of a transformer teacher's accuracy at a tiny fraction of
its cost, and every op it uses has an int8 kernel in both LiteRT and ONNX Runtime. Two poolings are built:

* ``cnn``: global max pool: each filter reports its strongest n-gram.
* ``cnn-attention``: the max pool and, beside it, an attention pool (a learned score per position, softmax over the
  text's own tokens, the weighted mean of the filters), so a filter's evidence spread over a whole text counts too.

Both quantize fully to int8 in LiteRT and ONNX Runtime (``bench/architecture_ops.py``, results in
``bench/results/architecture_ops.md``). Not built, after converting them there: a BiLSTM (LiteRT cannot convert a
Keras LSTM with a dynamic batch, and ONNX Runtime's static quantizer leaves the LSTM op float) and a one-layer
transformer (LiteRT converts it all to int8, but ONNX Runtime keeps its LayerNorm arithmetic in float, and trained
from scratch on a few thousand texts it has no pre-training to draw on; not measured for accuracy).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt._tf import import_tf
from edgeopt.errors import StageError
from edgeopt.profiles import STUDENT_ARCHITECTURES, StudentSpec

__all__ = [
    "PrunedVocabulary",
    "prune_vocabulary",
    "tokenizer_model",
    "encode_texts",
    "build_student",
    "count_parameters",
    "teacher_embedding_init",
    "DROPOUT_RATE",
    "INIT_EMBEDDING_STD",
    "ATTENTION_MASK_PENALTY",
]

DROPOUT_RATE = 0.0
"""A classifier student's dropout before its dense layer and its head: none. The teacher's soft targets already
regularize it, and dropout on top cost accuracy on every development task's validation split. Rate 0 against 0.3
(the default until 2026-12-08), mean of 3 seeds, attention / max-pool student, points of validation accuracy:
fortunes-topics +4.4 / +5.5, spam-subjects +0.8 / +0.7, spam +0.4 / +0.7, spam-subjects-few 0.0 / 0.0; fidelity
on <= 8 words +0.1 to +1.5. Rate 0.1 sat between (fortunes-topics +2.4 / +2.7 over 0.3) and 0.5 below
(-3.9 with attention). ``bench/validation_levers.py TASK attention,drop0-attention,drop01-attention,cnn,...``.
The layers stay (rate 0 is a no-op) so that a caller can still ask for a rate; an embedder keeps its own
(``edgeopt.embed.EMBED_DROPOUT``, not measured)."""
INIT_EMBEDDING_STD = 0.05
"""Standard deviation of a teacher-initialized embedding table's entries: the order of Keras' random uniform
initializer (std ~0.03), so Adam's first steps move it as much as they would a random table."""
ATTENTION_MASK_PENALTY = 20.0
"""How far the attention scores of padding positions sit below those of real tokens (added to every real token's
score): e^-20 is nothing next to a real token, and a bounded gap (rather than -inf or -1e9) keeps the scores' int8
range, and so their resolution, small."""


@dataclass(frozen=True)
class PrunedVocabulary:
    """Result of pruning the teacher's vocabulary down to what the corpus uses.

    Attributes:
        tokenizer_json: Path of the written student tokenizer.
        teacher_ids: For each student token id, the id of the same token in the tokenizer it was pruned from.
        teacher_vocab_size: Size of that tokenizer's vocabulary.
        corpus_rows: Student ids of the tokens the corpus itself uses (with ``keep_all``, a part of the kept ones).
        source: ``"teacher"`` when it was pruned from the teacher's own tokenizer; otherwise what it was pruned from
            (a teacher whose tokenizer is not WordPiece gets another model's WordPiece vocabulary, and
            ``teacher_ids`` are then ids of that vocabulary, not the teacher's).
    """

    tokenizer_json: Path
    teacher_ids: tuple[int, ...]
    teacher_vocab_size: int
    corpus_rows: tuple[int, ...] = ()
    source: str = "teacher"

    @property
    def size(self) -> int:
        """Number of tokens the student keeps."""
        return len(self.teacher_ids)

    @property
    def from_teacher(self) -> bool:
        """True when the tokens are the teacher's own (its token ids and vectors apply)."""
        return self.source == "teacher"

    def token_texts(self) -> list[str]:
        """Each student token as text, continuation pieces without their prefix (``##ing`` -> ``ing``)."""
        spec = json.loads(self.tokenizer_json.read_text(encoding="utf-8"))
        prefix = spec["model"].get("continuing_subword_prefix") or ""
        tokens = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
        return [t[len(prefix) :] if prefix and t.startswith(prefix) and len(t) > len(prefix) else t for t, _ in tokens]


def tokenizer_model(tokenizer_json: Path) -> str | None:
    """The model type a ``tokenizer.json`` declares (``"WordPiece"``, ``"BPE"``, ``"Unigram"``), or None."""
    kind = json.loads(Path(tokenizer_json).read_text(encoding="utf-8")).get("model", {}).get("type")
    return kind if isinstance(kind, str) else None


def _is_single_piece(token: str) -> bool:
    return len(token) == 1 or (token.startswith("##") and len(token) == 3)


def _reachable_tokens(teacher: Any, vocab: Mapping[str, int], prefix: str) -> set[int]:
    """Ids of the tokens the teacher's tokenizer can output for some text.

    A token the normalizer changes (``Free`` under a lowercasing one) or the pre-tokenizer splits (``[unused0]``,
    ``...``), and a continuation that cannot follow a letter inside one word (``##!`` and ``##中``: punctuation and CJK
    characters always stand alone), is never produced, so its row would be dead weight in the student's table
    (1,331 of MiniLM's 30,522 tokens). Rejected: a list of such tokens per model family; this asks the tokenizer.
    """
    normalizer, pre_tokenizer = teacher.normalizer, teacher.pre_tokenizer

    def pieces(text: str) -> list[str]:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        if pre_tokenizer is None:
            return [text]
        return [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)]

    reachable = set()
    for token, index in vocab.items():
        if prefix and token.startswith(prefix) and len(token) > len(prefix):
            probe = "a" + token[len(prefix) :]
        else:
            probe = token
        if pieces(probe) == [probe]:
            reachable.add(index)
    return reachable


def _remap_post_processor(processor: dict[str, Any] | None, new_id: dict[str, int]) -> dict[str, Any] | None:
    """Rewrite the special-token ids a post-processor carries; tokenizers does not derive them from the vocab."""
    if processor is None:
        return None
    processor = copy.deepcopy(processor)
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for token, spec in processor.get("special_tokens", {}).items():
            spec["ids"] = [new_id[t] for t in spec.get("tokens", [token])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token = processor[key][0]
            processor[key] = [token, new_id[token]]
    elif kind == "Sequence":
        processor["processors"] = [_remap_post_processor(p, new_id) for p in processor["processors"]]
    return processor


def prune_vocabulary(
    teacher_tokenizer: Path, texts: Sequence[str], out: Path, keep_all: bool = False
) -> PrunedVocabulary:
    """Write a student tokenizer that keeps only the WordPiece tokens ``texts`` use (every token with ``keep_all``).

    Tokens the teacher's tokenizer can never output (``[unused0]``, ``##!``) are left out either way.

    Tokenizing any of ``texts`` with the pruned tokenizer gives the same tokens as the teacher's: WordPiece matches the
    longest piece in the vocabulary, and every piece it chose for these texts is kept.

    Args:
        teacher_tokenizer: The teacher's ``tokenizer.json``.
        texts: The corpus (training and transfer texts).
        out: Where to write the student's ``tokenizer.json``.
        keep_all: Keep every teacher token (a word no text uses stays one token with its own row, at the cost of a
            table as large as the teacher's vocabulary); ``corpus_rows`` still marks the ones the texts use.

    Returns:
        The pruned vocabulary and its mapping to teacher ids.

    Raises:
        StageError: If the teacher's tokenizer is not a WordPiece tokenizer.
    """
    from tokenizers import Tokenizer

    spec = json.loads(Path(teacher_tokenizer).read_text(encoding="utf-8"))
    if spec.get("model", {}).get("type") != "WordPiece":
        raise StageError(
            f"the student needs a WordPiece tokenizer, but {teacher_tokenizer} is "
            f"{spec.get('model', {}).get('type')!r}; prune a WordPiece tokenizer.json (a build whose teacher has "
            "another tokenizer prunes all-MiniLM-L6-v2's: edgeopt.stages.student_vocabulary)"
        )
    teacher = Tokenizer.from_file(str(teacher_tokenizer))
    teacher.no_truncation()
    teacher.no_padding()
    vocab: dict[str, int] = spec["model"]["vocab"]
    used: set[int] = set()
    for encoding in teacher.encode_batch(list(texts)):
        used.update(encoding.ids)
    special = {token["id"] for token in spec.get("added_tokens", [])}
    reachable = _reachable_tokens(teacher, vocab, spec["model"].get("continuing_subword_prefix") or "")
    keep = sorted(
        {i for tok, i in vocab.items() if (_is_single_piece(tok) or keep_all) and i in reachable}
        | used
        | special
        | {vocab[spec["model"]["unk_token"]]}
    )
    id_to_token = {i: tok for tok, i in vocab.items()}
    new_vocab = {id_to_token[old]: new for new, old in enumerate(keep)}
    corpus_rows = tuple(new for new, old in enumerate(keep) if old in used or old in special)

    spec["model"]["vocab"] = new_vocab
    for token in spec.get("added_tokens", []):
        token["id"] = new_vocab[token["content"]]
    spec["post_processor"] = _remap_post_processor(spec.get("post_processor"), new_vocab)
    # The runtime sets truncation and padding to the bundle's max_seq_len; the teacher's own settings do not apply.
    spec["truncation"] = None
    spec["padding"] = None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return PrunedVocabulary(
        tokenizer_json=out, teacher_ids=tuple(keep), teacher_vocab_size=len(vocab), corpus_rows=corpus_rows
    )


def encode_texts(tokenizer_json: Path, texts: Sequence[str], max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize ``texts`` with the runtime's own tokenizer, so training sees exactly what the device will.

    Returns:
        ``(input_ids, attention_mask)``, both int32 ``[len(texts), max_seq_len]``.
    """
    from edgeopt_runtime import TextTokenizer

    encoded = TextTokenizer.from_file(tokenizer_json, max_seq_len).encode_batch(list(texts))
    return encoded.input_ids.astype(np.int32), encoded.attention_mask.astype(np.int32)


def teacher_embedding_init(
    teacher_table: np.ndarray, teacher_ids: Sequence[int], dim: int, fit_rows: Sequence[int] | None = None
) -> np.ndarray:
    """The student's starting embedding table: the teacher's token vectors, reduced by PCA to the student's width.

    A random table knows nothing of the words the training set never shows; the teacher's table knows every token
    it was pre-trained on, so a word first seen on the device still lands near its synonyms (the idea of
    model2vec, which goes further and distills static vectors from forward passes). PCA is fitted on the kept
    rows only (or on ``fit_rows`` of them: the corpus's own tokens, whose variance the student needs most);
    components keep their relative variance (no whitening), and the table is scaled to :data:`INIT_EMBEDDING_STD`.

    Args:
        teacher_table: ``[teacher_vocab, hidden]`` (:meth:`edgeopt.teacher.Teacher.token_embeddings`).
        teacher_ids: For each student token, its teacher id (:attr:`PrunedVocabulary.teacher_ids`).
        dim: The student's embedding width.
        fit_rows: Positions in ``teacher_ids`` the PCA and the scale are fitted on; all of them when None.

    Returns:
        float32 ``[len(teacher_ids), dim]``.

    Raises:
        StageError: A teacher id is outside the table.
    """
    ids = np.asarray(teacher_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(teacher_table)):
        raise StageError(
            f"teacher ids reach {int(ids.max())} but the teacher's embedding table has {len(teacher_table)} rows; "
            "the student vocabulary was not pruned from this teacher's tokenizer"
        )
    rows = np.asarray(teacher_table, dtype=np.float64)[ids]
    fitted = rows if fit_rows is None else rows[np.asarray(fit_rows, dtype=np.int64)]
    center = fitted.mean(axis=0)
    _, _, components = np.linalg.svd(fitted - center, full_matrices=False)
    reduced = (rows - center) @ components[:dim].T
    if reduced.shape[1] < dim:
        # A teacher narrower than the student: the extra dimensions start at zero.
        reduced = np.pad(reduced, ((0, 0), (0, dim - reduced.shape[1])))
    std = reduced.std() if fit_rows is None else reduced[np.asarray(fit_rows, dtype=np.int64)].std()
    scaled: np.ndarray = (reduced * (INIT_EMBEDDING_STD / std if std > 0 else 1.0)).astype(np.float32)
    return scaled


def build_student(
    spec: StudentSpec,
    vocab_size: int,
    num_labels: int,
    max_seq_len: int,
    seed: int = 0,
    embeddings: np.ndarray | None = None,
    train_embeddings: bool = True,
    head: str = "logits",
    pool_tokens: bool = False,
    dropout: float = DROPOUT_RATE,
) -> Any:
    """Build the convolutional student (``spec.architecture``) as a ``tf_keras`` functional model.

    Inputs are ``input_ids`` and ``attention_mask`` (int32, ``[batch, max_seq_len]``), the output is ``logits``
    (``num_labels`` wide), or for an embedder (``head="embedding"``) ``embedding``, ``num_labels`` being then the
    embedding's width: the same encoder, a linear head of another width and name. ``pool_tokens`` adds, beside
    the filters' pools, an attention-weighted mean of the token vectors themselves (a learned per-token weight,
    as SIF weighting is for static embeddings like model2vec's): what a sentence embedding is made of, and what
    a convolution's max pool throws away. ``dropout`` is the rate before the dense layer and the head.
    Padding is zeroed before and after the convolution so that the max pool never sees it: the ReLU output is
    non-negative, so a zeroed position cannot win the max. ``embeddings`` (``[vocab_size, embedding_dim]``, from
    :func:`teacher_embedding_init`) is the embedding table's starting value; None starts it at random.
    ``train_embeddings=False`` keeps the table at that value (it is still pruned and quantized like the rest).
    """
    if embeddings is not None and tuple(np.shape(embeddings)) != (vocab_size, spec.embedding_dim):
        raise StageError(
            f"initial embeddings have shape {tuple(np.shape(embeddings))}; the student needs "
            f"({vocab_size}, {spec.embedding_dim})"
        )
    if spec.architecture not in STUDENT_ARCHITECTURES:
        known = ", ".join(STUDENT_ARCHITECTURES)
        raise StageError(f"unknown student architecture {spec.architecture!r}; this version builds {known}")
    tf, keras = import_tf()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    input_ids = keras.Input((max_seq_len,), dtype="int32", name="input_ids")
    attention_mask = keras.Input((max_seq_len,), dtype="int32", name="attention_mask")
    mask = layers.Lambda(lambda m: tf.expand_dims(tf.cast(m, tf.float32), -1), name="mask")(attention_mask)
    initializer = "uniform" if embeddings is None else keras.initializers.Constant(embeddings)
    x = layers.Embedding(
        vocab_size,
        spec.embedding_dim,
        embeddings_initializer=initializer,
        trainable=train_embeddings,
        name="embedding",
    )(input_ids)
    x = layers.Multiply(name="mask_embeddings")([x, mask])
    tokens = x
    x = layers.Conv1D(spec.hidden_dim, spec.kernel_size, padding="same", activation="relu", name="conv")(x)
    x = layers.Multiply(name="mask_conv")([x, mask])
    # softmax(s - P * (1 - mask)) == softmax(s + P * mask): the constant shift cancels, and Add has an int8
    # kernel in ONNX Runtime's QDQ quantizer where Sub does not. Built-in layers, not Lambdas, so QAT (which
    # rebuilds the model) can clone them.
    penalty = layers.Rescaling(ATTENTION_MASK_PENALTY, name="attention_mask_penalty")(mask)

    def attention_pool(values: Any, prefix: str) -> Any:
        scores = layers.Dense(1, name=f"{prefix}attention_score")(values)
        scores = layers.Add(name=f"mask_{prefix}attention_score")([scores, penalty])
        weights = layers.Softmax(axis=1, name=f"{prefix}attention_weights")(scores)
        attended = layers.Dot(axes=1, name=f"{prefix}attention_sum")([weights, values])  # [batch, 1, width]
        return layers.Flatten(name=f"{prefix}attention_pool")(attended)

    if spec.architecture == "cnn" and not pool_tokens:
        x = layers.GlobalMaxPooling1D(name="pool")(x)
    else:
        parts = [layers.GlobalMaxPooling1D(name="max_pool")(x)]
        if spec.architecture != "cnn":
            parts.append(attention_pool(x, ""))
        if pool_tokens:
            parts.append(attention_pool(tokens, "token_"))
        x = layers.Concatenate(name="pool")(parts)
    x = layers.Dropout(dropout, name="dropout_pool")(x)
    x = layers.Dense(spec.dense_dim, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout_dense")(x)
    if head not in ("logits", "embedding"):
        raise StageError(f"unknown student head {head!r}; use 'logits' (a classifier) or 'embedding' (an embedder)")
    from edgeopt.export import EMBEDDING_HEAD

    output = layers.Dense(num_labels, name="logits" if head == "logits" else EMBEDDING_HEAD)(x)
    return keras.Model([input_ids, attention_mask], output, name="edgeopt_student")


def count_parameters(model: Any) -> int:
    """Number of weights in ``model`` (trainable and not)."""
    return int(sum(np.prod(w.shape) for w in model.get_weights()))
