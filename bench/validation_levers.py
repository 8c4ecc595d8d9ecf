"""Distillation settings compared on the validation split only: how the student's defaults were chosen.

Reproduce (from the repository root; the task's teacher logits must be cached, e.g. by one `bench/bench_tasks.py`
run or one `edgeopt build` of the task):

    .venv/bin/python bench/validation_levers.py spam base,alpha02,wide,crops6,random,patience6
    .venv/bin/python bench/validation_levers.py spam-subjects base,random
    .venv/bin/python bench/validation_levers.py fortunes-topics cnn,attention 0,1,2   # seeds (split and init)
    .venv/bin/python bench/validation_levers.py spam nogeneral-attention,general-attention 0

Tuning never looks at a test split: each variant distills the float student (no pruning, no export) and is scored
on the labeled validation texts held out of the training split (accuracy) and on the crops of those texts
(agreement with the teacher, by length bucket). Results are appended to bench/results/validation_levers.jsonl.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "validation_levers.jsonl"
TASKS_DIR = ROOT / ".cache" / "dev-tasks"


def variants() -> dict[str, dict[str, Any]]:
    from edgeopt.distill import DistillConfig

    return {
        "base": {},
        "alpha02": {"distill": DistillConfig(alpha=0.2)},
        "alpha08": {"distill": DistillConfig(alpha=0.8)},
        "t1": {"distill": DistillConfig(temperature=1.0)},
        "t4": {"distill": DistillConfig(temperature=4.0)},
        "crops6": {"crop_copies": 6},
        "random": {"embedding_init": "random"},
        "input-table": {"embedding_init": "teacher"},
        "static": {"embedding_init": "teacher-static"},
        "static-frozen": {"embedding_init": "teacher-static", "freeze": True},
        "static-wide": {"embedding_init": "teacher-static", "student": {"embedding_dim": 128}},
        "static-frozen-wide": {"embedding_init": "teacher-static", "freeze": True, "student": {"embedding_dim": 128}},
        "wide": {"student": {"embedding_dim": 96, "hidden_dim": 256, "dense_dim": 128}},
        "k5": {"student": {"kernel_size": 5}},
        "cnn": {"student": {"architecture": "cnn"}},
        "attention": {"student": {"architecture": "cnn-attention"}},
        "patience6": {"distill": DistillConfig(patience=6, epochs=30)},
        "t1-attention": {"distill": DistillConfig(temperature=1.0), "student": {"architecture": "cnn-attention"}},
        "t4-attention": {"distill": DistillConfig(temperature=4.0), "student": {"architecture": "cnn-attention"}},
        "aug2-attention": {"augment_copies": 2, "student": {"architecture": "cnn-attention"}},
        "aug4-attention": {"augment_copies": 4, "student": {"architecture": "cnn-attention"}},
        "intermediate-cnn": {
            "distill": DistillConfig(intermediate_weight=1.0),
            "student": {"architecture": "cnn"},
        },
        "intermediate-attention": {
            "distill": DistillConfig(intermediate_weight=1.0),
            "student": {"architecture": "cnn-attention"},
        },
        "tokens-attention": {"pool_tokens": True, "student": {"architecture": "cnn-attention"}},
        "tokens-cnn": {"pool_tokens": True, "student": {"architecture": "cnn"}},
        # General texts (edgeopt.data.load_general_texts, opt-in: general_texts defaults to 0). The 2026-12-07 rows
        # of "general-attention" on spam-subjects, spam-subjects-few and fortunes-topics ran before the setting
        # existed, as --unlabeled of the 7,262 fortune quotes outside the fortunes-topics task (marked in the rows).
        "general-attention": {"general_texts": 8000, "student": {"architecture": "cnn-attention"}},
        "general4k-attention": {"general_texts": 4000, "student": {"architecture": "cnn-attention"}},
        "nogeneral-attention": {"general_texts": 0, "student": {"architecture": "cnn-attention"}},
        # Encoders beyond one convolution (issue 9's "architecture" lever), built here by _encoder_patch before any
        # goes into edgeopt.student: two stacked convolutions with a residual (receptive field 5), parallel filters
        # of widths 1, 3 and 5 (Kim 2014), one transformer layer over the convolution's outputs, and a wider CNN.
        "deep-attention": {"encoder": "deep", "student": {"architecture": "cnn-attention"}},
        "kim-attention": {"encoder": "kim", "student": {"architecture": "cnn-attention"}},
        "transformer-attention": {"encoder": "transformer", "student": {"architecture": "cnn-attention"}},
        # The student's vocabulary (2026-12-07). The build keeps the tokens of every transfer text, the validation
        # texts included, so validation never meets a token without a trained row and flatters the pruned
        # vocabulary; "fitvocab" keeps only the tokens of the texts that train (what a test text meets), "fullvocab"
        # every teacher token (`tokens = "teacher"`: rows of tokens no text trains keep their start from the
        # teacher's static vectors, PCA fitted on the corpus's tokens). The "fullvocab-allpca" rows of 2026-12-07
        # fitted the PCA on all 30,522 rows (the first form).
        "fitvocab-attention": {"vocabulary": "fit", "student": {"architecture": "cnn-attention"}},
        "fullvocab-attention": {"vocabulary": "fit", "student": {"architecture": "cnn-attention", "tokens": "teacher"}},
        "fitvocab-cnn": {"vocabulary": "fit", "student": {"architecture": "cnn"}},
        "fullvocab-cnn": {"vocabulary": "fit", "student": {"architecture": "cnn", "tokens": "teacher"}},
        # A learning rate cut to 0.3x after each epoch without a better validation score (DistillConfig.lr_decay).
        "decay-attention": {"distill": DistillConfig(lr_decay=0.3), "student": {"architecture": "cnn-attention"}},
        "decay-cnn": {"distill": DistillConfig(lr_decay=0.3), "student": {"architecture": "cnn"}},
        # Half the learning rate (spam-subjects' students peak after their first epoch at 2e-3).
        "lr1e-3-attention": {
            "distill": DistillConfig(learning_rate=1e-3),
            "student": {"architecture": "cnn-attention"},
        },
        "lr1e-3-cnn": {"distill": DistillConfig(learning_rate=1e-3), "student": {"architecture": "cnn"}},
        # The teacher's own truncation: it reads teacher_seq_len (128) tokens, the pixel8 student 256, so on a long
        # text the student answers from words the teacher never saw (fortunes' >128-word fidelity bucket: 0.61).
        "seq128-attention": {"seq_len": 128, "student": {"architecture": "cnn-attention"}},
        "seq128-cnn": {"seq_len": 128, "student": {"architecture": "cnn"}},
        # Regularization and batch size, never measured before 2026-12-08: dropout before the dense layer and the
        # head and texts per step (32). DROPOUT_RATE was 0.3 until these rows and is 0 since: rows of "attention"
        # and "cnn" (and every other variant without "dropout") before 2026-12-08 ran at 0.3.
        "drop01-attention": {"dropout": 0.1, "student": {"architecture": "cnn-attention"}},
        "drop05-attention": {"dropout": 0.5, "student": {"architecture": "cnn-attention"}},
        "drop0-attention": {"dropout": 0.0, "student": {"architecture": "cnn-attention"}},
        "drop0-cnn": {"dropout": 0.0, "student": {"architecture": "cnn"}},
        "drop01-cnn": {"dropout": 0.1, "student": {"architecture": "cnn"}},
        "drop05-cnn": {"dropout": 0.5, "student": {"architecture": "cnn"}},
        "batch16-attention": {"distill": DistillConfig(batch_size=16), "student": {"architecture": "cnn-attention"}},
        "batch64-attention": {"distill": DistillConfig(batch_size=64), "student": {"architecture": "cnn-attention"}},
        "batch16-cnn": {"distill": DistillConfig(batch_size=16), "student": {"architecture": "cnn"}},
        "batch64-cnn": {"distill": DistillConfig(batch_size=64), "student": {"architecture": "cnn"}},
        "wide-attention": {
            "student": {"architecture": "cnn-attention", "embedding_dim": 96, "hidden_dim": 256, "dense_dim": 128}
        },
    }


def _patch_student(freeze: bool, pool_tokens: bool, dropout: float | None = None) -> None:
    """Experiment only: keep the student's embedding table at its starting value, pool its token vectors too, or
    change its dropout rate."""
    import edgeopt.student as student_module

    original = getattr(student_module, "_original_build_student", student_module.build_student)
    student_module._original_build_student = original

    def build(*args: Any, **kwargs: Any) -> Any:
        if dropout is not None:
            kwargs["dropout"] = dropout
        model = original(*args, **kwargs, pool_tokens=pool_tokens)
        model.get_layer("embedding").trainable = not freeze
        return model

    student_module.build_student = build


def _vocabulary_patch(vocabulary: str, held_out_texts: set[str]) -> None:
    """Experiment only: prune the vocabulary on the training texts alone ("fit"), as a test text meets it."""
    import edgeopt.student as student_module

    original = getattr(student_module, "_original_prune_vocabulary", student_module.prune_vocabulary)
    student_module._original_prune_vocabulary = original

    def prune(teacher_tokenizer: Path, texts: Any, out: Path, keep_all: bool = False) -> Any:
        if vocabulary == "fit":
            texts = [text for text in texts if text not in held_out_texts]
        return original(teacher_tokenizer, texts, out, keep_all=keep_all)

    student_module.prune_vocabulary = prune


def _encoder_patch(encoder: str) -> None:
    """Experiment only: swap the student's convolution for another encoder; pools and head stay as built."""
    import edgeopt.student as student_module

    if encoder == "conv":
        return  # _patch_student has just set the library's builder
    from edgeopt._tf import import_tf

    tf, keras = import_tf()
    layers = keras.layers

    def build(
        spec: Any,
        vocab_size: int,
        num_labels: int,
        max_seq_len: int,
        seed: int = 0,
        embeddings: Any = None,
        **kwargs: Any,
    ) -> Any:
        keras.utils.set_random_seed(seed)
        input_ids = keras.Input((max_seq_len,), dtype="int32", name="input_ids")
        attention_mask = keras.Input((max_seq_len,), dtype="int32", name="attention_mask")
        mask = layers.Lambda(lambda m: tf.expand_dims(tf.cast(m, tf.float32), -1), name="mask")(attention_mask)
        init = "uniform" if embeddings is None else keras.initializers.Constant(embeddings)
        x = layers.Embedding(vocab_size, spec.embedding_dim, embeddings_initializer=init, name="embedding")(input_ids)
        x = layers.Multiply(name="mask_embeddings")([x, mask])
        hidden = spec.hidden_dim
        if encoder == "kim":
            parts = [layers.Conv1D(hidden, k, padding="same", activation="relu", name=f"conv{k}")(x) for k in (1, 3, 5)]
            x = layers.Concatenate(name="conv")(parts)
        else:
            x = layers.Conv1D(hidden, spec.kernel_size, padding="same", activation="relu", name="conv")(x)
            x = layers.Multiply(name="mask_conv1")([x, mask])
            if encoder == "deep":
                y = layers.Conv1D(hidden, spec.kernel_size, padding="same", activation="relu", name="conv2")(x)
                x = layers.Add(name="residual")([x, y])
            elif encoder == "transformer":
                keys = layers.Lambda(lambda m: tf.cast(tf.expand_dims(m, 1), tf.bool), name="keys")(attention_mask)
                attended = layers.MultiHeadAttention(2, hidden // 2, name="self_attention")(x, x, attention_mask=keys)
                x = layers.LayerNormalization(name="norm1")(layers.Add()([x, attended]))
                ffn = layers.Dense(hidden, name="ffn2")(layers.Dense(2 * hidden, activation="relu", name="ffn1")(x))
                x = layers.LayerNormalization(name="norm2")(layers.Add()([x, ffn]))
                x = layers.ReLU(name="relu_out")(x)
            else:
                raise ValueError(encoder)
        x = layers.Multiply(name="mask_conv")([x, mask])
        penalty = layers.Rescaling(student_module.ATTENTION_MASK_PENALTY, name="attention_mask_penalty")(mask)
        scores = layers.Add(name="mask_attention_score")([layers.Dense(1, name="attention_score")(x), penalty])
        weights = layers.Softmax(axis=1, name="attention_weights")(scores)
        attended = layers.Flatten(name="attention_pool")(layers.Dot(axes=1, name="attention_sum")([weights, x]))
        x = layers.Concatenate(name="pool")([layers.GlobalMaxPooling1D(name="max_pool")(x), attended])
        x = layers.Dropout(student_module.DROPOUT_RATE, name="dropout_pool")(x)
        x = layers.Dense(spec.dense_dim, activation="relu", name="dense")(x)
        x = layers.Dropout(student_module.DROPOUT_RATE, name="dropout_dense")(x)
        output = layers.Dense(num_labels, name="logits")(x)
        return keras.Model([input_ids, attention_mask], output, name="edgeopt_student")

    student_module.build_student = build


def _carry_untrained_rows(
    teacher_vectors: np.ndarray, table: np.ndarray, trained_rows: Sequence[int], ridge: float = 1e-2
) -> np.ndarray:
    """Experiment only, not kept: move the rows no training text reached into the space training moved the rest to.

    Distillation moves only the rows of tokens the training texts use; a row it never reached stays where it
    started, in a space the trained filters no longer read the same way. The map from each trained token's teacher
    vector to its trained row is nearly linear (training rotates and rescales the space more than it moves single
    words), so a ridge regression fitted on the trained rows carries every other row over: the vocabulary expansion
    of Skip-Thought vectors (Kiros et al. 2015, arXiv 1506.06726), with the teacher's vectors as the source space.

    Args:
        teacher_vectors: ``[rows, hidden]``, the teacher's vector of each student token (the table's start, before
            its PCA).
        table: ``[rows, dim]``, the trained embedding table.
        trained_rows: Rows the training texts use.
        ridge: Regularization, relative to the mean squared feature norm.

    Returns:
        float32 ``[rows, dim]``: ``table`` with every row outside ``trained_rows`` replaced by its mapped vector.
    """
    trained = np.zeros(len(table), dtype=bool)
    trained[np.asarray(trained_rows, dtype=np.int64)] = True
    if trained.all() or trained.sum() < 2:
        return np.asarray(table, dtype=np.float32)
    features = np.asarray(teacher_vectors, dtype=np.float64)
    center = features[trained].mean(axis=0)
    x = features[trained] - center
    y = np.asarray(table, dtype=np.float64)[trained]
    offset = y.mean(axis=0)
    gram = x.T @ x
    penalty = ridge * np.trace(gram) / len(gram)
    weights = np.linalg.solve(gram + penalty * np.eye(len(gram)), x.T @ (y - offset))
    carried = np.asarray(table, dtype=np.float32).copy()
    carried[~trained] = ((features[~trained] - center) @ weights + offset).astype(np.float32)
    return carried


def _corpus_tokenized_scores(
    task: Any, student: Any, rows: np.ndarray, held_out_texts: set[str], labels: np.ndarray, buckets: np.ndarray
) -> dict[str, Any]:
    """Scores of a full-vocabulary student on ``rows`` tokenized by the vocabulary of the training texts alone."""
    import edgeopt.student as student_module

    training_texts = [text for text in task.transfer.texts if text not in held_out_texts]
    full_row = {teacher_id: row for row, teacher_id in enumerate(student.vocab.teacher_ids)}
    with tempfile.TemporaryDirectory() as work:
        corpus = student_module._original_prune_vocabulary(
            task.teacher.tokenizer_json, training_texts, Path(work) / "tokenizer.json"
        )
        ids, mask = student_module.encode_texts(
            corpus.tokenizer_json, [task.transfer.texts[i] for i in rows], student.max_seq_len
        )
    remap = np.asarray([full_row[teacher_id] for teacher_id in corpus.teacher_ids], dtype=ids.dtype)

    def scores(prefix: str, inputs: list[np.ndarray]) -> dict[str, Any]:
        logits = student.model.predict(inputs, batch_size=256, verbose=0)
        agree = logits.argmax(-1) == task.transfer_logits[rows].argmax(-1)
        return {
            f"{prefix}_validation_accuracy": round(float(np.mean(logits[: len(labels)].argmax(-1) == labels)), 4),
            f"{prefix}_validation_fidelity": {
                b: round(float(agree[buckets == b].mean()), 4)
                for b in ("<=8", "9-32", "33-128", ">128")
                if (buckets == b).any()
            },
        }

    paired = scores("corpus_tokens", [remap[ids], mask])
    # The same weights again, the rows no training text reached carried into the trained space.
    from edgeopt.stages import teacher_token_vectors

    vectors, _ = teacher_token_vectors(task.teacher, student.vocab, "teacher-static")
    layer = student.model.get_layer("embedding")
    (trained_table,) = layer.get_weights()
    trained_rows = np.unique(student.transfer_ids[0][student.fit_rows])
    layer.set_weights([_carry_untrained_rows(vectors, trained_table, trained_rows)])
    paired |= scores("carried", list(student.rows(rows)))
    layer.set_weights([trained_table])
    paired["untrained_rows"] = int(len(trained_table) - len(trained_rows))
    return paired


def main() -> int:
    from edgeopt.augment import TransferSource, length_bucket
    from edgeopt.data import stratified_split
    from edgeopt.stages import BuildConfig, Reporter, _distill_settings, prepare, train_student

    task_name, names = sys.argv[1], sys.argv[2].split(",")
    seeds = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else [0]
    folder = TASKS_DIR / task_name
    files = {} if task_name == "spam" else {"train": folder / "train.jsonl", "test": folder / "test.jsonl"}
    table = variants()
    for name, seed in [(name, seed) for seed in seeds for name in names]:
        settings = dict(table[name])
        student_overrides = settings.pop("student", None)
        _patch_student(settings.pop("freeze", False), settings.pop("pool_tokens", False), settings.pop("dropout", None))
        _encoder_patch(settings.pop("encoder", "conv"))
        vocabulary = settings.pop("vocabulary", "all")
        seq_len = settings.pop("seq_len", None)
        config = BuildConfig(profile="pixel8", calibrate=False, seed=seed, **files, **settings)
        reporter = Reporter()
        task = prepare(config, reporter)
        if seq_len is not None:
            task.profile = replace(task.profile, budget=replace(task.profile.budget, max_seq_len=seq_len))
        if student_overrides:
            task.student_spec = replace(task.student_spec, **student_overrides)
        _, val_rows = stratified_split(
            list(task.data.train.texts),
            list(task.data.train.labels),
            _distill_settings(config, task.profile).validation_fraction,
            seed,
        )
        held_out_texts = {task.transfer.texts[i] for i in task.transfer.held_out_rows(val_rows)}
        held_out_texts -= {task.transfer.texts[i] for i in task.transfer.training_rows(val_rows)}
        _vocabulary_patch(vocabulary, held_out_texts)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            student = train_student(task, config, Path(work), reporter)
        seconds = time.perf_counter() - start
        transfer = task.transfer
        held = set(student.val_rows.tolist())
        crops = [
            i
            for i, (source, origin) in enumerate(zip(transfer.sources, transfer.origins, strict=True))
            if source is TransferSource.CROP and origin in held
        ]
        rows = np.concatenate([student.val_rows, np.asarray(crops, dtype=int)])
        logits = student.model.predict(list(student.rows(rows)), batch_size=256, verbose=0)
        agree = logits.argmax(-1) == task.transfer_logits[rows].argmax(-1)
        buckets = np.array([length_bucket(transfer.texts[i]) for i in rows])
        labels = np.asarray(task.data.train.labels)[student.val_rows]
        paired = {}
        if student.vocab.size == student.vocab.teacher_vocab_size and vocabulary == "fit":
            # The same weights, the held-out texts tokenized as the corpus vocabulary would (a word no training
            # text uses splits into the pieces that vocabulary keeps): the lever's effect without training noise.
            paired = _corpus_tokenized_scores(task, student, rows, held_out_texts, labels, buckets)
        record = {
            "task": task_name,
            "variant": name,
            "seed": seed,
            "kept": [c["name"] for c in student.search if c["status"] == "chosen"][0],
            "validation_accuracy": round(float(np.mean(logits[: len(labels)].argmax(-1) == labels)), 4),
            "validation_fidelity": {
                b: round(float(agree[buckets == b].mean()), 4)
                for b in ("<=8", "9-32", "33-128", ">128")
                if (buckets == b).any()
            },
            **paired,
            "validation_crops": len(crops),
            "vocabulary_rows": int(student.model.get_layer("embedding").input_dim),
            "epochs": student.distilled.epochs_run,
            "distill_seconds": round(seconds),
        }
        print(json.dumps(record), flush=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
