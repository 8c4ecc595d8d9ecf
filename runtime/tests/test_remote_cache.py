"""The Redis and memcached result caches, against real servers started on free loopback ports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import LocalServer, free_port, memcached_server, redis_server

from edgeopt_runtime import load_classifier, open_cache
from edgeopt_runtime.cache import ResultCache, cache_key
from edgeopt_runtime.errors import CacheError
from edgeopt_runtime.remote_cache import MemcachedCache, NetworkCache, RedisCache
from edgeopt_runtime_fixtures import TinyBundle

SECRET = b"s" * 32
FP = "f" * 64


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = redis_server(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = memcached_server(tmp_path_factory.mktemp("memcached")).start()
    yield server
    server.stop()


@pytest.fixture(params=["redis", "memcached"])
def url(request: pytest.FixtureRequest) -> str:
    server: LocalServer = request.getfixturevalue(request.param)
    if server.process is None:  # a test below killed it: bring it back for the next one
        server.start()
    return f"redis://127.0.0.1:{server.port}/0" if request.param == "redis" else f"memcached://127.0.0.1:{server.port}"


def test_values_round_trip_under_the_sqlite_cache_keys(url: str, tmp_path: Path) -> None:
    cache = open_cache(url)
    assert isinstance(cache, RedisCache | MemcachedCache)
    remote = type(cache)(url, secret=SECRET)
    key = remote.key_function(FP, {"backend": "onnx"})("free cash")
    # The same HMAC as the SQLite cache, behind a namespace and the fingerprint.
    assert key == f"edgeopt:{FP[:16]}:" + cache_key(SECRET, FP, "free cash", {"backend": "onnx"})
    value = {"label": "spam", "score": 0.9, "scores": {"ham": 0.1, "spam": 0.9}, "truncated": False}
    remote.put_many([(key, FP, value, "free cash")])
    assert remote.get(key) == value
    assert remote.get_many([key, key + "x"]) == {key: value}
    stats = remote.stats()
    assert (stats.hits, stats.misses, stats.errors, stats.available) == (2, 1, 0, True)
    remote.close()
    cache.close()


def test_two_processes_share_answers(url: str, tiny_bundle: TinyBundle) -> None:
    text = "win a free prize now"
    with load_classifier(tiny_bundle.path, backend="onnx", cache=url) as first:
        assert first.predict(text).cached is False
    # Another process, same user and box: same secret file, same keys, so it answers from the server.
    code = (
        "import json, sys; from edgeopt_runtime import load_classifier\n"
        f"clf = load_classifier({str(tiny_bundle.path)!r}, backend='onnx', cache={url!r})\n"
        f"p = clf.predict({text!r}); print(json.dumps([p.cached, p.label]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cached, label = json.loads(out.stdout)
    assert cached is True
    with load_classifier(tiny_bundle.path, backend="onnx", cache=False) as plain:
        assert label == plain.predict(text).label


def test_ttl_is_honoured(url: str) -> None:
    cache = open_cache(url)
    assert isinstance(cache, NetworkCache)
    short = type(cache)(url, secret=SECRET, ttl_s=1.0)
    key = short.key_function(FP)(f"expires {time.time()}")
    short.put_many([(key, FP, {"v": 1}, None)])
    assert short.get(key) == {"v": 1}
    time.sleep(2.1)  # memcached counts whole seconds
    assert short.get(key) is None
    short.close()
    cache.close()


def test_a_dead_server_never_fails_a_prediction_and_the_client_reconnects(
    url: str, tiny_bundle: TinyBundle, request: pytest.FixtureRequest
) -> None:
    server: LocalServer = request.getfixturevalue("redis" if url.startswith("redis") else "memcached")
    clock = [0.0]
    cache = open_cache(url)
    assert isinstance(cache, NetworkCache)
    remote = type(cache)(url, secret=SECRET, retry_after_s=5.0, clock=lambda: clock[0])
    with load_classifier(tiny_bundle.path, backend="onnx", cache=remote) as clf:
        expected = clf.predict("cheap pills online").label
        server.kill()
        for i in range(5):  # down: answered by the model; one error, then the client does not ask for 5 s
            p = clf.predict(f"hello {i} friend")
            assert p.cached is False and p.label in clf.labels
        stats = remote.stats()
        assert stats.errors == 1 and stats.skipped >= 4 and not stats.available
        server.start()  # restarted, empty
        clock[0] += 5.0
        assert clf.predict("cheap pills online").label == expected  # asks again: a miss, stored
        assert clf.predict("cheap pills online").cached is True
        assert remote.stats().errors == 1
    cache.close()


def test_a_slow_server_costs_one_timeout(tmp_path: Path, tiny_bundle: TinyBundle) -> None:
    # A socket that accepts and never answers: the lookup times out after timeout_s, once.
    import socket

    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    try:
        remote = RedisCache(f"redis://127.0.0.1:{port}/0", secret=SECRET, timeout_s=0.05)
        with load_classifier(tiny_bundle.path, backend="onnx", cache=remote) as clf:
            start = time.perf_counter()
            for i in range(20):
                assert clf.predict(f"slow {i}").cached is False
            elapsed = time.perf_counter() - start
        assert remote.errors == 1 and remote.skipped == 19 + 20  # lookups after the first, and every write
        assert elapsed < 1.0, elapsed
    finally:
        listener.close()


def test_redis_invalidate_deletes_one_models_entries(redis: LocalServer) -> None:
    if redis.process is None:
        redis.start()
    remote = RedisCache(f"redis://127.0.0.1:{redis.port}/1", secret=SECRET)
    for fp in (FP, "e" * 64):
        key_of = remote.key_function(fp)
        remote.put_many([(key_of(f"t{i}"), fp, {"i": i}, None) for i in range(3)])
    assert remote.invalidate(FP) == 3
    assert remote.get(remote.key_function(FP)("t0")) is None
    assert remote.get(remote.key_function("e" * 64)("t0")) == {"i": 0}
    assert remote.invalidate() == 3
    remote.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("redis://", "cache URL 'redis://' is not redis://HOST[:PORT][/DB]"),
        ("redis://h:1/x", "cache URL 'redis://h:1/x' has a port or database that is not a number"),
        ("memcached://h:1/3", "cache URL 'memcached://h:1/3' is not memcached://HOST[:PORT]"),
        ("mongodb://h", "cache URL 'mongodb://h' is not redis://HOST:PORT/DB or memcached://HOST:PORT"),
    ],
)
def test_bad_cache_urls_name_the_fix(spec: str, message: str) -> None:
    with pytest.raises(CacheError) as info:
        open_cache(spec)
    assert str(info.value) == message


def test_sqlite_specs_open_the_file_cache(tmp_path: Path) -> None:
    for spec in (f"sqlite:{tmp_path / 'a.sqlite'}", str(tmp_path / "b.sqlite")):
        cache = open_cache(spec)
        assert isinstance(cache, ResultCache) and cache.kind == "sqlite"
        cache.close()


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [("redis://127.0.0.1:1/0", "redis", "redis-py"), ("memcached://127.0.0.1:1", "pymemcache", "pymemcache")],
)
def test_a_missing_client_names_the_extra(url: str, module: str, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # None blocks the import, as if it were not installed
    with pytest.raises(CacheError) as info:
        open_cache(url)
    scheme = url.split(":", 1)[0]
    assert str(info.value) == (
        f"a {scheme}:// cache needs {package}, which is not installed: pip install 'edgeopt-runtime[serve]'"
    )


def test_the_first_cache_on_a_box_makes_the_key_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis: LocalServer
) -> None:
    if redis.process is None:
        redis.start()
    fresh = tmp_path / "new" / "cache-dir"
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(fresh))
    cache = open_cache(f"redis://127.0.0.1:{redis.port}/0")
    assert (fresh / "results.sqlite.key").is_file()
    assert oct((fresh / "results.sqlite.key").stat().st_mode & 0o777) == "0o600"
    cache.close()
