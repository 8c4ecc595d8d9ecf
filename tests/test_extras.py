import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeopt.data import TextDataset
from edgeopt.errors import MissingExtraError
from edgeopt.extras import require
from edgeopt.teacher import finetune, load_teacher


def hide_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import torch` raise ImportError, as on a machine without the extra. Called inside
    # the tests, after the session fixtures (which build their models with torch) exist.
    monkeypatch.setitem(sys.modules, "torch", None)


def test_require_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_torch(monkeypatch)
    with pytest.raises(MissingExtraError) as caught:
        require("teacher", "fine-tuning a teacher")
    expected = "fine-tuning a teacher needs torch, which is not installed: pip install 'edgeopt[teacher]'"
    assert str(caught.value) == expected


def test_require_passes_when_installed() -> None:
    require("teacher", "fine-tuning a teacher")


def test_finetune_without_the_teacher_extra(
    tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_torch(monkeypatch)
    with pytest.raises(MissingExtraError, match=r"^fine-tuning a teacher needs torch, .*'edgeopt\[teacher\]'$"):
        finetune(tiny_st_dir, toy_train, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_hf_teacher_without_the_extra_but_onnx_teacher_runs(
    make_classifier_dir: Callable[[str], Path],
    tiny_onnx_dir: Path,
    toy_texts: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = make_classifier_dir("bert")
    hide_torch(monkeypatch)
    with pytest.raises(MissingExtraError, match=r"^the Hugging Face teacher .* needs torch, .*'edgeopt\[teacher\]'$"):
        load_teacher(path, max_seq_len=16).logits(toy_texts[:2])
    assert load_teacher(tiny_onnx_dir, max_seq_len=16).logits(toy_texts[:2]).shape == (2, 2)
