"""Shared fixtures: tiny real models, tokenizers and datasets built in temporary directories (no network)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from edgeopt.data import TextDataset  # noqa: E402 - after HF_HUB_OFFLINE, before any transformers import

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPAM_WORDS = ("free", "money", "win", "prize", "cash", "offer", "click", "now", "cheap", "viagra")
HAM_WORDS = (
    "meeting",
    "report",
    "lunch",
    "project",
    "thanks",
    "team",
    "agenda",
    "notes",
    "review",
    "schedule",
)
FILLER_WORDS = ("the", "a", "to", "for", "you", "we", "is", "on", "and", "of", "hello", "today")
LABEL_NAMES = ("ham", "spam")


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point edgeopt's cache at a per-test directory so tests never touch the user's cache."""
    path = tmp_path / "edgeopt-cache"
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(path))
    return path


def _vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return [*SPECIAL_TOKENS, *letters, *[f"##{c}" for c in "aeiost"], *SPAM_WORDS, *HAM_WORDS, *FILLER_WORDS]


def _toy_texts(n: int, seed: int) -> TextDataset:
    """Texts that are trivially separable: spam texts hold spam words, ham texts hold ham words."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        topic = SPAM_WORDS if label else HAM_WORDS
        words = rng.choices(topic, k=3) + rng.choices(FILLER_WORDS, k=rng.randint(1, 5))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize())
        labels.append(label)
    return TextDataset(texts=tuple(texts), labels=tuple(labels), label_names=LABEL_NAMES)


@pytest.fixture(scope="session")
def toy_train() -> TextDataset:
    """40 separable spam/ham texts for fine-tuning."""
    return _toy_texts(40, seed=1)


@pytest.fixture(scope="session")
def toy_texts() -> tuple[str, ...]:
    """A few texts of different lengths (one longer than 16 tokens) to run teachers on."""
    long_text = " ".join(["free money"] * 40)
    return (*_toy_texts(6, seed=2).texts, "unknownword xyz", long_text)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~70-token lowercase WordPiece tokenizer saved as a Hugging Face tokenizer directory."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(_vocab())}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    wrapped = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    wrapped.save_pretrained(path)
    return path


def _save_model(model: object, tokenizer_dir: Path, dest: Path) -> Path:
    import shutil

    model.save_pretrained(dest)  # type: ignore[attr-defined]
    for file in tokenizer_dir.iterdir():
        shutil.copy(file, dest / file.name)
    return dest


@pytest.fixture(scope="session")
def make_classifier_dir(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Build a tiny random *ForSequenceClassification directory: arch is "bert", "distilbert" or "minilm"."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    vocab_size = len(_vocab())
    labels = {"id2label": dict(enumerate(LABEL_NAMES)), "label2id": {n: i for i, n in enumerate(LABEL_NAMES)}}
    built: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch in built:
            return built[arch]
        torch.manual_seed(0)
        if arch in ("bert", "bert64"):
            config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=32,
                max_position_embeddings=64 if arch == "bert64" else 128,
                **labels,
            )
            model = BertForSequenceClassification(config)
        elif arch == "minilm":
            # MiniLM checkpoints are the BERT architecture with their own sizes.
            config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=24,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=48,
                max_position_embeddings=128,
                **labels,
            )
            model = BertForSequenceClassification(config)
        elif arch == "distilbert":
            config = DistilBertConfig(
                vocab_size=vocab_size,
                dim=16,
                n_layers=2,
                n_heads=2,
                hidden_dim=32,
                max_position_embeddings=128,
                **labels,
            )
            model = DistilBertForSequenceClassification(config)
        else:
            raise ValueError(f"unknown tiny arch {arch!r}")
        built[arch] = _save_model(model.eval(), tiny_tokenizer_dir, tmp_path_factory.mktemp(f"tiny-{arch}"))
        return built[arch]

    return make


@pytest.fixture(scope="session")
def tiny_st_dir(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sentence-transformers-like directory: a BertModel at the root plus modules.json."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    dest = _save_model(BertModel(config).eval(), tiny_tokenizer_dir, tmp_path_factory.mktemp("tiny-st"))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (dest / "modules.json").write_text(json.dumps(modules))
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16}))
    return dest


@pytest.fixture(scope="session")
def tiny_onnx_dir(make_classifier_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX teacher dir (model.onnx + tokenizer.json + config.json) exported from the tiny BERT."""
    import shutil

    import torch
    from transformers import BertForSequenceClassification

    source = make_classifier_dir("bert")
    model = BertForSequenceClassification.from_pretrained(source, attn_implementation="eager").eval()

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    dest = tmp_path_factory.mktemp("tiny-onnx")
    example = (torch.ones((2, 5), dtype=torch.long), torch.ones((2, 5), dtype=torch.long))
    with warnings.catch_warnings():
        # The legacy exporter is the supported path here (see stack.md); its deprecation notice is noise.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly().eval(),
            example,
            str(dest / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "b", 1: "s"},
                "attention_mask": {0: "b", 1: "s"},
                "logits": {0: "b"},
            },
            opset_version=17,
            dynamo=False,
        )
    shutil.copy(source / "tokenizer.json", dest / "tokenizer.json")
    shutil.copy(source / "config.json", dest / "config.json")
    return dest


@pytest.fixture(scope="session")
def toy_teacher_dir(tiny_st_dir: Path, toy_train: TextDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier fine-tuned on the toy spam/ham task (100% train accuracy, ~1 s to build).

    Use it where a test needs a teacher whose logits carry the task; ``make_classifier_dir`` teachers are
    random and only fit tests of shapes and numerics.
    """
    from edgeopt.teacher import FinetuneConfig, finetune

    config = FinetuneConfig(max_seq_len=32, epochs=10, batch_size=4, learning_rate=1e-3)
    return finetune(tiny_st_dir, toy_train, tmp_path_factory.mktemp("toy-teacher") / "teacher", config, progress=False)


@pytest.fixture(scope="session")
def tiny_roberta_dir(toy_train: TextDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RoBERTa encoder (no head) with a byte-level BPE tokenizer (not WordPiece) trained on toy texts."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [*toy_train.texts, *_toy_texts(40, seed=3).texts]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
    )
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=130,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    base = tmp_path_factory.mktemp("tiny-roberta")
    RobertaModel(config).eval().save_pretrained(base)
    wrapped.save_pretrained(base)
    # Guards the fixture itself: the teacher's tokenizer must really not be WordPiece.
    assert json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"] == "BPE"
    return base


@pytest.fixture(scope="session")
def toy_bpe_teacher_dir(
    tiny_roberta_dir: Path, toy_train: TextDataset, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``tiny_roberta_dir`` fine-tuned on the toy spam/ham task (100% train accuracy)."""
    from edgeopt.teacher import FinetuneConfig, finetune

    tuned = FinetuneConfig(max_seq_len=32, epochs=10, batch_size=4, learning_rate=5e-3)
    dest = tmp_path_factory.mktemp("toy-bpe-teacher") / "teacher"
    return finetune(tiny_roberta_dir, toy_train, dest, tuned, progress=False)
