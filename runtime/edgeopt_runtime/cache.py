"""A persistent result cache in SQLite, shared safely by threads and processes.

Design choices, and why:

* **One SQLite file, WAL journal, ``BEGIN IMMEDIATE`` for every write.** WAL lets readers run beside a
  writer; taking the write lock up front (instead of upgrading a read lock) avoids the ``SQLITE_BUSY``
  deadlock two upgrading processes can hit. ``busy_timeout`` makes a second writer wait instead of failing.
* **A hit is one read statement, not a write.** An earlier version refreshed ``last_used`` and the hit
  counter in a write transaction on every hit: about 25 us and a lock shared by every process, four times
  python-diskcache's ``get``. Now a lookup is a single ``SELECT`` (a consistent snapshot in WAL mode, so
  never a torn row), and the ``last_used`` refreshes, hit/miss counts and deletions of expired rows it finds
  are kept in memory and written in one transaction with the next write of this process, or once 256 are
  pending, or one second after the first, or at :meth:`ResultCache.close` / interpreter exit. The cost: LRU
  order and the shared counters may lag by up to a second, and a process killed (or ended with
  ``os._exit``) loses its last unwritten counts; stored entries are never affected.
* **A result is stored after the answer, not before.** A synchronous commit costs ~25 us: a quarter of
  the latency of a small model, for a miss. The classifier stores with ``put_many(defer=True)``: the values
  are kept in memory (this process reads them at once), JSON-encoded only then, and written in one
  transaction with the buffered lookups above (64 rows, one second, or close/exit). A process killed loses
  at most those rows: cache entries, recomputed on the next miss; a row is never half written. Plain
  :meth:`ResultCache.put` still commits before it returns.
* **Bounds are checked without a table scan on every write.** ``count(*)`` / ``sum(size)`` over the table
  cost O(entries) per write. The cache keeps the totals it last counted and adds what it inserts (a
  replaced row is counted twice, so the estimate is never below the truth); ``PRAGMA data_version`` tells
  it when another connection has written, and then it counts again. Only when the estimate passes a bound
  does it count exactly and evict. Expired rows are purged on that path and at most once a minute otherwise
  (an expired row is a miss whether purged or not).
* **Values are JSON, never pickle**: a cache file is data another app (the Android client) may share, and
  unpickling a file is running code.
* **Texts are not stored** unless ``store_text=True``, and the key is an HMAC of the text under a random
  per-install secret kept beside the file (``<cache>.key``, mode 0600): a copied cache file alone neither says
  what users typed nor lets anyone confirm a guessed text. What it does say is in runtime/README.md.
* **The cache must never break a prediction**: an unreadable or corrupt file is moved aside and rebuilt; a
  location that cannot be written disables the cache with a :class:`CacheWarning`; an SQLite error later on
  is warned about once and treated as a miss.

The schema, the key and the value format are documented in ``runtime/README.md``.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from edgeopt_runtime.errors import CacheError

__all__ = [
    "CACHE_SCHEMA_VERSION",
    "CACHE_FILE_NAME",
    "CACHE_DIR_ENV",
    "CacheWarning",
    "CacheStats",
    "ResultCache",
    "ResultStore",
    "default_cache_path",
    "cache_key",
    "key_function",
    "secret_path",
    "load_or_create_secret",
    "migrate",
]

logger = logging.getLogger(__name__)

CACHE_SCHEMA_VERSION = 1
CACHE_APPLICATION_ID = 0x65646F70
"""``PRAGMA application_id`` of every edgeopt cache file ("edop" in ASCII): how the cache tells its own files from
everything else it could be pointed at (see :func:`foreign_file_reason`)."""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OUR_TABLES = frozenset({"results", "counters"})
CACHE_FILE_NAME = "results.sqlite"
CACHE_DIR_ENV = "EDGEOPT_CACHE_DIR"
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_TTL_S = 7 * 24 * 3600.0
_BUSY_TIMEOUT_MS = 10_000
_COUNTERS = ("hits", "misses", "evictions")
# Lookups buffered before their last_used / counter updates are written (see the module docstring).
_FLUSH_PENDING = 256
# Deferred entries (put_many(defer=True)) buffered before they are written.
_FLUSH_ROWS = 64
_FLUSH_AFTER_S = 1.0
_PURGE_EXPIRED_EVERY_S = 60.0
# Keys per SELECT ... IN (...): far below SQLite's variable limit (32766 since 3.32, 999 before).
_CHUNK = 500
_INSERT = (
    "INSERT OR REPLACE INTO results"
    "(key, fingerprint, value, text, size, created_at, expires_at, last_used) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


# This process's id, kept current in a forked child by the hook below: os.getpid() is a system call, and a
# lookup checks it every time (a connection must not cross fork()).
_PID = os.getpid()


def _after_fork_in_child() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)

_DECODER = json.JSONDecoder()
# One encoder for every write: json.dumps with options builds a new JSONEncoder per call (~2 us).
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def _decode(value: str | bytes) -> Any:
    """Parse a stored JSON value; like ``json.loads`` but ~0.8 us faster on the hit path."""
    # json.loads runs two whitespace regexes around raw_decode; our values have no surrounding whitespace.
    if isinstance(value, str):
        try:
            obj, end = _DECODER.raw_decode(value)
        except ValueError:
            pass  # leading whitespace or invalid: json.loads below decides
        else:
            if end == len(value) or not value[end:].strip(" \t\n\r"):
                return obj
    return json.loads(value)


# A results row: key, fingerprint, value, text, size, created_at, expires_at, last_used.
_Row = tuple[str, str, str, str | None, int, float, float | None, float]
# An entry put with defer=True, JSON-encoded only when written or read: fingerprint, value, text, created_at,
# expires_at.
_Deferred = tuple[str, Mapping[str, Any], str | None, float, float | None]


class CacheWarning(UserWarning):
    """The cache could not be used as asked (disabled, rebuilt, or an SQLite error); predictions go on."""


@dataclass(frozen=True)
class CacheStats:
    """Counters and size of a cache file.

    Attributes:
        path: The database file.
        enabled: False when the cache was disabled (see :class:`CacheWarning`).
        hits: Lookups answered from the cache (all processes, since the last :meth:`ResultCache.clear`).
        misses: Lookups not found or expired.
        evictions: Entries removed to respect ``max_entries`` / ``max_bytes``.
        entries: Entries stored now.
        bytes: Payload bytes stored now (key + value + text), the quantity ``max_bytes`` bounds.
        file_bytes: Size on disk of the database and its WAL file.
        hit_latency_ms: Mean lookup time of hits in this process, None before the first hit.
    """

    path: str
    enabled: bool
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    file_bytes: int
    hit_latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


def default_cache_path() -> Path:
    """Return ``$EDGEOPT_CACHE_DIR/results.sqlite``, else ``<user cache dir>/edgeopt/results.sqlite``."""
    base = os.environ.get(CACHE_DIR_ENV)
    if not base:
        from platformdirs import user_cache_dir

        base = user_cache_dir("edgeopt")
    return Path(base) / CACHE_FILE_NAME


KEY_DOMAIN = b"edgeopt-cache-key/2\n"
"""The first bytes every key hashes: a key of another format (or another use of the secret) cannot collide."""
SECRET_BYTES = 32
SECRET_SUFFIX = ".key"
"""The per-install secret lives in ``<cache file><SECRET_SUFFIX>`` (``results.sqlite.key``), mode 0600."""


def _key_prefix(fingerprint: str, options: Mapping[str, str] | None) -> bytes:
    opts = ";".join(f"{k}={v}" for k, v in sorted((options or {}).items()))
    return KEY_DOMAIN + f"{fingerprint}\n{opts}\n".encode("utf-8", "surrogatepass")


def cache_key(secret: bytes, fingerprint: str, text: str, options: Mapping[str, str] | None = None) -> str:
    r"""Return the cache key of one text: HMAC-SHA256 hex under the per-install ``secret``.

    The text is keyed exactly as given (after :func:`~edgeopt_runtime.tokenizer.clean_text`, which the
    classifier applies first), with no normalization: equal keys mean equal texts, and the tokenizer gives equal
    texts equal model inputs, so one text can never be answered with another's result. An earlier key collapsed
    whitespace with ``str.split``, which splits on ``\x1c``-``\x1f`` where the BERT normalizer deletes them:
    ``"free\x1ccash"`` (one word to the model) got the cached answer of ``"free cash"``. Rejected: keying on the
    token ids, which is exact and lets whitespace variants share an entry, but makes every hit pay a
    tokenization: on the default bundle a hit then cost 0.67 ms against 0.83 ms for the LiteRT model itself
    (bench/results/runtime-key-change/token-ids-894dbe7.md), so the cache saved little; keyed on the text a
    hit is a hash and one ``SELECT``. Texts that differ only in ways the model ignores (whitespace runs, case)
    get separate entries: a missed hit, never a wrong answer.

    The HMAC message is ``KEY_DOMAIN + fingerprint \n options \n text`` in UTF-8 (lone surrogates passed
    through). Without the secret, a copied cache file cannot be searched for a guessed text.

    Args:
        secret: The per-install key (:attr:`ResultCache.secret`).
        fingerprint: The bundle fingerprint (it covers model, tokenizer, labels and sequence length).
        text: The text as the model's tokenizer gets it.
        options: Settings besides the bundle that change the answer (backend, artifact); serialized as
            ``k=v`` pairs sorted by key and joined with ``;``.

    Returns:
        64 lowercase hex characters.
    """
    return key_function(secret, fingerprint, options)(text)


def key_function(secret: bytes, fingerprint: str, options: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """Return ``text -> cache_key(secret, fingerprint, text, options)`` for many texts of one model.

    The secret, fingerprint and options are hashed once: each key then costs its own text's bytes only.
    """
    prefix = hmac.new(secret, _key_prefix(fingerprint, options), hashlib.sha256)

    def key(text: str) -> str:
        digest = prefix.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    return key


def secret_path(cache_path: str | os.PathLike[str]) -> Path:
    """Return where the secret of the cache file ``cache_path`` is kept: ``<cache_path>.key``."""
    return Path(f"{os.fspath(cache_path)}{SECRET_SUFFIX}")


def _read_secret(path: Path) -> bytes | None:
    """Return the secret in ``path``, None when there is none; refuse a file that is not an owner-only key."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise CacheError(f"key file {path} is a symbolic link; remove it, a new key is made") from exc
        raise CacheError(f"cannot read key file {path} ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CacheError(f"key file {path} is a {_kind_of(info.st_mode)}, not a key; remove it, a new key is made")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise CacheError(
                f"key file {path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}); "
                "point the cache at a file of your own"
            )
        if os.name == "posix" and info.st_mode & 0o077:
            raise CacheError(
                f"key file {path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"chmod 600 {path} if only you ever had it, else remove it (a new key is made)"
            )
        secret = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(secret) != SECRET_BYTES:
        raise CacheError(
            f"key file {path} holds {len(secret)} bytes, not a {SECRET_BYTES}-byte edgeopt cache key; "
            "remove it, a new key is made"
        )
    return secret


