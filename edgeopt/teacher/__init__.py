"""The teacher stage: fine-tune, load and run the model the student learns from.

A teacher is anything that maps text to class logits:

* a Hugging Face classifier directory (``config.json`` whose architecture is ``*ForSequenceClassification``,
  weights, tokenizer files), run with torch;
* an ONNX file, or a directory with ``model.onnx`` and ``tokenizer.json``, run with ONNX Runtime;
* a sentence-transformers directory (``modules.json``) is only an encoder: it becomes a teacher once
  :func:`finetune` has trained a classification head on the task (the pipeline does this itself).

The package's modules, in import order: ``kinds`` (what a path is, read from disk), ``precision`` (float32 or
bfloat16 autocast, for fine-tuning and labeling alike), ``runner`` (a loaded teacher), ``finetune`` (training one,
cached), ``logit_cache`` (its outputs per text in SQLite, keyed by the teacher's fingerprint and arithmetic, so a
rebuild never runs the teacher on the same text twice).
"""

from edgeopt.teacher.finetune import FinetuneConfig, cached_finetune, default_teacher, finetune, length_grouped_batches
from edgeopt.teacher.kinds import DEFAULT_TEACHER_SEQ_LEN, TeacherKind, detect_teacher_kind
from edgeopt.teacher.logit_cache import TeacherLogitCache
from edgeopt.teacher.runner import (
    POOLINGS,
    Teacher,
    default_embedding_teacher,
    load_embedding_teacher,
    load_teacher,
)

__all__ = [
    "DEFAULT_TEACHER_SEQ_LEN",
    "POOLINGS",
    "FinetuneConfig",
    "Teacher",
    "TeacherKind",
    "TeacherLogitCache",
    "default_teacher",
    "default_embedding_teacher",
    "load_embedding_teacher",
    "cached_finetune",
    "detect_teacher_kind",
    "finetune",
    "length_grouped_batches",
    "load_teacher",
]
