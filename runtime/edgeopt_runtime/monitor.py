"""Monitoring of a deployed model: what it answered lately, and whether that drifted from what it was built on.

A model on a phone meets inputs nobody tested it on: a new kind of spam, another language, a client that
sends empty subjects. Its accuracy cannot be measured there (no labels), but its answers can be watched.
:class:`Monitor` keeps, over a window of the latest predictions (cache hits included: they are answers users
got), the share of each label, a histogram of the top-class probability, the share of truncated inputs, the
cache hit share and the latency. The build records the same summary of the bundle's own answers on its
held-out test split (``manifest.json``, key ``monitoring``, see :meth:`Reference.from_dict`); the drift of the
window from it is the population stability index (PSI) of the label shares and of the confidence histogram,
read with the usual thresholds: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one.

A shift is a reason to look (sample inputs, label some, rebuild), not proof that accuracy fell: a marketing
campaign can double the share of spam with the model still right.

Observing one prediction costs ~1 us (a few counter updates under the classifier's lock).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeopt_runtime.errors import InputError

__all__ = [
    "CONFIDENCE_EDGES",
    "DEFAULT_WINDOW",
    "MIN_DRIFT_TEXTS",
    "Drift",
    "Monitor",
    "MonitorReport",
    "Reference",
    "psi",
]

# Bin edges of the top-class probability; the last bin holds [0.99, 1.0]. Fine near 1, where a healthy
# classifier puts most of its answers and where a shift to less sure answers shows first.
CONFIDENCE_EDGES: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
DEFAULT_WINDOW = 1000
# Below this many predictions in the window, drift is not computed: PSI of a few dozen answers is noise.
MIN_DRIFT_TEXTS = 100
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
# Shares are floored at this before the logarithm, so that an empty bin gives a large but finite PSI term.
_PSI_FLOOR = 1e-4
REFERENCE_VERSION = 1


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins: ``sum((a - e) * ln(a / e))``.

    Args:
        expected: Reference shares (summing to 1).
        actual: Observed shares, same bins.

    Raises:
        InputError: The two have a different number of bins.
    """
    if len(expected) != len(actual):
        raise InputError(f"psi needs the same bins on both sides, got {len(expected)} and {len(actual)}")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _PSI_FLOOR), max(a, _PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def _confidence_bin(score: float) -> int:
    return min(max(bisect_right(CONFIDENCE_EDGES, score) - 1, 0), len(CONFIDENCE_EDGES) - 2)


def _shares(counts: Sequence[int], total: int) -> list[float]:
    return [c / total for c in counts] if total else [0.0] * len(counts)


@dataclass(frozen=True)
class Reference:
    """What the model answered on held-out data when it was built (the ``monitoring`` key of a manifest).

    Attributes:
        texts: Texts it was computed on.
        label_share: Share of each label among the answers, in label order.
        confidence_share: Share of answers per :data:`CONFIDENCE_EDGES` bin.
        truncated_share: Share of texts longer than ``max_seq_len``.
        source: Where the texts came from, for people.
    """

    texts: int
    label_share: dict[str, float]
    confidence_share: tuple[float, ...]
    truncated_share: float
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest form."""
        return {
            "version": REFERENCE_VERSION,
            "texts": self.texts,
            "label_share": dict(self.label_share),
            "confidence_edges": list(CONFIDENCE_EDGES),
            "confidence_share": list(self.confidence_share),
            "truncated_share": self.truncated_share,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, labels: Sequence[str]) -> Reference:
        """Parse the manifest form.

        Raises:
            InputError: It is not a version-1 reference over these labels and :data:`CONFIDENCE_EDGES`.
        """
        if not isinstance(data, Mapping) or data.get("version") != REFERENCE_VERSION:
            raise InputError(f"monitoring reference must be an object with version {REFERENCE_VERSION}")
        shares = data.get("label_share")
        if not isinstance(shares, Mapping) or set(shares) != set(labels):
            raise InputError(f"monitoring reference label_share must name exactly the labels {list(labels)}")
        if [float(x) for x in data.get("confidence_edges", [])] != list(CONFIDENCE_EDGES):
            raise InputError(f"monitoring reference confidence_edges must be {list(CONFIDENCE_EDGES)}")
        confidence = data.get("confidence_share")
        if not isinstance(confidence, list) or len(confidence) != len(CONFIDENCE_EDGES) - 1:
            raise InputError(f"monitoring reference confidence_share must hold {len(CONFIDENCE_EDGES) - 1} numbers")
        try:
            return cls(
                texts=int(data["texts"]),
                label_share={label: float(shares[label]) for label in labels},
                confidence_share=tuple(float(x) for x in confidence),
                truncated_share=float(data["truncated_share"]),
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"monitoring reference is malformed ({exc!r})") from None


@dataclass(frozen=True)
class Drift:
    """How far the window is from the reference.

    Attributes:
        label_psi: PSI of the label shares.
        confidence_psi: PSI of the confidence histogram.
        status: ``"stable"``, ``"moderate shift"`` or ``"significant shift"``, from the larger of the two.
    """

    label_psi: float
    confidence_psi: float
    status: str

    @classmethod
    def between(
        cls, reference: Reference, label_share: Mapping[str, float], confidence_share: Sequence[float]
    ) -> Drift:
        """Compare shares of a window with the reference."""
        label_psi = psi([reference.label_share[k] for k in label_share], list(label_share.values()))
        confidence_psi = psi(reference.confidence_share, confidence_share)
        worst = max(label_psi, confidence_psi)
        if worst > PSI_SIGNIFICANT:
            status = "significant shift"
        elif worst > PSI_MODERATE:
            status = "moderate shift"
        else:
            status = "stable"
        return cls(label_psi=label_psi, confidence_psi=confidence_psi, status=status)


@dataclass(frozen=True)
class MonitorReport:
    """A snapshot of :class:`Monitor`.

    Attributes:
        observed: Predictions observed since the monitor started.
        window: Predictions the shares below are over (the latest ones, at most the window size).
        label_share: Share of each label.
        confidence_share: Share per :data:`CONFIDENCE_EDGES` bin of the top-class probability.
        low_confidence_share: Share of answers whose top-class probability is below 0.6.
        truncated_share: Share of texts that were longer than ``max_seq_len``.
        cache_hit_share: Share answered from the result cache.
        latency_p50_ms: Median ``Prediction.latency_ms`` in the window (None when it is empty).
        latency_p95_ms: Its 95th percentile.
        drift: Against the bundle's reference; None without a reference or with fewer than
            :data:`MIN_DRIFT_TEXTS` predictions in the window.
    """

    observed: int
    window: int
    label_share: dict[str, float]
    confidence_share: tuple[float, ...]
    low_confidence_share: float
    truncated_share: float
    cache_hit_share: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    drift: Drift | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = dict(self.__dict__)
        out["label_share"] = dict(self.label_share)
        out["confidence_share"] = list(self.confidence_share)
        out["confidence_edges"] = list(CONFIDENCE_EDGES)
        out["drift"] = None if self.drift is None else dict(self.drift.__dict__)
        return out

    def to_reference(self, source: str = "") -> Reference:
        """Turn this snapshot into a reference (what the build does with its test split)."""
        return Reference(
            texts=self.window,
            label_share=dict(self.label_share),
            confidence_share=self.confidence_share,
            truncated_share=self.truncated_share,
            source=source,
        )


class Monitor:
    """Counts over the latest ``window`` predictions; not thread-safe (the classifier calls it under its lock).

    Args:
        labels: Class names in logit order.
        reference: What to measure drift against; None for no drift.
        window: Predictions kept, >= 1.

    Raises:
        InputError: ``window`` is not a positive integer.
    """

    def __init__(self, labels: Sequence[str], reference: Reference | None = None, window: int = DEFAULT_WINDOW) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InputError(f"monitor window {window!r} must be a positive integer")
        self.labels = tuple(labels)
        self.reference = reference
        self.window = window
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        self.reset()

    def reset(self) -> None:
        """Forget every observation (the reference stays)."""
        # One (label, confidence bin, truncated, cached, latency) per prediction; the counts follow it.
        self._recent: deque[tuple[int, int, bool, bool, float]] = deque()
        self._labels = [0] * len(self.labels)
        self._bins = [0] * (len(CONFIDENCE_EDGES) - 1)
        self._truncated = 0
        self._cached = 0
        self._observed = 0

    def observe(self, label: str, score: float, truncated: bool, cached: bool, latency_ms: float) -> None:
        """Add one prediction (the oldest one leaves the window when it is full)."""
        entry = (self._label_index[label], _confidence_bin(score), truncated, cached, latency_ms)
        recent = self._recent
        if len(recent) == self.window:
            self._count(recent.popleft(), -1)
        recent.append(entry)
        self._count(entry, 1)
        self._observed += 1

    def _count(self, entry: tuple[int, int, bool, bool, float], delta: int) -> None:
        self._labels[entry[0]] += delta
        self._bins[entry[1]] += delta
        self._truncated += delta * entry[2]
        self._cached += delta * entry[3]

    def report(self) -> MonitorReport:
        """Return the shares over the window and, when there is a reference and enough data, the drift."""
        n = len(self._recent)
        label_share = dict(zip(self.labels, _shares(self._labels, n), strict=True))
        confidence_share = tuple(_shares(self._bins, n))
        latencies = sorted(entry[4] for entry in self._recent)
        drift = None
        if self.reference is not None and n >= MIN_DRIFT_TEXTS:
            drift = Drift.between(self.reference, label_share, confidence_share)
        low = bisect_right(CONFIDENCE_EDGES, 0.6) - 1  # bins below 0.6
        return MonitorReport(
            observed=self._observed,
            window=n,
            label_share=label_share,
            confidence_share=confidence_share,
            low_confidence_share=sum(confidence_share[:low]),
            truncated_share=self._truncated / n if n else 0.0,
            cache_hit_share=self._cached / n if n else 0.0,
            latency_p50_ms=statistics.median(latencies) if latencies else None,
            latency_p95_ms=latencies[min(n - 1, max(0, round(0.95 * n) - 1))] if latencies else None,
            drift=drift,
        )
