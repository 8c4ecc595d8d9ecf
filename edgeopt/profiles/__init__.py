"""Hardware profiles: one TOML file per target device, loaded into frozen dataclasses.

A profile is data, never code. It says what the device is (``[device]``, with sources), what a build must meet
(``[budget]``), how to export (``[export]``) and how large a student to train (``[student]``). The dataclasses
validate themselves in ``__post_init__`` from the type hints and the range/choice metadata on each field, so a
profile built in Python is checked exactly like one read from a file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin, get_type_hints

from edgeopt.defaults import DEFAULTS
from edgeopt.errors import ProfileError

__all__ = [
    "EMBEDDING_INITS",
    "STUDENT_TOKENS",
    "EMBEDDING_TRAINING",
    "STUDENT_ARCHITECTURES",
    "Quantization",
    "ExportFormat",
    "RUNTIME_FORMATS",
    "DeviceSpec",
    "Budget",
    "ExportSpec",
    "StudentSpec",
    "Profile",
    "profiles_dir",
    "list_profiles",
    "load_profile",
]

PROFILES_DIR_ENV = "EDGEOPT_PROFILES_DIR"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
STUDENT_ARCHITECTURES = ("cnn", "cnn-attention")
"""Student encoders :func:`edgeopt.student.build_student` builds (``[student] architecture``)."""
EMBEDDING_INITS = ("teacher-static", "teacher", "random")
"""Where the student's embedding table starts (``[student] embedding_init``)."""
EMBEDDING_TRAINING = ("search", "frozen", "trained")
"""Whether a teacher-initialized table trains (``[student] embedding_training``)."""
STUDENT_TOKENS = ("corpus", "teacher")
"""Which of the teacher's tokens the student keeps (``[student] tokens``)."""


class QuantizationScheme(StrEnum):
    """How the exported student is quantized."""

    INT8_STATIC = "int8-static"
    INT8_DYNAMIC = "int8-dynamic"
    FLOAT16 = "float16"
    NONE = "none"


class ExportFormat(StrEnum):
    """Artifact formats a bundle can hold.

    ``savedmodel`` is for TensorFlow Serving on a server: the float student as a SavedModel directory
    (``model.savedmodel/``, :func:`edgeopt.export.to_savedmodel`), which the on-device runtime does not load.
    """

    ONNX = "onnx"
    TFLITE = "tflite"
    SAVEDMODEL = "savedmodel"


RUNTIME_FORMATS: tuple[ExportFormat, ...] = (ExportFormat.ONNX, ExportFormat.TFLITE)
"""Formats the on-device runtime (``edgeopt_runtime``) loads; a bundle must hold at least one of them."""


def _spec(
    lo: float | None = None,
    hi: float | None = None,
    *,
    positive: bool = False,
    choices: tuple[str, ...] = (),
    nonempty: bool = False,
) -> Any:
    """A dataclass field with the checks the validator applies: inclusive bounds, > 0, choices, non-empty."""
    return field(metadata={"lo": lo, "hi": hi, "positive": positive, "choices": choices, "nonempty": nonempty})


