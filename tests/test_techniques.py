"""Techniques as data: passes register themselves, techniques round-trip through dicts, the profile is one too."""

from __future__ import annotations

import json

import pytest

from edgeopt.errors import ConfigError
from edgeopt.profiles import QuantizationScheme, load_profile
from edgeopt.quantize import CalibrationMethod
from edgeopt.techniques import (
    PASSES,
    TECHNIQUES,
    AccuracyGate,
    FitTemperature,
    MagnitudePrune,
    Pass,
    PostTrainingQuantization,
    StructuredPrune,
    Technique,
    profile_technique,
)


def test_every_pass_registers_itself_by_name() -> None:
    assert set(PASSES) == {
        "temperature",
        "magnitude",
        "structured",
        "sensitivity",
        "int8-grid-prune",
        "qat",
        "ptq",
        "gate",
    }
    assert all(issubclass(cls, Pass) and cls.stage for cls in PASSES.values())


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_every_technique_round_trips_through_its_dict(name: str) -> None:
    technique = TECHNIQUES[name]
    data = technique.to_dict()
    assert data["name"] == name and [p["pass"] for p in data["passes"]] == [p.name for p in technique.passes]
    again = Technique.from_dict({**data, "description": technique.description})
    assert again == technique
    as_json = json.loads(json.dumps(data))  # as the manifest stores it
    assert Technique.from_dict({**as_json, "description": technique.description}) == technique


def test_a_technique_written_as_data() -> None:
    technique = Technique.from_dict(
        {
            "name": "prune30-int8-entropy",
            "passes": [
                {"pass": "magnitude", "sparsity": 0.3},
                {"pass": "ptq", "scheme": "int8-static", "calibration": "entropy"},
            ],
        }
    )
    assert technique.passes == (
        MagnitudePrune(0.3),
        PostTrainingQuantization(QuantizationScheme.INT8_STATIC, calibration=CalibrationMethod.ENTROPY),
    )
    assert technique.quantization is QuantizationScheme.INT8_STATIC and not technique.gates


def test_bad_pass_data_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^unknown pass 'prune'; passes are gate, int8-grid-prune, magnitude"):
        Pass.from_dict({"pass": "prune", "sparsity": 0.5})
    with pytest.raises(ConfigError, match=r"^pass 'magnitude' has no setting ratio; its settings: sparsity, m_by_n$"):
        Pass.from_dict({"pass": "magnitude", "ratio": 0.5})


def test_a_technique_ends_with_one_exporting_pass() -> None:
    message = r"^technique 'x' must end with exactly one exporting pass \(gate, ptq, qat\)$"
    with pytest.raises(ConfigError, match=message):
        Technique("x", "", (MagnitudePrune(0.5),))
    with pytest.raises(ConfigError, match=message):
        Technique("x", "", (PostTrainingQuantization(), StructuredPrune(0.5), PostTrainingQuantization()))
    assert Technique("x", "", (AccuracyGate(),)).gates


def test_the_profile_scheme_is_a_technique() -> None:
    pixel8 = load_profile("pixel8")
    technique = profile_technique(pixel8.name, pixel8.student, pixel8.export)
    assert technique.passes == (
        MagnitudePrune(pixel8.student.target_sparsity),
        FitTemperature(),
        PostTrainingQuantization(pixel8.export.quantization, per_channel=pixel8.export.per_channel),
    )
