from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing as mp
import os
import re
import signal
import sqlite3
import stat
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt_runtime import load
from edgeopt_runtime.cache import (
    CACHE_APPLICATION_ID,
    CACHE_SCHEMA_VERSION,
    CacheWarning,
    ResultCache,
    cache_key,
    default_cache_path,
    foreign_file_reason,
    key_function,
    migrate,
    secret_path,
)
from edgeopt_runtime.cli import main
from edgeopt_runtime.errors import CacheError

FP_A = "a" * 64
FP_B = "b" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def value_for(key: str) -> dict:
    return {"label": "spam", "check": hashlib.sha256(key.encode()).hexdigest()}


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        return fn(*args, **kwargs)


# -- keys -------------------------------------------------------------------------------------------


SECRET = bytes(range(32))


def _documented_key(secret, fingerprint, text, options):
    # runtime/README.md's definition, which the Android client implements.
    opts = ";".join(f"{k}={v}" for k, v in sorted((options or {}).items()))
    message = f"edgeopt-cache-key/2\n{fingerprint}\n{opts}\n{text}".encode("utf-8", "surrogatepass")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


_OPTION_TEXT = st.text(st.characters(exclude_characters="=;\n"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=200),
    fingerprint=st.sampled_from([FP_A, FP_B, "", "caf\u00e9"]),
    options=st.none() | st.dictionaries(_OPTION_TEXT, _OPTION_TEXT, max_size=4),
    secret=st.binary(min_size=16, max_size=64),
)
def test_key_is_the_documented_hmac(text, fingerprint, options, secret):
    expected = _documented_key(secret, fingerprint, text, options)
    assert cache_key(secret, fingerprint, text, options) == expected
    assert key_function(secret, fingerprint, options)(text) == expected


def test_key_changes_with_every_part():
    base = cache_key(SECRET, FP_A, "free cash", {"backend": "onnx"})
    assert len(base) == 64 and len(cache_key(SECRET, FP_A, "a\ud800")) == 64
    assert cache_key(SECRET[::-1], FP_A, "free cash", {"backend": "onnx"}) != base
    assert cache_key(SECRET, FP_B, "free cash", {"backend": "onnx"}) != base
    assert cache_key(SECRET, FP_A, "free  cash", {"backend": "onnx"}) != base  # no normalization at all
    assert cache_key(SECRET, FP_A, "free\x1ccash", {"backend": "onnx"}) != base
    assert cache_key(SECRET, FP_A, "free cash", {"backend": "tflite"}) != base


# -- the per-install secret ---------------------------------------------------------------------------


def test_secret_file_is_made_once_owner_only_and_reused(tmp_path):
    path = tmp_path / "c.sqlite"
    first = no_warnings(ResultCache, path)
    key_file = secret_path(path)
    assert key_file == tmp_path / "c.sqlite.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    assert first.secret == key_file.read_bytes()
    key = first.key_function(FP_A)("free cash")
    first.put(key, FP_A, {"v": 1})
    first.close()
    again = no_warnings(ResultCache, path)
    assert again.secret == first.secret and again.get(key) == {"v": 1}
    assert not list(tmp_path.glob(".c.sqlite.key.*"))  # no temporary file left


def test_a_copied_cache_file_answers_nothing_without_its_key(tmp_path):
    # What runtime/README.md promises: the file alone cannot confirm a guessed text, because the key of a
    # guess cannot be computed without the secret kept beside it.
    home, copy = tmp_path / "home", tmp_path / "copy"
    home.mkdir()
    copy.mkdir()
    cache = ResultCache(home / "c.sqlite")
    key = cache.key_function(FP_A)("free cash")
    cache.put(key, FP_A, {"v": 1})
    cache.close()
    (copy / "c.sqlite").write_bytes((home / "c.sqlite").read_bytes())
    stolen = ResultCache(copy / "c.sqlite")
    assert stolen.secret != cache.secret
    assert stolen.get(stolen.key_function(FP_A)("free cash")) is None
    assert stolen.stats().entries == 1  # the row is there; nothing can find it


