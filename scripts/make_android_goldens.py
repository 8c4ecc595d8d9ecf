"""Write the golden files the Android demo's JVM tests compare against, from a real bundle.

    python scripts/make_android_goldens.py --bundle bundles/pixel8 \
        --out android-demo/core/src/test/resources/golden/

Everything is produced by ``edgeopt_runtime`` itself (tokenizer, ONNX Runtime and LiteRT backends, result
cache), so the Kotlin core is checked against the code that runs on the Python side, not a re-implementation.
Written into ``--out`` (small: no model file is copied):

* ``goldens.json``: the texts, their token ids / masks / truncation flags (or the expected error), the logits
  of each backend (float, and the LiteRT model's raw int8 output with its scale and zero point), the labels
  and scores and cache keys (under the fixed ``GOLDEN_SECRET``), texts that pairwise do or do not read the same
  to the model with their keys (``key_cases``), fingerprints of changed manifests (``fingerprint_cases``), plus
  the bundle's schema version, fingerprint and tokenizer hash and the runtime's cache schema version;
* ``tokenizer.json`` and ``manifest.json``: copies of the bundle's;
* ``python_cache.sqlite``: a result cache written by the Python runtime at a fixed clock (``CACHE_CLOCK``), keyed
  with ``GOLDEN_SECRET``.

With ``--embed-bundle`` (an ``edgeopt build --task embed`` bundle) it also writes the ``embed/`` subfolder of
``--out``; each option works without the other, so the embed goldens can be remade alone and the classifier
files stay as they are::

    python scripts/make_android_goldens.py --embed-bundle bundles/pixel8-embed \
        --out android-demo/core/src/test/resources/golden/

* ``embed/embed_goldens.json``: the embedder texts (``EMBED_TEXTS``) with their token ids and truncation flags (or
  the expected error), per backend the model's raw output (ONNX: float32; LiteRT: the int8 codes, with the
  scale and zero point under ``backends``, and their dequantized float32 values), the runtime's unit vector and
  cache key (float32 vectors as base64 of their little-endian bytes, the runtime's cache encoding); the index
  texts (``INDEX_TEXTS``); the queries (``QUERIES``) with the same per-backend outputs and the ids and scores
  ``Index.search`` returns for them in each index file at each ``SEARCH_KS``; fingerprints of the manifest with
  other embedding specs (``embed_fingerprint_cases``);
* ``embed/manifest.json`` and ``embed/tokenizer.json``: copies of the embed bundle's;
* ``embed/index_int8.sqlite`` and ``embed/index_float16.sqlite``: ``edgeopt_runtime.Index`` files holding the
  index texts, embedded by the ONNX model (``INDEX_BACKEND``);
* ``embed/python_cache.sqlite``: a result cache written by the Python ``TextEmbedder`` (ONNX) at ``CACHE_CLOCK``,
  keyed with ``GOLDEN_SECRET``.

Regenerate them whenever the bundle format, the tokenizer, the cache or the index changes, or the bundles are
rebuilt: ``tests/test_android_goldens.py`` fails when they are stale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GOLDEN_FORMAT",
    "GOLDEN_TEXTS",
    "FINGERPRINT_LABEL_SETS",
    "FINGERPRINT_SCALES",
    "GOLDEN_SECRET",
    "KEY_TEXTS",
    "CACHE_CLOCK",
    "CACHE_TTL_S",
    "GoldenSummary",
    "fingerprint_cases",
    "key_of",
    "key_options",
    "make_goldens",
    "EMBED_GOLDEN_FORMAT",
    "EMBED_TEXTS",
    "INDEX_TEXTS",
    "QUERIES",
    "EmbedGoldenSummary",
    "embed_fingerprint_cases",
    "f32_base64",
    "make_embed_goldens",
    "main",
]

# Bump when the layout of goldens.json changes (the Kotlin tests check it).
GOLDEN_FORMAT = 3
GOLDENS_NAME = "goldens.json"
CACHE_DB_NAME = "python_cache.sqlite"
# A fixed clock makes the cache file reproducible and lets the JVM tests reason about expiry.
CACHE_CLOCK = 1_800_000_000.0
CACHE_TTL_S = 7 * 24 * 3600.0
# A real install makes a random secret (<cache>.key); the goldens use a fixed one so both sides can recompute.
GOLDEN_SECRET = bytes(range(32))
EXPIRED_KEY = "0" * 64
FOREIGN_KEY = "1" * 64
FOREIGN_FINGERPRINT = "f" * 64
_LONG = "Please review the attached project report before our meeting tomorrow, thanks! " * 40

# (name, text). Each one exercises a step of the BERT normalizer, pre-tokenizer, WordPiece model, truncation
# or the cache key normalization; "empty" and "whitespace" are rejected by the runtime (their error is recorded).
GOLDEN_TEXTS: tuple[tuple[str, str], ...] = (
    ("ascii_ham", "Hello team, the meeting is moved to 3pm tomorrow."),
    ("ascii_spam", "WIN a FREE prize now!!! Click here to claim your CASH"),
    ("accents", "Café Résumé naïve"),
    ("decomposed_accent", "e\u0301cole \u00e9cole"),
    ("cjk", "我爱北京天安门 and 東京タワー です"),
    ("hangul", "안녕하세요 세계"),
    ("emoji", "Free 🎉 money 💰💰 now 😀👍🏽 ✅"),
    (
        "punctuation",
        'Wait...what?!? (really) -- "quoted" [x] {y} <z> $100 50% a+b=c ^_^ `~|\\ «guillemets» ¿qué?',
    ),
    ("long", _LONG),
    ("empty", ""),
    ("whitespace", " \t\n\u00a0\u3000\u2003 "),
    ("mixed_case", "ThIs Is MiXeD CaSe TeXt fRoM YoUr BaNk"),
    (
        "numbers_urls_emails",
        "Call 555-0199 or visit https://example.com/path?q=1&x=2, mail john.doe+spam@example.org, pay $19.99",
    ),
    ("greek_sigma", "ΟΔΥΣΣΕΥΣ Σίσυφος"),
    ("turkish_german", "İstanbul STRASSE straße ﬁle Ǆ"),
    ("special_tokens", "hello [MASK] world [CLS] [sep] [UNK]"),
    ("controls", "tab\there\x00nul\u200bzero\u00adsoft\ufeffbom\x07bell\r\nline"),
    ("whitespace_runs", "  a\u2003b\u00a0c\td\n\ne   f\u3000 "),
    ("scripts", "مرحبا नमस्ते שלום привет"),
    ("long_word", "x" * 120 + " ok"),
    ("lone_surrogate", "\ud800abc \udfff"),
)

# Texts whose keys both sides compute: pairs a text normalization could confuse (\x1c-\x1f split words where
# the BERT normalizer deletes them; zero-width and format characters; NFC; whitespace runs), with their token ids,
# so that "equal keys only for equal token ids" is checked in Kotlin too.
KEY_TEXTS: tuple[str, ...] = (
    "free cash",
    "free\x1ccash",
    "free\x1fcash",
    "freecash",
    "free \u3000\t cash\n",
    "free\u200bcash",
    "free\u00adcash",
    "Café  Résumé\tnaïve ",
    "Cafe\u0301 Re\u0301sume\u0301 nai\u0308ve",
    "lone \ud800 surrogate",
    "lone \ufffd surrogate",
)
# Manifest changes whose fingerprints both sides compute: labels that need JSON escaping, and quantization
# scales in every form Python's repr writes.
FINGERPRINT_LABEL_SETS: tuple[tuple[str, ...], ...] = (
    ("ham", "spam"),
    ("spam", "ham"),
    ("négatif", "positif", "😀"),
    ('say "hi"', "back\\slash", "tab\tnew\nline", "\x7f"),
)
FINGERPRINT_SCALES: tuple[float | None, ...] = (None, 0.1, 1e-05, 0.00390625, 0.123456789012345, 3.0)


@dataclass(frozen=True)
class GoldenSummary:
    """What :func:`make_goldens` wrote.

    Attributes:
        out: The output directory.
        cases: Number of texts.
        errors: Number of texts the runtime rejects.
        truncated: Number of texts longer than ``max_seq_len`` tokens.
        cache_rows: Rows in the Python-written cache database.
        total_bytes: Size of every file written.
    """

    out: Path
    cases: int
    errors: int
    truncated: int
    cache_rows: int
    total_bytes: int


def key_options(backend: str, artifact: str) -> dict[str, str]:
    """Return the options the runtime's ``TextClassifier`` puts into every cache key."""
    return {"artifact": artifact, "backend": backend}


