"""The bundle manifest: its format, how to write it, and how to check a bundle against it.

edgeopt-runtime owns this format. The host build (``edgeopt``) calls :func:`build_manifest` and
:func:`write_manifest`; devices call :func:`verify_bundle` before they load anything. The format is described
field by field in ``runtime/README.md`` so that non-Python clients (the Android demo) can read it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edgeopt_runtime._version import __version__
from edgeopt_runtime.errors import BundleInvalid

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "MANIFEST_NAME",
    "TASK_TEXT_CLASSIFICATION",
    "TASK_EMBED",
    "TASKS",
    "POOLINGS",
    "FINGERPRINT_SUFFIXES",
    "EmbeddingSpec",
    "TensorSpec",
    "OutputQuantization",
    "Artifact",
    "FileEntry",
    "Manifest",
    "sha256_file",
    "file_entry",
    "compute_fingerprint",
    "safe_bundle_path",
    "build_manifest",
    "write_manifest",
    "read_manifest",
    "verify_bundle",
]

SCHEMA_VERSION = 2
# 1 is not read: its fingerprint covered the file hashes only, so a manifest with its labels swapped (every
# answer inverted) or its artifacts reordered (another model answering) still verified.
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (2,)
MANIFEST_NAME = "manifest.json"
TASK_TEXT_CLASSIFICATION = "text-classification"
TASK_EMBED = "embed"
TASKS: tuple[str, ...] = (TASK_TEXT_CLASSIFICATION, TASK_EMBED)
POOLINGS: tuple[str, ...] = ("mean", "cls", "max")
# Files whose bytes decide what the model answers: weights and tokenizer. Reports and plots are left out so
# that regenerating a report does not invalidate every cached result of an unchanged model.
# (The fingerprint also covers every manifest field that changes an answer; see compute_fingerprint.)
FINGERPRINT_SUFFIXES: tuple[str, ...] = (".onnx", ".tflite", ".json")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIX = "rebuild or re-copy the bundle"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the manifest declares it.

    Attributes:
        name: Tensor name (``input_ids``, ``attention_mask``, ``logits``).
        shape: Dimensions; a string (``"batch"``) marks a dynamic dimension.
        dtype: Accepted dtypes (inputs) or the produced dtype (outputs); empty when not declared.
    """

    name: str
    shape: tuple[str | int, ...]
    dtype: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the manifest."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape)}
        if self.dtype:
            out["dtype"] = list(self.dtype)
        return out


@dataclass(frozen=True)
class OutputQuantization:
    """Affine quantization of an int8 output: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the manifest."""
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class Artifact:
    """One model file of the bundle.

    Attributes:
        format: ``"onnx"`` or ``"tflite"``.
        precision: Weight precision (``"int8"``, ``"float32"``, ...); informative.
        output_dtype: Dtype of the ``logits`` output (``"float32"`` or ``"int8"``).
        output_quantization: Scale and zero point when ``output_dtype`` is ``"int8"``.
    """

    format: str
    precision: str
    output_dtype: str = "float32"
    output_quantization: OutputQuantization | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the manifest."""
        out: dict[str, Any] = {
            "format": self.format,
            "precision": self.precision,
            "output_dtype": self.output_dtype,
        }
        if self.output_quantization is not None:
            out["output_quantization"] = self.output_quantization.to_dict()
        return out


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an ``embed`` bundle's vectors are (the manifest's top-level ``dim``, ``pooling``, ``normalized``).

    Attributes:
        dim: Width of the ``embedding`` output.
        pooling: How the teacher pooled its token states into the vectors the student learned (``mean``, ``cls``,
            ``max``); informative for a client, part of the fingerprint.
        normalized: Whether the runtime returns unit vectors (it L2-normalizes the model's output); every bundle
            edgeopt builds says true, since the student learns directions (cosine), not lengths.
    """

    dim: int
    pooling: str
    normalized: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest's top-level keys."""
        return {"dim": self.dim, "pooling": self.pooling, "normalized": self.normalized}


