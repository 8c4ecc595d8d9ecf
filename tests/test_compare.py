"""`edgeopt compare` end to end on a tiny fixture: every technique builds, is measured and lands in the outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from build_fixtures import tiny_profile, toy_rows, write_csv
from edgeopt.cli import cli
from edgeopt.compare import CompareResult, compare
from edgeopt.errors import StageError
from edgeopt.stages import BuildConfig
from edgeopt.techniques import DEFAULT_TECHNIQUES, resolve_techniques


@pytest.fixture(scope="module")
def compared(toy_teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompareResult]:
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEOPT_CACHE_DIR", str(root / "cache"))
        config = BuildConfig(
            profile=str(tiny_profile(root)),
            teacher=toy_teacher_dir,
            train=write_csv(root / "train.csv", toy_rows(80, seed=1)),
            test=write_csv(root / "test.csv", toy_rows(24, seed=2)),
        )
        yield compare(config, root / "compare")


def test_every_default_technique_is_measured(compared: CompareResult) -> None:
    assert len(DEFAULT_TECHNIQUES) >= 8
    assert [v.technique["name"] for v in compared.variants] == list(DEFAULT_TECHNIQUES)
    for variant in compared.variants:
        assert set(variant.formats) == {"onnx", "tflite"}, variant.technique["name"]
        assert variant.bytes > 0 and variant.gzip_bytes > 0
        assert variant.p50_ms_onnx and variant.p50_ms_tflite
        assert 0.0 <= variant.accuracy <= 1.0


def test_outputs_are_written(compared: CompareResult) -> None:
    payload = json.loads((compared.out / "compare.json").read_text())
    assert len(payload["variants"]) == len(DEFAULT_TECHNIQUES)
    for key in (
        "technique",
        "accuracy",
        "macro_f1",
        "agreement",
        "bytes",
        "gzip_bytes",
        "p50_ms_onnx",
        "p50_ms_tflite",
        "fits_profile",
    ):
        assert key in payload["variants"][0], key
    table = (compared.out / "compare.md").read_text()
    for name in DEFAULT_TECHNIQUES:
        assert f"| {name} |" in table
    assert (compared.out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_techniques_change_what_they_claim(compared: CompareResult) -> None:
    by_name = {v.technique["name"]: v for v in compared.variants}
    assert by_name["int8-static"].bytes < by_name["float32"].bytes
    assert by_name["float16"].formats["tflite"]["bytes"] < by_name["float32"].formats["tflite"]["bytes"]
    # Structured removal shrinks the file itself, not only its gzip size (a tiny model is mostly format overhead,
    # so the parameter count shows the halving better than the bytes).
    structured = by_name["structured50-int8"]
    assert structured.bytes < by_name["int8-static"].bytes
    assert structured.details["structured"]["params_after"] < 0.6 * structured.details["structured"]["params_before"]
    # Unstructured sparsity shows after compression.
    assert by_name["prune75-int8"].gzip_bytes < by_name["int8-static"].gzip_bytes
    assert by_name["prune50-int8"].details["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert by_name["int8-prune50"].details["sparsity"] >= 0.5
    assert by_name["sparse24-int8"].details["prune"]["m_by_n_satisfied"] is True
    assert by_name["qat-int8"].details["qat"]["quantized"]
    assert set(by_name["int8-gated"].details["gate"]) == {"model.tflite", "model.onnx"}


def test_unknown_technique_is_one_clear_error() -> None:
    with pytest.raises(StageError, match="unknown technique.*nope.*choose from: float32"):
        resolve_techniques(["nope"])
    result = CliRunner().invoke(cli, ["compare", "--techniques", "int8-static,nope"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: unknown technique")


def test_cli_lists_techniques() -> None:
    result = CliRunner().invoke(cli, ["compare", "--list"])
    assert result.exit_code == 0
    for name in DEFAULT_TECHNIQUES:
        assert name in result.output
