"""``edgeopt-runtime serve``: one edge box answers many local clients over HTTP, watched by Prometheus.

Design choices, and why:

* **Starlette on uvicorn**, not FastAPI or aiohttp: both are pure Python (aarch64 is free), Starlette adds ~1 MB
  and nothing compiled, where FastAPI brings pydantic-core (a 2 MB Rust extension) to validate two request shapes
  that a few lines check here with field-naming errors. uvicorn gives graceful SIGTERM (stop accepting, finish
  in-flight requests) and multi-process workers on one socket.
* **The model runs in a small thread pool** (``concurrency`` calls at once; ONNX Runtime releases the GIL, the
  LiteRT backend holds its own lock), never on the event loop, so health checks and metrics answer while the
  model works. A request waits for the pool in a bounded queue: past ``concurrency + queue_size`` requests the
  server answers 429 with ``Retry-After`` at once instead of growing memory and latency without bound. A request
  not answered after ``request_timeout_s`` gets 503 (the model call itself cannot be interrupted; its result is
  dropped).
* **Hot reload swaps a whole model** (``SIGHUP`` or ``POST /v1/admin/reload``): the new bundle is verified and
  loaded beside the old one, then requests that start afterwards use it, while those already running finish on
  the old one, which is closed when its last request ends. Cache keys carry the bundle fingerprint, so no answer
  of the old model is ever served for the new one. A bundle that fails to load leaves the old model serving.
* **Texts are never logged** unless ``log_texts`` is set; access logs carry method, path and status only.
* **Metrics are set as requests happen** (no collectors that compute on scrape), so that with ``workers > 1``
  prometheus_client's multiprocess mode can add up the workers' files into one ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt_runtime._version import __version__
from edgeopt_runtime.errors import EdgeoptRuntimeError, InputError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from edgeopt_runtime.embedder import TextEmbedder
    from edgeopt_runtime.model import TextClassifier

__all__ = ["ServeSettings", "create_app", "serve", "default_concurrency", "SETTINGS_ENV"]

logger = logging.getLogger("edgeopt_runtime.serve")

SETTINGS_ENV = "EDGEOPT_SERVE_SETTINGS"
"""Worker processes (``workers > 1``) read their :class:`ServeSettings` as JSON from this variable."""

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DRIFT_UPDATE_EVERY_S = 1.0


def default_concurrency() -> int:
    """Model calls at once by default: one per core, at most 4 (a 1 ms model gains nothing from more)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``serve`` needs, resolved once (the CLI's flags, or a caller's arguments).

    Attributes:
        bundle: The bundle directory (reloaded from the same path).
        backend: ``auto``, ``onnx`` or ``tflite``.
        threads: Inference threads of each model call (default 1: several one-thread calls at once serve more
            requests than one call on every core; ``bench/results/serve.md``); None lets the backend decide.
        cache: Result cache spec (:func:`~edgeopt_runtime.model.open_cache`): ``sqlite:PATH``, ``redis://...``,
            ``memcached://...``; None for the default SQLite file, ``"none"`` for no cache.
        token: Bearer token every endpoint but ``/healthz`` and ``/readyz`` requires; None for none.
        max_texts: Most texts in one request.
        max_text_chars: Longest text, in characters.
        max_body_bytes: Largest request body.
        concurrency: Model calls at once (threads of the pool); default :func:`default_concurrency`.
        queue_size: Requests that may wait for the pool beyond those running; more get 429.
        request_timeout_s: A request not answered by then gets 503.
        log_texts: Log each request's texts (off: texts are private by default).
        monitor_window: Latest predictions the drift metrics are computed over.
        drain_s: On SIGTERM, seconds to go on serving with ``/readyz`` at 503 before closing the listening
            socket, so that a load balancer or health checker stops sending first (one process only).
    """

    bundle: str
    backend: str = "auto"
    threads: int | None = 1
    cache: str | None = None
    token: str | None = field(default=None, repr=False)
    max_texts: int = 64
    max_text_chars: int = 20_000
    max_body_bytes: int = 1 << 20
    concurrency: int = field(default_factory=default_concurrency)
    queue_size: int = 32
    request_timeout_s: float = 10.0
    log_texts: bool = False
    monitor_window: int = 1000
    drain_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_text_chars", "max_body_bytes", "concurrency", "monitor_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} {value!r} must be a positive integer")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InputError(f"threads {self.threads!r} must be a positive integer, or None for the backend's choice")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise InputError(f"queue_size {self.queue_size!r} must be zero or a positive integer")
        if not (isinstance(self.drain_s, int | float) and 0 <= self.drain_s <= 300):
            raise InputError(f"drain_s {self.drain_s!r} must be a number of seconds in 0..300")
        if not (isinstance(self.request_timeout_s, int | float) and self.request_timeout_s > 0):
            raise InputError(f"request_timeout_s {self.request_timeout_s!r} must be a positive number of seconds")
        if self.token is not None and not self.token:
            raise InputError("token is empty; put a secret in the token file")

    def to_json(self) -> str:
        """Serialize (token included) for worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """Read what :meth:`to_json` wrote."""
        return cls(**json.loads(text))


