"""Result caches on a Redis or memcached server, shared by every process and box that points at it.

Design choices, and why:

* **Same keys and values as the SQLite cache.** A key is :func:`~edgeopt_runtime.cache.cache_key` (an HMAC of
  fingerprint, options and text under the per-install secret) behind ``edgeopt:<fingerprint[:16]>:``; the value is
  the same JSON object. Two processes with the same secret (by default the key file of the default SQLite cache,
  ``results.sqlite.key``) share answers; boxes that share a server must be given the same secret. Keys carry the
  model fingerprint, so a reloaded model never reads an answer of the old one; old entries simply expire (TTL).
* **The server can never fail a prediction.** Every call has a short socket timeout (0.1 s by default: on a LAN a
  lookup takes well under a millisecond, so anything slower is a server in trouble). An error (refused, timed out,
  reset by a restart) is counted in :attr:`errors`, the lookup is a miss and the answer comes from the model; for
  ``retry_after_s`` (1 s) after an error the server is not asked at all (:attr:`skipped`), so a dead server costs
  one timeout a second, not one per request. Then the client connects again.
* **Writes are sent at once, not deferred** as the SQLite cache's are: another process must see them, and a
  buffered write would be lost with the process. Redis gets one pipelined round trip per batch; memcached gets
  ``noreply`` sets, which do not wait for an answer.
* **No texts are stored**, ever (the SQLite cache's ``store_text`` has no counterpart here).
* Rejected: redis-py's own retries (three by default, with backoff): they multiply a slow server's timeout on the
  request path. pymemcache's ``ignore_exc``: it hides errors that the operator should see as a metric.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from edgeopt_runtime.cache import (
    _ENCODE,
    DEFAULT_TTL_S,
    _decode,
    default_cache_path,
    key_function,
    load_or_create_secret,
    secret_path,
)
from edgeopt_runtime.errors import CacheError

__all__ = [
    "NetworkCache",
    "NetworkCacheStats",
    "RedisCache",
    "MemcachedCache",
    "KEY_NAMESPACE",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_RETRY_AFTER_S",
]

KEY_NAMESPACE = "edgeopt"
DEFAULT_TIMEOUT_S = 0.1
DEFAULT_RETRY_AFTER_S = 1.0
# memcached reads an expiry above 30 days as a Unix time, not as seconds from now.
_MEMCACHED_RELATIVE_LIMIT_S = 30 * 24 * 3600


@dataclass(frozen=True)
class NetworkCacheStats:
    """Counters of this process's use of a network cache.

    Attributes:
        kind: ``"redis"`` or ``"memcached"``.
        address: ``host:port`` (and ``/db`` for Redis) of the server; never a password.
        hits: Lookups answered by the server.
        misses: Lookups the server did not have (or that failed).
        errors: Calls that failed (refused, timed out, reset); each was answered by the model instead.
        skipped: Lookups and writes not sent because the server failed less than ``retry_after_s`` ago.
        available: False while the client is waiting out ``retry_after_s`` after an error.
    """

    kind: str
    address: str
    hits: int
    misses: int
    errors: int
    skipped: int
    available: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


class NetworkCache:
    """What the Redis and memcached caches share: keys, values, TTL, counting and the failure rule.

    Subclasses implement ``_get_many``, ``_set_many`` and ``_close``; any exception they raise is a cache
    error (counted, then treated as a miss), never the caller's.

    Args:
        ttl_s: Seconds an entry stays valid; None for no expiry (the server's own eviction still applies).
        secret: The key of :func:`~edgeopt_runtime.cache.cache_key`, at least 16 bytes. None: the per-install
            secret of the default SQLite cache (made on first use), so that every process of this user on this
            box shares entries. Give every box the same secret to share a server between boxes.
        timeout_s: Socket timeout of each call (connect, read, write).
        retry_after_s: After an error, seconds during which the server is not asked.
        clock: Monotonic time source (tests pass a fake one).

    Raises:
        CacheError: A setting is out of range, or the secret file cannot be read or made.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        *,
        address: str,
        ttl_s: float | None = DEFAULT_TTL_S,
        secret: bytes | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s is not None and not ttl_s > 0:
            raise CacheError(f"ttl_s {ttl_s!r} must be a positive number of seconds or None")
        if not timeout_s > 0:
            raise CacheError(f"timeout_s {timeout_s!r} must be a positive number of seconds")
        if not retry_after_s >= 0:
            raise CacheError(f"retry_after_s {retry_after_s!r} must be zero or a positive number of seconds")
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            raise CacheError("secret must be bytes of length >= 16 (or None for the per-install key file)")
        self.address = address
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._secret = secret if secret is not None else _default_secret()
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "errors": 0, "skipped": 0}
        self._down_until = float("-inf")
        self.last_error: str | None = None

    # -- what subclasses provide ----------------------------------------------------------------------------

    def _get_many(self, keys: list[str]) -> Mapping[str, bytes | str | None]:
        raise NotImplementedError

    def _set_many(self, values: dict[str, str]) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- the ResultStore interface ----------------------------------------------------------------------------

    @property
    def secret(self) -> bytes:
        """The key of every cache key of this cache."""
        return self._secret

    @property
    def errors(self) -> int:
        """Calls to the server that failed in this process."""
        return self._counts["errors"]

    @property
    def skipped(self) -> int:
        """Calls not sent because the server had failed less than ``retry_after_s`` before."""
        return self._counts["skipped"]

    def key_function(self, fingerprint: str, options: Mapping[str, str] | None = None) -> Callable[[str], str]:
        """Return ``text -> key``: ``edgeopt:<fingerprint[:16]>:<cache_key>``."""
        inner = key_function(self._secret, fingerprint, options)
        prefix = f"{KEY_NAMESPACE}:{fingerprint[:16]}:"
        return lambda text: prefix + inner(text)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the value stored under ``key``; None when absent, malformed, or the server failed."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the values found for ``keys`` (one round trip); a failed server finds nothing."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        raw = self._call(lambda: self._get_many(wanted), len(wanted))
        found: dict[str, dict[str, Any]] = {}
        for key, payload in (raw or {}).items():
            if payload is None:
                continue
            try:
                value = _decode(payload)
            except (ValueError, TypeError):  # written by a broken client: a miss, never a crash
                continue
            if isinstance(value, dict):
                found[key] = value
        with self._lock:
            self._counts["hits"] += len(found)
            self._counts["misses"] += len(wanted) - len(found)
        return found

    def put(self, key: str, fingerprint: str, value: Mapping[str, Any], text: str | None = None) -> None:
        """Store one value (see :meth:`put_many`)."""
        self.put_many(((key, fingerprint, value, text),))

    def put_many(self, items: Iterable[tuple[str, str, Mapping[str, Any], str | None]], *, defer: bool = False) -> None:
        """Send values to the server now, with the TTL; texts are never sent.

        ``defer`` is accepted for the SQLite cache's interface and ignored: a network write is sent at once so
        that other processes see it. A failed write is counted and dropped.
        """
        values = {key: _ENCODE(value) for key, _fingerprint, value, _text in items}
        if values:
            self._call(lambda: self._set_many(values), len(values))

    def keep_only(self, fingerprint: str) -> int:
        """Do nothing and return 0.

        Keys carry their fingerprint, so other models' entries are never read and expire by TTL (a shared
        server may still serve processes of the other model).
        """
        return 0

    def flush(self) -> None:
        """Do nothing: writes are never buffered."""

    def close(self) -> None:
        """Close the connection(s) to the server."""
        try:
            self._close()
        except Exception:  # closing a connection to a dead server: nothing to report
            pass

    def stats(self) -> NetworkCacheStats:
        """Return this process's counters."""
        with self._lock:
            counts = dict(self._counts)
            available = self._clock() >= self._down_until
        return NetworkCacheStats(kind=self.kind, address=self.address, available=available, **counts)

    def __enter__(self) -> NetworkCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"

    # -- the failure rule -------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], n: int) -> Any:
        now = self._clock()
        with self._lock:
            if now < self._down_until:
                self._counts["skipped"] += n
                return None
        try:
            return fn()
        except Exception as exc:  # any client error: the prediction goes on without the cache
            with self._lock:
                self._counts["errors"] += 1
                self._down_until = self._clock() + self.retry_after_s
                self.last_error = f"{type(exc).__name__}: {exc}"
            return None