@dataclass(frozen=True)
class FileEntry:
    """Size and SHA-256 of one bundle file."""

    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in the manifest."""
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json``. Treat the dict fields as read-only.

    Attributes:
        schema_version: Format version; this runtime reads :data:`SUPPORTED_SCHEMA_VERSIONS`.
        task: ``"text-classification"`` or ``"embed"``.
        labels: Class names, in logit order (empty for ``embed``).
        max_seq_len: Token length every input is padded or truncated to.
        fingerprint: SHA-256 hex of everything that decides an answer (see :func:`compute_fingerprint`).
        tokenizer_file: Bundle-relative path of the Hugging Face ``tokenizer.json``.
        inputs: Declared model inputs.
        outputs: Declared model outputs.
        artifacts: Model files by bundle-relative name.
        files: Size and hash of every file the bundle vouches for.
        profile: Hardware profile the bundle was built for (free-form).
        teacher: Teacher model description (free-form).
        metrics: Evaluation results (free-form).
        versions: Versions of the tools that built the bundle.
        created_at: ISO-8601 UTC build time.
        embedding: The vectors of an ``embed`` bundle; None for a classifier.
        raw: The whole JSON object as read, unknown keys included.
    """

    schema_version: int
    task: str
    labels: tuple[str, ...]
    max_seq_len: int
    fingerprint: str
    tokenizer_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    artifacts: dict[str, Artifact]
    files: dict[str, FileEntry]
    profile: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    embedding: EmbeddingSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object to write; keys of ``raw`` this runtime does not know are kept."""
        out = dict(self.raw)
        out.update(
            {
                "schema_version": self.schema_version,
                "task": self.task,
                "labels": list(self.labels),
                "max_seq_len": self.max_seq_len,
                "fingerprint": self.fingerprint,
                "tokenizer": {"file": self.tokenizer_file},
                "inputs": [spec.to_dict() for spec in self.inputs],
                "outputs": [spec.to_dict() for spec in self.outputs],
                "artifacts": {name: art.to_dict() for name, art in self.artifacts.items()},
                "files": {name: entry.to_dict() for name, entry in self.files.items()},
                "profile": self.profile,
                "teacher": self.teacher,
                "metrics": self.metrics,
                "versions": self.versions,
                "created_at": self.created_at,
            }
        )
        if self.embedding is not None:
            out.update(self.embedding.to_dict())
        return out

    def artifact_for(self, fmt: str) -> tuple[str, Artifact] | None:
        """Return ``(file name, artifact)`` of the first artifact in format ``fmt``, or None."""
        for name, art in self.artifacts.items():
            if art.format == fmt:
                return name, art
        return None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the manifest ``files`` entry of one file: ``{"sha256": hex, "bytes": size}``."""
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def _entry_sha(entry: FileEntry | Mapping[str, Any]) -> str:
    return entry.sha256 if isinstance(entry, FileEntry) else str(entry["sha256"])