def test_given_secret_writes_no_key_file(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", secret=SECRET)
    assert cache.secret == SECRET and not secret_path(tmp_path / "c.sqlite").exists()
    with pytest.raises(CacheError, match="secret must be bytes of length >= 16"):
        ResultCache(tmp_path / "d.sqlite", secret=b"short")


def _symlink_to_elsewhere(key_file: Path) -> None:
    target = key_file.with_name("elsewhere")
    target.write_bytes(b"k" * 32)
    target.chmod(0o600)
    key_file.symlink_to(target)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: (p.write_bytes(b"short"), p.chmod(0o600)), "holds 5 bytes, not a 32-byte edgeopt cache key"),
        (lambda p: (p.write_bytes(b"k" * 32), p.chmod(0o644)), "can be read by other users (mode 0644)"),
        (lambda p: p.mkdir(), "is a directory, not a key"),
        (_symlink_to_elsewhere, "is a symbolic link"),
    ],
    ids=["wrong-size", "world-readable", "directory", "symlink"],
)
def test_foreign_key_file_disables_the_cache_and_is_left_alone(tmp_path, make, reason):
    path = tmp_path / "c.sqlite"
    key_file = secret_path(path)
    make(key_file)
    before = key_file.lstat()
    content = key_file.read_bytes() if key_file.is_file() and not key_file.is_symlink() else None
    with pytest.warns(CacheWarning) as caught:
        cache = ResultCache(path)
    assert not cache.enabled and reason in str(caught[0].message) and str(key_file) in str(caught[0].message)
    after = key_file.lstat()
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (before.st_mode, before.st_size, before.st_mtime_ns)
    if content is not None:
        assert key_file.read_bytes() == content


def _secret_maker(path: str, start, out) -> None:
    start.wait(60)
    out.put(ResultCache(path).secret)


