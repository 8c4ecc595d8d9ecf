"""The embed task: a tiny sentence encoder distilled into an embedder bundle, measured, and refused input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from build_fixtures import tiny_profile, toy_rows, write_csv
from edgeopt.cli import cli
from edgeopt.embed import embedding_agreement, held_out_corpus, load_embed_corpus
from edgeopt.errors import ConfigError, DataError, TeacherError
from edgeopt.pipeline import BuildResult, build
from edgeopt.stages import BuildConfig
from edgeopt.teacher import load_embedding_teacher


def _teacher_vectors(teacher_dir: Path, texts: list[str], max_len: int) -> np.ndarray:
    """all-MiniLM-style sentence vectors computed here with transformers directly: mean pool, L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModel.from_pretrained(teacher_dir).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@pytest.fixture(scope="module")
def embedded(tiny_st_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BuildResult, Path]]:
    root = tmp_path_factory.mktemp("embed-build")
    texts = root / "notes.txt"
    texts.write_text("\n".join(text for text, _ in toy_rows(300, seed=4)) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE_DIR", str(root / "cache"))
        config = BuildConfig(
            profile=str(tiny_profile(root)),
            teacher=tiny_st_dir,
            train=texts,
            task="embed",
            formats="tflite,onnx,savedmodel",
        )
        yield build(config, root / "bundle"), root


def test_an_embed_bundle_verifies_and_records_its_vectors(embedded: tuple[BuildResult, Path]) -> None:
    result, _ = embedded
    manifest = json.loads((result.out / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["task"], manifest["labels"], manifest["dim"], manifest["pooling"]) == ("embed", [], 16, "mean")
    assert manifest["normalized"] is True
    assert manifest["outputs"] == [{"name": "embedding", "shape": ["batch", 16]}]
    assert set(manifest["artifacts"]) == {"model.tflite", "model.onnx"}
    build_record = manifest["build"]
    assert build_record["prune"]["overall_sparsity"] == pytest.approx(0.25, abs=0.05)
    assert build_record["held_out_corpus"] > 11 and build_record["transfer"]["crop"] > 0
    # An embedder keeps its texts' tokens unless --tokens says otherwise (edgeopt.embed.EMBED_TOKENS).
    assert build_record["student"]["tokens"] == "corpus"
    for name in ("model.tflite", "model.onnx", "student-fp32.onnx"):
        m = manifest["metrics"][name]
        assert 0.0 <= m["neighbour_recall"] <= 1.0 and -1.0 <= m["spearman"] <= 1.0 and m["bytes"] > 0
    assert "| shipped TFLite (int8) |" in (result.out / "report.md").read_text(encoding="utf-8")


def test_the_runtime_embeds_with_it_and_follows_the_teachers_structure(
    embedded: tuple[BuildResult, Path], tiny_st_dir: Path
) -> None:
    import edgeopt_runtime

    result, root = embedded
    corpus = load_embed_corpus(BuildConfig(train=root / "notes.txt", task="embed"))
    held_out = list(held_out_corpus(corpus.held_out, 0))
    teacher = _teacher_vectors(tiny_st_dir, held_out, 128)
    with edgeopt_runtime.load(result.out, backend="onnx", cache=False) as embedder:
        assert isinstance(embedder, edgeopt_runtime.TextEmbedder)
        student = embedder.embed(held_out)
    assert student.shape == (len(held_out), 16)
    np.testing.assert_allclose(np.linalg.norm(student, axis=1), 1.0, atol=1e-5)
    # The student learned the teacher's similarity structure (a collapsed student, one vector for every text, would
    # score about 0), measured here on vectors computed outside edgeopt.
    agreement = embedding_agreement(student, teacher, k=5)
    assert agreement.spearman > 0.3, agreement
    assert agreement.neighbour_recall > 3 * 5 / len(held_out), agreement


def test_a_sentence_encoder_whose_tokenizer_is_not_wordpiece_teaches_a_wordpiece_embedder(
    tiny_roberta_dir: Path, tmp_path: Path
) -> None:
    import edgeopt_runtime

    texts = tmp_path / "notes.txt"
    texts.write_text("\n".join(text for text, _ in toy_rows(200, seed=4)) + "\n", encoding="utf-8")
    config = BuildConfig(
        profile=str(tiny_profile(tmp_path)), teacher=tiny_roberta_dir, train=texts, task="embed", pooling="mean"
    )
    result = build(config, tmp_path / "bundle")
    manifest = json.loads((result.out / "manifest.json").read_text(encoding="utf-8"))
    assert json.loads((result.out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"] == "WordPiece"
    student = manifest["build"]["student"]
    assert student["vocabulary_source"] == "all-MiniLM-L6-v2's WordPiece vocabulary (the teacher's tokenizer is BPE)"
    assert student["embedding_init"] == "teacher-static"
    held_out = list(held_out_corpus(load_embed_corpus(BuildConfig(train=texts, task="embed")).held_out, 0))
    with edgeopt_runtime.load(result.out, backend="onnx", cache=False) as embedder:
        vectors = embedder.embed(held_out)
    agreement = embedding_agreement(vectors, _teacher_vectors(tiny_roberta_dir, held_out, 128), k=5)
    assert agreement.spearman > 0.3, agreement


def test_an_embed_bundle_searches_through_an_index(embedded: tuple[BuildResult, Path], tmp_path: Path) -> None:
    import edgeopt_runtime

    result, _ = embedded
    texts = [text for text, _ in toy_rows(30, seed=9)]
    with edgeopt_runtime.Index(tmp_path / "i.sqlite", result.out) as index:
        index.add([str(i) for i in range(len(texts))], texts)
        hits = dict(index.search(texts[5], k=len(texts)))
    # Every stored text comes back, the query's own row at cosine ~1 (int8 storage), as high as any.
    assert (
        len(hits) == len(texts) and hits["5"] == pytest.approx(1.0, abs=0.01) and hits["5"] >= max(hits.values()) - 0.01
    )


def test_an_embed_bundle_serves_its_vectors_from_a_savedmodel(embedded: tuple[BuildResult, Path]) -> None:
    from tokenizers import Tokenizer

    import edgeopt_runtime
    from edgeopt._tf import import_tf

    tf, _ = import_tf()
    result, _ = embedded
    record = result.manifest["savedmodel"]
    assert record["outputs"] == [{"name": "embedding", "shape": ["batch", 16], "dtype": ["float32"]}]
    assert record["measured_as"] in result.manifest["metrics"]
    assert set(record["files"]) <= set(edgeopt_runtime.verify_bundle(result.out).files)
    texts = [text for text, _ in toy_rows(30, seed=9)]
    tokenizer = Tokenizer.from_file(str(result.out / "tokenizer.json"))
    tokenizer.enable_truncation(result.manifest["max_seq_len"])
    tokenizer.enable_padding(length=result.manifest["max_seq_len"])
    encodings = tokenizer.encode_batch(texts)
    ids = tf.constant([e.ids for e in encodings], tf.int32)
    mask = tf.constant([e.attention_mask for e in encodings], tf.int32)
    serve = tf.saved_model.load(str(result.out / record["dir"])).signatures["serving_default"]
    served = serve(input_ids=ids, attention_mask=mask)["embedding"]
    served = served.numpy() / np.linalg.norm(served.numpy(), axis=1, keepdims=True)
    with edgeopt_runtime.load(result.out, backend="tflite", cache=False) as embedder:
        int8 = embedder.embed(texts)
    # The float vectors are the int8 artifact's within int8's loss: measured mean cosine 0.9985 (least 0.963) on
    # these 30 texts; the build holds two shipped artifacts to a mean of 0.99 (MIN_EMBED_BACKEND_COSINE).
    cosine = np.sum(served * int8, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.9


def test_embedding_agreement_is_one_for_the_teacher_itself_and_lower_for_noise() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(300, 24))
    same = embedding_agreement(teacher * 3.0, teacher)
    assert (same.mean_cosine, same.neighbour_recall, same.spearman) == pytest.approx((1.0, 1.0, 1.0))
    noisy = embedding_agreement(teacher + rng.normal(scale=0.8, size=teacher.shape), teacher)
    assert 0.2 < noisy.neighbour_recall < 0.9 and 0.3 < noisy.spearman < 0.95 and noisy.mean_cosine < 0.9
    unrelated = embedding_agreement(rng.normal(size=teacher.shape), teacher)
    assert unrelated.neighbour_recall < 0.15 and abs(unrelated.spearman) < 0.1
    with pytest.raises(ConfigError, match="more than k=10 texts"):
        embedding_agreement(teacher[:10], teacher[:10])


def test_the_corpus_comes_from_the_shipped_data_or_a_file(tmp_path: Path) -> None:
    shipped = load_embed_corpus(BuildConfig(task="embed"))
    assert shipped.name == "spamassassin" and len(shipped.held_out) == 1174
    assert not set(shipped.held_out) & set(shipped.train)
    table = write_csv(tmp_path / "t.csv", toy_rows(40, seed=1), header=("body", "label"))
    corpus = load_embed_corpus(BuildConfig(train=table, text_column="body", task="embed"))
    assert len(corpus.held_out) >= 1 and not set(corpus.held_out) & set(corpus.train)
    few = tmp_path / "few.txt"
    few.write_text("one\ntwo\nthree\n")
    with pytest.raises(DataError, match="holds 3 distinct texts; an embedder needs at least 20"):
        load_embed_corpus(BuildConfig(train=few, task="embed"))


def test_pooling_comes_from_the_sentence_transformers_config_or_must_be_given(
    tiny_st_dir: Path, tmp_path: Path, toy_texts: tuple[str, ...]
) -> None:
    teacher = load_embedding_teacher(tiny_st_dir)
    assert (teacher.pooling, teacher.normalized, teacher.label_names) == ("mean", False, ())
    mean = teacher.embeddings(list(toy_texts))
    np.testing.assert_allclose(mean, _teacher_vectors(tiny_st_dir, list(toy_texts), 128), atol=1e-5)
    plain = Path(shutil.copytree(tiny_st_dir, tmp_path / "plain"))
    (plain / "modules.json").unlink()
    with pytest.raises(TeacherError, match=r"does not say how it pools .* pass pooling='mean'"):
        load_embedding_teacher(plain)
    cls = load_embedding_teacher(plain, pooling="cls")
    assert cls.fingerprint != teacher.fingerprint
    vectors = cls.embeddings(list(toy_texts))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors, mean, atol=1e-3)
    with pytest.raises(ConfigError, match="pooling='sum' is not one of mean, cls, max"):
        load_embedding_teacher(tiny_st_dir, pooling="sum")


def test_cli_errors_for_the_embed_task_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--pooling", "cls", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.output == "Error: --pooling is for --task embed only; drop it for a classifier\n"
    result = runner.invoke(
        cli, ["build", "--task", "embed", "--technique", "int8-static", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: --technique not available for --task embed yet: an embedder is built by the profile's own scheme "
        "(prune, int8); drop it\n"
    )
    result = runner.invoke(cli, ["build", "--task", "embed", "--general-texts", "5", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --general-texts not available for --task embed yet: an embedder distills on --train's texts (or the "
        "shipped corpus) and crops of them; drop it\n"
    )
    assert not (tmp_path / "b").exists()


def test_cli_inspect_shows_an_embedder(embedded: tuple[BuildResult, Path]) -> None:
    result, _ = embedded
    shown = CliRunner().invoke(cli, ["inspect", str(result.out)])
    assert shown.exit_code == 0, shown.output
    assert "embedder: 16 dims, mean pooling; max_seq_len 16" in shown.output
    assert shown.output.splitlines()[-1].startswith("model.onnx ")