def compute_fingerprint(manifest: Manifest) -> str:
    r"""Return the fingerprint of a manifest: SHA-256 over every field that changes an answer.

    Covered: the task, the labels in order, ``max_seq_len``, the tokenizer file and its hash, the inputs and
    outputs (names, shapes, dtypes), each artifact in manifest order (name, format, precision, output dtype and
    quantization, hash) and the hash of every ``.onnx``, ``.tflite`` and ``.json`` file (``manifest.json``
    excluded, so reports and plots never change it). ``manifest.fingerprint`` itself is ignored.

    The hashed bytes are the ASCII of ``json.dumps(spec, ensure_ascii=True, separators=(",", ":"))`` of::

        ["edgeopt-fingerprint", 2,
         ["task", task], ["labels", [label, ...]], ["max_seq_len", n],
         ["tokenizer", file, sha256],
         ["inputs", [[name, [dim, ...], [dtype, ...]], ...]], ["outputs", [...]],
         ["artifacts", [[name, format, precision, output_dtype, [scale, zero_point] or null, sha256], ...]],
         ["files", [[name, sha256], ...]]]

    with files in code-point order of their names, a missing file's hash as ``""`` and floats as Python's
    ``repr``: a document of strings, integers, one float per quantized artifact and lists, which the Kotlin
    core writes byte for byte too. An ``embed`` bundle adds ``["embedding", [dim, pooling, normalized]]`` after
    ``outputs``; a classifier's document is as it was before embed bundles existed.

    Returns:
        64 lowercase hex characters.
    """

    def sha(name: str) -> str:
        entry = manifest.files.get(name)
        return "" if entry is None else entry.sha256

    def tensors(specs: Iterable[TensorSpec]) -> list[Any]:
        return [[t.name, list(t.shape), list(t.dtype)] for t in specs]

    def artifact(name: str, art: Artifact) -> list[Any]:
        q = art.output_quantization
        quant = None if q is None else [q.scale, q.zero_point]
        return [name, art.format, art.precision, art.output_dtype, quant, sha(name)]

    spec = [
        "edgeopt-fingerprint",
        2,
        ["task", manifest.task],
        ["labels", list(manifest.labels)],
        ["max_seq_len", manifest.max_seq_len],
        ["tokenizer", manifest.tokenizer_file, sha(manifest.tokenizer_file)],
        ["inputs", tensors(manifest.inputs)],
        ["outputs", tensors(manifest.outputs)],
        *(
            []
            if manifest.embedding is None
            else [["embedding", [manifest.embedding.dim, manifest.embedding.pooling, manifest.embedding.normalized]]]
        ),
        ["artifacts", [artifact(name, art) for name, art in manifest.artifacts.items()]],
        [
            "files",
            [
                [name, manifest.files[name].sha256]
                for name in sorted(manifest.files)
                if name != MANIFEST_NAME and name.endswith(FINGERPRINT_SUFFIXES)
            ],
        ],
    ]
    text = json.dumps(spec, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def safe_bundle_path(bundle_dir: str | os.PathLike[str], name: str) -> Path:
    """Return ``bundle_dir / name`` after checking that ``name`` cannot reach outside the bundle.

    Args:
        bundle_dir: The bundle directory.
        name: A bundle-relative file name from the manifest.

    Returns:
        The path inside the bundle.

    Raises:
        BundleInvalid: ``name`` is empty, absolute, has a ``..`` part or a backslash, or resolves (through
            symbolic links) outside ``bundle_dir``.
    """
    where = f"{Path(bundle_dir) / MANIFEST_NAME}"
    if not isinstance(name, str) or not name:
        raise BundleInvalid(f"{where}: file name {name!r} is empty or not a string; {_FIX}")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise BundleInvalid(f"{where}: file name {name!r} is absolute; bundle file names must be relative; {_FIX}")
    if "\\" in name or ".." in PurePosixPath(name).parts:
        raise BundleInvalid(
            f"{where}: file name {name!r} contains '..' or a backslash and could point outside the bundle; {_FIX}"
        )
    root = Path(bundle_dir).resolve()
    path = Path(bundle_dir) / name
    if not path.resolve().is_relative_to(root):
        raise BundleInvalid(
            f"{where}: file {name!r} resolves to {path.resolve()}, outside the bundle directory {root} "
            f"(a symbolic link?); {_FIX}"
        )
    return path


def build_manifest(
    bundle_dir: str | os.PathLike[str],
    *,
    labels: Iterable[str],
    max_seq_len: int,
    artifacts: Mapping[str, Artifact],
    tokenizer_file: str = "tokenizer.json",
    extra_files: Iterable[str] = (),
    task: str = TASK_TEXT_CLASSIFICATION,
    input_dtypes: Iterable[str] = ("int32", "int64"),
    profile: Mapping[str, Any] | None = None,
    teacher: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    created_at: str | None = None,
    embedding: EmbeddingSpec | None = None,
) -> Manifest:
    """Hash the files of a bundle directory and return its manifest (call :func:`write_manifest` to save it).

    Args:
        bundle_dir: Directory that already holds the artifacts, the tokenizer and ``extra_files``.
        labels: Class names in logit order.
        max_seq_len: Token length the model takes.
        artifacts: Model files by bundle-relative name.
        tokenizer_file: Bundle-relative name of ``tokenizer.json``.
        extra_files: Other files to vouch for (``report.md``, plots); not part of the fingerprint.
        task: ``"text-classification"`` (``labels`` name the logits) or ``"embed"`` (no labels; ``embedding``
            describes the vectors).
        input_dtypes: Integer dtypes the models accept for both inputs.
        profile: Hardware profile (free-form).
        teacher: Teacher description (free-form).
        metrics: Evaluation results (free-form).
        versions: Tool versions; ``edgeopt-runtime`` is added when missing.
        created_at: ISO-8601 UTC time; now when None.
        embedding: The vectors of an ``embed`` bundle (required for it, refused for a classifier).

    Returns:
        The manifest, with ``files`` and ``fingerprint`` computed from the bytes on disk.

    Raises:
        BundleInvalid: A listed file is missing, or the arguments are inconsistent.
    """
    label_list = tuple(labels)
    if task not in TASKS:
        raise BundleInvalid(f"task {task!r} is not one of {', '.join(TASKS)}")
    if task == TASK_EMBED:
        if label_list or embedding is None:
            raise BundleInvalid("an embed bundle has no labels and needs its embedding spec (dim, pooling)")
        _check_embedding(embedding)
        output = TensorSpec("embedding", ("batch", embedding.dim))
    else:
        if len(label_list) < 2 or len(set(label_list)) != len(label_list):
            raise BundleInvalid(f"labels {list(label_list)!r} must be at least two distinct names")
        if embedding is not None:
            raise BundleInvalid(f"a {task} bundle has no embedding spec; pass task={TASK_EMBED!r} for an embedder")
        output = TensorSpec("logits", ("batch", len(label_list)))
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 2:
        raise BundleInvalid(f"max_seq_len {max_seq_len!r} must be an integer >= 2")
    if not artifacts:
        raise BundleInvalid("artifacts is empty; a bundle needs at least one model file (onnx or tflite)")
    files: dict[str, FileEntry] = {}
    for name in [*artifacts, tokenizer_file, *extra_files]:
        path = safe_bundle_path(bundle_dir, name)
        if not path.is_file():
            raise BundleInvalid(f"cannot write the manifest: {path} does not exist; write it into the bundle first")
        entry = file_entry(path)
        files[name] = FileEntry(sha256=entry["sha256"], bytes=entry["bytes"])
    dtypes = tuple(input_dtypes)
    all_versions = {"edgeopt-runtime": __version__, **(versions or {})}
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        task=task,
        labels=label_list,
        max_seq_len=max_seq_len,
        fingerprint="",
        tokenizer_file=tokenizer_file,
        inputs=(
            TensorSpec("input_ids", ("batch", max_seq_len), dtypes),
            TensorSpec("attention_mask", ("batch", max_seq_len), dtypes),
        ),
        outputs=(output,),
        artifacts=dict(artifacts),
        files=files,
        profile=dict(profile or {}),
        teacher=dict(teacher or {}),
        metrics=dict(metrics or {}),
        versions=all_versions,
        created_at=created_at or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        embedding=embedding,
    )
    return _with_raw(replace(manifest, fingerprint=compute_fingerprint(manifest)))