def test_processes_creating_the_key_at_once_share_one(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_secret_maker, args=(path, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    secrets_seen = {out.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(60)
    assert secrets_seen == {secret_path(path).read_bytes()}


def test_default_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path / "base"))
    assert default_cache_path() == tmp_path / "base" / "results.sqlite"
    monkeypatch.delenv("EDGEOPT_CACHE_DIR")
    assert default_cache_path().parts[-2:] == ("edgeopt", "results.sqlite")


def test_bad_bounds(tmp_path):
    with pytest.raises(CacheError, match="max_entries 0 must be a positive integer"):
        ResultCache(tmp_path / "c.sqlite", max_entries=0)
    with pytest.raises(CacheError, match="ttl_s -1 must be a positive number"):
        ResultCache(tmp_path / "c.sqlite", ttl_s=-1)


# -- basic behaviour --------------------------------------------------------------------------------


def test_put_get_stats_schema_mode(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = no_warnings(ResultCache, path)
    assert cache.get("k1") is None
    cache.put("k1", FP_A, {"label": "ham", "score": 0.5}, text="secret words")
    assert cache.get("k1") == {"label": "ham", "score": 0.5}
    s = cache.stats()
    assert (s.hits, s.misses, s.evictions, s.entries) == (1, 1, 0, 1)
    assert s.bytes > 0 and s.file_bytes > 0 and s.hit_latency_ms is not None and s.hit_latency_ms > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == CACHE_SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        value, text = conn.execute("SELECT value, text FROM results").fetchone()
    assert json.loads(value) == {"label": "ham", "score": 0.5} and text is None
    assert b"secret words" not in path.read_bytes()


def test_store_text_opt_in(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", store_text=True)
    cache.put("k", FP_A, {"x": 1}, text="  Secret\n words ")
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        assert conn.execute("SELECT text FROM results").fetchone()[0] == "  Secret\n words "


def test_negative_schema_version_is_a_damaged_file_moved_aside(tmp_path):
    # Found by bench/fuzz_runtime.py: a flipped bit in the header's user_version made migrate() raise KeyError.
    path = tmp_path / "c.sqlite"
    ResultCache(path, secret=bytes(32)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = -2147483647")
    conn.close()
    with pytest.warns(CacheWarning, match="user_version -2147483647 is not a cache schema version"):
        cache = ResultCache(path, secret=bytes(32))
    assert cache.enabled and len(list(tmp_path.glob("c.sqlite.corrupt-*"))) == 1
    cache.put("k", FP_A, {"x": 1})
    assert cache.get("k") == {"x": 1}


def test_a_flipped_bit_that_makes_sqlite_quote_bad_utf8_is_a_damaged_file(tmp_path):
    # Found by bench/fuzz_runtime.py: this bit, in the file the fuzzer starts from, made SQLite's error message
    # invalid UTF-8, and the UnicodeDecodeError escaped ResultCache(). (Another SQLite version may lay the file
    # out otherwise; the test then checks an ordinary damaged file.)
    seed = tmp_path / "seed.sqlite"
    with ResultCache(seed, secret=bytes(32)) as cache:
        cache.put_many([(f"k{i}", "f" * 64, {"label": "ham", "i": i}, None) for i in range(50)])
    data = bytearray(seed.read_bytes())
    data[3635] ^= 1 << 7
    path = tmp_path / "c.sqlite"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        cache = ResultCache(path, secret=bytes(32))
    cache.put("k", FP_A, {"x": 1})
    assert cache.get("k") == {"x": 1}


def test_migrate_is_idempotent(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
    assert migrate(conn) == 0
    assert migrate(conn) == CACHE_SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {CACHE_SCHEMA_VERSION + 1}")
    with pytest.raises(CacheError, match="newer than this edgeopt-runtime reads"):
        migrate(conn)


def test_newer_schema_disables(tmp_path):
    path = tmp_path / "c.sqlite"
    ResultCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.warns(CacheWarning, match="result cache disabled: cache schema version 99 is newer"):
        cache = ResultCache(path)
    assert not cache.enabled
    cache.put("k", FP_A, {"x": 1})
    assert cache.get("k") is None


def test_lookups_do_not_take_the_write_lock(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    cache.put("k", FP_A, {"x": 1})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        start = time.perf_counter()
        assert no_warnings(cache.get, "k") == {"x": 1}
        assert no_warnings(cache.get_many, ["k", "absent"]) == {"k": {"x": 1}}
        assert time.perf_counter() - start < 1.0  # the busy timeout is 10 s
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_lookup_effects_are_buffered_then_written(tmp_path):
    path = tmp_path / "c.sqlite"
    clock = FakeClock()
    writer = ResultCache(path, clock=clock)
    writer.put("k", FP_A, {"x": 1})
    reader = ResultCache(path, clock=clock)
    clock.now += 5
    assert reader.get("k") == {"x": 1} and reader.get("absent") is None

    def on_disk() -> tuple:
        with sqlite3.connect(path) as conn:
            counters = dict(conn.execute("SELECT name, value FROM counters"))
            used = conn.execute("SELECT last_used FROM results WHERE key = 'k'").fetchone()[0]
        return counters["hits"], counters["misses"], used

    assert on_disk() == (0, 0, clock.now - 5)
    reader.flush()
    assert on_disk() == (1, 1, clock.now)
    for _ in range(300):  # more than the buffer holds: written without an explicit flush
        reader.get("k")
    assert on_disk()[0] > 1
    reader.close()
    assert on_disk()[0] == 301


def test_deferred_put(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    other = ResultCache(path)
    cache.put_many([("k1", FP_A, {"v": 1}, None), ("k2", FP_A, {"v": 2}, None)], defer=True)
    assert cache.get("k1") == {"v": 1} and cache.get_many(["k1", "k2"]) == {"k1": {"v": 1}, "k2": {"v": 2}}
    assert other.get("k1") is None  # not written yet
    cache.flush()
    assert other.get("k1") == {"v": 1}
    cache.put_many([(f"d{i}", FP_A, {"v": i}, None) for i in range(70)], defer=True)
    cache.put("sync", FP_A, {"v": -1})  # any write carries the deferred rows with it
    assert other.get_many([f"d{i}" for i in range(70)]) == {f"d{i}": {"v": i} for i in range(70)}
    cache.put("late", FP_A, {"v": 0})
    cache.put_many([("k3", FP_A, {"v": 3}, None)], defer=True)
    cache.close()
    assert other.get("k3") == {"v": 3}  # close() writes what was deferred


def test_deferred_value_that_is_not_json_is_dropped(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    cache.put_many([("bad", FP_A, {"v": float("nan")}, None), ("good", FP_A, {"v": 1}, None)], defer=True)
    assert no_warnings(cache.get, "good") == {"v": 1}
    with pytest.warns(CacheWarning, match="not JSON"):
        assert cache.get("bad") is None  # a miss, never a crash
    with pytest.warns(CacheWarning, match="not JSON"):
        cache.flush()
    with pytest.raises(ValueError):  # a direct write refuses it at once
        cache.put("bad", FP_A, {"v": float("nan")})
    cache.close()
    with ResultCache(path) as other:
        assert other.get("good") == {"v": 1} and other.get("bad") is None


def test_bounds_hold_with_two_writers(tmp_path):
    # Each object keeps a running count of the rows; it must notice the other's writes (data_version).
    path = tmp_path / "c.sqlite"
    a = ResultCache(path, max_entries=50, ttl_s=None)
    b = ResultCache(path, max_entries=50, ttl_s=None)
    for i in range(100):
        a.put(f"a{i}", FP_A, {"i": i})
        b.put(f"b{i}", FP_A, {"i": i})
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM results").fetchone()[0] <= 50, i
    assert a.stats().entries == 50 and a.stats().evictions == 150


def test_expired_rows_purged_by_later_writes(tmp_path):
    clock = FakeClock()
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path, ttl_s=10, clock=clock)
    cache.put_many([(f"k{i}", FP_A, {"i": i}, None) for i in range(20)])
    clock.now += 61
    cache.put("fresh", FP_A, {"i": -1})
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM results")] == ["fresh"]


# -- TTL and LRU ------------------------------------------------------------------------------------


def test_ttl_expiry(tmp_path):
    clock = FakeClock()
    cache = ResultCache(tmp_path / "c.sqlite", ttl_s=60, clock=clock)
    cache.put("k", FP_A, {"x": 1})
    clock.now += 59
    assert cache.get("k") == {"x": 1}
    clock.now += 2
    assert cache.get("k") is None
    assert cache.stats().entries == 0  # an expired entry is deleted when seen


def test_lru_eviction_by_count(tmp_path):
    clock = FakeClock()
    cache = ResultCache(tmp_path / "c.sqlite", max_entries=3, ttl_s=None, clock=clock)
    for k in ("a", "b", "c"):
        clock.now += 1
        cache.put(k, FP_A, {"k": k})
    clock.now += 1
    assert cache.get("a") == {"k": "a"}  # a is now the most recently used
    clock.now += 1
    cache.put("d", FP_A, {"k": "d"})
    assert cache.get("b") is None
    assert [cache.get(k) is not None for k in ("a", "c", "d")] == [True, True, True]
    assert cache.stats().evictions == 1 and cache.stats().entries == 3


def test_lru_eviction_by_bytes(tmp_path):
    clock = FakeClock()
    one = len("k0") + len(json.dumps({"pad": "x" * 100}, separators=(",", ":")))
    cache = ResultCache(tmp_path / "c.sqlite", max_bytes=one * 3, ttl_s=None, clock=clock)
    for i in range(5):
        clock.now += 1
        cache.put(f"k{i}", FP_A, {"pad": "x" * 100})
    s = cache.stats()
    assert s.entries == 3 and s.bytes == one * 3 and s.evictions == 2
    assert cache.get("k0") is None and cache.get("k1") is None and cache.get("k4") is not None
    cache.put("huge", FP_A, {"pad": "x" * (one * 4)})  # larger than the whole budget: not stored
    assert cache.get("huge") is None and cache.stats().entries == 3


def test_fingerprint_invalidation(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    cache.put_many([("a1", FP_A, {"v": 1}, None), ("a2", FP_A, {"v": 2}, None), ("b1", FP_B, {"v": 3}, None)])
    assert cache.invalidate(FP_A) == 2
    assert cache.get("a1") is None and cache.get("b1") == {"v": 3}
    cache.put("a3", FP_A, {"v": 4})
    assert cache.keep_only(FP_A) == 1
    assert cache.get("b1") is None and cache.get("a3") == {"v": 4}
    assert cache.invalidate() == 1
    assert cache.clear() == 0 and cache.stats().hits == 0


# -- damaged files and unwritable places ------------------------------------------------------------


def _fill(path: Path, n: int = 400) -> None:
    with ResultCache(path, ttl_s=None) as cache:
        cache.put_many([(f"k{i}", FP_A, {"pad": "y" * 200, "i": i}, None) for i in range(n)])


def test_corrupt_cache_moved_aside(tmp_path):
    path = tmp_path / "c.sqlite"
    _fill(path)
    data = path.read_bytes()
    assert len(data) > 40_000
    path.write_bytes(data[: len(data) // 2])  # the header (and so the application id) says it is ours
    with pytest.warns(CacheWarning, match=r"was unreadable .*moved it to c\.sqlite\.corrupt-"):
        cache = ResultCache(path)
    assert cache.enabled
    assert len(list(tmp_path.glob("c.sqlite.corrupt-*"))) == 1
    cache.put("k", FP_A, {"ok": True})
    assert cache.get("k") == {"ok": True}


def _other_apps_database(path: Path, application_id: int = 0) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        if application_id:
            conn.execute(f"PRAGMA application_id = {application_id}")
    conn.close()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda p: p.write_bytes(os.urandom(8192)),
            r"is not an edgeopt cache \(a 8,192-byte file that is not an SQLite",
        ),
        (lambda p: p.write_text("name,label\nbob,ham\n"), r"is not an edgeopt cache \(a 19-byte file"),
        (lambda p: p.mkdir(), r"is a directory, not a cache file"),
        (lambda p: os.mkfifo(p), r"is a named pipe, not a cache file"),
        (_other_apps_database, r"is another application's SQLite database \(it has tables notes\)"),
        (
            lambda p: _other_apps_database(p, 0x12345),
            r"is another application's SQLite database \(application_id 0x12345\)",
        ),
    ],
    ids=["garbage", "csv", "directory", "fifo", "sqlite-tables", "sqlite-app-id"],
)
def test_a_file_that_is_not_ours_is_left_exactly_as_it_was(tmp_path, make, reason):
    path = tmp_path / "c.sqlite"
    make(path)
    os.chmod(path, 0o644)
    before = os.stat(path)
    content = path.read_bytes() if path.is_file() else None
    with pytest.warns(CacheWarning, match=f"result cache disabled: {re.escape(str(path))} {reason}.*left as it was"):
        cache = ResultCache(path)
    assert not cache.enabled and "left as it was" in cache.disabled_reason
    cache.put("k", FP_A, {"x": 1})
    assert cache.get("k") is None
    cache.close()
    after = os.stat(path)
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (before.st_mode, before.st_size, before.st_mtime_ns)
    if content is not None:
        assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite"]  # nothing moved aside, no -wal or -shm


def test_a_device_is_never_chmod_ed(tmp_path):
    before = os.stat("/dev/null")
    with pytest.warns(CacheWarning, match=r"/dev/null is a character device, not a cache file"):
        cache = ResultCache(Path("/dev/null"))
    assert not cache.enabled
    assert os.stat("/dev/null").st_mode == before.st_mode


def test_cache_files_carry_the_application_id_and_old_ones_are_adopted(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", FP_A, {"x": 1})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == CACHE_APPLICATION_ID
        conn.execute("PRAGMA application_id = 0")  # as written before the id existed
    conn.close()
    assert foreign_file_reason(path) is None
    cache = no_warnings(ResultCache, path)
    assert cache.get("k") == {"x": 1}
    cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == CACHE_APPLICATION_ID
    conn.close()
    (tmp_path / "empty.sqlite").touch()
    assert foreign_file_reason(tmp_path / "empty.sqlite") is None and foreign_file_reason(tmp_path / "new") is None


def test_parent_is_a_file_disables(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.warns(CacheWarning, match="result cache disabled: cannot create"):
        cache = ResultCache(tmp_path / "file" / "c.sqlite")
    assert not cache.enabled and cache.stats().entries == 0
    cache.put("k", FP_A, {"x": 1})
    assert cache.get("k") is None


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_readonly_filesystem_disables():
    with pytest.warns(CacheWarning, match=r"result cache disabled: cannot write /proc/edgeopt-test\.sqlite"):
        cache = ResultCache("/proc/edgeopt-test.sqlite")
    assert not cache.enabled


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_readonly_dir_disables(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.warns(CacheWarning, match="result cache disabled"):
            cache = ResultCache(ro / "c.sqlite")
        assert not cache.enabled
    finally:
        ro.chmod(0o700)


# -- threads and processes --------------------------------------------------------------------------

N_KEYS = 150


def _writer(path: str, seed: int) -> None:
    import random

    cache = ResultCache(path, ttl_s=None)
    keys = [f"k{i}" for i in range(N_KEYS)]
    random.Random(seed).shuffle(keys)
    bad = 0
    for key in keys:
        cache.put(key, FP_A, value_for(key))
        if cache.get(key) != value_for(key):
            bad += 1
    cache.close()  # writes this process's buffered hit counts
    sys.exit(min(bad, 100))


def test_four_processes_same_keys(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResultCache(path).close()  # create the schema once, so the four race on data, not on DDL
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, seed)) for seed in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = ResultCache(path)
    got = cache.get_many([f"k{i}" for i in range(N_KEYS)])
    assert len(got) == N_KEYS
    assert all(v == value_for(k) for k, v in got.items())
    s = cache.stats()
    assert s.entries == N_KEYS and s.hits == 4 * N_KEYS + N_KEYS and s.misses == 0
    assert not list(tmp_path.glob("*.corrupt-*"))


def _endless_writer(path: str, ready) -> None:
    cache = ResultCache(path, ttl_s=None, max_entries=500)
    i = 0
    while True:
        cache.put(f"k{i}", FP_A, value_for(f"k{i}") | {"pad": "z" * 300})
        i += 1
        if i == 100:
            ready.set()


def _bounded_writer(path: str, prefix: str) -> None:
    cache = ResultCache(path, ttl_s=None, max_entries=60)
    bad = 0
    for i in range(200):
        key = f"{prefix}{i}"
        cache.put(key, FP_A, value_for(key))
        got = cache.get(key)
        bad += got is not None and got != value_for(key)
    cache.close()
    sys.exit(min(bad, 100))


def _opener_of_a_corrupt_cache(path: str, start, tag: str) -> None:
    start.wait(60)  # a barrier: all four open the corrupt file at the same moment
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)  # the one that moves the file aside says so
        cache = ResultCache(path, ttl_s=None)
    enabled = cache.enabled
    cache.put_many([(f"{tag}{i}", FP_A, {"i": i}, None) for i in range(200)])
    cache.close()
    sys.exit(0 if enabled else 3)


@pytest.mark.parametrize("round_", range(5))
def test_processes_opening_one_corrupt_cache_lose_no_rows(tmp_path, round_):
    path = tmp_path / "c.sqlite"
    _fill(path, n=300)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # ours (header intact), unreadable
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_opener_of_a_corrupt_cache, args=(str(path), start, t)) for t in "abcd"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 800
    conn.close()
    assert len(list(tmp_path.glob("c.sqlite.corrupt-*"))) == 1  # moved aside once, by one process


def test_processes_respect_bounds(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResultCache(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_bounded_writer, args=(path, p)) for p in ("x", "y", "z")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key, value FROM results").fetchall()
    assert 0 < len(rows) <= 60
    assert all(json.loads(v) == value_for(k) for k, v in rows)


def test_killed_writer_leaves_readable_db(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_endless_writer, args=(path, ready))
    proc.start()
    try:
        assert ready.wait(60), "writer did not start"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    cache = no_warnings(ResultCache, path)  # no corruption warning: nothing moved aside
    s = cache.stats()
    assert 100 <= s.entries <= 500
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for key, value in conn.execute("SELECT key, value FROM results"):
            assert json.loads(value)["check"] == value_for(key)["check"]


def test_threads_share_one_cache(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", ttl_s=None)
    errors: list[str] = []

    def work(t: int) -> None:
        for i in range(100):
            key = f"t{t % 4}-{i}"
            cache.put(key, FP_A, value_for(key))
            if cache.get(key) != value_for(key):
                errors.append(key)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and cache.stats().entries == 400


# -- the classifier and the CLI ---------------------------------------------------------------------


def test_classifier_uses_cache(tiny_bundle, tmp_path):
    path = tmp_path / "c.sqlite"
    clf = load(tiny_bundle.path, backend="onnx", cache=path)
    first = clf.predict("free cash prize")
    assert first.cached is False
    assert clf.predict("  free   cash prize ").cached is False  # texts are keyed as given: a miss, never wrong
    again = clf.predict("free cash prize")
    assert again.cached is True
    assert (again.label, again.scores, again.truncated) == (first.label, first.scores, first.truncated)
    batch = clf.predict_batch(["hello team", "free cash prize", "win money"])
    assert [p.cached for p in batch] == [False, True, False]
    assert [p.label for p in batch] == ["ham", "spam", "spam"]
    clf.cache.flush()  # the classifier defers its writes; another connection sees them after a flush
    # Another backend is another key: the TFLite answers differ slightly and must not be served for ONNX.
    lite = load(tiny_bundle.path, backend="tflite", cache=path)
    assert lite.predict("free cash prize").cached is False
    assert lite.cache.stats().entries == 5


def test_load_purges_other_fingerprints(tiny_bundle, tmp_path):
    path = tmp_path / "c.sqlite"
    ResultCache(path).put("old", FP_B, {"x": 1})
    clf = load(tiny_bundle.path, cache=path)
    assert clf.cache.get("old") is None


def test_load_default_and_disabled_cache(tiny_bundle, private_cache_dir, tmp_path):
    clf = load(tiny_bundle.path)
    assert clf.cache is not None and clf.cache.path == private_cache_dir / "results.sqlite"
    assert load(tiny_bundle.path, cache=False).cache is None
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.warns(CacheWarning):
        clf = load(tiny_bundle.path, cache=tmp_path / "file" / "c.sqlite")
    assert clf.predict("free cash").label == "spam" and clf.predict("free cash").cached is False


def test_cli_cache_stats_and_clear(tiny_bundle, tmp_path, capsys):
    path = str(tmp_path / "c.sqlite")
    assert main(["predict", str(tiny_bundle.path), "free cash", "--cache", path]) == 0
    assert main(["predict", str(tiny_bundle.path), "free cash", "--cache", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])[0]["cached"] is True
    assert main(["cache", "stats", "--cache", path, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
    assert main(["cache", "clear", "--cache", path]) == 0
    assert capsys.readouterr().out == f"cleared 1 entries from {path}\n"
    assert main(["cache", "stats", "--cache", path]) == 0
    assert "entries: 0" in capsys.readouterr().out.splitlines()
    assert main(["predict", str(tiny_bundle.path), "free cash", "--no-cache", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["cached"] is False
