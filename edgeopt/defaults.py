"""The default of every build setting: one map, read by the dataclasses that hold the settings.

A setting may be left out in several places: a profile's ``[student]`` table (:class:`edgeopt.profiles.StudentSpec`),
:class:`edgeopt.stages.BuildConfig`, :class:`edgeopt.distill.DistillConfig`, :class:`edgeopt.prune.PruneConfig`,
:class:`edgeopt.teacher.FinetuneConfig`, and the CLI's ``[default: ...]`` help. Each of them takes its default
from here, so a default is changed in one place. (Rejected: a default written on each dataclass, which is how the
distillation temperature, alpha and the pruning epochs came to be written twice, with nothing to keep the copies
equal.) The reasons behind each value are where the setting is used, and in README's measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = ["DEFAULTS"]

DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        # Distillation (DistillConfig; a profile's [student] table; --temperature, --alpha, --intermediate-weight).
        "temperature": 2.0,  # softmax temperature of the soft targets (> 0, unitless)
        "alpha": 0.5,  # weight of the hard-label loss in [0, 1]; 1 - alpha weighs the soft targets
        "intermediate_weight": 0.0,  # weight of the hidden-state loss (>= 0); 0 turns it off
        "distill_epochs": 20,  # upper bound on epochs (early stopping usually ends sooner)
        "distill_batch_size": 32,  # texts per step
        "distill_learning_rate": 2e-3,  # Adam
        "distill_patience": 3,  # epochs without a better validation score before stopping
        "distill_lr_decay": 1.0,  # factor on the learning rate after an epoch without a better score (1: constant)
        "validation_fraction": 0.1,  # share of the labeled training texts held out for early stopping
        # Transfer set (a profile's [student] table; --augment-copies, --crop-copies, --general-texts).
        "augment_copies": 0,  # augmented copies of each training text
        "crop_copies": 3,  # crops (first line, first sentence, random spans) of each training text
        "general_texts": 0,  # shipped general texts the teacher labels beside the task's (0: none)
        # Student (a profile's [student] table; --embedding-init, --embedding-training, --tokens, --calibrate,
        # --search-budget).
        "embedding_init": "teacher-static",  # where the student's embedding table starts
        "embedding_training": "trained",  # whether a teacher-initialized table trains
        "tokens": "teacher",  # the student's tokens: all the teacher's, or only those the transfer texts use (corpus)
        "calibrate": True,  # fit a temperature on the validation split and fold it into the logits
        "search_widths": (1.0,),  # factors on the student's widths the search tries
        "search_budget_s": 0.0,  # seconds the student search may take (0: no limit)
        # Pruning (PruneConfig, BuildConfig.prune_epochs).
        "prune_epochs": 3,  # fine-tuning epochs while sparsity ramps up and settles
        "prune_learning_rate": 5e-4,  # Adam; lower than distillation's: the weights are already trained
        # The teacher's labeling (BuildConfig.teacher_precision; --teacher-precision).
        "teacher_precision": "auto",  # bfloat16 autocast where the CPU has bfloat16 arithmetic, else float32
        # Teacher fine-tuning (FinetuneConfig; `edgeopt teacher finetune --epochs --max-seq-len --precision`).
        "teacher_seq_len": 128,  # tokens per text the teacher reads
        "finetune_epochs": 2,
        "finetune_batch_size": 16,  # texts per optimizer step
        "finetune_learning_rate": 5e-5,  # peak AdamW learning rate
        "finetune_weight_decay": 0.01,  # AdamW (not on biases and LayerNorm weights)
        "finetune_warmup_ratio": 0.1,  # share of the steps ramping the learning rate up
        "finetune_precision": "auto",  # bfloat16 autocast where the CPU has bfloat16 arithmetic, else float32
        "finetune_frozen_layers": 0,  # bottom transformer layers (and the embeddings) kept as pretrained; 0: none
        "finetune_short_epochs": 0,  # leading epochs on texts cut to half of max_seq_len tokens (BERT's recipe)
        "finetune_fast_kernels": True,  # dropout masks 4 per random word, eager attention with them, fused AdamW
    }
)
