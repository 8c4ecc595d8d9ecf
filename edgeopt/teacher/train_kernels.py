"""Faster CPU kernels for the teacher fine-tune: cheap dropout masks, an attention that uses them, fused AdamW.

Profiling a bfloat16 fine-tune step of all-MiniLM-L6-v2 on this project's 2-core CPU (batch 16 x 128 tokens,
``bench/finetune_step_profile.py``) put ~40% of the forward pass in ``aten::bernoulli_``: torch draws each dropout
mask element from its Mersenne twister one at a time, on one thread, and the attention probabilities alone are 3.1M
elements per layer. Here each 64-bit random word gives four 16-bit draws, compared against ``p`` scaled to 65,536
(``p`` is rounded to a multiple of 1/65,536; the kept values are scaled by the exact inverse of the kept share, so
expectations are unchanged). The masks are Bernoulli like torch's, only from another stream of the same seeded
generator. Together with an eager attention that uses these masks (scaled dot-product attention draws its own
inside) and AdamW's fused CPU step, whole fine-tunes ran 1.4-1.5x faster (``bench/teacher_frozen.py``, README).

Rejected: ``torch.rand(...) < p`` (still one draw per element); dropping attention dropout (changes the recipe, not
only its cost). Not tried: ``torch.compile`` (every padded batch length is a new shape to compile for).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["FAST_ATTENTION", "FastDropout", "fast_dropout", "use_fast_kernels"]

logger = logging.getLogger(__name__)

FAST_ATTENTION = "edgeopt_fast_dropout"
"""The name the eager attention with :func:`fast_dropout` is registered under in transformers."""

_DRAWS = 65536  # values of one 16-bit draw


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)`` with the mask drawn 16 bits at a time, four per random word.

    Args:
        x: Any tensor; the result has its dtype and shape.
        p: Probability of zeroing an element, in [0, 1].
        training: False returns ``x`` itself, as torch's dropout does in eval mode.

    Returns:
        ``x`` with each element zeroed with probability ``p`` (rounded to a multiple of 1/65,536) and the others
        divided by the share kept.
    """
    if not training or p == 0:
        return x
    dropped = round(p * _DRAWS)
    if dropped >= _DRAWS:
        return x * 0
    count = x.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    keep = words.view(torch.int16)[:count].view(x.shape) >= dropped - _DRAWS // 2
    return x * (keep.to(x.dtype) * (_DRAWS / (_DRAWS - dropped)))


class FastDropout(torch.nn.Dropout):
    """A ``torch.nn.Dropout`` (same ``p``, same ``isinstance``) whose mask comes from :func:`fast_dropout`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's parameter name
        """Zero each element with probability ``p`` in training mode; ``input`` itself in eval mode."""
        return fast_dropout(input, self.p, self.training)


def _eager_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    # transformers' eager_attention_forward (BERT family), with the probabilities' dropout from fast_dropout.
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = fast_dropout(torch.nn.functional.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(FAST_ATTENTION, _eager_attention)
    AttentionMaskInterface.register(FAST_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def _encoded(model: Any, probe: dict[str, torch.Tensor]) -> torch.Tensor:
    # The last hidden states of the real tokens: of the order of 1 after LayerNorm, where a fresh head's logits are
    # of the order of 0.01 and would hide a wrong attention under any tolerance.
    states: torch.Tensor = model(**probe, output_hidden_states=True).hidden_states[-1]
    mask = probe.get("attention_mask")
    return states if mask is None else states[mask.bool()]


def use_fast_kernels(model: Any, probe: dict[str, torch.Tensor]) -> dict[str, object]:
    """Switch a transformers model to :func:`fast_dropout` wherever it keeps its results; what was switched.

    Every ``torch.nn.Dropout`` module becomes a :class:`FastDropout`. The attention becomes the eager one with fast
    dropout only if the model takes transformers' attention functions and, in eval mode, encodes ``probe`` (a
    tokenized batch with padding) to the same last hidden states (to 1e-3 relative): a model whose attention differs
    from BERT's (relative positions, other masks) keeps its own.

    Args:
        model: A transformers ``PreTrainedModel``, in any mode; it is left in the mode it came in.
        probe: Tokenizer output (``return_tensors="pt"``) for at least two texts of different lengths.

    Returns:
        ``{"attention": name of the attention in use, "dropout_modules": number of modules switched}``.
    """
    was_training = model.training
    model.eval()
    previous = model.config._attn_implementation
    attention = previous
    try:
        _register_attention()
        with torch.no_grad():
            before = _encoded(model, probe)
            model.set_attn_implementation(FAST_ATTENTION)
            after = _encoded(model, probe)
        if torch.allclose(before, after, rtol=1e-3, atol=1e-4):
            attention = FAST_ATTENTION
        else:
            logger.info("%s answers differently with eager attention; it keeps %s", type(model).__name__, previous)
    except (ValueError, KeyError, AttributeError, NotImplementedError) as error:
        logger.info("%s keeps its attention %s: %s", type(model).__name__, previous, error)
    if attention != FAST_ATTENTION and model.config._attn_implementation != previous:
        model.set_attn_implementation(previous)
    switched = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                switched += 1
    model.train(was_training)
    return {"attention": attention, "dropout_modules": switched}