class ApiError(Exception):
    """A client's mistake or a refusal: becomes a JSON error response, never a 500."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


# -- metrics ----------------------------------------------------------------------------------------------------


class Metrics:
    """The server's Prometheus metrics (one process; or one worker's share in multiprocess mode)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = reg = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, *labels: str) -> Any:
            return Counter(name, doc, list(labels), registry=reg)

        def histogram(name: str, doc: str, *labels: str) -> Any:
            return Histogram(name, doc, list(labels), buckets=LATENCY_BUCKETS_S, registry=reg)

        def gauge(name: str, doc: str, *labels: str, mode: str = "livemostrecent") -> Any:
            # Across workers: live* modes drop a stopped worker's values; the drift and share gauges take the
            # most recent worker's window, counts of waiting and running calls add up.
            return Gauge(name, doc, list(labels), registry=reg, multiprocess_mode=mode)  # type: ignore[arg-type]

        self.requests = counter("edgeopt_requests", "HTTP requests by endpoint and status", "endpoint", "status")
        self.errors = counter(
            "edgeopt_request_errors", "Refused or failed requests by endpoint and error code", "endpoint", "code"
        )
        self.latency = histogram("edgeopt_request_duration_seconds", "Request latency, whole request", "endpoint")
        self.tokenize = histogram("edgeopt_tokenize_duration_seconds", "Tokenization time per model call", "backend")
        self.model = histogram("edgeopt_model_duration_seconds", "Model time per call", "backend")
        self.texts = counter("edgeopt_texts", "Texts answered", "endpoint")
        self.truncated = counter("edgeopt_texts_truncated", "Texts longer than max_seq_len, cut")
        self.cache_lookups = counter(
            "edgeopt_cache_lookups", "Result cache lookups by cache kind and result", "cache", "result"
        )
        self.cache_errors = counter(
            "edgeopt_cache_errors", "Result cache calls that failed (answered by the model)", "cache"
        )
        self.queue_depth = gauge("edgeopt_queue_depth", "Requests waiting for a model slot", mode="livesum")
        self.running = gauge("edgeopt_inference_running", "Model calls running", mode="livesum")
        self.reloads = counter("edgeopt_model_reloads", "Bundle reloads by result", "result")
        self.info = gauge(
            "edgeopt_model_info",
            "The model being served (value 1; 0 for one replaced by a reload)",
            *("fingerprint", "task", "backend", "bundle", "version"),
            mode="livemax",
        )
        self.label_psi = gauge("edgeopt_drift_label_psi", "PSI of the label shares vs the build's reference")
        self.confidence_psi = gauge(
            "edgeopt_drift_confidence_psi", "PSI of the top-class confidence histogram vs the reference"
        )
        self.label_share = gauge("edgeopt_label_share", "Share of each label in the monitor window", "label")
        self.low_confidence = gauge("edgeopt_low_confidence_share", "Share of answers with top-class probability < 0.6")
        self.window = gauge("edgeopt_monitor_window_texts", "Predictions in the monitor window")

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (all workers' in multiprocess mode) and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# -- the model slot -------------------------------------------------------------------------------------------------


class _Loaded:
    """One loaded model, counted while requests use it, closed once replaced and unused."""

    def __init__(self, model: TextClassifier | TextEmbedder, cache_kind: str | None) -> None:
        self.model = model
        self.cache_kind = cache_kind
        self.users = 0
        self.retired = False
        self.cache_errors_seen = 0
        self.loaded_at = time.time()

    @property
    def fingerprint(self) -> str:
        return self.model.manifest.fingerprint


class Service:
    """The state behind the app: settings, the current model, the pool, the metrics."""

    def __init__(self, settings: ServeSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="edgeopt-model")
        self._lock = threading.Lock()
        self._reload_lock = asyncio.Lock()
        self.pending = 0
        self.ready = False
        self._last_drift = 0.0
        self.current = self._load()
        self._publish_info(self.current, 1)
        self.ready = True

    # loading and reloading

    def _load(self) -> _Loaded:
        from edgeopt_runtime.model import load

        spec = self.settings.cache
        cache: Any = False if spec == "none" else spec
        model = load(
            self.settings.bundle,
            backend=self.settings.backend,
            threads=self.settings.threads,
            cache=cache,
            monitor_window=self.settings.monitor_window,
        )
        store = model.cache
        loaded = _Loaded(model, None if store is None else store.kind)
        backend = model.backend_name
        tokenize, run = self.metrics.tokenize.labels(backend), self.metrics.model.labels(backend)

        def observe(tokenize_s: float, model_s: float, rows: int) -> None:
            tokenize.observe(tokenize_s)
            run.observe(model_s)

        model.timing_hook = observe
        return loaded

    def _publish_info(self, loaded: _Loaded, value: int) -> None:
        manifest = loaded.model.manifest
        self.metrics.info.labels(
            fingerprint=manifest.fingerprint,
            task=manifest.task,
            backend=loaded.model.backend_name,
            bundle=Path(self.settings.bundle).name,
            version=__version__,
        ).set(value)

    async def reload(self) -> dict[str, Any]:
        """Load the bundle again and serve it from now on; the old model finishes what it runs."""
        async with self._reload_lock:
            old = self.current
            try:
                fresh = await asyncio.get_running_loop().run_in_executor(None, self._load)
            except EdgeoptRuntimeError as exc:
                self.metrics.reloads.labels("failed").inc()
                logger.error("reload failed, still serving %s: %s", old.fingerprint[:12], exc)
                raise ApiError(409, "reload_failed", f"reload failed, still serving the old model: {exc}") from exc
            with self._lock:
                self.current = fresh
                old.retired = True
                close_now = old.users == 0
            self._publish_info(old, 0)
            self._publish_info(fresh, 1)
            if close_now:
                old.model.close()
            self.metrics.reloads.labels("ok").inc()
            logger.info("reloaded %s: %s -> %s", self.settings.bundle, old.fingerprint[:12], fresh.fingerprint[:12])
            return {
                "model": fresh.fingerprint,
                "previous": old.fingerprint,
                "changed": fresh.fingerprint != old.fingerprint,
            }

    @contextmanager
    def lease(self) -> Iterator[_Loaded]:
        """The current model, kept open until the caller is done with it."""
        with self._lock:
            loaded = self.current
            loaded.users += 1
        try:
            yield loaded
        finally:
            with self._lock:
                loaded.users -= 1
                close_now = loaded.retired and loaded.users == 0
            if close_now:
                loaded.model.close()

    # running the model

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the pool, or refuse at once when the queue is full; bounded by the request timeout."""
        limit = self.settings.concurrency + self.settings.queue_size
        with self._lock:
            if self.pending >= limit:
                raise ApiError(
                    429,
                    "queue_full",
                    f"{self.pending} requests are queued or running (limit {limit}); retry shortly",
                    headers={"Retry-After": "1"},
                )
            self.pending += 1
        self.metrics.queue_depth.inc()
        started = threading.Event()

        def job() -> Any:
            started.set()
            self.metrics.queue_depth.dec()
            self.metrics.running.inc()
            try:
                return fn()
            finally:
                self.metrics.running.dec()
                with self._lock:
                    self.pending -= 1

        try:
            future = self.pool.submit(job)
        except RuntimeError:  # the pool is shut down: the server is stopping
            with self._lock:
                self.pending -= 1
            self.metrics.queue_depth.dec()
            raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.request_timeout_s)
        except InputError as exc:  # a text the model cannot read (only control characters, say): the client's
            found = re.match(r"texts\[(\d+)\]", str(exc))
            raise ApiError(422, "invalid_field", str(exc), found.group(0) if found else "texts") from None
        except TimeoutError:
            if future.cancel():  # never started: it leaves the queue now
                with self._lock:
                    self.pending -= 1
                self.metrics.queue_depth.dec()
            raise ApiError(
                503,
                "timeout",
                f"no answer within {self.settings.request_timeout_s} s; retry later",
                headers={"Retry-After": "1"},
            ) from None

    def after_answer(self, loaded: _Loaded, endpoint: str, cached: list[bool], truncated: list[bool]) -> None:
        """Count what one request's answers were; refresh the drift gauges at most once a second."""
        m = self.metrics
        m.texts.labels(endpoint).inc(len(cached))
        n_truncated = sum(truncated)
        if n_truncated:
            m.truncated.inc(n_truncated)
        if loaded.cache_kind is not None:
            hits = sum(cached)
            if hits:
                m.cache_lookups.labels(loaded.cache_kind, "hit").inc(hits)
            if len(cached) - hits:
                m.cache_lookups.labels(loaded.cache_kind, "miss").inc(len(cached) - hits)
            store = loaded.model.cache
            errors = 0 if store is None else store.errors
            if errors > loaded.cache_errors_seen:
                m.cache_errors.labels(loaded.cache_kind).inc(errors - loaded.cache_errors_seen)
                loaded.cache_errors_seen = errors
        now = time.monotonic()
        if endpoint == "classify" and now - self._last_drift >= DRIFT_UPDATE_EVERY_S:
            self._last_drift = now
            self.update_drift(loaded)

    def update_drift(self, loaded: _Loaded) -> None:
        """Set the drift gauges from the classifier's monitor window."""
        from edgeopt_runtime.model import TextClassifier

        model = loaded.model
        if not isinstance(model, TextClassifier):
            return
        report = model.monitor()
        m = self.metrics
        m.window.set(report.window)
        m.low_confidence.set(report.low_confidence_share)
        for label, share in report.label_share.items():
            m.label_share.labels(label).set(share)
        if report.drift is not None:
            m.label_psi.set(report.drift.label_psi)
            m.confidence_psi.set(report.drift.confidence_psi)

    def close(self) -> None:
        """Stop the pool (finishing running calls) and close the model."""
        self.ready = False
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.current.model.close()


# -- requests ---------------------------------------------------------------------------------------------------


def _authorized(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="edgeopt"'},
        )


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"request body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"request body is over the limit of {limit} bytes")
    if not body:
        raise ApiError(400, "invalid_json", 'request body is empty; send a JSON object like {"texts": ["..."]}')
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        detail = exc.args[0] if isinstance(exc, ValueError) and exc.args else "nested too deeply"
        raise ApiError(400, "invalid_json", f"request body is not valid JSON ({detail})") from None


def _texts(payload: Any, settings: ServeSettings) -> list[str]:
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_field", f'expected a JSON object like {{"texts": [...]}}, got {_kind(payload)}')
    unknown = sorted(set(payload) - {"texts"})
    if unknown:
        raise ApiError(422, "invalid_field", f"unknown field {unknown[0]!r}; the only field is 'texts'", unknown[0])
    if "texts" not in payload:
        raise ApiError(422, "invalid_field", "missing field 'texts' (a list of strings)", "texts")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise ApiError(422, "invalid_field", f"'texts' must be a list of strings, got {_kind(texts)}", "texts")
    if not texts:
        raise ApiError(422, "invalid_field", "'texts' is empty; send at least one text", "texts")
    if len(texts) > settings.max_texts:
        raise ApiError(
            422,
            "too_many_texts",
            f"{len(texts)} texts is over the limit of {settings.max_texts} per request; split the request",
            "texts",
        )
    for i, text in enumerate(texts):
        where = f"texts[{i}]"
        if not isinstance(text, str):
            raise ApiError(422, "invalid_field", f"{where} must be a string, got {_kind(text)}", where)
        if not text.strip():
            raise ApiError(422, "invalid_field", f"{where} is empty or whitespace only; send at least one word", where)
        if len(text) > settings.max_text_chars:
            raise ApiError(
                422,
                "text_too_long",
                f"{where} has {len(text)} characters, over the limit of {settings.max_text_chars}",
                where,
            )
    return texts


def _prediction_json(p: Any) -> dict[str, Any]:
    return {"label": p.label, "score": p.score, "scores": p.scores, "cached": p.cached, "truncated": p.truncated}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import Response

    # allow_nan=False: a NaN score would be invalid JSON for the client; the model never produces one.
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def create_app(settings: ServeSettings, service: Service | None = None) -> Starlette:
    """Return the ASGI app; the model loads now (a bad bundle raises before the server listens).

    Raises:
        BundleInvalid, BackendUnavailable, InputError, CacheError: As :func:`~edgeopt_runtime.model.load`.
    """
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from edgeopt_runtime.embedder import TextEmbedder
    from edgeopt_runtime.model import TextClassifier

    svc = service or Service(settings)
    metrics = svc.metrics

    def endpoint(name: str, *, auth: bool = True) -> Callable[[Callable[[Request], Awaitable[Response]]], Any]:
        def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                start = time.perf_counter()
                try:
                    if auth:
                        _authorized(request, settings.token)
                    response = await handler(request)
                except ApiError as exc:
                    metrics.errors.labels(name, exc.code).inc()
                    response = _json_response(exc.body(), exc.status, exc.headers)
                except Exception:
                    logger.exception("internal error on %s", name)
                    metrics.errors.labels(name, "internal").inc()
                    response = _json_response(
                        {"error": {"code": "internal", "message": "internal error; see the server log"}}, 500
                    )
                metrics.requests.labels(name, str(response.status_code)).inc()
                metrics.latency.labels(name).observe(time.perf_counter() - start)
                return response

            return run

        return wrap

    async def request_texts(request: Request, endpoint_name: str) -> list[str]:
        texts = _texts(await _read_json(request, settings.max_body_bytes), settings)
        if settings.log_texts:
            logger.info("%s %s", endpoint_name, json.dumps(texts, ensure_ascii=False))
        return texts

    @endpoint("classify")
    async def classify(request: Request) -> Response:
        texts = await request_texts(request, "classify")
        with svc.lease() as loaded:
            model = loaded.model
            if not isinstance(model, TextClassifier):
                raise ApiError(409, "wrong_task", "this server's bundle is an embedder; POST /v1/embed instead")
            predictions = await svc.run(lambda: model.predict_batch(texts))
            svc.after_answer(loaded, "classify", [p.cached for p in predictions], [p.truncated for p in predictions])
            return _json_response(
                {
                    "model": loaded.fingerprint,
                    "predictions": [_prediction_json(p) for p in predictions],
                }
            )

    @endpoint("embed")
    async def embed(request: Request) -> Response:
        texts = await request_texts(request, "embed")
        with svc.lease() as loaded:
            model = loaded.model
            if not isinstance(model, TextEmbedder):
                raise ApiError(409, "wrong_task", "this server's bundle is a classifier; POST /v1/classify instead")
            rows = await svc.run(lambda: model.embed_details(texts))
            svc.after_answer(loaded, "embed", [e.cached for e in rows], [e.truncated for e in rows])
            return _json_response(
                {
                    "model": loaded.fingerprint,
                    "dim": int(rows[0].vector.shape[0]),
                    "embeddings": [
                        {"vector": e.vector.tolist(), "cached": e.cached, "truncated": e.truncated} for e in rows
                    ],
                }
            )

    @endpoint("model")
    async def model_info(request: Request) -> Response:
        loaded = svc.current
        manifest = loaded.model.manifest
        info: dict[str, Any] = {
            "fingerprint": manifest.fingerprint,
            "task": manifest.task,
            "labels": list(manifest.labels),
            "max_seq_len": manifest.max_seq_len,
            "backend": loaded.model.backend_name,
            "cache": loaded.cache_kind,
            "bundle": Path(settings.bundle).name,
            "loaded_at": loaded.loaded_at,
            "runtime_version": __version__,
        }
        if manifest.embedding is not None:
            info["dim"] = manifest.embedding.dim
        return _json_response(info)

    @endpoint("reload")
    async def reload(request: Request) -> Response:
        return _json_response(await svc.reload())

    @endpoint("healthz", auth=False)
    async def healthz(request: Request) -> Response:
        return _json_response({"status": "ok"})

    @endpoint("readyz", auth=False)
    async def readyz(request: Request) -> Response:
        if not svc.ready:
            return _json_response({"status": "not ready"}, 503)
        return _json_response({"status": "ready", "model": svc.current.fingerprint})

    @endpoint("metrics")
    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @endpoint("openapi")
    async def openapi(request: Request) -> Response:
        return _json_response(openapi_document(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        loop = asyncio.get_running_loop()
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None and threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(hup, lambda: asyncio.ensure_future(_reload_quietly(svc)))
        try:
            yield
        finally:
            if hup is not None and threading.current_thread() is threading.main_thread():
                loop.remove_signal_handler(hup)
            svc.close()
            if metrics.multiprocess:  # this worker's live gauges (queue, model info) leave the sum with it
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    routes = [
        Route("/v1/classify", classify, methods=["POST"]),
        Route("/v1/embed", embed, methods=["POST"]),
        Route("/v1/model", model_info, methods=["GET"]),
        Route("/v1/admin/reload", reload, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        code = "method_not_allowed" if status == 405 else "not_found"
        message = f"{request.method} {request.url.path} is not an endpoint; see GET /openapi.json"
        return _json_response({"error": {"code": code, "message": message}}, status)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    app.state.service = svc
    return app


async def _reload_quietly(service: Service) -> None:
    try:
        await service.reload()
    except ApiError:
        pass  # logged and counted by reload(); the old model goes on serving


def app_from_environment() -> Starlette:
    """The app of one worker process (``workers > 1``): settings from :data:`SETTINGS_ENV`."""
    return create_app(ServeSettings.from_json(os.environ[SETTINGS_ENV]))


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Serve until SIGTERM or SIGINT (in-flight requests finish first).

    With ``workers > 1``, that many processes share the port (each loads the model), their metrics are added
    up through prometheus_client's multiprocess directory, and SIGHUP restarts the workers one by one on the
    bundle as it is then.

    Raises:
        InputError: ``workers`` or ``port`` is out of range; the bundle errors of :func:`create_app`.
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers {workers!r} must be a positive integer")
    if not 0 <= port <= 65535:
        raise InputError(f"port {port} must be between 0 and 65535")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "timeout_graceful_shutdown": math.ceil(settings.request_timeout_s) + 5,
        "server_header": False,
    }
    if workers == 1:
        app = create_app(settings)
        _draining_server(uvicorn.Config(app, **common), app.state.service, settings.drain_s).run()
        return
    import tempfile

    create_app(settings).state.service.close()  # fail here, once, on a bad bundle, not in every worker
    with tempfile.TemporaryDirectory(prefix="edgeopt-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run("edgeopt_runtime.serve:app_from_environment", factory=True, workers=workers, **common)


def _draining_server(config: Any, service: Service, drain_s: float) -> Any:
    """Uvicorn's server, which on SIGTERM first answers /readyz with 503 for ``drain_s`` while serving on.

    Rejected: closing at once (uvicorn's own behaviour, kept for ``drain_s=0``): behind a load balancer, the
    connections it opens before its next health check meet a closed port.
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.ready = False
            if drain_s > 0 and not self.should_exit and not getattr(self, "draining", False):
                self.draining = True
                logger.info("not ready; closing in %.1f s (send the signal again to close now)", drain_s)
                timer = threading.Timer(drain_s, super().handle_exit, (sig, frame))
                timer.daemon = True
                timer.start()
                return
            super().handle_exit(sig, frame)

    return DrainingServer(config)


def openapi_document(settings: ServeSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint (served at ``/openapi.json``)."""
    error = {"$ref": "#/components/schemas/Error"}
    status = {"$ref": "#/components/schemas/Status"}
    any_object, text = {"type": "object"}, {"type": "string"}
    texts_request = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TextsRequest"}}},
    }

    def responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
        for code in codes:
            out[str(code)] = {"description": _STATUS_TEXT[code], "content": {"application/json": {"schema": error}}}
        return out

    client_errors = (400, 401, 409, 413, 422, 429, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgeopt-runtime serve", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "TextsRequest": {
                    "type": "object",
                    "required": ["texts"],
                    "additionalProperties": False,
                    "properties": {
                        "texts": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": settings.max_texts,
                            "items": {"type": "string", "minLength": 1, "maxLength": settings.max_text_chars},
                        }
                    },
                },
                "Prediction": {
                    "type": "object",
                    "required": ["label", "score", "scores", "cached", "truncated"],
                    "properties": {
                        "label": {"type": "string"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
                        "cached": {"type": "boolean"},
                        "truncated": {"type": "boolean"},
                    },
                },
                "ClassifyResponse": {
                    "type": "object",
                    "required": ["model", "predictions"],
                    "properties": {
                        "model": {"type": "string", "description": "bundle fingerprint"},
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                    },
                },
                "EmbedResponse": {
                    "type": "object",
                    "required": ["model", "dim", "embeddings"],
                    "properties": {
                        "model": {"type": "string"},
                        "dim": {"type": "integer"},
                        "embeddings": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["vector", "cached", "truncated"],
                                "properties": {
                                    "vector": {"type": "array", "items": {"type": "number"}},
                                    "cached": {"type": "boolean"},
                                    "truncated": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string", "description": "the request field at fault"},
                            },
                        }
                    },
                },
                "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
            },
        },
        "security": [{"bearer": []}] if settings.token else [],
        "paths": {
            "/v1/classify": {
                "post": {
                    "summary": "Classify texts (classifier bundles)",
                    "requestBody": texts_request,
                    "responses": responses({"$ref": "#/components/schemas/ClassifyResponse"}, *client_errors),
                }
            },
            "/v1/embed": {
                "post": {
                    "summary": "Embed texts as unit vectors (embed bundles)",
                    "requestBody": texts_request,
                    "responses": responses({"$ref": "#/components/schemas/EmbedResponse"}, *client_errors),
                }
            },
            "/v1/model": {
                "get": {"summary": "The model being served", "responses": responses({"type": "object"}, 401)}
            },
            "/v1/admin/reload": {
                "post": {"summary": "Load the bundle again", "responses": responses(any_object, 401, 409)}
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": responses({"$ref": "#/components/schemas/Status"}),
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness (a model is loaded)",
                    "security": [],
                    "responses": responses(status, 503),
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format)",
                    "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": text}}}},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": responses(any_object, 401)}},
        },
    }


_STATUS_TEXT = {
    400: "Malformed request (not JSON, bad headers)",
    401: "Missing or wrong bearer token",
    409: "Wrong endpoint for this bundle's task, or a reload that failed",
    413: "Request body over the size limit",
    422: "A field is invalid (named in error.field)",
    429: "Queue full; retry after Retry-After seconds",
    503: "Timed out or shutting down; retry",
}
