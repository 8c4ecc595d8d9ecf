from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from edgeopt_runtime.errors import BundleInvalid
from edgeopt_runtime.manifest import (
    SCHEMA_VERSION,
    Artifact,
    FileEntry,
    Manifest,
    OutputQuantization,
    build_manifest,
    compute_fingerprint,
    file_entry,
    read_manifest,
    sha256_file,
    verify_bundle,
    write_manifest,
)
from edgeopt_runtime_fixtures import LABELS, MAX_SEQ_LEN, rewrite_manifest


def test_verify_ok(tiny_bundle):
    m = verify_bundle(tiny_bundle.path)
    assert isinstance(m, Manifest)
    assert m.schema_version == SCHEMA_VERSION
    assert m.labels == LABELS
    assert m.max_seq_len == MAX_SEQ_LEN
    assert set(m.files) == {"model.onnx", "model.tflite", "tokenizer.json", "report.md"}
    assert m.artifact_for("tflite")[1].output_quantization is not None
    assert m.inputs[0].name == "input_ids" and m.inputs[0].shape == ("batch", MAX_SEQ_LEN)
    assert m.outputs[0].shape == ("batch", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.created_at)


def test_manifest_roundtrip_keeps_unknown_keys(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.update(future_key={"x": 1}))
    m = read_manifest(bundle_copy)
    write_manifest(bundle_copy, m)
    again = read_manifest(bundle_copy)
    assert again == m
    assert again.raw["future_key"] == {"x": 1}
    verify_bundle(bundle_copy)


def test_manifest_mode_follows_umask(bundle_copy):
    # Not mkstemp's 0600: a bundle is read by other users (an app, a server), like its other files.
    m = read_manifest(bundle_copy)
    old = os.umask(0o027)
    try:
        write_manifest(bundle_copy, m)
    finally:
        os.umask(old)
    assert stat.S_IMODE((bundle_copy / "manifest.json").stat().st_mode) == 0o640
    write_manifest(bundle_copy, m)
    assert stat.S_IMODE((bundle_copy / "manifest.json").stat().st_mode) == 0o666 & ~old