def _check_embedding(embedding: EmbeddingSpec) -> None:
    dim = embedding.dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise BundleInvalid(f"embedding dim {dim!r} must be a positive integer")
    if embedding.pooling not in POOLINGS:
        raise BundleInvalid(f"embedding pooling {embedding.pooling!r} must be one of {', '.join(POOLINGS)}")


def _with_raw(manifest: Manifest) -> Manifest:
    return Manifest(**{**manifest.__dict__, "raw": manifest.to_dict()})


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temporary file, then rename) and return its path."""
    path = Path(bundle_dir) / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes the file 0600; a bundle is shipped and read by other users (an app, a server), so
        # give it the mode any other file of the bundle gets: 0666 less the umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Reader:
    """Typed access to the manifest JSON that turns every mismatch into one BundleInvalid line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, want: str, got: Any) -> BundleInvalid:
        shown = repr(got) if len(repr(got)) <= 60 else type(got).__name__
        return BundleInvalid(f"{self.path}: key {key!r} must be {want}, got {shown}; {_FIX}")

    def get(self, obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], want: str, where: str = "") -> Any:
        full = f"{where}.{key}" if where else key
        if key not in obj:
            raise BundleInvalid(f"{self.path}: required key {full!r} is missing; {_FIX}")
        value = obj[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(full, want, value)
        if not isinstance(value, kind):
            raise self.fail(full, want, value)
        return value

    def optional_dict(self, obj: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = obj.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return value

    def tensor(self, obj: Any, where: str) -> TensorSpec:
        if not isinstance(obj, dict):
            raise self.fail(where, "an object", obj)
        name = self.get(obj, "name", str, "a string", where)
        shape = self.get(obj, "shape", list, "a list", where)
        if not all(isinstance(d, str | int) and not isinstance(d, bool) for d in shape):
            raise self.fail(f"{where}.shape", "a list of ints and strings", shape)
        dtype = obj.get("dtype", [])
        if isinstance(dtype, str):
            dtype = [dtype]
        if not isinstance(dtype, list) or not all(isinstance(d, str) for d in dtype):
            raise self.fail(f"{where}.dtype", "a string or a list of strings", dtype)
        return TensorSpec(name=name, shape=tuple(shape), dtype=tuple(dtype))

    def artifact(self, obj: Any, where: str) -> Artifact:
        if not isinstance(obj, dict):
            raise self.fail(where, "an object", obj)
        quant = obj.get("output_quantization")
        q = None
        if quant is not None:
            if not isinstance(quant, dict):
                raise self.fail(f"{where}.output_quantization", "an object", quant)
            scale = self.get(quant, "scale", (int, float), "a positive number", f"{where}.output_quantization")
            zero = self.get(quant, "zero_point", int, "an integer", f"{where}.output_quantization")
            if not math.isfinite(scale) or scale <= 0:
                raise self.fail(f"{where}.output_quantization.scale", "a positive number", scale)
            q = OutputQuantization(scale=float(scale), zero_point=zero)
        output_dtype = obj.get("output_dtype", "float32")
        if output_dtype not in ("float32", "int8", "uint8"):
            raise self.fail(f"{where}.output_dtype", "'float32', 'int8' or 'uint8'", output_dtype)
        return Artifact(
            format=self.get(obj, "format", str, "a string", where),
            precision=str(obj.get("precision", "")),
            output_dtype=output_dtype,
            output_quantization=q,
        )

    def file(self, obj: Any, where: str) -> FileEntry:
        if not isinstance(obj, dict):
            raise self.fail(where, "an object", obj)
        sha = self.get(obj, "sha256", str, "64 lowercase hex characters", where)
        if not _HEX64.match(sha):
            raise self.fail(f"{where}.sha256", "64 lowercase hex characters", sha)
        size = self.get(obj, "bytes", int, "a non-negative integer", where)
        if size < 0:
            raise self.fail(f"{where}.bytes", "a non-negative integer", size)
        return FileEntry(sha256=sha, bytes=size)


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Read and type-check ``manifest.json`` (file hashes are not checked; see :func:`verify_bundle`).

    Args:
        bundle_dir: The bundle directory.

    Returns:
        The parsed manifest.

    Raises:
        BundleInvalid: The directory or manifest is missing, the manifest is not JSON, its schema_version is
            not one this runtime reads, or a key is missing or of the wrong type.
    """
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise BundleInvalid(f"bundle directory {bundle} does not exist or is not a directory")
    path = bundle / MANIFEST_NAME
    if not path.is_file():
        raise BundleInvalid(f"{path} is missing; {bundle} is not an edgeopt bundle, or it was copied incompletely")
    if not path.resolve().is_relative_to(bundle.resolve()):
        # The manifest vouches for every other file, so it must itself be the bundle's, as they must.
        raise BundleInvalid(
            f"{path} resolves to {path.resolve()}, outside the bundle directory {bundle.resolve()} (a symbolic "
            f"link?); {_FIX}"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleInvalid(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {_FIX}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BundleInvalid(f"{path} is not valid JSON (not UTF-8 text: {exc.reason}); {_FIX}") from exc
    if not isinstance(raw, dict):
        raise BundleInvalid(f"{path} is not a JSON object (got {type(raw).__name__}); {_FIX}")
    version = raw.get("schema_version")
    # type() and not isinstance(): True and 1.0 both equal 1, and neither is a schema version.
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        shown = "missing" if "schema_version" not in raw else repr(version)
        raise BundleInvalid(
            f"{path}: schema_version {shown} is not supported; edgeopt-runtime {__version__} reads "
            f"schema_version {readable}; upgrade edgeopt-runtime or rebuild the bundle with a matching "
            "edgeopt"
        )
    r = _Reader(path)
    task = r.get(raw, "task", str, "a string")
    embedding = None
    if task == TASK_EMBED:
        labels = r.get(raw, "labels", list, "an empty list (an embed bundle has no labels)")
        if labels:
            raise r.fail("labels", "an empty list (an embed bundle has no labels)", labels)
        dim = r.get(raw, "dim", int, "a positive integer")
        if dim < 1:
            raise r.fail("dim", "a positive integer", dim)
        pooling = r.get(raw, "pooling", str, f"one of {', '.join(POOLINGS)}")
        if pooling not in POOLINGS:
            raise r.fail("pooling", f"one of {', '.join(POOLINGS)}", pooling)
        embedding = EmbeddingSpec(dim, pooling, r.get(raw, "normalized", bool, "true or false"))
    else:
        labels = r.get(raw, "labels", list, "a list of at least two distinct strings")
        if len(labels) < 2 or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
            raise r.fail("labels", "a list of at least two distinct strings", labels)
    max_seq_len = r.get(raw, "max_seq_len", int, "an integer >= 2")
    if max_seq_len < 2:
        raise r.fail("max_seq_len", "an integer >= 2", max_seq_len)
    fingerprint = r.get(raw, "fingerprint", str, "64 lowercase hex characters")
    if not _HEX64.match(fingerprint):
        raise r.fail("fingerprint", "64 lowercase hex characters", fingerprint)
    tokenizer = r.get(raw, "tokenizer", dict, "an object")
    inputs = r.get(raw, "inputs", list, "a list")
    outputs = r.get(raw, "outputs", list, "a list")
    artifacts = r.get(raw, "artifacts", dict, "an object")
    files = r.get(raw, "files", dict, "an object")
    created_at = raw.get("created_at", "")
    if not isinstance(created_at, str):
        raise r.fail("created_at", "an ISO-8601 string", created_at)
    return Manifest(
        schema_version=version,
        task=task,
        labels=tuple(labels),
        max_seq_len=max_seq_len,
        fingerprint=fingerprint,
        tokenizer_file=r.get(tokenizer, "file", str, "a string", "tokenizer"),
        inputs=tuple(r.tensor(x, f"inputs[{i}]") for i, x in enumerate(inputs)),
        outputs=tuple(r.tensor(x, f"outputs[{i}]") for i, x in enumerate(outputs)),
        artifacts={name: r.artifact(v, f"artifacts.{name}") for name, v in artifacts.items()},
        files={name: r.file(v, f"files.{name}") for name, v in files.items()},
        profile=r.optional_dict(raw, "profile"),
        teacher=r.optional_dict(raw, "teacher"),
        metrics=r.optional_dict(raw, "metrics"),
        versions=r.optional_dict(raw, "versions"),
        created_at=created_at,
        embedding=embedding,
        raw=raw,
    )


def verify_bundle(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Read the manifest and check every file it lists: present, inside the bundle, right size, right SHA-256.

    Also checks that the tokenizer and every artifact are among the listed files and that ``fingerprint``
    matches the listed hashes.

    Args:
        bundle_dir: The bundle directory.

    Returns:
        The verified manifest.

    Raises:
        BundleInvalid: Naming the first file that fails, with expected and actual values.
    """
    manifest = read_manifest(bundle_dir)
    where = Path(bundle_dir) / MANIFEST_NAME
    for name in [manifest.tokenizer_file, *manifest.artifacts]:
        safe_bundle_path(bundle_dir, name)
        if name not in manifest.files:
            raise BundleInvalid(f"{where}: {name!r} is used by the bundle but not listed under 'files'; {_FIX}")
    for name, entry in manifest.files.items():
        path = safe_bundle_path(bundle_dir, name)
        if not path.is_file():
            raise BundleInvalid(f"{path} is listed in {MANIFEST_NAME} but missing; {_FIX}")
        size = path.stat().st_size
        if size != entry.bytes:
            raise BundleInvalid(f"{path} has {size} bytes, the manifest expects {entry.bytes}; {_FIX}")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise BundleInvalid(f"{path} has sha256 {actual}, the manifest expects {entry.sha256}; {_FIX}")
    expected = compute_fingerprint(manifest)
    if manifest.fingerprint != expected:
        raise BundleInvalid(
            f"{where}: fingerprint {manifest.fingerprint} does not match the manifest ({expected}): its labels, "
            f"artifacts, inputs or files were changed after the build; {_FIX}"
        )
    return manifest
