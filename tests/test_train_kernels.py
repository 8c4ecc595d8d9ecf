"""edgeopt.teacher.train_kernels: dropout masks four to a random word, and the model switch that uses them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgeopt.teacher.train_kernels import FAST_ATTENTION, FastDropout, fast_dropout, use_fast_kernels  # noqa: E402


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fast_dropout_drops_the_share_asked_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    ones = torch.ones(400, 500)
    out = fast_dropout(ones, p, training=True)
    dropped = float((out == 0).float().mean())
    assert abs(dropped - p) < 0.005  # 200k Bernoulli draws: sd ~0.001
    assert abs(float(out.mean()) - 1.0) < 0.01
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-4)


def test_fast_dropout_is_seeded_keeps_dtype_and_shape_and_passes_gradients_through_the_mask() -> None:
    x = torch.randn(3, 7, 5, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(1)
    first = fast_dropout(x, 0.2, training=True)
    torch.manual_seed(1)
    again = fast_dropout(x, 0.2, training=True)
    assert first.dtype == torch.bfloat16 and first.shape == x.shape
    assert torch.equal(first, again)
    first.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, first == 0)


def test_fast_dropout_outside_training_or_at_the_ends_of_p() -> None:
    x = torch.randn(4, 4)
    assert fast_dropout(x, 0.5, training=False) is x
    assert fast_dropout(x, 0.0, training=True) is x
    assert torch.equal(fast_dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_fast_dropout_module_is_a_torch_dropout() -> None:
    module = FastDropout(0.25)
    assert isinstance(module, torch.nn.Dropout) and module.p == 0.25
    x = torch.ones(10, 10)
    assert module.eval()(x) is x
    assert (module.train()(x) == 0).any()


def _classifier_and_probe(tiny_st_dir: Path) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_st_dir, num_labels=3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_st_dir)
    probe = tokenizer(["free money now for you", "hi"], padding=True, return_tensors="pt")
    assert int(probe["attention_mask"].sum()) < probe["attention_mask"].numel()  # the probe has padding
    return model, dict(probe)


def test_use_fast_kernels_switches_dropout_and_attention_and_answers_as_before(tiny_st_dir: Path) -> None:
    model, probe = _classifier_and_probe(tiny_st_dir)
    dropouts = sum(type(m) is torch.nn.Dropout for m in model.modules())
    model.eval()
    with torch.no_grad():
        before = model(**probe).logits
    model.train()

    switched = use_fast_kernels(model, probe)

    assert switched == {"attention": FAST_ATTENTION, "dropout_modules": dropouts}
    assert dropouts > 0 and sum(type(m) is torch.nn.Dropout for m in model.modules()) == 0
    assert model.training  # left in the mode it came in
    assert model.config._attn_implementation == FAST_ATTENTION
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**probe).logits, before, atol=1e-5)


def test_a_model_whose_attention_answers_differently_keeps_its_own(
    tiny_st_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    kernels = importlib.import_module("edgeopt.teacher.train_kernels")

    def wrong(module: object, query: torch.Tensor, key: object, value: torch.Tensor, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return torch.zeros_like(query).transpose(1, 2).contiguous(), None

    monkeypatch.setattr(kernels, "_eager_attention", wrong)
    model, probe = _classifier_and_probe(tiny_st_dir)
    previous = model.config._attn_implementation

    switched = use_fast_kernels(model, probe)

    assert switched["attention"] == previous != FAST_ATTENTION
    assert model.config._attn_implementation == previous
    assert switched["dropout_modules"] > 0
    monkeypatch.undo()
    kernels._register_attention()  # the real function back under the name, for the tests after this one


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_each_architecture_encodes_as_before_after_the_switch(
    arch: str, make_classifier_dir: Callable[[str], Path]
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_classifier_dir(arch)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    probe = dict(
        AutoTokenizer.from_pretrained(path)(["free money now for you", "hi"], padding=True, return_tensors="pt")
    )
    probe.pop("token_type_ids", None)
    with torch.no_grad():
        before = model(**probe, output_hidden_states=True).hidden_states[-1]

    switched = use_fast_kernels(model, probe)

    assert switched["dropout_modules"] > 0
    with torch.no_grad():
        after = model(**probe, output_hidden_states=True).hidden_states[-1]
    real = probe["attention_mask"].bool()
    assert torch.allclose(after[real], before[real], rtol=1e-3, atol=1e-4), switched