def key_of(tokenizer: Any, fingerprint: str, text: str, options: dict[str, str]) -> tuple[str, list[int], bool]:
    """The cache key of ``text`` as the runtime computes it, with the real token ids the model gets for it."""
    from edgeopt_runtime.cache import cache_key
    from edgeopt_runtime.tokenizer import clean_text

    cleaned = clean_text(text)
    enc = tokenizer.encode(cleaned)
    ids = enc.input_ids[0, : int(enc.attention_mask[0].sum())].tolist()
    return cache_key(GOLDEN_SECRET, fingerprint, cleaned, options), ids, enc.truncated[0]


def fingerprint_cases(manifest: Any) -> list[dict[str, Any]]:
    import dataclasses

    from edgeopt_runtime.manifest import compute_fingerprint

    cases = []
    for labels in FINGERPRINT_LABEL_SETS:
        for scale in FINGERPRINT_SCALES:
            artifacts = {
                name: (
                    a
                    if scale is None or a.output_quantization is None
                    else dataclasses.replace(
                        a, output_quantization=dataclasses.replace(a.output_quantization, scale=scale)
                    )
                )
                for name, a in manifest.artifacts.items()
            }
            outputs = tuple(dataclasses.replace(t, shape=("batch", len(labels))) for t in manifest.outputs)
            changed = dataclasses.replace(manifest, labels=tuple(labels), outputs=outputs, artifacts=artifacts)
            cases.append({"labels": list(labels), "scale": scale, "fingerprint": compute_fingerprint(changed)})
    return cases


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _backend_goldens(
    backend: Any, encoded: Any, labels: Sequence[str], quant: Any | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Run one backend; return per-text logits/label/scores and, for an int8 output, the raw int8 values."""
    import numpy as np

    from edgeopt_runtime.model import softmax

    logits = backend.run(encoded.input_ids, encoded.attention_mask)
    probs = softmax(logits)
    rows = []
    for row, prob in zip(logits, probs, strict=True):
        best = int(np.argmax(prob))
        rows.append(
            {
                "logits": _floats(row),
                "label": labels[best],
                "score": float(prob[best]),
                "scores": _floats(prob),
            }
        )
    if quant is None:
        return rows, None
    # The runtime returns dequantized logits, real = scale * (q - zero_point); inverting it recovers the exact
    # int8 values the model produced.
    q = logits.astype(np.float64) / quant.scale + quant.zero_point
    if not np.allclose(q, np.round(q), atol=1e-3):
        raise SystemExit("the LiteRT logits are not on the manifest's int8 grid; check output_quantization")
    return rows, {
        "scale": quant.scale,
        "zero_point": quant.zero_point,
        "values": np.round(q).astype(int).tolist(),
    }


def make_goldens(bundle: Path, out: Path) -> GoldenSummary:
    """Write the goldens of a verified bundle into ``out`` (created; existing golden files are replaced).

    Args:
        bundle: A bundle directory built by ``edgeopt build``.
        out: The golden directory, ``android-demo/core/src/test/resources/golden/``.

    Returns:
        What was written.

    Raises:
        BundleInvalid: The bundle fails verification.
        InputError: A golden text expected to be valid was rejected.
    """
    from edgeopt_runtime import InputError, ResultCache, TextTokenizer, load, verify_bundle
    from edgeopt_runtime._version import __version__
    from edgeopt_runtime.backends import OnnxBackend, TfliteBackend
    from edgeopt_runtime.cache import CACHE_SCHEMA_VERSION
    from edgeopt_runtime.manifest import SCHEMA_VERSION, safe_bundle_path, sha256_file
    from edgeopt_runtime.tokenizer import clean_text

    manifest = verify_bundle(bundle)
    labels = manifest.labels
    tok_path = safe_bundle_path(bundle, manifest.tokenizer_file)
    tokenizer = TextTokenizer.from_file(tok_path, manifest.max_seq_len)

    valid: list[tuple[str, str]] = []
    cases: list[dict[str, Any]] = []
    for name, text in GOLDEN_TEXTS:
        case: dict[str, Any] = {"name": name, "text": text}
        try:
            cleaned = clean_text(text)
        except InputError as exc:
            case["error"] = {"type": type(exc).__name__, "message": str(exc)}
            cases.append(case)
            continue
        enc = tokenizer.encode(text)
        case.update(
            {
                "input_ids": enc.input_ids[0].tolist(),
                "attention_mask": enc.attention_mask[0].tolist(),
                "truncated": enc.truncated[0],
            }
        )
        valid.append((name, cleaned))
        cases.append(case)

    encoded = tokenizer.encode_batch([t for _, t in valid])
    by_name = {c["name"]: c for c in cases}
    backends: dict[str, Any] = {}
    onnx = manifest.artifact_for("onnx")
    if onnx is not None:
        backends["onnx"] = OnnxBackend(
            safe_bundle_path(bundle, onnx[0]),
            1,
            output_quantization=onnx[1].output_quantization,
            seq_len=manifest.max_seq_len,
        )
    tflite = manifest.artifact_for("tflite")
    if tflite is not None:
        backends["tflite"] = TfliteBackend(safe_bundle_path(bundle, tflite[0]), 1, seq_len=manifest.max_seq_len)
    for backend_name, backend in backends.items():
        artifact = (onnx if backend_name == "onnx" else tflite)[1]
        quant = artifact.output_quantization if artifact.output_dtype in ("int8", "uint8") else None
        rows, raw = _backend_goldens(backend, encoded, labels, quant)
        artifact_name = (onnx if backend_name == "onnx" else tflite)[0]
        options = key_options(backend_name, artifact_name)
        for i, ((name, cleaned), row) in enumerate(zip(valid, rows, strict=True)):
            entry = dict(row)
            entry["cache_key"] = key_of(tokenizer, manifest.fingerprint, cleaned, options)[0]
            if raw is not None:
                entry["int8_logits"] = raw["values"][i]
            by_name[name].setdefault("backends", {})[backend_name] = entry
        quant_info = {"scale": raw["scale"], "zero_point": raw["zero_point"]} if raw else None
        backends[backend_name] = {
            "artifact": artifact_name,
            "output_dtype": artifact.output_dtype,
            "output_quantization": quant_info,
            "key_options": options,
        }

    key_cases = []
    for backend_name, info in backends.items():
        for text in KEY_TEXTS:
            key, ids, truncated = key_of(tokenizer, manifest.fingerprint, text, info["key_options"])
            key_cases.append(
                {"text": text, "backend": backend_name, "input_ids": ids, "truncated": truncated, "key": key}
            )

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tok_path, out / "tokenizer.json")
    shutil.copyfile(Path(bundle) / "manifest.json", out / "manifest.json")
    db = out / CACHE_DB_NAME
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    # The default backend of the demo app is ONNX Runtime: its answers go into the cache file.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / CACHE_DB_NAME
        cache = ResultCache(work, ttl_s=CACHE_TTL_S, store_text=True, clock=lambda: CACHE_CLOCK, secret=GOLDEN_SECRET)
        clf = load(bundle, backend="onnx", threads=1, cache=cache)
        clf.predict_batch([t for _, t in valid])
        cache.close()
        # One entry already expired at CACHE_CLOCK and one of another model: a reader must return neither (the
        # second once it purges other fingerprints on load). The expired one goes last: any write at CACHE_CLOCK
        # would drop it.
        stale = {"label": labels[0], "score": 1.0, "scores": {}, "truncated": False}
        with ResultCache(work, ttl_s=CACHE_TTL_S, clock=lambda: CACHE_CLOCK, secret=GOLDEN_SECRET) as other:
            other.put(FOREIGN_KEY, FOREIGN_FINGERPRINT, stale)
        with ResultCache(
            work, ttl_s=CACHE_TTL_S, clock=lambda: CACHE_CLOCK - 8 * 24 * 3600.0, secret=GOLDEN_SECRET
        ) as old:
            old.put(EXPIRED_KEY, manifest.fingerprint, stale)
        shutil.copyfile(work, db)

    import sqlite3

    with sqlite3.connect(db) as conn:
        cache_rows = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    conn.close()

    goldens = {
        "format": GOLDEN_FORMAT,
        "generator": "scripts/make_android_goldens.py",
        "runtime": {
            "version": __version__,
            "schema_version": SCHEMA_VERSION,
            "cache_schema_version": CACHE_SCHEMA_VERSION,
        },
        "bundle": {
            "schema_version": manifest.schema_version,
            "fingerprint": manifest.fingerprint,
            "labels": list(labels),
            "max_seq_len": manifest.max_seq_len,
            "tokenizer_file": manifest.tokenizer_file,
            "tokenizer_sha256": sha256_file(tok_path),
            "tokenizer_bytes": tok_path.stat().st_size,
            "profile": manifest.profile.get("name", ""),
        },
        "backends": backends,
        "cache": {
            "file": CACHE_DB_NAME,
            "clock": CACHE_CLOCK,
            "ttl_s": CACHE_TTL_S,
            "backend": "onnx",
            "expired_key": EXPIRED_KEY,
            "foreign_key": FOREIGN_KEY,
            "foreign_fingerprint": FOREIGN_FINGERPRINT,
            "secret_hex": GOLDEN_SECRET.hex(),
        },
        "cases": cases,
        "key_cases": key_cases,
        "fingerprint_cases": fingerprint_cases(manifest),
        "monitor": _monitor_goldens(manifest),
    }
    text = json.dumps(goldens, indent=1, ensure_ascii=True, allow_nan=False)
    # One array per line keeps the file short and its diffs readable.
    (out / GOLDENS_NAME).write_text(_compact_arrays(text) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return GoldenSummary(
        out=out,
        cases=len(cases),
        errors=sum("error" in c for c in cases),
        truncated=sum(bool(c.get("truncated")) for c in cases),
        cache_rows=cache_rows,
        total_bytes=total,
    )


# The monitor goldens: a window smaller than the observations (so that answers leave it), and checkpoints
# before and after it holds enough answers for drift.
MONITOR_WINDOW = 120
MONITOR_CHECKPOINTS = (0, 1, 60, 99, 100, 120, 200)


def _monitor_goldens(manifest: Any) -> dict[str, Any]:
    """Replayable observations and the Python monitor's reports after each checkpoint."""
    import random

    from edgeopt_runtime.model import _monitoring_reference
    from edgeopt_runtime.monitor import CONFIDENCE_EDGES, Monitor

    reference = _monitoring_reference(manifest)
    if reference is None:
        raise ValueError("the bundle has no monitoring reference; rebuild it with a current edgeopt")
    rng = random.Random(7)
    labels = list(manifest.labels)
    bins = range(len(CONFIDENCE_EDGES) - 1)
    observations = []
    for i in range(max(MONITOR_CHECKPOINTS)):
        if i < 100:  # drawn like the reference (stable), some scores exactly on a bin edge
            label = rng.choices(labels, weights=[reference.label_share[k] for k in labels])[0]
            b = rng.choices(bins, weights=reference.confidence_share)[0]
            low, high = CONFIDENCE_EDGES[b], CONFIDENCE_EDGES[b + 1]
            score = low if rng.random() < 0.1 else rng.uniform(low, high)
        else:  # then a shift: mostly the last label, less sure
            label = labels[-1] if rng.random() < 0.7 else rng.choice(labels)
            score = rng.uniform(0.5, 1.0)
        observations.append([label, score, rng.random() < 0.3, rng.random() < 0.25, round(rng.uniform(0.01, 2), 6)])
    monitor = Monitor(labels, reference, MONITOR_WINDOW)
    reports = []
    done = 0
    for checkpoint in MONITOR_CHECKPOINTS:
        for obs in observations[done:checkpoint]:
            monitor.observe(*obs)
        done = checkpoint
        reports.append({"after": checkpoint, "report": monitor.report().to_dict()})
    return {"window": MONITOR_WINDOW, "observations": observations, "reports": reports}


# --- embed bundles ---------------------------------------------------------------------------------------------------

# Bump when the layout of embed/embed_goldens.json changes (the Kotlin tests check it).
EMBED_GOLDEN_FORMAT = 1
EMBED_DIR = "embed"
EMBED_GOLDENS_NAME = "embed_goldens.json"
EMBED_CACHE_DB_NAME = "python_cache.sqlite"
INDEX_DB_NAMES = {"int8": "index_int8.sqlite", "float16": "index_float16.sqlite"}
# The index is filled with this backend's vectors (the demo app's default); queries are run with both.
INDEX_BACKEND = "onnx"
# k below the number of rows, and above it (every row ranked).
SEARCH_KS = (5, 100)

# (name, text): the embedder cases, each with the raw model output of both backends and Python's unit vectors.
# "whitespace" is rejected (its error is recorded); "long" is truncated.
EMBED_TEXTS: tuple[tuple[str, str], ...] = (
    ("meeting", "Hello team, the meeting is moved to 3pm tomorrow."),
    ("spam", "WIN a FREE prize now!!! Click here to claim your CASH"),
    ("accents", "Café Résumé naïve"),
    ("cjk", "我爱北京天安门 and 東京タワー です"),
    ("emoji", "Free 🎉 money 💰💰 now 😀👍🏽 ✅"),
    ("mixed_case", "ThIs Is MiXeD CaSe TeXt fRoM YoUr BaNk"),
    ("controls", "tab\there\x00nul\u200bzero\u00adsoft\ufeffbom\x07bell\r\nline"),
    ("one_word", "hello"),
    ("long", _LONG),
    ("whitespace", " \t\n\u00a0\u3000\u2003 "),
    ("lone_surrogate", "\ud800abc \udfff"),
)

# (id, text): what the golden index holds. Two ids hold the same text (equal scores: the tie goes to the lower id in
# code-point order, where U+FF5E sorts before U+1F600, unlike UTF-16 order); one id is non-ASCII.
INDEX_TEXTS: tuple[tuple[str, str], ...] = (
    ("a01", "The quarterly budget review is scheduled for Monday at 10am."),
    ("a02", "Can we move our one-on-one to Thursday afternoon?"),
    ("a03", "Reminder: the project deadline is this Friday."),
    ("a04", "Please send me the slides before the meeting."),
    ("a05", "The conference room on the third floor is booked all day."),
    ("a06", "Minutes from yesterday's planning meeting are attached."),
    ("a07", "Who is presenting the sales figures next week?"),
    ("b01", "Congratulations! You have won a free cruise, reply now to claim."),
    ("b02", "Lowest mortgage rates guaranteed, apply today."),
    ("b03", "Cheap watches and designer bags, 90% off, limited time."),
    ("b04", "Your account has been suspended, verify your password here."),
    ("b05", "Make $5000 a week working from home, no experience needed."),
    ("b06", "You are our lucky winner, click the link to get your prize."),
    ("b07", "Buy cheap meds online without a prescription."),
    ("c01", "My laptop will not turn on after the latest update."),
    ("c02", "How do I reset my router to factory settings?"),
    ("c03", "The printer on the second floor keeps jamming."),
    ("c04", "I forgot my email password and cannot log in."),
    ("c05", "The new phone app crashes every time I open the camera."),
    ("c06", "Is there a way to recover deleted files from a USB stick?"),
    ("c07", "The wifi is very slow in the kitchen."),
    ("d01", "Heavy rain and strong winds are expected this weekend."),
    ("d02", "It will be sunny and warm tomorrow with a light breeze."),
    ("d03", "Snow is forecast for the mountains overnight."),
    ("d04", "Bring an umbrella, showers are likely in the afternoon."),
    ("d05", "A heat wave is coming, temperatures above 35 degrees."),
    ("e01", "Boil the pasta for ten minutes and drain it well."),
    ("e02", "This chocolate cake recipe needs three eggs and butter."),
    ("e03", "Chop the onions and fry them until golden."),
    ("e04", "Add a pinch of salt and some fresh basil to the tomato sauce."),
    ("e05", "The soup tastes better the next day."),
    ("e06", "Bake the bread at 220 degrees for forty minutes."),
    ("f01", "The home team won the football match two to one."),
    ("f02", "She finished the marathon in under three hours."),
    ("f03", "The tennis final was postponed because of rain."),
    ("f04", "Our basketball practice starts at six tonight."),
    ("f05", "He scored a goal in the last minute of the game."),
    ("g01", "I booked a train ticket to Paris for next month."),
    ("g02", "Our flight to Tokyo was delayed by two hours."),
    ("g03", "The hotel near the beach has a lovely view of the sea."),
    ("g04", "Do I need a visa to travel to Canada?"),
    ("g05", "We rented a car and drove along the coast."),
    ("h01", "Thanks for dinner last night, it was lovely to see you."),
    ("h02", "Happy birthday! Hope you have a wonderful day."),
    ("h03", "Can you pick up some milk on your way home?"),
    ("h04", "The kids have a school holiday next week."),
    ("h05", "Café Résumé: notes from the naïve reader."),
    ("dup-\uff5e", "Lunch at noon?"),
    ("dup-\U0001f600", "Lunch at noon?"),
    ("\u00e9t\u00e9", "Summer holidays by the lake, swimming every morning."),
)

# Queries searched in both index files with the vectors of both backends.
QUERIES: tuple[str, ...] = (
    "when is the team meeting",
    "claim your free prize money",
    "my computer does not start",
    "will it rain on Saturday",
    "how to cook spaghetti",
    "Lunch at noon?",
)

# Embedding specs whose fingerprints both sides compute (the real one first).
FINGERPRINT_EMBEDDINGS: tuple[tuple[int | None, str | None, bool | None], ...] = (
    (None, None, None),
    (256, None, None),
    (None, "cls", None),
    (None, "max", False),
    (1, "mean", False),
)


@dataclass(frozen=True)
class EmbedGoldenSummary:
    """What :func:`make_embed_goldens` wrote.

    Attributes:
        out: The ``embed/`` directory.
        cases: Number of embedder texts (rejected ones included).
        index_rows: Rows in each index file.
        queries: Number of queries.
        min_gap: Smallest score difference between two neighbours of different vectors in any recorded ranking
            (below ~1e-6 the JVM's float rounding could swap them).
        total_bytes: Size of every file written.
    """

    out: Path
    cases: int
    index_rows: int
    queries: int
    min_gap: float
    total_bytes: int


def f32_base64(values: Any) -> str:
    """float32 little-endian bytes, base64: the runtime's cache encoding of a vector (``embedding_f32``)."""
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def embed_fingerprint_cases(manifest: Any) -> list[dict[str, Any]]:
    """Fingerprints of the embed manifest with other ``dim`` / ``pooling`` / ``normalized`` (and output shape)."""
    import dataclasses

    from edgeopt_runtime.manifest import compute_fingerprint

    cases = []
    for dim, pooling, normalized in FINGERPRINT_EMBEDDINGS:
        spec = manifest.embedding
        changed_spec = dataclasses.replace(
            spec,
            dim=spec.dim if dim is None else dim,
            pooling=spec.pooling if pooling is None else pooling,
            normalized=spec.normalized if normalized is None else normalized,
        )
        outputs = tuple(dataclasses.replace(t, shape=("batch", changed_spec.dim)) for t in manifest.outputs)
        changed = dataclasses.replace(manifest, embedding=changed_spec, outputs=outputs)
        cases.append({**changed_spec.to_dict(), "fingerprint": compute_fingerprint(changed)})
    return cases


def _raw_int8(raw: Any, quant: Any) -> list[int]:
    """The int8 codes behind dequantized outputs (real = scale * (q - zero_point)), checked to be on the grid."""
    import numpy as np

    q = raw.astype(np.float64) / quant.scale + quant.zero_point
    if not np.allclose(q, np.round(q), atol=1e-3):
        raise SystemExit("the LiteRT embeddings are not on the manifest's int8 grid; check output_quantization")
    codes = np.round(q).astype(int)
    # Dequantizing the codes the runtime's way must give back exactly what the backend returned.
    again = (quant.scale * (codes.astype(np.float32) - quant.zero_point)).astype(np.float32)
    if not np.array_equal(again, raw):
        raise SystemExit("dequantizing the LiteRT codes does not give the backend's output back")
    out: list[int] = codes.tolist()
    return out


def make_embed_goldens(bundle: Path, out: Path) -> EmbedGoldenSummary:
    """Write the goldens of a verified ``embed`` bundle into ``out`` (the ``embed/`` folder; created, replaced).

    Args:
        bundle: An ``embed`` bundle directory built by ``edgeopt build --task embed``.
        out: The directory to write, ``android-demo/core/src/test/resources/golden/embed/``.

    Returns:
        What was written.

    Raises:
        BundleInvalid: The bundle fails verification or is not an ``embed`` bundle.
    """
    import numpy as np

    from edgeopt_runtime import BundleInvalid, InputError, ResultCache, TextTokenizer, verify_bundle
    from edgeopt_runtime._version import __version__
    from edgeopt_runtime.backends import OnnxBackend, TfliteBackend
    from edgeopt_runtime.cache import CACHE_SCHEMA_VERSION
    from edgeopt_runtime.embedder import TextEmbedder, normalize_rows
    from edgeopt_runtime.index import INDEX_APPLICATION_ID, INDEX_SCHEMA_VERSION, Index
    from edgeopt_runtime.manifest import SCHEMA_VERSION, safe_bundle_path, sha256_file
    from edgeopt_runtime.tokenizer import clean_text

    manifest = verify_bundle(bundle)
    if manifest.embedding is None:
        raise BundleInvalid(f"bundle {bundle} has task {manifest.task!r}, not 'embed'; pass it as --bundle")
    spec = manifest.embedding
    tok_path = safe_bundle_path(bundle, manifest.tokenizer_file)
    tokenizer = TextTokenizer.from_file(tok_path, manifest.max_seq_len)

    backends: dict[str, Any] = {}
    onnx = manifest.artifact_for("onnx")
    if onnx is not None:
        backends["onnx"] = OnnxBackend(
            safe_bundle_path(bundle, onnx[0]),
            1,
            output_quantization=onnx[1].output_quantization,
            seq_len=manifest.max_seq_len,
        )
    tflite = manifest.artifact_for("tflite")
    if tflite is not None:
        backends["tflite"] = TfliteBackend(safe_bundle_path(bundle, tflite[0]), 1, seq_len=manifest.max_seq_len)
    if INDEX_BACKEND not in backends:
        raise BundleInvalid(f"bundle {bundle} has no {INDEX_BACKEND} model, which fills the golden index")
    embedders = {name: TextEmbedder(manifest, tokenizer, backend) for name, backend in backends.items()}
    backend_info: dict[str, Any] = {}
    quants: dict[str, Any] = {}
    for name in backends:
        found = manifest.artifact_for(name)
        assert found is not None  # a backend was made for it above
        artifact_name, artifact = found
        quant = artifact.output_quantization if artifact.output_dtype in ("int8", "uint8") else None
        quants[name] = quant
        backend_info[name] = {
            "artifact": artifact_name,
            "output_dtype": artifact.output_dtype,
            "output_quantization": None if quant is None else {"scale": quant.scale, "zero_point": quant.zero_point},
            "key_options": key_options(name, artifact_name),
        }

    def embed_entries(texts: list[str]) -> list[dict[str, dict[str, Any]]]:
        """Per text and backend: the raw output, Python's unit vector and the cache key."""
        encoded = tokenizer.encode_batch(texts)
        entries: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
        for name, backend in backends.items():
            raw = backend.run(encoded.input_ids, encoded.attention_mask)
            if raw.shape != (len(texts), spec.dim):
                raise BundleInvalid(f"the {name} model returned {raw.shape}, expected ({len(texts)}, {spec.dim})")
            vectors = embedders[name].embed(texts)
            if not np.array_equal(vectors, normalize_rows(raw)):
                raise SystemExit(f"the {name} embedder's vectors are not the normalized raw outputs")
            codes = None if quants[name] is None else _raw_int8(raw, quants[name])
            options = backend_info[name]["key_options"]
            for i, text in enumerate(texts):
                entry: dict[str, Any] = {}
                if codes is not None:
                    entry["raw_int8"] = codes[i]
                entry["raw_f32"] = f32_base64(raw[i])
                entry["vector_f32"] = f32_base64(vectors[i])
                entry["cache_key"] = key_of(tokenizer, manifest.fingerprint, text, options)[0]
                entries[i][name] = entry
        return entries

    def encoding(text: str) -> dict[str, Any]:
        enc = tokenizer.encode(text)
        return {"input_ids": enc.input_ids[0].tolist(), "truncated": enc.truncated[0]}

    cases: list[dict[str, Any]] = []
    valid: list[tuple[dict[str, Any], str]] = []
    for name, text in EMBED_TEXTS:
        case: dict[str, Any] = {"name": name, "text": text}
        try:
            cleaned = clean_text(text)
        except InputError as exc:
            case["error"] = {"type": type(exc).__name__, "message": str(exc)}
        else:
            case.update(encoding(cleaned))
            valid.append((case, cleaned))
        cases.append(case)
    for (case, _), entry in zip(valid, embed_entries([t for _, t in valid]), strict=True):
        case["backends"] = entry
    if not any(c.get("truncated") for c in cases):
        raise SystemExit("no embed golden text exceeds max_seq_len; make the long text longer")

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if stale.is_file() and (stale.suffix in (".sqlite", ".json") or "-wal" in stale.name or "-shm" in stale.name):
            stale.unlink()
    shutil.copyfile(tok_path, out / "tokenizer.json")
    shutil.copyfile(Path(bundle) / "manifest.json", out / "manifest.json")

    # The index files, filled by the runtime's Index with the INDEX_BACKEND embedder, and the ranking of every
    # query (each backend's vector) in each file.
    ids = [i for i, _ in INDEX_TEXTS]
    queries: list[dict[str, Any]] = [{"text": q, **encoding(q)} for q in QUERIES]
    for query, entry in zip(queries, embed_entries(list(QUERIES)), strict=True):
        query["backends"] = entry
    min_gap = float("inf")
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for precision, file_name in INDEX_DB_NAMES.items():
            work = Path(tmp) / file_name
            with Index(work, embedders[INDEX_BACKEND], precision=precision) as index:
                index.add(ids, [t for _, t in INDEX_TEXTS])
                rows = len(index)
                for query in queries:
                    for name, entry in query["backends"].items():
                        vector = np.frombuffer(_b64(entry["vector_f32"]), dtype="<f4")
                        if name == INDEX_BACKEND:
                            # A text query goes through the embedder: same ranking as its vector (a vector query
                            # is normalized once more, which may move a score by an ulp).
                            by_text, by_vector = index.search(query["text"], 100), index.search(vector, 100)
                            if [i for i, _ in by_text] != [i for i, _ in by_vector] or not np.allclose(
                                [s for _, s in by_text], [s for _, s in by_vector], rtol=0, atol=1e-6
                            ):
                                raise SystemExit(f"the text query {query['text']!r} ranks otherwise than its vector")
                        results = {}
                        for k in SEARCH_KS:
                            hits = index.search(vector, k)
                            results[str(k)] = [[i, s] for i, s in hits]
                            min_gap = min(min_gap, _min_gap(hits, dict(INDEX_TEXTS)))
                        entry.setdefault("results", {})[precision] = results
            shutil.copyfile(work, out / file_name)

    # A result cache written by the Python embedder (ONNX), keyed with GOLDEN_SECRET at CACHE_CLOCK.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / EMBED_CACHE_DB_NAME
        with ResultCache(work, ttl_s=CACHE_TTL_S, clock=lambda: CACHE_CLOCK, secret=GOLDEN_SECRET) as cache:
            TextEmbedder(manifest, tokenizer, backends["onnx"], cache).embed([t for _, t in valid])
        shutil.copyfile(work, out / EMBED_CACHE_DB_NAME)

    goldens = {
        "format": EMBED_GOLDEN_FORMAT,
        "generator": "scripts/make_android_goldens.py --embed-bundle",
        "runtime": {
            "version": __version__,
            "schema_version": SCHEMA_VERSION,
            "cache_schema_version": CACHE_SCHEMA_VERSION,
            "index_schema_version": INDEX_SCHEMA_VERSION,
            "index_application_id": INDEX_APPLICATION_ID,
        },
        "bundle": {
            "task": manifest.task,
            "schema_version": manifest.schema_version,
            "fingerprint": manifest.fingerprint,
            **spec.to_dict(),
            "max_seq_len": manifest.max_seq_len,
            "tokenizer_file": manifest.tokenizer_file,
            "tokenizer_sha256": sha256_file(tok_path),
            "tokenizer_bytes": tok_path.stat().st_size,
            "profile": manifest.profile.get("name", ""),
        },
        "backends": backend_info,
        "cache": {
            "file": EMBED_CACHE_DB_NAME,
            "clock": CACHE_CLOCK,
            "ttl_s": CACHE_TTL_S,
            "backend": "onnx",
            "secret_hex": GOLDEN_SECRET.hex(),
        },
        "cases": cases,
        "fingerprint_cases": embed_fingerprint_cases(manifest),
        "index": {
            "backend": INDEX_BACKEND,
            "texts": [[i, t] for i, t in INDEX_TEXTS],
            "files": {p: {"file": f, "precision": p, "rows": rows} for p, f in INDEX_DB_NAMES.items()},
            "ks": list(SEARCH_KS),
        },
        "queries": queries,
    }
    text = json.dumps(goldens, indent=1, ensure_ascii=True, allow_nan=False)
    (out / EMBED_GOLDENS_NAME).write_text(_compact_arrays(text) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return EmbedGoldenSummary(
        out=out, cases=len(cases), index_rows=rows, queries=len(queries), min_gap=min_gap, total_bytes=total
    )


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text, validate=True)


def _min_gap(hits: list[tuple[str, float]], texts: dict[str, str]) -> float:
    """Smallest score difference between neighbours in a ranking whose texts differ (equal texts tie exactly)."""
    gaps = [a[1] - b[1] for a, b in zip(hits, hits[1:], strict=False) if texts[a[0]] != texts[b[0]]]
    ties = [a[1] == b[1] for a, b in zip(hits, hits[1:], strict=False) if texts[a[0]] == texts[b[0]]]
    if not all(ties):
        raise SystemExit("two rows of one text got different scores; the tie-break by id cannot be checked")
    return min(gaps, default=float("inf"))


def _compact_arrays(text: str) -> str:
    """Put JSON arrays of numbers on one line (json.dumps with indent puts one number per line)."""
    import re

    number_array = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")
    return number_array.sub(lambda m: "[" + ",".join(p.strip() for p in m.group(1).split(",")) + "]", text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, write the goldens and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="classifier bundle directory (edgeopt build output)")
    parser.add_argument(
        "--embed-bundle",
        type=Path,
        help="embed bundle directory (edgeopt build --task embed): writes the embed/ subfolder of --out",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "android-demo/core/src/test/resources/golden",
        help="golden directory (default: android-demo/core/src/test/resources/golden)",
    )
    args = parser.parse_args(argv)
    if args.bundle is None and args.embed_bundle is None:
        parser.error("pass --bundle, --embed-bundle or both")
    from edgeopt_runtime import EdgeoptRuntimeError

    try:
        if args.bundle is not None:
            summary = make_goldens(args.bundle, args.out)
            print(
                f"wrote {summary.out}: {summary.cases} texts ({summary.errors} rejected, "
                f"{summary.truncated} truncated), {summary.cache_rows} cache rows, {summary.total_bytes} bytes"
            )
        if args.embed_bundle is not None:
            embed = make_embed_goldens(args.embed_bundle, args.out / EMBED_DIR)
            print(
                f"wrote {embed.out}: {embed.cases} texts, {embed.index_rows} index rows per precision, "
                f"{embed.queries} queries (smallest score gap {embed.min_gap:.2e}), {embed.total_bytes} bytes"
            )
    except EdgeoptRuntimeError as exc:
        print(f"make_android_goldens: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