def load_or_create_secret(path: str | os.PathLike[str]) -> bytes:
    """Return the key in ``path``, or a new random one written there (mode 0600).

    A new key is written to a temporary file and published with ``link()``, which fails when the name exists:
    of two processes creating it at once, both end up with the one that was linked first.

    Raises:
        CacheError: ``path`` is not an owner-only 32-byte key file (left as it is), or cannot be written.
    """
    target = Path(path)
    found = _read_secret(target)
    if found is not None:
        return found
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(SECRET_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, target)
        except FileExistsError:
            pass  # another process made it first: use theirs
    except OSError as exc:
        raise CacheError(f"cannot write key file {target} ({exc.strerror or exc})") from exc
    finally:
        temp.unlink(missing_ok=True)
    secret = _read_secret(target)
    if secret is None:
        raise CacheError(f"key file {target} vanished while it was made; try again")
    return secret


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE results (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            value TEXT NOT NULL,
            text TEXT,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used REAL NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX results_last_used ON results(last_used)")
    conn.execute("CREATE INDEX results_fingerprint ON results(fingerprint)")
    conn.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.executemany("INSERT INTO counters(name, value) VALUES (?, 0)", [(c,) for c in _COUNTERS])


# Step i turns schema version i into i + 1; a new schema appends a step and bumps CACHE_SCHEMA_VERSION.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def foreign_file_reason(path: Path) -> str | None:
    """Why ``path`` is not a file the cache may open, change, quarantine or recreate; None when it may.

    The cache's own files are: a path that does not exist yet, an empty regular file, and an SQLite database whose
    ``application_id`` is :data:`CACHE_APPLICATION_ID`, or (files from before the id) is 0 with no tables but the
    cache's. Everything else (devices, pipes, directories, other applications' databases, any other non-empty
    file) is someone else's: it is only ever looked at, never written, renamed or chmod-ed.
    """
    try:
        info = os.stat(path)  # follows a symlink: what matters is the file written through it
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is a {_kind_of(info.st_mode)}, not a cache file"
    if info.st_size == 0:
        return None
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:  # moved aside by another process a moment ago
        return None
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 72:
        return f"{path} is not an edgeopt cache (a {info.st_size:,}-byte file that is not an SQLite database)"
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == CACHE_APPLICATION_ID:
        return None
    if application_id != 0:
        return f"{path} is another application's SQLite database (application_id {application_id:#x})"
    try:
        # immutable: no locks and no -wal/-shm files made beside someone else's database.
        reader = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            tables = {row[0] for row in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            reader.close()
    except sqlite3.Error as exc:
        return f"{path} is an SQLite database this cache cannot prove is its own ({exc})"
    if tables <= _OUR_TABLES:
        return None
    shown = ", ".join(sorted(tables - _OUR_TABLES)[:3])
    return f"{path} is another application's SQLite database (it has tables {shown})"


def migrate(conn: sqlite3.Connection) -> int:
    """Bring a cache database to :data:`CACHE_SCHEMA_VERSION` (``PRAGMA user_version``), in one transaction.

    Args:
        conn: A connection in autocommit mode (``isolation_level=None``).

    Returns:
        The schema version found before migrating (0 for a new file).

    Raises:
        CacheError: The file was written by a newer runtime (``user_version`` above this runtime's).
        sqlite3.DatabaseError: ``user_version`` is negative (a damaged file; the cache moves it aside).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found < 0:
            # No edgeopt writes one (bench/fuzz_runtime.py found it: a flipped header byte): our file, damaged.
            raise sqlite3.DatabaseError(f"user_version {found} is not a cache schema version")
        if found > CACHE_SCHEMA_VERSION:
            raise CacheError(
                f"cache schema version {found} is newer than this edgeopt-runtime reads "
                f"({CACHE_SCHEMA_VERSION}); "
                "upgrade edgeopt-runtime or use another cache file"
            )
        for version in range(found, CACHE_SCHEMA_VERSION):
            _MIGRATIONS[version](conn)
        # PRAGMA takes no parameters; the values are our own integer constants.
        conn.execute(f"PRAGMA user_version = {CACHE_SCHEMA_VERSION}")
        conn.execute(f"PRAGMA application_id = {CACHE_APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(found)


class ResultStore(Protocol):
    """What a classifier or embedder needs of a result cache.

    :class:`ResultCache` (SQLite, this box) and :class:`~edgeopt_runtime.remote_cache.RedisCache` /
    ``MemcachedCache`` (a server shared by many processes) provide it.
    """

    kind: ClassVar[str]

    @property
    def errors(self) -> int:
        """Failed calls of this process (each was answered without the cache)."""
        ...

    def key_function(self, fingerprint: str, options: Mapping[str, str] | None = None) -> Callable[[str], str]:
        """Return ``text -> key`` for one model and its options."""
        ...

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the value of ``key``, None when there is none (or the cache failed)."""
        ...

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the values of the keys that are present."""
        ...

    def put_many(self, items: Iterable[tuple[str, str, Mapping[str, Any], str | None]], *, defer: bool = False) -> None:
        """Store ``(key, fingerprint, value, text)`` items."""
        ...

    def keep_only(self, fingerprint: str) -> int:
        """Drop the entries of other fingerprints where the store can; return how many."""
        ...

    def flush(self) -> None:
        """Write whatever is buffered."""
        ...

    def close(self) -> None:
        """Release the store; it must not be used afterwards."""
        ...


class ResultCache:
    """An SQLite cache of predictions keyed by (model fingerprint, text, options) under a secret.

    Lookups read only; the ``last_used`` refreshes and hit/miss counts they cause are buffered and written
    with the next write (see the module docstring), so :meth:`stats` of *another* process may lag by up to
    a second. Call :meth:`flush` or :meth:`close` to write them now.

    Args:
        path: Database file; None for :func:`default_cache_path`.
        max_entries: Most entries kept; the least recently used go first.
        max_bytes: Most payload bytes kept (key + value + text); the least recently used go first.
        ttl_s: Seconds an entry stays valid; None for no expiry.
        store_text: Also store the text (off by default: keys are keyed hashes).
        clock: Time source in seconds (tests pass a fake one).
        secret: The key of :func:`cache_key` (at least 16 bytes). None: the per-install secret in
            ``<path>.key`` (:func:`secret_path`), made on first use. Pass one to share a cache file between
            installs on purpose.

    Raises:
        CacheError: A bound is not a positive number, or ``secret`` is shorter than 16 bytes.
    """

    kind: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl_s: float | None = DEFAULT_TTL_S,
        store_text: bool = False,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            raise CacheError("secret must be bytes of length >= 16 (or None for the per-install key file)")
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CacheError(f"{name} {value!r} must be a positive integer")
        if ttl_s is not None and not ttl_s > 0:
            raise CacheError(f"ttl_s {ttl_s!r} must be a positive number of seconds or None")
        self.path = Path(path) if path is not None else default_cache_path()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.store_text = store_text
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._enabled = True
        self._warned_runtime_error = False
        self._errors = 0
        self._hit_ms_total = 0.0
        self._hit_count = 0
        self._reset_pending()
        self._totals: list[int] | None = None
        self._disabled_reason = ""
        self._data_version = -1
        self._last_purge = float("-inf")
        self._secret_given = secret is not None
        # A disabled cache stores nothing; its keys are still computed (and never match anything).
        self._secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        self._open()
        _OPEN_CACHES.add(self)

    # -- opening, corruption, permissions -------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False when the cache was disabled because its location cannot be written."""
        return self._enabled

    @property
    def errors(self) -> int:
        """SQLite errors met by this process after opening (each lookup or write that failed was skipped)."""
        return self._errors

    @property
    def disabled_reason(self) -> str | None:
        """Why the cache was disabled (the :class:`CacheWarning` message), or None while it is enabled."""
        return None if self._enabled else self._disabled_reason

    def _disable(self, reason: str) -> None:
        self._disabled_reason = reason
        self._enabled = False
        self._close()
        warnings.warn(f"result cache disabled: {reason}", CacheWarning, stacklevel=3)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        # Create the file ourselves with 0600, so it is never readable by others, not even for a moment.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {result}")
            migrate(conn)
        except UnicodeDecodeError as exc:
            # SQLite quoting a damaged schema in its error message (bench/fuzz_runtime.py found it): corruption.
            conn.close()
            raise sqlite3.DatabaseError(f"the file holds text that is not UTF-8 ({exc.reason})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_locked(self) -> sqlite3.Connection:
        """Open the file under a shared lock; repair an unreadable one under an exclusive lock.

        Without the lock, two processes that both found the file unreadable each moved it aside: the second
        moved away (and deleted the WAL of) the database the first had just rebuilt and written to, and one that
        opened the file while it was moved found it gone. Every open holds a shared ``flock`` on a sidecar file
        (``<cache>.lock``), so no file is moved aside while anyone opens it; a process that finds the file
        unreadable (or locked mid-rebuild) takes the lock exclusively, tries again (another process may have
        rebuilt it meanwhile) and only then moves it aside. Being locked is never taken for corruption.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock; recover without it
            return self._connect_or_move_aside()
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                return self._connect()
            except sqlite3.DatabaseError:
                # flock converts by releasing and re-taking, so two converting processes cannot deadlock.
                fcntl.flock(fd, fcntl.LOCK_EX)
            return self._connect_or_move_aside()
        finally:
            os.close(fd)  # releases the lock

    def _connect_or_move_aside(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.OperationalError:
            raise  # locked or cannot open: not evidence of corruption
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            return self._connect()

    def _move_aside(self, error: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
        except FileNotFoundError:
            pass  # another process moved it first
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        warnings.warn(
            f"result cache {self.path} was unreadable ({error}); moved it to {target.name} and started a new one",
            CacheWarning,
            stacklevel=4,
        )

    def _open(self) -> None:
        self._pid = _PID
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._disable(f"cannot create {self.path.parent} ({exc.strerror or exc})")
            return
        try:
            reason = foreign_file_reason(self.path)
            if reason is not None:  # checked before the lock file is made: nothing is created beside it either
                raise CacheError(f"{reason}; left as it was: point the cache at a new file or an edgeopt cache")
            self._conn = self._connect_locked()
            if not self._secret_given:
                # Entries keyed with a secret that is gone are never found again and age out (LRU, TTL). They
                # are not deleted when a new key is made: a process that read the new key an instant after it
                # was linked may already have stored rows under it.
                self._secret = load_or_create_secret(secret_path(self.path))
        except CacheError as exc:
            self._disable(str(exc))
        except (OSError, sqlite3.Error) as exc:
            self._disable(f"cannot write {self.path} ({exc})")

    def _connection(self) -> sqlite3.Connection | None:
        if not self._enabled:
            return None
        if self._pid != _PID:
            # A connection must not cross fork(); the child opens its own, and the parent's buffered
            # counts stay the parent's to write.
            self._conn = None
            self._reset_pending()
            self._totals = None
            self._open()
        return self._conn

    def _runtime_error(self, exc: sqlite3.Error) -> None:
        self._errors += 1
        if not self._warned_runtime_error:
            self._warned_runtime_error = True
            warnings.warn(f"result cache {self.path}: {exc}; continuing without it", CacheWarning, stacklevel=4)

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run buffered updates and ``fn`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``.

        On an SQLite error: warn once, drop the buffered updates and return None.
        """
        with self._lock:
            conn = self._connection()
            if conn is None:
                return None
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._apply_pending(conn)
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    self._totals = None  # the estimate may include rows that were rolled back
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.Error as exc:
                self._runtime_error(exc)
                return None

    # -- buffered effects of lookups ------------------------------------------------------------------------

    def _reset_pending(self) -> None:
        self._deferred: dict[str, _Deferred] = {}
        self._touched: dict[str, float] = {}
        self._expired: set[str] = set()
        self._pending_hits = 0
        self._pending_misses = 0
        self._pending_since: float | None = None

    def _apply_pending(self, conn: sqlite3.Connection) -> None:
        deferred, touched, expired = self._deferred, self._touched, self._expired
        hits, misses = self._pending_hits, self._pending_misses
        self._reset_pending()
        rows = [row for key, entry in deferred.items() if (row := self._deferred_row(key, entry)) is not None]
        if rows:
            self._store(conn, rows, self._clock())
        if expired:
            # Re-check the expiry: another process may have stored a fresh value under the key since.
            now = self._clock()
            conn.executemany(
                "DELETE FROM results WHERE key = ? AND expires_at IS NOT NULL AND expires_at <= ?",
                [(k, now) for k in expired],
            )
            self._totals = None
        if touched:
            conn.executemany(
                "UPDATE results SET last_used = max(last_used, ?) WHERE key = ?",
                [(t, k) for k, t in touched.items()],
            )
        self._bump(conn, hits=hits, misses=misses)

    def flush(self) -> None:
        """Write deferred entries, ``last_used`` refreshes and hit/miss counts now (one transaction)."""
        with self._lock:
            if self._pending_since is not None:
                self._write(lambda conn: None)

    def _mark_pending(self) -> None:
        # Called with the lock held after something was buffered: write it all once enough has piled up.
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        elif (
            len(self._deferred) >= _FLUSH_ROWS
            or self._pending_hits + self._pending_misses >= _FLUSH_PENDING
            or time.monotonic() - self._pending_since >= _FLUSH_AFTER_S
        ):
            self._write(lambda conn: None)

    def _accept(self, key: str, value: str, expires_at: float | None, now: float) -> dict[str, Any] | None:
        if expires_at is not None and expires_at <= now:
            self._expired.add(key)
            return None
        try:
            decoded = _decode(value)
        except (ValueError, TypeError):  # written by a broken client: a miss, never a crash
            return None
        if not isinstance(decoded, dict):  # valid JSON, but not a value of ours: a miss as well
            return None
        self._touched[key] = now
        return decoded

    # -- reads and writes -----------------------------------------------------------------------------------

    @property
    def secret(self) -> bytes:
        """The key of every :func:`cache_key` of this cache (keep it as private as the file's owner)."""
        return self._secret

    def key_function(self, fingerprint: str, options: Mapping[str, str] | None = None) -> Callable[[str], str]:
        """Return :func:`key_function` under this cache's secret."""
        return key_function(self._secret, fingerprint, options)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored value of ``key``, or None when absent, expired or the cache is off."""
        with self._lock:
            conn = self._connection()
            if conn is None:
                return None
            start = time.perf_counter()
            deferred = self._deferred.get(key)
            payload = None if deferred is None else self._deferred_payload(key, deferred)
            if payload is not None:
                found = self._accept(key, payload, deferred[4], self._clock())  # type: ignore[index]
            else:
                try:
                    # fetchall, not fetchone: stepping to the end resets the statement, so no read
                    # transaction stays open to hold back WAL checkpoints.
                    rows = conn.execute("SELECT value, expires_at FROM results WHERE key = ?", (key,)).fetchall()
                except sqlite3.Error as exc:
                    self._runtime_error(exc)
                    return None
                found = self._accept(key, rows[0][0], rows[0][1], self._clock()) if rows else None
            if found is None:
                self._pending_misses += 1
            else:
                self._hit_ms_total += (time.perf_counter() - start) * 1000.0
                self._hit_count += 1
                self._pending_hits += 1
            self._mark_pending()
            return found

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the stored values of the keys that are present and not expired (read-only lookups)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        with self._lock:
            conn = self._connection()
            if conn is None:
                return {}
            start = time.perf_counter()
            rows = {
                k: (payload, entry[4])
                for k in wanted
                if (entry := self._deferred.get(k)) is not None
                and (payload := self._deferred_payload(k, entry)) is not None
            }
            lookup = [k for k in wanted if k not in rows]
            try:
                for i in range(0, len(lookup), _CHUNK):
                    part = lookup[i : i + _CHUNK]
                    marks = ",".join("?" * len(part))
                    sql = f"SELECT key, value, expires_at FROM results WHERE key IN ({marks})"
                    rows.update((k, (v, e)) for k, v, e in conn.execute(sql, part).fetchall())
            except sqlite3.Error as exc:
                self._runtime_error(exc)
                return {}
            now = self._clock()
            found: dict[str, dict[str, Any]] = {}
            for k, (value, expires_at) in rows.items():
                decoded = self._accept(k, value, expires_at, now)
                if decoded is not None:
                    found[k] = decoded
            if found:
                self._hit_ms_total += (time.perf_counter() - start) * 1000.0
                self._hit_count += len(found)
            self._pending_hits += len(found)
            self._pending_misses += len(wanted) - len(found)
            self._mark_pending()
            return found

    def put(self, key: str, fingerprint: str, value: Mapping[str, Any], text: str | None = None) -> None:
        """Store one value now (see :meth:`put_many`)."""
        self.put_many(((key, fingerprint, value, text),))

    def put_many(self, items: Iterable[tuple[str, str, Mapping[str, Any], str | None]], *, defer: bool = False) -> None:
        """Store values in one transaction, then evict least recently used entries beyond the bounds.

        Args:
            items: ``(key, fingerprint, value, text)``; ``value`` must be JSON-serializable; ``text`` is
                stored only when the cache was made with ``store_text=True``. An entry larger
                than ``max_bytes`` on its own is not stored.
            defer: Keep the entries in memory instead (this object answers from them at once) and write
                them with the next write, once 64 are waiting, one second after the first, or at
                :meth:`flush` / :meth:`close` / interpreter exit. Other processes see them only then, and
                a killed process loses them. The classifier defers, so that storing a result does not
                add an SQLite commit, nor even the JSON encoding, to the latency of a miss. A deferred
                value is encoded when it is written or read: it must not be changed after this call, and
                one that is not JSON-serializable is dropped then with a :class:`CacheWarning`.

        Raises:
            TypeError, ValueError: A value is not JSON-serializable (``defer=False`` only).
        """
        now = self._clock()
        expires = None if self.ttl_s is None else now + self.ttl_s
        if defer:
            with self._lock:
                if self._connection() is None:
                    return
                deferred = self._deferred
                for key, fingerprint, value, text in items:
                    deferred[key] = (fingerprint, value, text, now, expires)
                self._mark_pending()
            return
        rows = [row for item in items if (row := self._row(*item, now, expires)) is not None]
        if rows:
            self._write(lambda conn: self._store(conn, rows, now))

    def _row(
        self,
        key: str,
        fingerprint: str,
        value: Mapping[str, Any],
        text: str | None,
        created_at: float,
        expires_at: float | None,
    ) -> _Row | None:
        """Encode one entry as a results row; None when it is larger than ``max_bytes`` on its own."""
        payload = _ENCODE(value)
        stored_text = text if (self.store_text and text is not None) else None
        size = (
            len(key) + len(payload.encode()) + (len(stored_text.encode("utf-8", "surrogatepass")) if stored_text else 0)
        )
        if size > self.max_bytes:
            return None
        return (key, fingerprint, payload, stored_text, size, created_at, expires_at, created_at)

    def _deferred_row(self, key: str, entry: _Deferred) -> _Row | None:
        fingerprint, value, text, created_at, expires_at = entry
        try:
            return self._row(key, fingerprint, value, text, created_at, expires_at)
        except (TypeError, ValueError) as exc:
            warnings.warn(
                f"result cache: dropped a deferred value that is not JSON ({exc})", CacheWarning, stacklevel=2
            )
            return None

    def _deferred_payload(self, key: str, entry: _Deferred) -> str | None:
        # The JSON a read of the written row would return; None (a miss) when the value cannot be encoded.
        row = self._deferred_row(key, entry)
        return None if row is None else row[2]

    def _store(self, conn: sqlite3.Connection, rows: list[_Row], now: float) -> None:
        # Our own commits leave our data_version alone; another connection's commit changes it.
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        totals = self._totals
        if totals is None or version != self._data_version:
            totals = self._count(conn)
        self._data_version = version
        conn.executemany(_INSERT, rows)
        totals[0] += len(rows)
        totals[1] += sum(row[4] for row in rows)
        if (
            totals[0] > self.max_entries
            or totals[1] > self.max_bytes
            or now - self._last_purge >= _PURGE_EXPIRED_EVERY_S
        ):
            self._evict(conn, now)

    def _count(self, conn: sqlite3.Connection) -> list[int]:
        count, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM results").fetchone()
        self._totals = [count, total]
        return self._totals

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM results WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        self._last_purge = now
        count, total = self._count(conn)
        if count <= self.max_entries and total <= self.max_bytes:
            return
        victims = []
        for key, size in conn.execute("SELECT key, size FROM results ORDER BY last_used ASC, created_at ASC"):
            if count <= self.max_entries and total <= self.max_bytes:
                break
            victims.append((key,))
            count -= 1
            total -= size
        conn.executemany("DELETE FROM results WHERE key = ?", victims)
        self._totals = [count, total]
        self._bump(conn, evictions=len(victims))

    @staticmethod
    def _bump(conn: sqlite3.Connection, **deltas: int) -> None:
        changes = [(d, name) for name, d in deltas.items() if d]
        if changes:
            conn.executemany("UPDATE counters SET value = value + ? WHERE name = ?", changes)

    # -- maintenance ----------------------------------------------------------------------------------------

    def _delete(self, where: str, params: tuple[str, ...]) -> int:
        def run(conn: sqlite3.Connection) -> int:
            self._totals = None
            return conn.execute(f"DELETE FROM results{where}", params).rowcount

        return self._write(run) or 0

    def clear(self) -> int:
        """Delete every entry and reset the counters; return the number of entries deleted."""

        def run(conn: sqlite3.Connection) -> int:
            self._totals = None
            deleted = conn.execute("DELETE FROM results").rowcount
            conn.execute("UPDATE counters SET value = 0")
            return deleted

        self._hit_ms_total, self._hit_count = 0.0, 0
        return self._write(run) or 0

    def invalidate(self, fingerprint: str | None = None) -> int:
        """Delete the entries of one model fingerprint (all entries when None); return how many."""
        if fingerprint is None:
            return self._delete("", ())
        return self._delete(" WHERE fingerprint = ?", (fingerprint,))

    def keep_only(self, fingerprint: str) -> int:
        """Delete the entries of every other fingerprint (done when a bundle loads); return how many."""
        return self._delete(" WHERE fingerprint != ?", (fingerprint,))

    def stats(self) -> CacheStats:
        """Return counters (shared by all processes; this one's buffered counts included) and sizes.

        Zeros when the cache is disabled.
        """

        def run(conn: sqlite3.Connection) -> tuple[dict[str, int], list[int]]:
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            return counters, self._count(conn)

        got = self._write(run)
        counters, (count, total) = got if got is not None else ({}, [0, 0])
        file_bytes = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if self._enabled and p.exists()
        )
        return CacheStats(
            path=str(self.path),
            enabled=self._enabled,
            hits=counters.get("hits", 0),
            misses=counters.get("misses", 0),
            evictions=counters.get("evictions", 0),
            entries=count,
            bytes=total,
            file_bytes=file_bytes,
            hit_latency_ms=(self._hit_ms_total / self._hit_count) if self._hit_count else None,
        )

    def close(self) -> None:
        """Write buffered counts, close the database connection; the object must not be used afterwards."""
        with self._lock:
            if self._enabled and self._pid == _PID:
                self.flush()
            self._close()
            self._enabled = False
        _OPEN_CACHES.discard(self)

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Caches still open at interpreter exit get their buffered counts written (weakly held: never kept alive).
_OPEN_CACHES: weakref.WeakSet[ResultCache] = weakref.WeakSet()


@atexit.register
def _flush_open_caches() -> None:
    for cache in list(_OPEN_CACHES):
        try:
            if cache.enabled and cache._pid == _PID:
                cache.flush()
        except Exception:  # interpreter exit: nothing left to report to
            pass