def _optional(default: Any, lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A field a profile may leave out; listed in ``_OPTIONAL_KEYS``."""
    return field(
        default=default, metadata={"lo": lo, "hi": hi, "positive": False, "choices": choices, "nonempty": False}
    )


def _fmt(number: float) -> str:
    return f"{number:g}"


def _choices(enum: type[Enum]) -> str:
    return ", ".join(member.value for member in enum)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        return "a list of " + (_choices(item) if issubclass(item, Enum) else _type_name(item)[2:] + "s")
    if isinstance(hint, type) and issubclass(hint, Enum):
        return f"one of {_choices(hint)}"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}[hint]


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Return ``value`` as ``hint`` (list -> tuple, str -> Enum, int -> float) or raise ProfileError."""
    if get_origin(hint) is tuple:
        if isinstance(value, list | tuple):
            return tuple(_coerce(get_args(hint)[0], item, f"{key}[{i}]") for i, item in enumerate(value))
    elif isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            pass
    elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        # TOML has nan and inf; every comparison with nan is false, so a nan budget would switch its check off.
        if not math.isfinite(value):
            raise ProfileError(f"{key} must be a finite number; got {value!r}")
        return float(value)
    # bool is an int subclass: ``threads = true`` must not pass as 1.
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ProfileError(f"{key} must be {_type_name(hint)}; got {value!r} ({type(value).__name__})")


class _Validated:
    """Mixin: check and normalize every field from its type hint and ``_spec`` metadata after ``__init__``."""

    _table: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            hint, meta = hints[f.name], f.metadata
            if dataclasses.is_dataclass(hint) or hint is Path:
                continue
            key = f"{self._table}.{f.name}" if self._table else f.name
            value = _coerce(hint, getattr(self, f.name), key)
            object.__setattr__(self, f.name, value)
            lo, hi = meta["lo"], meta["hi"]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"in [{_fmt(lo)}, {_fmt(hi)}]" if hi is not None else f">= {_fmt(lo)}"
                raise ProfileError(f"{key} must be {bounds}; got {value!r}")
            if meta["positive"] and value <= 0:
                raise ProfileError(f"{key} must be > 0; got {value!r}")
            if meta["choices"] and value not in meta["choices"]:
                raise ProfileError(f"{key} must be one of {', '.join(meta['choices'])}; got {value!r}")
            if meta["nonempty"] and not (value.strip() if isinstance(value, str) else value):
                item = get_args(hint)[0] if get_origin(hint) is tuple else str
                fix = (
                    f"; list at least one of {_choices(item)}"
                    if isinstance(item, type) and issubclass(item, Enum)
                    else ""
                )
                raise ProfileError(f"{key} must not be empty{fix}")
            if isinstance(value, tuple) and len(set(value)) != len(value):
                raise ProfileError(f"{key} lists a value twice: {[getattr(v, 'value', v) for v in value]}")


@dataclass(frozen=True)
class DeviceSpec(_Validated):
    """What the target device is, with the sources the facts come from."""

    _table: ClassVar[str] = "device"
    soc: str = _spec(nonempty=True)
    cpu: str = _spec(nonempty=True)
    ram_mb: int = _spec(1)
    os: str = _spec(nonempty=True)
    accelerators: tuple[str, ...] = _spec()
    notes: str = _spec()
    sources: tuple[str, ...] = _spec(nonempty=True)


@dataclass(frozen=True)
class Budget(_Validated):
    """Limits a build must meet; ``target_p50_ms`` is batch 1 on the device's big core."""

    _table: ClassVar[str] = "budget"
    max_model_mb: float = _spec(positive=True)
    max_runtime_ram_mb: float = _spec(positive=True)
    target_p50_ms: float = _spec(positive=True)
    max_accuracy_drop: float = _spec(0.0, 1.0)
    max_seq_len: int = _spec(8, 2048)


@dataclass(frozen=True)
class ExportSpec(_Validated):
    """How the student is exported; ``formats`` is in order of preference for the device."""

    _table: ClassVar[str] = "export"
    formats: tuple[ExportFormat, ...] = _spec(nonempty=True)
    quantization: QuantizationScheme = _spec()
    per_channel: bool = _spec()
    calibration_samples: int = _spec(1)
    threads: int = _spec(1)
    # Optional: a named technique from `edgeopt compare --list` (e.g. "structured50-int8", "qat-int8") that replaces
    # the plain quantization scheme above; checked against the list when a build starts.
    technique: str = _optional("")
    # Optional: also ship model.nnapi.onnx, the ONNX artifact with its shapes fixed to [1, max_seq_len], which
    # ONNX Runtime's NNAPI (and CoreML) execution providers can take almost whole (edgeopt.export.fixed_shape_onnx).
    nnapi_onnx: bool = _optional(False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.runtime_formats:
            raise ProfileError(
                f"export.formats {[f.value for f in self.formats]} has no format the runtime loads; add "
                f"{' or '.join(f.value for f in RUNTIME_FORMATS)} (savedmodel is for TensorFlow Serving only)"
            )

    @property
    def runtime_formats(self) -> tuple[ExportFormat, ...]:
        """``formats`` the on-device runtime loads (:data:`RUNTIME_FORMATS`), in the profile's order."""
        return tuple(f for f in self.formats if f in RUNTIME_FORMATS)


@dataclass(frozen=True)
class StudentSpec(_Validated):
    """Size of the student trained for the device."""

    _table: ClassVar[str] = "student"
    # A student architecture, or "search": the build distills each and keeps the best on validation (edgeopt.search).
    architecture: str = _spec(choices=(*STUDENT_ARCHITECTURES, "search"))
    embedding_dim: int = _spec(1)
    hidden_dim: int = _spec(1)
    kernel_size: int = _spec(1)
    dense_dim: int = _spec(1)
    target_sparsity: float = _spec(0.0, 0.95)
    # Optional distillation settings (the defaults of edgeopt.distill.DistillConfig apply when left out).
    temperature: float = _optional(DEFAULTS["temperature"], lo=0.01)
    alpha: float = _optional(DEFAULTS["alpha"], lo=0.0, hi=1.0)
    intermediate_weight: float = _optional(DEFAULTS["intermediate_weight"], lo=0.0)
    augment_copies: int = _optional(DEFAULTS["augment_copies"], lo=0, hi=10)
    # Crops (first line, first sentence, random spans) of each training text the teacher labels for the student.
    crop_copies: int = _optional(DEFAULTS["crop_copies"], lo=0, hi=10)
    # General English texts (shipped fortune quotes, edgeopt.data.load_general_texts) the teacher labels beside the
    # task's texts, cropped like them, so the student also learns the teacher's answers on texts unlike the task's.
    # Off by default: 8,000 of them raised short-text fidelity on every development task but cost test accuracy on
    # two of four (README "Students on hard, short and unfamiliar texts"), and they double the student's build time.
    general_texts: int = _optional(DEFAULTS["general_texts"], lo=0)
    # Where the student's embedding table starts: the teacher's vector of each token from a forward pass
    # (teacher-static) or its input embedding table (teacher), reduced by PCA; or random.
    embedding_init: str = _optional(DEFAULTS["embedding_init"], choices=EMBEDDING_INITS)
    # A teacher-initialized table kept as it starts (frozen: rare words keep the teacher's view of them), trained,
    # or both distilled and the better on validation kept (search); a random table always trains. Trained by
    # default: a frozen table won no validation comparison in 18 (3 dev tasks x 3 seeds x 2 architectures,
    # bench/results/validation_levers.jsonl) and one test comparison of 4 by one text, at one more distill each.
    embedding_training: str = _optional(DEFAULTS["embedding_training"], choices=EMBEDDING_TRAINING)
    # The tokens the student keeps: every teacher token (teacher: a word no training text uses keeps its own row,
    # started from the teacher's vector of it, as the teacher reads it) or those the transfer texts use (corpus,
    # with every single-character piece, so an unseen word splits into letters and pieces: a smaller table).
    # Teacher by default: on validation, the same student reads held-out texts better through the whole
    # vocabulary on 3 development tasks of 3 (paired, 6 students each), and on the test splits it raised every
    # task's accuracy (+0.3 to +6.7 points) and short-text fidelity, for ~1.9 MB instead of 0.3-1.4 MB at pixel8.
    tokens: str = _optional(DEFAULTS["tokens"], choices=STUDENT_TOKENS)
    # Fit a temperature on the validation split and fold it into the logits layer, so scores are calibrated.
    calibrate: bool = _optional(DEFAULTS["calibrate"])
    # Factors on embedding_dim, hidden_dim and dense_dim the student search tries (edgeopt.search).
    search_widths: tuple[float, ...] = _optional(DEFAULTS["search_widths"])
    # Seconds the student search may take (0: no limit); the first candidate always runs.
    search_budget_s: float = _optional(DEFAULTS["search_budget_s"], lo=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.search_widths:
            raise ProfileError("student.search_widths must not be empty; list at least one factor, e.g. [1.0]")
        for width in self.search_widths:
            if not 0.1 <= width <= 8:
                raise ProfileError(f"student.search_widths must hold factors in [0.1, 8]; got {width:g}")


@dataclass(frozen=True)
class Profile(_Validated):
    """A named hardware profile; ``path`` is the TOML file it was read from."""

    name: str = _spec(nonempty=True)
    description: str = _spec(nonempty=True)
    device: DeviceSpec = _spec()
    budget: Budget = _spec()
    export: ExportSpec = _spec()
    student: StudentSpec = _spec()
    path: Path = _spec()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "path", Path(self.path))
        if not _NAME_RE.match(self.name):
            raise ProfileError(f"name must be lowercase letters, digits and '-'; got {self.name!r}")
        if self.path.suffix == ".toml" and self.name != self.path.stem:
            raise ProfileError(
                f"name {self.name!r} does not match the file name {self.path.name!r}; "
                f"set name = {self.path.stem!r} or rename the file"
            )
        for table, cls in _TABLES.items():
            if not isinstance(getattr(self, table), cls):
                raise ProfileError(f"{table} must be a {cls.__name__}; got {type(getattr(self, table)).__name__}")
        budget = self.budget
        if budget.max_runtime_ram_mb >= self.device.ram_mb:
            raise ProfileError(
                f"budget.max_runtime_ram_mb ({_fmt(budget.max_runtime_ram_mb)}) must be below "
                f"device.ram_mb ({self.device.ram_mb})"
            )
        if budget.max_model_mb > budget.max_runtime_ram_mb:
            raise ProfileError(
                f"budget.max_model_mb ({_fmt(budget.max_model_mb)}) must not exceed "
                f"budget.max_runtime_ram_mb ({_fmt(budget.max_runtime_ram_mb)}): the model is loaded into RAM"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as plain JSON types (enums as values, tuples as lists, path as a string)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Enum):
                return value.value
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return str(value) if isinstance(value, Path) else value

        plain_dict: dict[str, Any] = plain(dataclasses.asdict(self))
        return plain_dict

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path | None = None) -> Profile:
        """Build a profile from the TOML tables (or ``to_dict()`` output), checking keys, types and ranges.

        Args:
            data: Top-level keys ``name``, ``description`` and the tables ``device``, ``budget``, ``export``,
                ``student``; a ``path`` key (as written by ``to_dict``) is used when ``path`` is not given.
            path: File the data came from; recorded in ``Profile.path``.

        Returns:
            The validated profile.

        Raises:
            ProfileError: A key is unknown or missing, or a value has the wrong type or is out of range.
        """
        data = dict(data)
        stored_path = data.pop("path", None)
        resolved = Path(path if path is not None else stored_path if stored_path is not None else "")
        top = _check_keys(data, [f.name for f in dataclasses.fields(cls) if f.name != "path"], "")
        for table, table_cls in _TABLES.items():
            value = top[table]
            if not isinstance(value, Mapping):
                raise ProfileError(f"{table} must be a table ([{table}]); got {value!r}")
            top[table] = table_cls(**_check_keys(value, [f.name for f in dataclasses.fields(table_cls)], table))
        return cls(**top, path=resolved)


# Keys a profile may leave out (their dataclass default applies).
_OPTIONAL_KEYS = frozenset(
    {
        "technique",
        "nnapi_onnx",
        "temperature",
        "alpha",
        "intermediate_weight",
        "augment_copies",
        "crop_copies",
        "general_texts",
        "embedding_init",
        "embedding_training",
        "tokens",
        "calibrate",
        "search_widths",
        "search_budget_s",
    }
)

_TABLES: dict[str, type] = {
    "device": DeviceSpec,
    "budget": Budget,
    "export": ExportSpec,
    "student": StudentSpec,
}


def _check_keys(data: Mapping[str, Any], allowed: list[str], table: str) -> dict[str, Any]:
    where = f"[{table}]" if table else "the top level"
    prefix = f"{table}." if table else ""
    for key in data:
        if key not in allowed:
            raise ProfileError(f"unknown key '{prefix}{key}'; allowed keys in {where}: {', '.join(allowed)}")
    for key in allowed:
        if key not in data and key not in _OPTIONAL_KEYS:
            raise ProfileError(f"missing key '{prefix}{key}'; add it to {where}")
    return dict(data)


def profiles_dir() -> Path:
    """Return the directory holding the shipped profiles.

    Returns:
        ``$EDGEOPT_PROFILES_DIR`` when set, else the profiles shipped inside the package (package data, so an
        installed wheel has them as a checkout does).
    """
    override = os.environ.get(PROFILES_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parent


def list_profiles() -> list[str]:
    """Return the names of the profiles in ``profiles_dir()``, sorted.

    Raises:
        ProfileError: The profiles directory does not exist.
    """
    directory = profiles_dir()
    if not directory.is_dir():
        raise ProfileError(
            f"profiles directory not found: {directory}; set {PROFILES_DIR_ENV} to a folder of .toml profiles"
        )
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """Load and validate a profile.

    Args:
        name_or_path: A known profile name (see ``list_profiles()``), or a path to a ``.toml`` file.
            Strings that end in ``.toml`` or contain a path separator are taken as paths. A :class:`Profile`
            is returned as it is, so code handed a loaded profile does not read the file again.

    Returns:
        The validated profile.

    Raises:
        ProfileError: The name is unknown, the file is missing or not valid TOML, or its content is invalid.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or os.sep in text
    if is_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}; give an existing .toml file or a profile name")
    else:
        known = list_profiles()
        if text not in known:
            raise ProfileError(
                f"unknown profile {text!r}; known profiles: {', '.join(known) or '(none)'}; "
                "or give a path to a .toml file"
            )
        path = profiles_dir() / f"{text}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path} is not valid TOML: {err}") from err
    except OSError as err:
        raise ProfileError(f"cannot read profile {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ProfileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from err
    try:
        return Profile.from_dict(data, path=path.resolve())
    except ProfileError as err:
        raise ProfileError(f"{path}: {err}") from err