def test_file_helpers(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_entry(p) == {"sha256": sha256_file(p), "bytes": 3}


def _changed(manifest, **fields):
    return dataclasses.replace(manifest, **fields)


def test_fingerprint_covers_what_changes_an_answer(bundle_copy):
    m = read_manifest(bundle_copy)
    assert compute_fingerprint(m) == m.fingerprint
    reports = dict(m.files, **{"report.md": FileEntry("3" * 64, 1), "plot.png": FileEntry("4" * 64, 1)})
    assert compute_fingerprint(_changed(m, files=reports, metrics={"x": 1}, fingerprint="0" * 64)) == m.fingerprint
    onnx = m.artifacts["model.onnx"]
    changes = {
        "labels swapped": {"labels": m.labels[::-1]},
        "artifacts reordered": {"artifacts": dict(reversed(list(m.artifacts.items())))},
        "max_seq_len": {"max_seq_len": m.max_seq_len + 1},
        "input dtypes": {"inputs": tuple(dataclasses.replace(t, dtype=("int32",)) for t in m.inputs)},
        "output shape": {"outputs": tuple(dataclasses.replace(t, shape=("batch", 9)) for t in m.outputs)},
        "quantization": {
            "artifacts": dict(
                m.artifacts, **{"model.onnx": dataclasses.replace(onnx, output_quantization=OutputQuantization(0.5, 3))}
            )
        },
        "tokenizer file": {"tokenizer_file": "other.json"},
        "a model's hash": {"files": dict(m.files, **{"model.onnx": FileEntry("5" * 64, 1)})},
        "task": {"task": "other"},
    }
    for what, fields in changes.items():
        assert compute_fingerprint(_changed(m, **fields)) != m.fingerprint, what


def test_fingerprint_is_the_documented_formula(bundle_copy):
    m = read_manifest(bundle_copy)

    def sha(name):
        return m.files[name].sha256

    def quant(a):
        q = a.output_quantization
        return None if q is None else [q.scale, q.zero_point]

    spec = [
        "edgeopt-fingerprint",
        2,
        ["task", m.task],
        ["labels", list(m.labels)],
        ["max_seq_len", m.max_seq_len],
        ["tokenizer", m.tokenizer_file, sha(m.tokenizer_file)],
        ["inputs", [[t.name, list(t.shape), list(t.dtype)] for t in m.inputs]],
        ["outputs", [[t.name, list(t.shape), list(t.dtype)] for t in m.outputs]],
        ["artifacts", [[n, a.format, a.precision, a.output_dtype, quant(a), sha(n)] for n, a in m.artifacts.items()]],
        ["files", [[n, sha(n)] for n in sorted(m.files) if n.endswith((".onnx", ".tflite", ".json"))]],
    ]
    text = json.dumps(spec, separators=(",", ":"))
    assert m.fingerprint == hashlib.sha256(text.encode("ascii")).hexdigest()


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("labels swapped", lambda d: d.update(labels=d["labels"][::-1])),
        ("artifacts reordered", lambda d: d.update(artifacts=dict(reversed(list(d["artifacts"].items()))))),
        ("max_seq_len", lambda d: d.update(max_seq_len=d["max_seq_len"] // 2)),
        ("input dtype", lambda d: [t.update(dtype=["int32"]) for t in d["inputs"]]),
    ],
)
def test_answer_changing_edits_fail_verification(bundle_copy, what, change):
    # Each of these passed verify before the fingerprint covered the manifest's fields; swapped labels
    # inverted every answer.
    rewrite_manifest(bundle_copy, change)
    with pytest.raises(BundleInvalid, match="does not match the manifest .* were changed after the build"):
        verify_bundle(bundle_copy)


def test_missing_file(bundle_copy):
    (bundle_copy / "model.tflite").unlink()
    with pytest.raises(
        BundleInvalid, match=r"model\.tflite is listed in manifest\.json but missing; rebuild or re-copy"
    ):
        verify_bundle(bundle_copy)


def test_changed_byte_same_size(bundle_copy):
    path = bundle_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    expected = read_manifest(bundle_copy).files["model.onnx"].sha256
    with pytest.raises(BundleInvalid) as err:
        verify_bundle(bundle_copy)
    msg = str(err.value)
    assert "model.onnx has sha256" in msg and f"the manifest expects {expected}" in msg
    assert "rebuild or re-copy the bundle" in msg and "\n" not in msg


def test_changed_size(bundle_copy):
    with open(bundle_copy / "report.md", "a", encoding="utf-8") as fh:
        fh.write("x")
    with pytest.raises(BundleInvalid, match=r"report\.md has 15 bytes, the manifest expects 14"):
        verify_bundle(bundle_copy)


@pytest.mark.parametrize("version", [1, 3, 0, "2", True, None, 2.0])
def test_unknown_schema_version(bundle_copy, version):
    rewrite_manifest(bundle_copy, lambda d: d.update(schema_version=version))
    with pytest.raises(BundleInvalid) as err:
        verify_bundle(bundle_copy)
    msg = str(err.value)
    assert f"schema_version {version!r} is not supported" in msg
    assert "reads schema_version 2" in msg and "upgrade edgeopt-runtime or rebuild the bundle" in msg


def test_missing_schema_version(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.pop("schema_version"))
    with pytest.raises(BundleInvalid, match="schema_version missing is not supported"):
        read_manifest(bundle_copy)


def test_not_json(bundle_copy):
    (bundle_copy / "manifest.json").write_text('{"schema_version": 2,\n  "labels": [', encoding="utf-8")
    with pytest.raises(BundleInvalid) as err:
        read_manifest(bundle_copy)
    msg = str(err.value)
    assert str(bundle_copy / "manifest.json") in msg
    assert "is not valid JSON (Expecting value at line 2 column" in msg


def test_not_utf8(bundle_copy):
    (bundle_copy / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(BundleInvalid, match="is not valid JSON .not UTF-8 text"):
        read_manifest(bundle_copy)


def test_missing_manifest_and_dir(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleInvalid, match="manifest.json is missing"):
        read_manifest(bundle_copy)
    with pytest.raises(BundleInvalid, match="does not exist or is not a directory"):
        read_manifest(tmp_path / "nope")


def test_wrong_type_names_key(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.update(max_seq_len="16"))
    with pytest.raises(BundleInvalid, match=r"key 'max_seq_len' must be an integer >= 2, got '16'"):
        read_manifest(bundle_copy)
    rewrite_manifest(bundle_copy, lambda d: d.pop("labels"))
    with pytest.raises(BundleInvalid, match=r"required key 'labels' is missing"):
        read_manifest(bundle_copy)


def _add_file(bundle: Path, name: str, entry: dict) -> None:
    rewrite_manifest(bundle, lambda d: d["files"].update({name: entry}))


def test_dotdot_rejected(bundle_copy, tmp_path):
    outside = tmp_path / "x"
    outside.write_text("secret", encoding="utf-8")
    _add_file(bundle_copy, "../x", file_entry(outside))
    with pytest.raises(BundleInvalid, match=r"file name '\.\./x' contains '\.\.' or a backslash"):
        verify_bundle(bundle_copy)


def test_absolute_rejected(bundle_copy, tmp_path):
    outside = tmp_path / "abs.txt"
    outside.write_text("secret", encoding="utf-8")
    _add_file(bundle_copy, str(outside), file_entry(outside))
    with pytest.raises(BundleInvalid, match=r"is absolute; bundle file names must be relative"):
        verify_bundle(bundle_copy)


def test_symlink_escaping_rejected(bundle_copy, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("{}", encoding="utf-8")
    os.symlink(outside, bundle_copy / "evil.json")
    _add_file(bundle_copy, "evil.json", file_entry(outside))
    with pytest.raises(BundleInvalid, match=r"file 'evil\.json' resolves to .*outside the bundle directory"):
        verify_bundle(bundle_copy)


def test_symlinked_dir_escaping_rejected(bundle_copy, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.json").write_text("{}", encoding="utf-8")
    os.symlink(tmp_path / "d", bundle_copy / "sub")
    _add_file(bundle_copy, "sub/t.json", file_entry(tmp_path / "d" / "t.json"))
    with pytest.raises(BundleInvalid, match="outside the bundle directory"):
        verify_bundle(bundle_copy)


def test_tokenizer_path_escape_rejected(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.update(tokenizer={"file": "../tokenizer.json"}))
    with pytest.raises(BundleInvalid, match=r"'\.\./tokenizer\.json' contains '\.\.'"):
        verify_bundle(bundle_copy)


def test_unlisted_artifact_and_fingerprint_mismatch(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d["files"].pop("model.onnx"))
    with pytest.raises(BundleInvalid, match=r"'model\.onnx' is used by the bundle but not listed under 'files'"):
        verify_bundle(bundle_copy)


def test_fingerprint_mismatch(bundle_copy):
    rewrite_manifest(bundle_copy, lambda d: d.update(fingerprint="0" * 64))
    with pytest.raises(BundleInvalid, match="fingerprint 0{64} does not match the manifest"):
        verify_bundle(bundle_copy)


def test_build_manifest_checks(bundle_copy):
    art = {"model.onnx": Artifact(format="onnx", precision="float32")}
    with pytest.raises(BundleInvalid, match="labels .* at least two distinct"):
        build_manifest(bundle_copy, labels=["a", "a"], max_seq_len=16, artifacts=art)
    with pytest.raises(BundleInvalid, match=r"max_seq_len 1 must be an integer >= 2"):
        build_manifest(bundle_copy, labels=["a", "b"], max_seq_len=1, artifacts=art)
    with pytest.raises(BundleInvalid, match=r"nope\.png does not exist; write it into the bundle first"):
        build_manifest(bundle_copy, labels=["a", "b"], max_seq_len=16, artifacts=art, extra_files=["nope.png"])
    m = build_manifest(bundle_copy, labels=["a", "b"], max_seq_len=16, artifacts=art, versions={"edgeopt": "9"})
    assert m.versions == {"edgeopt-runtime": "0.1.0", "edgeopt": "9"}
    assert json.loads(json.dumps(m.to_dict()))["tokenizer"] == {"file": "tokenizer.json"}


def test_manifest_that_links_out_of_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    (bundle_copy / "manifest.json").replace(outside)
    (bundle_copy / "manifest.json").symlink_to(outside)
    with pytest.raises(
        BundleInvalid, match=r"manifest\.json resolves to .*elsewhere\.json, outside the bundle directory"
    ):
        verify_bundle(bundle_copy)