class RedisCache(NetworkCache):
    """A result cache on a Redis server: ``RedisCache("redis://127.0.0.1:6379/0")``.

    Needs ``pip install 'edgeopt-runtime[serve]'`` (redis-py). A password goes in the URL
    (``redis://:PASSWORD@host:6379/0``) and is never shown in :attr:`address`. Other arguments are those of
    :class:`NetworkCache`.

    Raises:
        CacheError: The URL is not a ``redis://`` URL, redis-py is not installed, or a setting is invalid.
    """

    kind: ClassVar[str] = "redis"

    def __init__(self, url: str, **settings: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise CacheError(f"cache URL {url!r} is not redis://HOST[:PORT][/DB]")
        try:
            db = int(parts.path.strip("/") or 0)
            port = parts.port or 6379
        except ValueError:
            raise CacheError(f"cache URL {url!r} has a port or database that is not a number") from None
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise _missing_client("redis", "redis-py") from None
        super().__init__(address=f"{parts.hostname}:{port}/{db}", **settings)
        self._client = redis.Redis(
            host=parts.hostname,
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def _get_many(self, keys: list[str]) -> Mapping[str, bytes | str | None]:
        return dict(zip(keys, self._client.mget(keys), strict=True))

    def _set_many(self, values: dict[str, str]) -> None:
        pipe = self._client.pipeline(transaction=False)
        ttl_ms = None if self.ttl_s is None else max(1, math.ceil(self.ttl_s * 1000))
        for key, value in values.items():
            pipe.set(key, value, px=ttl_ms)
        pipe.execute()

    def _close(self) -> None:
        self._client.close()

    def invalidate(self, fingerprint: str | None = None) -> int:
        """Delete the entries of one model fingerprint (all of edgeopt's when None); return how many.

        Raises:
            CacheError: The server cannot be reached.
        """
        pattern = f"{KEY_NAMESPACE}:{'*' if fingerprint is None else fingerprint[:16] + ':*'}"
        try:
            deleted = 0
            for batch in _chunks(self._client.scan_iter(match=pattern, count=500), 500):
                deleted += int(self._client.delete(*batch))
            return deleted
        except Exception as exc:
            raise CacheError(f"cannot invalidate entries on redis {self.address}: {exc}") from exc


class MemcachedCache(NetworkCache):
    """A result cache on a memcached server: ``MemcachedCache("memcached://127.0.0.1:11211")``.

    Needs ``pip install 'edgeopt-runtime[serve]'`` (pymemcache). Other arguments are those of
    :class:`NetworkCache`. memcached cannot list keys, so there is no ``invalidate``: entries of an old model
    expire by TTL and are never read (the key carries the fingerprint).

    Raises:
        CacheError: The URL is not a ``memcached://`` URL, pymemcache is not installed, or a setting is invalid.
    """

    kind: ClassVar[str] = "memcached"

    def __init__(self, url: str, **settings: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme != "memcached" or not parts.hostname or parts.path.strip("/"):
            raise CacheError(f"cache URL {url!r} is not memcached://HOST[:PORT]")
        try:
            port = parts.port or 11211
        except ValueError:
            raise CacheError(f"cache URL {url!r} has a port that is not a number") from None
        try:
            from pymemcache.client.base import PooledClient
        except ImportError:
            raise _missing_client("memcached", "pymemcache") from None
        super().__init__(address=f"{parts.hostname}:{port}", **settings)
        self._client = PooledClient(
            (parts.hostname, port),
            connect_timeout=self.timeout_s,
            timeout=self.timeout_s,
            no_delay=True,
            default_noreply=True,
        )

    def _expire(self) -> int:
        if self.ttl_s is None:
            return 0
        seconds = max(1, math.ceil(self.ttl_s))
        return seconds if seconds <= _MEMCACHED_RELATIVE_LIMIT_S else int(time.time()) + seconds

    def _get_many(self, keys: list[str]) -> Mapping[str, bytes | str | None]:
        return self._client.get_many(keys)  # type: ignore[no-any-return]

    def _set_many(self, values: dict[str, str]) -> None:
        self._client.set_many({k: v.encode("utf-8") for k, v in values.items()}, expire=self._expire())

    def _close(self) -> None:
        self._client.close()


def _default_secret() -> bytes:
    """The per-install secret of the default SQLite cache, its directory made if this is the first cache here."""
    path = secret_path(default_cache_path())
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CacheError(f"cannot create the cache directory {path.parent} ({exc.strerror or exc})") from exc
    return load_or_create_secret(path)


def _missing_client(scheme: str, package: str) -> CacheError:
    return CacheError(
        f"a {scheme}:// cache needs {package}, which is not installed: pip install 'edgeopt-runtime[serve]'"
    )


def _chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def open_network_cache(url: str, **settings: Any) -> NetworkCache:
    """Return a :class:`RedisCache` or :class:`MemcachedCache` for a ``redis://`` or ``memcached://`` URL.

    Raises:
        CacheError: Another scheme, or the cache cannot be made.
    """
    scheme = urlsplit(url).scheme
    if scheme == "redis":
        return RedisCache(url, **settings)
    if scheme == "memcached":
        return MemcachedCache(url, **settings)
    raise CacheError(f"cache URL {url!r} is not redis://HOST:PORT/DB or memcached://HOST:PORT")
