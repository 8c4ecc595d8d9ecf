"""One map of defaults: every settings dataclass that can leave a setting out takes its default from it."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from edgeopt.cli import cli
from edgeopt.defaults import DEFAULTS
from edgeopt.distill import DistillConfig
from edgeopt.profiles import StudentSpec
from edgeopt.prune import PruneConfig
from edgeopt.stages import BuildConfig
from edgeopt.teacher import FinetuneConfig

# Field of each settings dataclass -> the DEFAULTS key it must default to.
EXPECTED = {
    DistillConfig: {
        "temperature": "temperature",
        "alpha": "alpha",
        "intermediate_weight": "intermediate_weight",
        "epochs": "distill_epochs",
        "batch_size": "distill_batch_size",
        "learning_rate": "distill_learning_rate",
        "patience": "distill_patience",
        "lr_decay": "distill_lr_decay",
        "validation_fraction": "validation_fraction",
    },
    # Every StudentSpec field named like a default (test_every_optional_profile_key_has_its_default checks the
    # other direction).
    StudentSpec: {f.name: f.name for f in dataclasses.fields(StudentSpec) if f.name in DEFAULTS},
    PruneConfig: {"epochs": "prune_epochs", "learning_rate": "prune_learning_rate"},
    BuildConfig: {"prune_epochs": "prune_epochs", "teacher_precision": "teacher_precision"},
    FinetuneConfig: {
        "max_seq_len": "teacher_seq_len",
        "epochs": "finetune_epochs",
        "batch_size": "finetune_batch_size",
        "learning_rate": "finetune_learning_rate",
        "weight_decay": "finetune_weight_decay",
        "warmup_ratio": "finetune_warmup_ratio",
        "precision": "finetune_precision",
        "frozen_layers": "finetune_frozen_layers",
        "short_epochs": "finetune_short_epochs",
        "fast_kernels": "finetune_fast_kernels",
    },
}


@pytest.mark.parametrize("settings", list(EXPECTED), ids=lambda t: t.__name__)
def test_each_settings_class_defaults_to_the_map(settings: type) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    for field_name, key in EXPECTED[settings].items():
        assert defaults[field_name] == DEFAULTS[key], (settings.__name__, field_name)


def test_every_optional_profile_key_has_its_default() -> None:
    from edgeopt.profiles import _OPTIONAL_KEYS

    student_optional = {f.name for f in dataclasses.fields(StudentSpec)} & _OPTIONAL_KEYS
    assert student_optional == set(EXPECTED[StudentSpec])


def test_every_default_is_read_by_a_settings_class() -> None:
    read = {key for fields in EXPECTED.values() for key in fields.values()}
    assert set(DEFAULTS) == read


def test_the_two_places_a_distillation_setting_is_left_out_agree() -> None:
    # A profile without temperature/alpha and a DistillConfig() must distill the same way.
    distill = DistillConfig()
    spec_defaults = {f.name: f.default for f in dataclasses.fields(StudentSpec)}
    for name in ("temperature", "alpha", "intermediate_weight"):
        assert spec_defaults[name] == getattr(distill, name)
    assert PruneConfig().epochs == BuildConfig().prune_epochs


def test_the_map_is_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULTS["temperature"] = 4.0  # type: ignore[index]


def test_build_help_shows_the_map_s_defaults() -> None:
    text = " ".join(CliRunner().invoke(cli, ["build", "--help"], terminal_width=400).output.split())
    assert f"Distillation temperature [default: the profile's, else {DEFAULTS['temperature']:g}]." in text
    assert f"[default: the profile's, else {DEFAULTS['crop_copies']}]" in text
    assert f"[default: the profile's, else {DEFAULTS['embedding_init']}]" in text
    assert f"[default: {DEFAULTS['teacher_seq_len']}, or fewer when the teacher takes fewer]" in text


def test_the_cli_offers_the_teacher_s_precisions() -> None:
    # The CLI spells the choices out instead of importing edgeopt.teacher (it starts without numpy).
    from edgeopt.teacher.precision import PRECISIONS

    for command, option in (("build", "teacher_precision"), ("compare", "teacher_precision")):
        (param,) = [p for p in cli.commands[command].params if p.name == option]
        assert tuple(param.type.choices) == PRECISIONS, command  # type: ignore[attr-defined]
        assert param.default == DEFAULTS["teacher_precision"]
    finetune = cli.commands["teacher"].commands["finetune"]  # type: ignore[attr-defined]
    (param,) = [p for p in finetune.params if p.name == "precision"]
    assert tuple(param.type.choices) == PRECISIONS
    assert param.default == DEFAULTS["finetune_precision"]
