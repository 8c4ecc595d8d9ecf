from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgeopt.errors import ProfileError
from edgeopt.profiles import (
    Budget,
    ExportFormat,
    ExportSpec,
    Profile,
    QuantizationScheme,
    StudentSpec,
    list_profiles,
    load_profile,
    profiles_dir,
)

SHIPPED = ["android-go", "galaxy-s24", "jetson-orin-nano", "pixel8", "raspberry-pi-4", "raspberry-pi-5"]
PIXEL8_TEXT = (Path(__file__).resolve().parents[1] / "edgeopt" / "profiles" / "pixel8.toml").read_text(encoding="utf-8")
SOURCES_BLOCK = PIXEL8_TEXT[PIXEL8_TEXT.index("sources = [") : PIXEL8_TEXT.index("]\n\n[budget]") + 1]


@pytest.fixture(autouse=True)
def _default_profiles_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEOPT_PROFILES_DIR", raising=False)


def write_variant(tmp_path: Path, old: str, new: str, stem: str = "pixel8") -> Path:
    """pixel8.toml with one exact edit, written to tmp_path/<stem>.toml."""
    assert old in PIXEL8_TEXT, old  # guards the test itself, not user input
    path = tmp_path / f"{stem}.toml"
    path.write_text(PIXEL8_TEXT.replace(old, new, 1), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- shipped profiles -------------------------------------------------------------------------------


def test_list_is_sorted_and_has_the_six() -> None:
    names = list_profiles()
    assert names == sorted(names)
    assert set(SHIPPED) <= set(names)


def test_profiles_dir_default_is_repo_profiles() -> None:
    assert profiles_dir() == Path(__file__).resolve().parents[1] / "edgeopt" / "profiles"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_is_sane(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.path == profiles_dir().resolve() / f"{name}.toml"
    assert 64 <= profile.budget.max_seq_len <= 512
    assert profile.device.sources and all(s.strip() for s in profile.device.sources)
    assert "notes/devices.md (Nov 2026)" in profile.device.sources
    assert profile.budget.max_model_mb <= profile.budget.max_runtime_ram_mb < profile.device.ram_mb
    assert set(profile.export.formats) == {ExportFormat.ONNX, ExportFormat.TFLITE}
    assert isinstance(profile.export.quantization, QuantizationScheme)
    assert profile.student.architecture == "search"  # each shipped profile searches every architecture
    assert 0 <= profile.student.target_sparsity <= 0.95


def test_shipped_profiles_are_sized_to_their_device() -> None:
    profiles = {name: load_profile(name) for name in SHIPPED}
    go, others = profiles.pop("android-go"), list(profiles.values())
    assert go.budget.max_model_mb == 2.0
    assert all(go.budget.max_model_mb < p.budget.max_model_mb for p in others)
    assert all(go.budget.max_runtime_ram_mb < p.budget.max_runtime_ram_mb for p in others)
    assert all(go.budget.target_p50_ms > p.budget.target_p50_ms for p in others)
    assert all(go.export.threads < p.export.threads for p in others)
    assert all(go.student.embedding_dim < p.student.embedding_dim for p in others)
    pi4, pi5, jetson = profiles["raspberry-pi-4"], profiles["raspberry-pi-5"], profiles["jetson-orin-nano"]
    assert pi4.student.hidden_dim < pi5.student.hidden_dim <= jetson.student.hidden_dim
    assert jetson.export.formats[0] is ExportFormat.ONNX
    assert profiles["pixel8"].export.formats[0] is ExportFormat.TFLITE


# --- loading by path and by env ---------------------------------------------------------------------


def test_load_by_path_str_and_path(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "threads = 4", "threads = 3")
    assert load_profile(path).export.threads == 3
    assert load_profile(str(path)).export.threads == 3
    assert load_profile(path).path == path.resolve()


def test_env_var_selects_profiles_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_variant(tmp_path, 'description = "Google', 'description = "Custom', stem="pixel8")
    write_variant(tmp_path, 'name = "pixel8"', 'name = "a-phone"', stem="a-phone")
    monkeypatch.setenv("EDGEOPT_PROFILES_DIR", str(tmp_path))
    assert profiles_dir() == tmp_path
    assert list_profiles() == ["a-phone", "pixel8"]
    assert load_profile("pixel8").description.startswith("Custom")


def test_env_var_dir_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("EDGEOPT_PROFILES_DIR", str(missing))
    with pytest.raises(ProfileError) as info:
        list_profiles()
    assert str(info.value) == (
        f"profiles directory not found: {missing}; set EDGEOPT_PROFILES_DIR to a folder of .toml profiles"
    )


# --- error messages ---------------------------------------------------------------------------------


def test_unknown_name_lists_known_and_mentions_path() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("pixel9")
    assert str(info.value) == (
        "unknown profile 'pixel9'; known profiles: android-go, galaxy-s24, jetson-orin-nano, pixel8, "
        "raspberry-pi-4, raspberry-pi-5; or give a path to a .toml file"
    )


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "phone.toml"
    assert load_error(missing) == (f"profile file not found: {missing}; give an existing .toml file or a profile name")


def test_directory_is_not_a_profile_file(tmp_path: Path) -> None:
    assert load_error(tmp_path).startswith(f"profile file not found: {tmp_path};")


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "ram_mb = 8192", "ram_mb = = 8192")
    line = PIXEL8_TEXT.splitlines().index("ram_mb = 8192") + 1
    message = load_error(path)
    assert message.startswith(f"{path} is not valid TOML: ")
    assert re.search(rf"\(at line {line}, column \d+\)$", message)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pixel8.toml"
    path.write_bytes(PIXEL8_TEXT.encode("utf-8").replace(b"Tensor G3", b"Tensor \xff3", 1))
    assert load_error(path).startswith(f"{path} is not UTF-8 text (invalid start byte at byte ")


def test_unknown_key_names_table_key_and_allowed(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "max_seq_len = 256", "max_seq_len = 256\nmax_ram = 3")
    assert load_error(path) == (
        f"{path}: unknown key 'budget.max_ram'; allowed keys in [budget]: max_model_mb, max_runtime_ram_mb, "
        "target_p50_ms, max_accuracy_drop, max_seq_len"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write_variant(tmp_path, 'name = "pixel8"', 'name = "pixel8"\nversion = 2')
    assert load_error(path) == (
        f"{path}: unknown key 'version'; allowed keys in the top level: name, description, device, budget, "
        "export, student"
    )


def test_missing_key(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "calibration_samples = 200\n", "")
    assert load_error(path) == f"{path}: missing key 'export.calibration_samples'; add it to [export]"


def test_missing_table(tmp_path: Path) -> None:
    start = PIXEL8_TEXT.index("[student]")
    path = write_variant(tmp_path, PIXEL8_TEXT[start:], "")
    assert load_error(path) == f"{path}: missing key 'student'; add it to the top level"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("threads = 4", 'threads = "4"', "export.threads must be an integer; got '4' (str)"),
        ("threads = 4", "threads = true", "export.threads must be an integer; got True (bool)"),
        ("threads = 4", "threads = 4.0", "export.threads must be an integer; got 4.0 (float)"),
        ("max_model_mb = 5.0", 'max_model_mb = "5"', "budget.max_model_mb must be a number; got '5' (str)"),
        (
            "per_channel = true",
            "per_channel = 1",
            "export.per_channel must be a boolean (true/false); got 1 (int)",
        ),
        ('soc = "Google Tensor G3"', "soc = 3", "device.soc must be a string; got 3 (int)"),
        (
            'formats = ["tflite", "onnx"]',
            'formats = "onnx"',
            "export.formats must be a list of onnx, tflite, savedmodel; got 'onnx' (str)",
        ),
        (
            'formats = ["tflite", "onnx"]',
            'formats = ["tflite", 3]',
            "export.formats[1] must be one of onnx, tflite, savedmodel; got 3 (int)",
        ),
        (
            'accelerators = ["XNNPACK (CPU)", "LiteRT GPU delegate"]',
            'accelerators = ["XNNPACK (CPU)", 1]',
            "device.accelerators[1] must be a string; got 1 (int)",
        ),
    ],
)
def test_wrong_type(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write_variant(tmp_path, old, new)
    assert load_error(path) == f"{path}: {expected}"


def test_table_not_a_table() -> None:
    data = load_profile("pixel8").to_dict()
    data["budget"] = 5
    with pytest.raises(ProfileError, match=re.escape("budget must be a table ([budget]); got 5")):
        Profile.from_dict(data)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "target_sparsity = 0.5",
            "target_sparsity = 0.96",
            "student.target_sparsity must be in [0, 0.95]; got 0.96",
        ),
        (
            "target_sparsity = 0.5",
            "target_sparsity = -0.1",
            "student.target_sparsity must be in [0, 0.95]; got -0.1",
        ),
        (
            "max_accuracy_drop = 0.01",
            "max_accuracy_drop = 1.5",
            "budget.max_accuracy_drop must be in [0, 1]; got 1.5",
        ),
        ("max_seq_len = 256", "max_seq_len = 4", "budget.max_seq_len must be in [8, 2048]; got 4"),
        ("max_seq_len = 256", "max_seq_len = 4096", "budget.max_seq_len must be in [8, 2048]; got 4096"),
        ("max_model_mb = 5.0", "max_model_mb = 0", "budget.max_model_mb must be > 0; got 0.0"),
        ("target_p50_ms = 10.0", "target_p50_ms = -1", "budget.target_p50_ms must be > 0; got -1.0"),
        ("threads = 4", "threads = 0", "export.threads must be >= 1; got 0"),
        ("ram_mb = 8192", "ram_mb = 0", "device.ram_mb must be >= 1; got 0"),
        ("hidden_dim = 128", "hidden_dim = 0", "student.hidden_dim must be >= 1; got 0"),
        (
            'formats = ["tflite", "onnx"]',
            "formats = []",
            "export.formats must not be empty; list at least one of onnx, tflite, savedmodel",
        ),
        (
            'formats = ["tflite", "onnx"]',
            'formats = ["tflite", "coreml"]',
            "export.formats[1] must be one of onnx, tflite, savedmodel; got 'coreml' (str)",
        ),
        (
            'formats = ["tflite", "onnx"]',
            'formats = ["onnx", "onnx"]',
            "export.formats lists a value twice: ['onnx', 'onnx']",
        ),
        (
            'formats = ["tflite", "onnx"]',
            'formats = ["savedmodel"]',
            "export.formats ['savedmodel'] has no format the runtime loads; add onnx or tflite (savedmodel is for "
            "TensorFlow Serving only)",
        ),
        (
            'quantization = "int8-static"',
            'quantization = "int4"',
            "export.quantization must be one of int8-static, int8-dynamic, float16, none; got 'int4' (str)",
        ),
        (
            'architecture = "search"',
            'architecture = "rnn"',
            "student.architecture must be one of cnn, cnn-attention, search; got 'rnn'",
        ),
        (
            "target_sparsity = 0.5",
            "target_sparsity = 0.5\nsearch_widths = [1.0, 0.0]",
            "student.search_widths must hold factors in [0.1, 8]; got 0",
        ),
        (
            "target_sparsity = 0.5",
            "target_sparsity = 0.5\nsearch_widths = []",
            "student.search_widths must not be empty; list at least one factor, e.g. [1.0]",
        ),
        ("max_model_mb = 5.0", "max_model_mb = nan", "budget.max_model_mb must be a finite number; got nan"),
        ("target_p50_ms = 10.0", "target_p50_ms = inf", "budget.target_p50_ms must be a finite number; got inf"),
        (
            "max_accuracy_drop = 0.01",
            "max_accuracy_drop = -inf",
            "budget.max_accuracy_drop must be a finite number; got -inf",
        ),
        (
            "target_sparsity = 0.5",
            "target_sparsity = 0.5\nsearch_widths = [1.0, nan]",
            "student.search_widths[1] must be a finite number; got nan",
        ),
        (
            "target_sparsity = 0.5",
            "target_sparsity = 0.5\nsearch_budget_s = -1",
            "student.search_budget_s must be >= 0; got -1.0",
        ),
        ('soc = "Google Tensor G3"', 'soc = " "', "device.soc must not be empty"),
        (SOURCES_BLOCK, "sources = []", "device.sources must not be empty"),
        (
            "max_runtime_ram_mb = 64",
            "max_runtime_ram_mb = 9000",
            "budget.max_runtime_ram_mb (9000) must be below device.ram_mb (8192)",
        ),
        (
            "max_model_mb = 5.0",
            "max_model_mb = 65",
            "budget.max_model_mb (65) must not exceed budget.max_runtime_ram_mb (64): the model is loaded into RAM",
        ),
        (
            'name = "pixel8"',
            'name = "Pixel 8"',
            "name must be lowercase letters, digits and '-'; got 'Pixel 8'",
        ),
        (
            'name = "pixel8"',
            'name = "pixel9"',
            "name 'pixel9' does not match the file name 'pixel8.toml'; set name = 'pixel8' or rename the file",
        ),
    ],
)
def test_out_of_range(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write_variant(tmp_path, old, new)
    assert load_error(path) == f"{path}: {expected}"


# --- dataclasses and to_dict ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_to_dict_round_trips_through_json(name: str) -> None:
    profile = load_profile(name)
    data = profile.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["export"]["formats"] == [f.value for f in profile.export.formats]
    assert data["path"] == str(profile.path)
    assert Profile.from_dict(json.loads(json.dumps(data))) == profile


def test_dataclasses_normalize_and_validate_in_python() -> None:
    budget = Budget(max_model_mb=5, max_runtime_ram_mb=64, target_p50_ms=10, max_accuracy_drop=0, max_seq_len=128)
    assert isinstance(budget.max_model_mb, float) and isinstance(budget.max_accuracy_drop, float)
    export = ExportSpec(formats=["onnx"], quantization="float16", per_channel=False, calibration_samples=1, threads=1)
    assert export.formats == (ExportFormat.ONNX,) and export.quantization is QuantizationScheme.FLOAT16
    serving = ExportSpec(["savedmodel", "tflite"], "none", per_channel=False, calibration_samples=1, threads=1)
    assert serving.runtime_formats == (ExportFormat.TFLITE,)  # the backends a build verifies and measures
    with pytest.raises(ProfileError, match=re.escape("student.kernel_size must be >= 1; got 0")):
        StudentSpec(architecture="cnn", embedding_dim=8, hidden_dim=8, kernel_size=0, dense_dim=8, target_sparsity=0)


def test_optional_keys_default_and_validate(tmp_path: Path) -> None:
    shipped = load_profile("pixel8")
    assert (shipped.export.technique, shipped.student.temperature, shipped.student.alpha) == ("", 2.0, 0.5)
    assert shipped.student.intermediate_weight == 0.0
    given = write_variant(tmp_path, "target_sparsity = 0.5", "target_sparsity = 0.5\ntemperature = 4.0\nalpha = 0.9")
    loaded = load_profile(given)
    assert (loaded.student.temperature, loaded.student.alpha) == (4.0, 0.9)
    bad = write_variant(tmp_path, "target_sparsity = 0.5", "target_sparsity = 0.5\nalpha = 1.5", stem="bad")
    assert "student.alpha must be in [0, 1]; got 1.5" in load_error(bad)


def test_student_lever_keys_default_and_validate(tmp_path: Path) -> None:
    shipped = load_profile("pixel8").student
    assert (shipped.crop_copies, shipped.embedding_init, shipped.calibrate) == (3, "teacher-static", True)
    assert (shipped.embedding_training, shipped.general_texts) == ("trained", 0)
    given = write_variant(
        tmp_path,
        "target_sparsity = 0.5",
        'target_sparsity = 0.5\ncrop_copies = 0\nembedding_init = "random"\ncalibrate = false',
    )
    student = load_profile(given).student
    assert (student.crop_copies, student.embedding_init, student.calibrate) == (0, "random", False)
    for line, expected in (
        ("crop_copies = 11", "student.crop_copies must be in [0, 10]; got 11"),
        ("general_texts = -5", "student.general_texts must be >= 0; got -5"),
        (
            'embedding_init = "glove"',
            "student.embedding_init must be one of teacher-static, teacher, random; got 'glove'",
        ),
        ('calibrate = "yes"', "student.calibrate must be a boolean (true/false); got 'yes' (str)"),
    ):
        bad = write_variant(tmp_path, "target_sparsity = 0.5", f"target_sparsity = 0.5\n{line}")
        assert expected in load_error(bad)
