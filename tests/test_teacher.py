from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeopt.cache_dirs import cache_dir
from edgeopt.data import TextDataset
from edgeopt.errors import ConfigError, OutputExistsError, TeacherError
from edgeopt.teacher import (
    FinetuneConfig,
    Teacher,
    TeacherKind,
    TeacherLogitCache,
    detect_teacher_kind,
    finetune,
    load_teacher,
)

ARCHS = ("bert", "distilbert", "minilm")


def _torch_logits(path: Path, texts: tuple[str, ...], max_seq_len: int) -> np.ndarray:
    """Reference logits: the saved model and its own HF tokenizer, one text at a time (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_seq_len, return_tensors="pt")
            if model.config.model_type == "distilbert":
                enc.pop("token_type_ids", None)
            rows.append(model(**enc).logits[0].numpy())
    return np.stack(rows)


def _accuracy(teacher: Teacher, data: TextDataset) -> float:
    return float(np.mean(teacher.logits(data.texts).argmax(1) == np.asarray(data.labels)))


# --- cache_dir -------------------------------------------------------------------------------------------


def test_cache_dir_follows_env_and_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(target))
    assert cache_dir() == target.resolve()
    assert target.is_dir()


# --- detect_teacher_kind ---------------------------------------------------------------------------------


def test_detect_kinds(make_classifier_dir: Callable[[str], Path], tiny_st_dir: Path, tiny_onnx_dir: Path) -> None:
    for arch in ARCHS:
        assert detect_teacher_kind(make_classifier_dir(arch)) is TeacherKind.HF_CLASSIFIER
    assert detect_teacher_kind(tiny_st_dir) is TeacherKind.SENTENCE_TRANSFORMER
    assert detect_teacher_kind(tiny_onnx_dir) is TeacherKind.ONNX
    assert detect_teacher_kind(tiny_onnx_dir / "model.onnx") is TeacherKind.ONNX


def test_detect_rejects_random_dir_text_file_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TeacherError, match=r"is not a model directory; expected a \.onnx file"):
        detect_teacher_kind(tmp_path)
    with pytest.raises(TeacherError, match=r"notes\.txt is a file but not a \.onnx model"):
        detect_teacher_kind(tmp_path / "notes.txt")
    with pytest.raises(TeacherError, match="does not exist"):
        detect_teacher_kind(tmp_path / "nope")


# --- load_teacher + logits -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_teacher_logits_match_torch(
    arch: str, make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...]
) -> None:
    path = make_classifier_dir(arch)
    teacher = load_teacher(path, max_seq_len=16)
    assert teacher.kind is TeacherKind.HF_CLASSIFIER
    assert teacher.label_names == ("ham", "spam")
    assert teacher.tokenizer_json == path.resolve() / "tokenizer.json"
    # batch_size 3 mixes texts of different lengths in a padded batch, including a truncated one.
    logits = teacher.logits(toy_texts, batch_size=3)
    assert logits.shape == (len(toy_texts), 2)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, _torch_logits(path, toy_texts, 16), atol=1e-5)
    assert teacher.logits([]).shape == (0, 2)
    assert teacher.weights_bytes() == (path / "model.safetensors").stat().st_size


def test_a_teacher_saved_with_a_slow_tokenizer_s_files_gets_a_tokenizer_json_converted(
    make_classifier_dir: Callable[[str], Path], toy_bpe_teacher_dir: Path, toy_texts: tuple[str, ...], tmp_path: Path
) -> None:
    from tokenizers import Tokenizer

    bert = Path(shutil.copytree(make_classifier_dir("bert"), tmp_path / "bert"))
    original = Tokenizer.from_file(str(bert / "tokenizer.json"))
    (bert / "tokenizer.json").unlink()
    # One line per id: the toy vocabulary lists "a" twice, so an id is skipped and gets a placeholder.
    by_id = {i: token for token, i in original.get_vocab().items()}
    lines = [by_id.get(i, f"[unused{i}]") for i in range(max(by_id) + 1)]
    (bert / "vocab.txt").write_text("".join(f"{token}\n" for token in lines), encoding="utf-8")
    teacher = load_teacher(bert, max_seq_len=16)  # from vocab.txt, as BERT's slow tokenizer saves it
    assert teacher.tokenizer_json.parent.parent == cache_dir() / "tokenizers"
    converted = Tokenizer.from_file(str(teacher.tokenizer_json))
    assert [e.ids for e in converted.encode_batch(list(toy_texts))] == [
        e.ids for e in original.encode_batch(list(toy_texts))
    ]
    np.testing.assert_allclose(teacher.logits(toy_texts), _torch_logits(bert, toy_texts, 16), atol=1e-5)

    roberta = Path(shutil.copytree(toy_bpe_teacher_dir, tmp_path / "roberta"))
    bpe = Tokenizer.from_file(str(roberta / "tokenizer.json"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (roberta / name).unlink()
    bpe.model.save(str(roberta))  # vocab.json and merges.txt, as RoBERTa's slow tokenizer saves them
    teacher = load_teacher(roberta, max_seq_len=16)
    np.testing.assert_allclose(teacher.logits(toy_texts), _torch_logits(roberta, toy_texts, 16), atol=1e-5)

    (bert / "vocab.txt").unlink()
    with pytest.raises(TeacherError, match=r"bert has no tokenizer.json nor a tokenizer's vocabulary \(vocab.txt, "):
        load_teacher(bert, max_seq_len=16)


def test_fingerprint_depends_on_weights_and_seq_len(make_classifier_dir: Callable[[str], Path]) -> None:
    bert = load_teacher(make_classifier_dir("bert"), max_seq_len=16)
    assert load_teacher(make_classifier_dir("bert"), max_seq_len=16).fingerprint == bert.fingerprint
    assert load_teacher(make_classifier_dir("bert"), max_seq_len=32).fingerprint != bert.fingerprint
    assert load_teacher(make_classifier_dir("minilm"), max_seq_len=16).fingerprint != bert.fingerprint


def test_bfloat16_teacher_keeps_its_fingerprint_and_keys_its_outputs_apart(
    make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...]
) -> None:
    path = make_classifier_dir("bert")
    exact = load_teacher(path, max_seq_len=16)
    fast = load_teacher(path, max_seq_len=16, precision="bfloat16")
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    assert fast.fingerprint == exact.fingerprint
    assert exact.outputs_key == exact.fingerprint
    assert fast.outputs_key == f"{exact.fingerprint}-bfloat16"
    expected = exact.logits(toy_texts, batch_size=3)
    got = fast.logits(toy_texts, batch_size=3)
    assert got.dtype == np.float32
    assert not np.array_equal(got, expected)  # the arithmetic did change
    np.testing.assert_allclose(got, expected, atol=0.05)  # bfloat16 keeps ~3 significant digits
    back = fast.with_precision("float32")
    assert back.outputs_key == exact.outputs_key
    np.testing.assert_allclose(back.logits(toy_texts, batch_size=3), expected, atol=1e-6)


def test_teacher_precision_is_checked_and_onnx_stays_float32(
    make_classifier_dir: Callable[[str], Path], tiny_onnx_dir: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^precision='half' is invalid: use one of auto, float32, bfloat16$"):
        load_teacher(make_classifier_dir("bert"), max_seq_len=16, precision="half")
    assert load_teacher(tiny_onnx_dir, precision="bfloat16").precision == "float32"


def test_sentence_transformer_dir_must_be_finetuned(tiny_st_dir: Path) -> None:
    with pytest.raises(TeacherError, match="without a classification head; fine-tune it first"):
        load_teacher(tiny_st_dir)


def test_seq_len_beyond_positions_is_refused(make_classifier_dir: Callable[[str], Path]) -> None:
    with pytest.raises(TeacherError, match="max_seq_len=256 exceeds the 128 positions"):
        load_teacher(make_classifier_dir("bert"), max_seq_len=256)


def test_seq_len_defaults_to_what_the_teacher_takes(make_classifier_dir: Callable[[str], Path]) -> None:
    assert load_teacher(make_classifier_dir("bert")).max_seq_len == 128
    short = load_teacher(make_classifier_dir("bert64"))
    assert short.max_seq_len == 64
    assert short.logits([" ".join(["free cash prize"] * 60)]).shape == (1, 2)  # 180 words, cut at 64 tokens
    with pytest.raises(TeacherError, match=r"exceeds the 64 positions .*; pass teacher_seq_len=64 or less$"):
        load_teacher(make_classifier_dir("bert64"), max_seq_len=100)


def test_onnx_teacher_with_a_fixed_length(tiny_onnx_dir: Path, toy_texts: tuple[str, ...], tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    for node in model.graph.input:
        node.type.tensor_type.shape.dim[1].dim_value = 16  # as exporters with static shapes write it
    fixed_dir = tmp_path / "fixed"
    shutil.copytree(tiny_onnx_dir, fixed_dir)
    onnx.save(model, str(fixed_dir / "model.onnx"))
    fixed = load_teacher(fixed_dir)
    assert fixed.max_seq_len == 16 and fixed.pad_to_max_seq_len
    # Every batch is padded to 16 tokens, whatever its longest text; the logits are those of the dynamic model.
    dynamic = load_teacher(tiny_onnx_dir, max_seq_len=16)
    np.testing.assert_allclose(
        fixed.logits(toy_texts, batch_size=4), dynamic.logits(toy_texts, batch_size=4), atol=1e-4
    )
    with pytest.raises(TeacherError, match="takes exactly 16 tokens per text, not 32; pass teacher_seq_len=16"):
        load_teacher(fixed_dir, max_seq_len=32)


def test_onnx_dir_teacher_matches_torch(
    tiny_onnx_dir: Path, make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...]
) -> None:
    teacher = load_teacher(tiny_onnx_dir, max_seq_len=16)
    assert teacher.kind is TeacherKind.ONNX
    assert teacher.label_names == ("ham", "spam")
    logits = teacher.logits(toy_texts, batch_size=4)
    np.testing.assert_allclose(logits, _torch_logits(make_classifier_dir("bert"), toy_texts, 16), atol=1e-4)
    assert teacher.weights_bytes() == (tiny_onnx_dir / "model.onnx").stat().st_size


def test_onnx_file_without_config_gets_generic_labels(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_onnx_dir / "model.onnx", tmp_path / "teacher.onnx")
    with pytest.raises(TeacherError, match="needs the tokenizer.json it was trained with"):
        load_teacher(tmp_path / "teacher.onnx")
    shutil.copy(tiny_onnx_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    teacher = load_teacher(tmp_path / "teacher.onnx", max_seq_len=16)
    assert teacher.label_names == ("LABEL_0", "LABEL_1")
    assert teacher.logits(["free money now"]).shape == (1, 2)


# --- finetune --------------------------------------------------------------------------------------------


def test_finetune_sentence_transformer_base_learns_toy_task(
    tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    # A random tiny encoder needs ~100 small steps to pick up the toy words (about 1 s).
    config = FinetuneConfig(max_seq_len=32, epochs=10, batch_size=4, learning_rate=1e-3)
    out = finetune(tiny_st_dir, toy_train, tmp_path / "teacher", config, progress=False)

    assert out == tmp_path / "teacher"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".teacher")] == []  # temp sibling gone
    assert (out / "tokenizer.json").is_file()
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "ham", "1": "spam"}
    assert detect_teacher_kind(out) is TeacherKind.HF_CLASSIFIER

    # The same base with a freshly initialised head (same seed as finetune) is the "before" point.
    torch.manual_seed(config.seed)
    before_model = AutoModelForSequenceClassification.from_pretrained(tiny_st_dir, num_labels=2).eval()
    before_dir = tmp_path / "before"
    before_model.config.id2label = {0: "ham", 1: "spam"}
    before_model.save_pretrained(before_dir)
    shutil.copy(out / "tokenizer.json", before_dir / "tokenizer.json")
    before = _accuracy(load_teacher(before_dir, max_seq_len=32), toy_train)
    after = _accuracy(load_teacher(out, max_seq_len=32), toy_train)
    assert after >= 0.95
    assert after > before

    with pytest.raises(OutputExistsError, match="already exists"):
        finetune(tiny_st_dir, toy_train, out, config, progress=False)


def test_bfloat16_finetune_learns_too_and_records_its_precision(
    tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path
) -> None:
    config = FinetuneConfig(max_seq_len=32, epochs=10, batch_size=4, learning_rate=1e-3, precision="bfloat16")
    out = finetune(tiny_st_dir, toy_train, tmp_path / "teacher", config, progress=False)
    assert _accuracy(load_teacher(out, max_seq_len=32), toy_train) >= 0.95
    meta = json.loads((out / "edgeopt_finetune.json").read_text())
    assert meta["config"]["precision"] == "bfloat16"
    saved = json.loads((out / "config.json").read_text())
    assert saved.get("torch_dtype", saved.get("dtype", "float32")) == "float32"  # the weights stay float32


def test_frozen_layers_keep_their_pretrained_weights(tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    config = FinetuneConfig(max_seq_len=32, epochs=10, batch_size=4, learning_rate=1e-3, frozen_layers=1)
    # (The fixture's encoder is random, so with its embeddings frozen it learns little: only weights are checked.)
    out = finetune(tiny_st_dir, toy_train, tmp_path / "teacher", config, progress=False)
    before = {k.removeprefix("bert."): v for k, v in load_file(tiny_st_dir / "model.safetensors").items()}
    after = {k.removeprefix("bert."): v for k, v in load_file(out / "model.safetensors").items()}
    frozen = [k for k in before if k.startswith(("embeddings.", "encoder.layer.0."))]
    trained = [k for k in before if k.startswith("encoder.layer.1.")]
    assert frozen and trained
    for name in frozen:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert any(not np.array_equal(after[name], before[name]) for name in trained)
    meta = json.loads((out / "edgeopt_finetune.json").read_text())
    assert meta["frozen_parameters"] == sum(before[k].size for k in frozen)


def test_frozen_layers_beyond_the_model_are_refused(tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^frozen_layers=9 but the model has 2 transformer layers; freeze at most 1$"
    ):
        finetune(tiny_st_dir, toy_train, tmp_path / "teacher", FinetuneConfig(frozen_layers=9), progress=False)
    assert not (tmp_path / "teacher").exists()


def test_short_epochs_read_the_texts_that_fill_the_window_cut_to_half(
    tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    finetune_module = importlib.import_module("edgeopt.teacher.finetune")  # the package's finetune is the function
    lengths: list[list[int]] = []
    batches = finetune_module.length_grouped_batches

    def recording(token_counts: list[int], batch_size: int, generator: object) -> list[list[int]]:
        lengths.append(list(token_counts))
        return batches(token_counts, batch_size, generator)

    monkeypatch.setattr(finetune_module, "length_grouped_batches", recording)
    config = FinetuneConfig(max_seq_len=8, epochs=3, batch_size=4, short_epochs=2)
    out = finetune(tiny_st_dir, toy_train, tmp_path / "teacher", config, progress=False)
    whole = lengths[2]
    assert max(whole) == 8 and min(whole) < 8  # the fixture has texts that fill 8 tokens and texts that fit
    # Texts cut at 8 tokens are cut to 4 in the short epochs; texts that fit stay whole.
    assert lengths[0] == lengths[1] == [4 if n == 8 else n for n in whole]
    assert json.loads((out / "edgeopt_finetune.json").read_text())["config"]["short_epochs"] == 2
    with pytest.raises(ConfigError, match=r"^short_epochs=3 must be below epochs=3: the last epoch reads whole texts"):
        FinetuneConfig(epochs=3, short_epochs=3)


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    precision = importlib.import_module("edgeopt.teacher.precision")
    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    assert precision.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    assert precision.resolve_precision("auto") == "float32"
    assert precision.resolve_precision("bfloat16") == "bfloat16"
    assert isinstance(precision.native_bfloat16(), bool)


def test_finetune_refuses_onnx_base(tiny_onnx_dir: Path, toy_train: TextDataset, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="cannot fine-tune the ONNX model"):
        finetune(tiny_onnx_dir, toy_train, tmp_path / "out", progress=False)


def test_finetune_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"FinetuneConfig\.epochs=0 is invalid: use an integer >= 1"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"warmup_ratio=1\.0 is invalid"):
        FinetuneConfig(warmup_ratio=1.0)
    with pytest.raises(ConfigError, match=r"FinetuneConfig\.precision='half' is invalid: use one of auto, float32"):
        FinetuneConfig(precision="half")
    with pytest.raises(ConfigError, match=r"FinetuneConfig\.frozen_layers=-1 is invalid: use an integer >= 0"):
        FinetuneConfig(frozen_layers=-1)


# --- TeacherLogitCache -----------------------------------------------------------------------------------


def test_logit_cache_hits_on_second_call_and_keys_by_teacher(
    make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...], tmp_path: Path
) -> None:
    bert = load_teacher(make_classifier_dir("bert"), max_seq_len=16)
    texts = [*toy_texts, toy_texts[0]]  # a duplicate is computed once
    db = tmp_path / "logits.sqlite"
    with TeacherLogitCache(db) as cache:
        first = cache.get_or_compute(bert, texts)
        assert (cache.hits, cache.misses, cache.computed) == (0, len(texts), len(toy_texts))
        np.testing.assert_allclose(first, bert.logits(texts), atol=1e-6)

        second = cache.get_or_compute(bert, list(reversed(texts)))
        assert (cache.hits, cache.computed) == (len(texts), len(toy_texts))
        np.testing.assert_array_equal(second, first[::-1])

        distil = load_teacher(make_classifier_dir("distilbert"), max_seq_len=16)
        other = cache.get_or_compute(distil, texts[:3])
        assert cache.computed == len(toy_texts) + 3
        assert not np.allclose(other, first[:3])

    with TeacherLogitCache(db) as reopened:  # persisted on disk
        reopened.get_or_compute(bert, ["a new text", *texts[:2]])
        assert (reopened.hits, reopened.misses, reopened.computed) == (2, 1, 1)


def test_logit_cache_keeps_bfloat16_and_float32_outputs_apart(
    make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...], tmp_path: Path
) -> None:
    fast = load_teacher(make_classifier_dir("bert"), max_seq_len=16, precision="bfloat16")
    with TeacherLogitCache(tmp_path / "logits.sqlite") as cache:
        np.testing.assert_array_equal(cache.get_or_compute(fast, toy_texts), fast.logits(toy_texts))
        exact = cache.get_or_compute(fast.with_precision("float32"), toy_texts)
        assert cache.computed == 2 * len(toy_texts)  # the float32 answers were computed, not read back
        np.testing.assert_allclose(exact, fast.with_precision("float32").logits(toy_texts), atol=1e-6)


def test_logit_cache_defaults_to_cache_dir(
    make_classifier_dir: Callable[[str], Path], _isolated_cache_dir: Path
) -> None:
    with TeacherLogitCache() as cache:
        assert cache.path == _isolated_cache_dir.resolve() / "teacher_logits.sqlite"
        cache.get_or_compute(load_teacher(make_classifier_dir("bert"), max_seq_len=16), ["free cash"])
    assert cache.path.is_file()


# --- export_onnx -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_export_onnx_matches_torch(
    arch: str, make_classifier_dir: Callable[[str], Path], toy_texts: tuple[str, ...], tmp_path: Path
) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    path = make_classifier_dir(arch)
    teacher = load_teacher(path, max_seq_len=16)
    out = teacher.export_onnx(tmp_path / "sub" / "teacher.onnx")
    assert out.is_file()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (
        ["input_ids", "attention_mask", "token_type_ids"] if arch == "bert" else ["input_ids", "attention_mask"]
    )
    assert [o.name for o in session.get_outputs()] == ["logits"]

    tokenizer = Tokenizer.from_file(str(teacher.tokenizer_json))
    tokenizer.enable_truncation(16)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    expected = _torch_logits(path, toy_texts, 16)
    # Two batch sizes and padded lengths exercise both dynamic axes.
    for chunk in (slice(0, 3), slice(3, None)):
        encs = tokenizer.encode_batch(list(toy_texts[chunk]))
        feeds = {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }
        got = session.run(["logits"], {n: feeds[n] for n in names})[0]
        np.testing.assert_allclose(got, expected[chunk], atol=1e-4)


def test_export_onnx_of_onnx_teacher_copies_the_file(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    out = load_teacher(tiny_onnx_dir).export_onnx(tmp_path / "copy.onnx")
    assert out.read_bytes() == (tiny_onnx_dir / "model.onnx").read_bytes()


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_token_embeddings_are_the_models_input_table(
    arch: str, make_classifier_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    path = make_classifier_dir(arch)
    teacher = load_teacher(path, max_seq_len=16)
    table = teacher.token_embeddings()
    model = AutoModelForSequenceClassification.from_pretrained(path)
    expected = model.get_input_embeddings().weight.detach().to(torch.float32).numpy()
    assert table is not None and table.dtype == np.float32
    np.testing.assert_array_equal(table, expected[: len(table)])
    assert len(table) == max(_vocab_ids(teacher.tokenizer_json)) + 1
    # The same table comes out of the teacher's ONNX export, whose initializers keep the torch names.
    onnx_path = teacher.export_onnx(tmp_path / "model.onnx")
    (tmp_path / "tokenizer.json").write_bytes(teacher.tokenizer_json.read_bytes())
    onnx_table = load_teacher(onnx_path, max_seq_len=16).token_embeddings()
    assert onnx_table is not None
    np.testing.assert_allclose(onnx_table, table, atol=1e-6)


def _vocab_ids(path: Path) -> list[int]:
    return list(json.loads(path.read_text())["model"]["vocab"].values())


def test_static_token_vectors_are_one_forward_pass_per_token(make_classifier_dir: Callable[[str], Path]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    path = make_classifier_dir("bert")
    teacher = load_teacher(path, max_seq_len=16)
    ids = [5, 9, 30, 31]
    vectors = teacher.static_token_vectors(ids, batch_size=3)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    cls, sep = teacher._get_tokenizer().token_to_id("[CLS]"), teacher._get_tokenizer().token_to_id("[SEP]")
    with torch.inference_mode():
        batch = torch.tensor([[cls, i, sep] for i in ids])
        hidden = model(input_ids=batch, output_hidden_states=True).hidden_states[-1]
    assert vectors is not None and vectors.shape == (4, hidden.shape[-1])
    np.testing.assert_allclose(vectors, hidden.mean(dim=1).numpy(), atol=1e-5)


def test_onnx_teacher_has_no_static_vectors(tiny_onnx_dir: Path) -> None:
    assert load_teacher(tiny_onnx_dir).static_token_vectors([1, 2]) is None


def test_fast_kernels_are_recorded_and_the_reference_kernels_keep_the_cache_key_of_before(
    tiny_st_dir: Path, toy_train: TextDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeopt.teacher import cached_finetune
    from edgeopt.teacher.train_kernels import FAST_ATTENTION

    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path / "cache"))
    config = FinetuneConfig(max_seq_len=16, epochs=1, batch_size=8)
    fast = cached_finetune(tiny_st_dir, toy_train, config, progress=False)
    reference = cached_finetune(
        tiny_st_dir, toy_train, FinetuneConfig(max_seq_len=16, epochs=1, batch_size=8, fast_kernels=False), False
    )
    assert fast != reference
    assert json.loads((fast / "edgeopt_finetune.json").read_text())["fast_kernels"] == {
        "attention": FAST_ATTENTION,
        "dropout_modules": 8,  # embeddings 1, 3 per layer x 2 layers (attention probabilities included), head 1
    }
    assert json.loads((reference / "edgeopt_finetune.json").read_text())["fast_kernels"] == {}
    # Teachers cached before the setting existed were made with torch's kernels: their keys stay valid.
    import hashlib

    from edgeopt.teacher.finetune import _FINETUNE_RECIPE_VERSION, _dataset_fingerprint
    from edgeopt.teacher.kinds import _hf_weight_files, _sha256_files

    settings = {"max_seq_len": 16, "epochs": 1, "batch_size": 8, "learning_rate": 5e-5, "weight_decay": 0.01}
    settings |= {"warmup_ratio": 0.1, "seed": 0}
    from edgeopt.teacher.precision import resolve_precision

    if resolve_precision("auto") == "bfloat16":
        settings["precision"] = "bfloat16"
    key_before = {
        "recipe": _FINETUNE_RECIPE_VERSION,
        "base_weights": _sha256_files(_hf_weight_files(tiny_st_dir)),
        "train": _dataset_fingerprint(toy_train),
        "config": settings,
    }
    assert reference.name == hashlib.sha256(json.dumps(key_before, sort_keys=True).encode()).hexdigest()
