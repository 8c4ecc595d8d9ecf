from __future__ import annotations

import json
import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt_runtime import InputError, load
from edgeopt_runtime.cli import main
from edgeopt_runtime.monitor import CONFIDENCE_EDGES, MIN_DRIFT_TEXTS, Drift, Monitor, Reference, psi
from edgeopt_runtime_fixtures import LABELS, make_texts, rewrite_manifest

BINS = len(CONFIDENCE_EDGES) - 1


def reference(spam: float = 0.5, sure: float = 1.0) -> Reference:
    confidence = [0.0] * BINS
    confidence[-1], confidence[1] = sure, 1.0 - sure
    return Reference(
        texts=200, label_share={"ham": 1.0 - spam, "spam": spam}, confidence_share=tuple(confidence), truncated_share=0
    )


def test_psi():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))  # floored, finite
    with pytest.raises(InputError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_confidence_bins_cover_zero_to_one():
    m = Monitor(LABELS, window=10)
    for score in (0.0, 0.49, 0.5, 0.95, 0.99, 1.0):
        m.observe("spam", score, False, False, 1.0)
    assert m.report().confidence_share == pytest.approx((2 / 6, 1 / 6, 0, 0, 0, 0, 1 / 6, 2 / 6))


@settings(max_examples=100, deadline=None)
@given(
    window=st.integers(1, 20),
    answers=st.lists(
        st.tuples(st.sampled_from(LABELS), st.floats(0, 1), st.booleans(), st.booleans(), st.floats(0, 100)),
        max_size=60,
    ),
)
def test_window_counts_equal_the_latest_answers(window, answers):
    m = Monitor(LABELS, window=window)
    for answer in answers:
        m.observe(*answer)
    latest = answers[-window:] if answers else []
    r = m.report()
    assert r.observed == len(answers) and r.window == len(latest)
    n = len(latest) or 1
    assert r.label_share == pytest.approx(
        {k: sum(a[0] == k for a in latest) / n for k in LABELS} if latest else dict.fromkeys(LABELS, 0.0)
    )
    bins = [0] * BINS
    for a in latest:
        bins[min(sum(a[1] >= e for e in CONFIDENCE_EDGES) - 1, BINS - 1)] += 1
    assert list(r.confidence_share) == pytest.approx([b / n for b in bins])
    assert r.truncated_share == pytest.approx(sum(a[2] for a in latest) / n)
    assert r.cache_hit_share == pytest.approx(sum(a[3] for a in latest) / n)
    assert (r.latency_p50_ms is None) == (not latest)


def test_drift_needs_enough_answers_and_reads_thresholds():
    m = Monitor(LABELS, reference=reference(spam=0.5), window=500)
    for i in range(MIN_DRIFT_TEXTS - 1):
        m.observe(LABELS[i % 2], 0.995, False, False, 1.0)
    assert m.report().drift is None
    m.observe("spam", 0.995, False, False, 1.0)
    assert m.report().drift == Drift(label_psi=pytest.approx(0.0, abs=1e-3), confidence_psi=0.0, status="stable")
    for _ in range(300):  # now 80% spam, and less sure
        m.observe("spam", 0.55, False, False, 1.0)
    drift = m.report().drift
    assert drift is not None and drift.status == "significant shift" and drift.confidence_psi > 0.25
    m.reset()
    assert m.report().window == 0 and m.reference is not None


def test_reference_roundtrip_and_validation():
    ref = reference(spam=0.3, sure=0.8)
    assert Reference.from_dict(json.loads(json.dumps(ref.to_dict())), LABELS) == ref
    bad_cases = [
        ({**ref.to_dict(), "version": 2}, "version 1"),
        ({**ref.to_dict(), "label_share": {"ham": 1.0}}, "exactly the labels"),
        ({**ref.to_dict(), "confidence_edges": [0, 1]}, "confidence_edges"),
        ({**ref.to_dict(), "confidence_share": [1.0]}, "confidence_share"),
        ({**ref.to_dict(), "texts": "many"}, "malformed"),
        ([], "version 1"),
    ]
    for data, message in bad_cases:
        with pytest.raises(InputError, match=message):
            Reference.from_dict(data, LABELS)


def test_classifier_monitors_its_answers(tiny_bundle, tmp_path):
    texts = make_texts(12, seed=4)
    with load(tiny_bundle.path, backend="onnx", cache=tmp_path / "c.sqlite", monitor_window=50) as clf:
        assert clf.monitoring_reference is None  # the tiny bundle was made without one
        answers = [clf.predict(t) for t in texts] + clf.predict_batch(texts)  # the batch is all cache hits
        r = clf.monitor()
        assert r.observed == r.window == 24 and r.cache_hit_share == pytest.approx(0.5)
        assert r.label_share == pytest.approx({k: sum(a.label == k for a in answers) / 24 for k in LABELS})
        assert r.drift is None
        clf.reset_monitor()
        assert clf.monitor().window == 0
    with pytest.raises(InputError, match="monitor_window 0 must be a positive integer"):
        load(tiny_bundle.path, cache=False, monitor_window=0)


def test_bundle_reference_gives_drift_and_a_bad_one_is_ignored(bundle_copy, caplog):
    rewrite_manifest(bundle_copy, lambda d: d.update(monitoring=reference(spam=0.5, sure=1.0).to_dict()))
    with load(bundle_copy, backend="onnx", cache=False) as clf:
        assert clf.monitoring_reference == reference(spam=0.5, sure=1.0)
        clf.predict_batch(make_texts(MIN_DRIFT_TEXTS, seed=5), dedupe=False)
        drift = clf.monitor().drift
        assert drift is not None and drift.status in ("stable", "moderate shift", "significant shift")
    rewrite_manifest(bundle_copy, lambda d: d.update(monitoring={"version": 1, "label_share": {"x": 1}}))
    with caplog.at_level(logging.WARNING), load(bundle_copy, cache=False) as clf:
        assert clf.monitoring_reference is None
        assert clf.predict("free cash").label in LABELS  # the bundle still works
    assert "ignoring the bundle's monitoring reference" in caplog.text


def test_cli_monitor(bundle_copy, tmp_path, capsys):
    lines = tmp_path / "logged.txt"
    lines.write_text("\n".join(make_texts(MIN_DRIFT_TEXTS + 20, seed=6)) + "\n\n", encoding="utf-8")
    assert main(["monitor", str(bundle_copy), str(lines)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{MIN_DRIFT_TEXTS + 20} texts") and "no monitoring reference" in out
    rewrite_manifest(bundle_copy, lambda d: d.update(monitoring=reference().to_dict()))
    assert main(["monitor", str(bundle_copy), str(lines), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["window"] == MIN_DRIFT_TEXTS + 20 and got["drift"]["status"] and got["reference"]["texts"] == 200
    assert main(["monitor", str(bundle_copy), str(lines)]) == 0
    assert "(build: 50.0%)" in capsys.readouterr().out
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert main(["monitor", str(bundle_copy), str(empty)]) == 2
    assert "has no non-empty line" in capsys.readouterr().err


def test_cli_monitor_reads_one_text_per_newline_only(bundle_copy, tmp_path, capsys):
    # U+2028, \x1c, \x1d, \x1e and \x85 are inside texts; only \n (and \r\n) end a line.
    texts = [f"free cash {i}\u2028now\x1cand\x1d\x1ethen\x85done" for i in range(5)]
    lines = tmp_path / "logged.txt"
    lines.write_bytes(("\r\n".join(texts) + "\n").encode("utf-8"))
    assert main(["monitor", str(bundle_copy), str(lines), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["window"] == 5
