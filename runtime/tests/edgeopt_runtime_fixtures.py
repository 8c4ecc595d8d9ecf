"""Builders for a tiny real bundle (WordPiece tokenizer, tf_keras model, full-int8 TFLite, ONNX).

A module with a unique name rather than ``conftest``, so that an import cannot pick up the host's conftest.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_SEQ_LEN = 16
LABELS = ("ham", "spam")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HAM_WORDS = [
    "hello",
    "meeting",
    "lunch",
    "thanks",
    "project",
    "team",
    "report",
    "tomorrow",
    "family",
    "friend",
]
SPAM_WORDS = ["free", "win", "prize", "cash", "click", "offer", "money", "urgent", "winner", "claim"]
NEUTRAL = ["the", "a", "you", "to", "now", "is", "for", "and", "your", "we", "i", "this", "!", ",", ".", "?"]
NEUTRAL += ["##s", "##ing", "##ed", "call", "get", "see", "day", "new", "me", "it", "on", "of", "at"]
VOCAB = SPECIALS + HAM_WORDS + SPAM_WORDS + NEUTRAL


@dataclass(frozen=True)
class TinyBundle:
    path: Path
    keras_model: object
    texts: tuple[str, ...]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Texts with a clear ham/spam majority so that int8 rounding cannot flip the label."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        major, minor = (HAM_WORDS, SPAM_WORDS) if i % 2 == 0 else (SPAM_WORDS, HAM_WORDS)
        words = rng.choices(major, k=rng.randint(3, 5)) + rng.choices(minor, k=rng.randint(0, 1))
        words += rng.choices(["the", "you", "now", "for", "calling", "days", "me", "!"], k=rng.randint(0, 3))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize())
    return texts


def build_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))


def build_keras_model():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras

    dim = 4
    ids = tf_keras.Input((MAX_SEQ_LEN,), dtype=tf.int32, name="input_ids")
    mask = tf_keras.Input((MAX_SEQ_LEN,), dtype=tf.int32, name="attention_mask")
    emb = tf_keras.layers.Embedding(len(VOCAB), dim, name="embed")(ids)
    m = tf.cast(mask, tf.float32)[:, :, None]
    pooled = tf.reduce_sum(emb * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    logits = tf_keras.layers.Dense(2, name="logits")(pooled)
    model = tf_keras.Model([ids, mask], logits)
    # Designed weights: ham words push class 0, spam words class 1; small noise elsewhere.
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.1, (len(VOCAB), dim)).astype(np.float32)
    for w in HAM_WORDS:
        table[VOCAB.index(w), :2] = [2.0, 0.0]
    for w in SPAM_WORDS:
        table[VOCAB.index(w), :2] = [0.0, 2.0]
    model.get_layer("embed").set_weights([table])
    kernel = np.array([[1.0, -1.0], [-1.0, 1.0], [0.3, -0.2], [-0.1, 0.2]], dtype=np.float32)
    model.get_layer("logits").set_weights([kernel, np.array([0.05, -0.05], dtype=np.float32)])
    return model


def build_tflite(model, encoded, path: Path) -> None:
    import tensorflow as tf

    def representative():
        for i in range(len(encoded.input_ids)):
            # A dict, not a list: the converter orders inputs by name, not as the Keras model lists them.
            yield {
                "input_ids": encoded.input_ids[i : i + 1].astype(np.int32),
                "attention_mask": encoded.attention_mask[i : i + 1].astype(np.int32),
            }

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())


def build_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = [
        tf.TensorSpec((None, MAX_SEQ_LEN), tf.int32, name="input_ids"),
        tf.TensorSpec((None, MAX_SEQ_LEN), tf.int32, name="attention_mask"),
    ]
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))


def build_bundle(out: Path) -> TinyBundle:
    from edgeopt_runtime.manifest import Artifact, OutputQuantization, build_manifest, write_manifest
    from edgeopt_runtime.tokenizer import TextTokenizer

    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out / "tokenizer.json")
    tok = TextTokenizer.from_file(out / "tokenizer.json", MAX_SEQ_LEN)
    texts = make_texts(30)
    enc = tok.encode_batch(texts)
    model = build_keras_model()
    with warnings.catch_warnings():
        # The converters warn about their own deprecations; nothing here for the runtime to act on.
        warnings.simplefilter("ignore")
        build_tflite(model, enc, out / "model.tflite")
        build_onnx(model, out / "model.onnx")
    from ai_edge_litert.interpreter import Interpreter

    q = Interpreter(model_path=str(out / "model.tflite")).get_output_details()[0]["quantization"]
    (out / "report.md").write_text("# tiny bundle\n", encoding="utf-8")
    manifest = build_manifest(
        out,
        labels=LABELS,
        max_seq_len=MAX_SEQ_LEN,
        artifacts={
            "model.onnx": Artifact(format="onnx", precision="float32", output_dtype="float32"),
            "model.tflite": Artifact(
                format="tflite",
                precision="int8",
                output_dtype="int8",
                output_quantization=OutputQuantization(scale=float(q[0]), zero_point=int(q[1])),
            ),
        },
        extra_files=["report.md"],
        metrics={"accuracy": 1.0},
    )
    write_manifest(out, manifest)
    return TinyBundle(path=out, keras_model=model, texts=tuple(texts))


def rewrite_manifest(bundle: Path, change, *, refingerprint: bool = False) -> None:
    """Load manifest.json, let ``change`` edit the dict in place, write it back.

    ``refingerprint``: also recompute the fingerprint, as a build that wrote these fields would have (else the
    edit fails verification).
    """
    import json

    path = bundle / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    if refingerprint:
        from edgeopt_runtime.manifest import compute_fingerprint, read_manifest

        data["fingerprint"] = compute_fingerprint(read_manifest(bundle))
        path.write_text(json.dumps(data), encoding="utf-8")


EMBED_DIM = 6


def build_embed_keras_model():
    """A tiny embedder: mean of 8-wide token vectors, then a linear map to EMBED_DIM (seeded weights)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras

    ids = tf_keras.Input((MAX_SEQ_LEN,), dtype=tf.int32, name="input_ids")
    mask = tf_keras.Input((MAX_SEQ_LEN,), dtype=tf.int32, name="attention_mask")
    emb = tf_keras.layers.Embedding(len(VOCAB), 8, name="embed")(ids)
    m = tf.cast(mask, tf.float32)[:, :, None]
    pooled = tf.reduce_sum(emb * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
    out = tf_keras.layers.Dense(EMBED_DIM, name="sentence_embedding")(pooled)
    model = tf_keras.Model([ids, mask], out)
    rng = np.random.default_rng(1)
    model.get_layer("embed").set_weights([rng.normal(0, 1.0, (len(VOCAB), 8)).astype(np.float32)])
    kernel = rng.normal(0, 0.5, (8, EMBED_DIM)).astype(np.float32)
    model.get_layer("sentence_embedding").set_weights([kernel, np.zeros(EMBED_DIM, np.float32)])
    return model


def build_embed_bundle(out: Path) -> TinyBundle:
    """An ``embed`` bundle: float ONNX and full-int8 TFLite of :func:`build_embed_keras_model`."""
    from edgeopt_runtime.manifest import Artifact, EmbeddingSpec, OutputQuantization, build_manifest, write_manifest
    from edgeopt_runtime.tokenizer import TextTokenizer

    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out / "tokenizer.json")
    tok = TextTokenizer.from_file(out / "tokenizer.json", MAX_SEQ_LEN)
    texts = make_texts(40, seed=3)
    enc = tok.encode_batch(texts)
    model = build_embed_keras_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_tflite(model, enc, out / "model.tflite")
        build_onnx(model, out / "model.onnx")
    from ai_edge_litert.interpreter import Interpreter

    q = Interpreter(model_path=str(out / "model.tflite")).get_output_details()[0]["quantization"]
    manifest = build_manifest(
        out,
        labels=(),
        task="embed",
        embedding=EmbeddingSpec(dim=EMBED_DIM, pooling="mean"),
        max_seq_len=MAX_SEQ_LEN,
        artifacts={
            "model.onnx": Artifact(format="onnx", precision="float32", output_dtype="float32"),
            "model.tflite": Artifact(
                format="tflite",
                precision="int8",
                output_dtype="int8",
                output_quantization=OutputQuantization(scale=float(q[0]), zero_point=int(q[1])),
            ),
        },
    )
    write_manifest(out, manifest)
    return TinyBundle(path=out, keras_model=model, texts=tuple(texts))
