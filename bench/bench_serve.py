"""Benchmark ``edgeopt-runtime serve`` against the in-process runtime, and break it on purpose while it serves.

Reproduce (from the repository root; the bundle is what `edgeopt build --profile pixel8` writes):

    .venv/bin/python bench/bench_serve.py bundles/pixel8            # about 4 minutes on 2 cores
    .venv/bin/python bench/bench_serve.py bundles/pixel8 --quick    # smoke run, under a minute, not committed
    .venv/bin/python bench/bench_serve.py bundles/pixel8 --only sigterm --sigterm-trials 5   # one part, JSON only

Needs wrk, redis-server (Debian packages; scripts/setup.sh installs them) and the serve extra. Measures in one run:

1. Load: wrk (one thread, ``--latency``, a Lua script that POSTs one text per request, rotating among thousands of
   distinct SpamAssassin texts and subject/first-sentence crops of them) for ``--duration`` seconds at 1, 8 and 32
   connections against one server process (``--workers 1 --cache none --backend onnx``: the model is measured),
   each row next to the in-process runtime doing the same work in the same minute (``predict()`` in a loop on 1,
   8 or 32 threads sharing one classifier); the ratios are server / direct. The 8 and 32 rows again with
   ``--concurrency 1 --threads 0`` and ``--concurrency 2 --threads 0`` (the defaults: one call per core, at most 4,
   of one thread each; ``--threads 0`` lets ONNX Runtime use every core per call), and one row on the hit path: the
   default SQLite cache, texts repeated (warmed first), against ``predict()`` on a warmed SQLite cache.
2. Shared cache: two servers on one Redis (started here on a free port); N distinct texts to A, then to B; B's hit
   ratio from the answers' ``cached`` flags and from B's ``edgeopt_cache_lookups_total``.
3. Faults under load from an async httpx client (8 tasks, every request's outcome counted):
   a. Redis SIGKILLed, restarted 2 s later on the same port; b. SIGTERM to the server (3 trials), a new connection
   per request (refused = never accepted, counted apart from lost = accepted and not answered), /readyz polled
   until the exit; c. bundle reload:
   a relabelled copy (new fingerprint, label names ``*-v2``) renamed into place then ``POST /v1/admin/reload``,
   then another (``*-v3``) by SIGHUP, with the SQLite cache on repeated texts; d. 200 requests at once at a server
   with ``--queue-size 4 --concurrency 1``: 200s, 429s with Retry-After, /healthz after, VmRSS before and after.

Results: bench/results/serve.json and bench/results/serve.md (``--out``). The machine's load average is recorded
before and after: the box is shared, so absolute numbers move with it; the ratios are taken minutes apart at most.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime" / "tests"))

from servers import ServerProcess, free_port, redis_server, wait_for_port  # noqa: E402  (the tests' real-server helpers)

from edgeopt_runtime.serve import default_concurrency  # noqa: E402

DATASET = ROOT / "edgeopt" / "datasets" / "spamassassin.jsonl.gz"
CLIENT_TASKS = 8
SECTIONS = ("load", "shared", "redis", "sigterm", "reload", "burst")

# wrk's Lua: bodies (one JSON document a line) from $WRK_BODIES, rotated in order; non-200 answers counted per
# thread (wrk's own errors.status counts only >= 400); done() writes one JSON object to $WRK_OUT, with 999
# latency quantiles (wrk's histogram itself cannot be read out in reasonable time).
WRK_LUA = r"""
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local threads = {}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0 end
function request()
  i = (i % #bodies) + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non200") end
  local e = summary.errors
  -- the 0.1 % .. 99.9 % quantiles, so that runs can be pooled into one distribution afterwards
  local q = {}
  for k = 1, 999 do q[k] = string.format("%d", latency:percentile(k / 10)) end
  local f = io.open(os.getenv("WRK_OUT"), "w")
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"non200":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"max_us":%d,"q_us":[%s]}',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status, e.timeout,
    latency.max, table.concat(q, ",")))
  f:close()
end
"""


# -- texts -------------------------------------------------------------------------------------------------------


def load_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct texts: whole messages (the dataset caps them at 2,000 characters), subject lines and first
    sentences, shuffled; what clients of a spam filter send."""
    with gzip.open(DATASET, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["text"] for line in handle]
    rng = random.Random(seed)
    pool: list[str] = []
    for text in rows:
        pool.append(text)
        subject = text.split("\n", 1)[0].strip()[:120]
        body = text.split("\n", 1)[-1]
        sentence = body.split(". ", 1)[0].strip()[:240]
        pool.append(subject if rng.random() < 0.5 else sentence)
    distinct = [t for t in dict.fromkeys(pool) if t.strip()]  # first occurrence of each, in order
    rng.shuffle(distinct)
    if len(distinct) < n:
        sys.exit(f"bench_serve: only {len(distinct)} distinct texts in {DATASET}, asked for {n}")
    return distinct[:n]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- the direct runtime --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One load row, added up over its interleaved chunks: requests, seconds, errors, latency samples."""

    who: str
    concurrency: int
    requests: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    chunk_rps: list[float] = field(default_factory=list)
    # (latency ms, weight): the direct runs' every call (weight 1), wrk's 999 quantiles (weight requests / 999)
    samples: list[tuple[float, float]] = field(default_factory=list)

    def add(self, requests: int, seconds: float, samples: list[tuple[float, float]], errors: dict[str, int]) -> None:
        self.requests += requests
        self.seconds += seconds
        self.chunk_rps.append(requests / seconds)
        self.samples += samples
        for k, v in errors.items():
            self.errors[k] = self.errors.get(k, 0) + v

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        goal, total = q * sum(w for _, w in ordered), 0.0
        for value, weight in ordered:
            total += weight
            if total >= goal:
                return value
        return ordered[-1][0]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "who": self.who,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            "p50_ms": self.quantile(0.5),
            "p99_ms": self.quantile(0.99),
            "errors": self.errors,
            "chunk_rps": [round(x, 1) for x in self.chunk_rps],
        }


def direct_chunk(classifier: Any, texts: Sequence[str], threads: int, duration_s: float, tally: Tally) -> None:
    """``predict()`` in a loop on ``threads`` threads sharing ``classifier``, rotating through ``texts``."""
    counter = iter(range(1 << 62))  # next() on a range iterator is atomic under the GIL
    stop = time.perf_counter() + duration_s
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def work(slot: list[float]) -> None:
        clock, predict, n = time.perf_counter, classifier.predict, len(texts)
        while True:
            start = clock()
            if start >= stop:
                return
            predict(texts[next(counter) % n])
            slot.append(clock() - start)

    begin = time.perf_counter()
    if threads == 1:
        work(latencies[0])
    else:
        pool = [threading.Thread(target=work, args=(slot,)) for slot in latencies]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    flat = [x * 1e3 for slot in latencies for x in slot]
    tally.add(len(flat), time.perf_counter() - begin, [(x, 1.0) for x in flat], {})


# -- wrk ---------------------------------------------------------------------------------------------------------


def run_wrk(url: str, bodies: Path, connections: int, duration_s: int, workdir: Path, tally: Tally | None) -> None:
    """wrk, one thread, ``connections`` keep-alive connections, ``duration_s`` seconds, added to ``tally``."""
    script = workdir / "post.lua"
    script.write_text(WRK_LUA, encoding="utf-8")
    out = workdir / "wrk.json"
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_OUT": str(out)}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", str(script), url]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=duration_s + 30)
    got = json.loads(out.read_text(encoding="utf-8"))
    if tally is not None:
        weight = got["requests"] / len(got["q_us"])
        errors = {k: int(got[k]) for k in ("non200", "connect", "read", "write", "timeout")}
        tally.add(got["requests"], got["duration_us"] / 1e6, [(q / 1e3, weight) for q in got["q_us"]], errors)


# -- servers and the async client ----------------------------------------------------------------------------------


def start_server(bundle: Path, workdir: Path, name: str, *flags: str) -> ServerProcess:
    """``edgeopt-runtime serve`` in its own process, its default cache and secret under ``workdir``."""
    cache_dir = workdir / "cache-dir"
    # Made here: a Redis-cached server does not make the directory of its key file (missing_cache_dir checks).
    cache_dir.mkdir(exist_ok=True)
    env = {"EDGEOPT_CACHE_DIR": str(cache_dir)}
    return ServerProcess(bundle, *flags, env=env, log=workdir / f"server-{name}.log")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def wait_idle(url: str, timeout_s: float = 10.0) -> None:
    """Wait until the server has no request queued or running (``edgeopt_queue_depth``, ``_inference_running``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples = scrape(url)
        if metric(samples, "edgeopt_queue_depth") + metric(samples, "edgeopt_inference_running") == 0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} still busy after {timeout_s} s")


def vm_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


@dataclass
class Outcome:
    """One request as the client saw it."""

    start: float
    end: float
    kind: str  # ok | http (a status other than 200) | refused (never accepted) | lost (accepted, no answer)
    status: int = 0
    fingerprint: str = ""
    labels: tuple[str, ...] = ()
    cached: tuple[bool, ...] = ()
    retry_after: str | None = None
    error: str = ""


async def post(client: Any, url: str, texts: list[str]) -> Outcome:
    """POST /v1/classify; every way it can end is an Outcome, never an exception."""
    import httpx

    start = time.monotonic()
    try:
        response = await client.post(f"{url}/v1/classify", json={"texts": texts})
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return Outcome(start, time.monotonic(), "refused", error=type(exc).__name__)
    except httpx.TransportError as exc:
        root: BaseException = exc
        while (root.__cause__ or root.__context__) is not None:  # the OS error under httpx's and anyio's
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        return Outcome(start, time.monotonic(), "lost", error=f"{type(exc).__name__} ({root!r})")
    end = time.monotonic()
    if response.status_code != 200:
        return Outcome(start, end, "http", response.status_code, retry_after=response.headers.get("retry-after"))
    body = response.json()
    preds = body["predictions"]
    return Outcome(
        start,
        end,
        "ok",
        200,
        body["model"],
        tuple(p["label"] for p in preds),
        tuple(bool(p["cached"]) for p in preds),
    )


async def load_until(
    url: str,
    texts: Sequence[str],
    stop: Callable[[], bool],
    *,
    tasks: int = CLIENT_TASKS,
    fresh_connections: bool = False,
    after_refused: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """``tasks`` tasks POSTing one text each, rotating through ``texts``, until ``stop()``.

    ``fresh_connections``: a new TCP connection per request (``Connection: close``, no keep-alive), so that a
    refused connection (never accepted) is told apart from an accepted request that got no answer.
    ``after_refused``: when given, a task that was refused goes on only while it returns True.
    """
    import httpx

    limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=0 if fresh_connections else tasks)
    headers = {"Connection": "close"} if fresh_connections else {}
    outcomes: list[Outcome] = []
    counter = iter(range(1 << 62))

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop():
            got = await post(client, url, [texts[next(counter) % len(texts)]])
            outcomes.append(got)
            if got.kind == "refused":
                if after_refused is None or not after_refused():
                    return
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(tasks)))
    return outcomes


def post_all(url: str, texts: Sequence[str], tasks: int = CLIENT_TASKS, per_request: int = 1) -> list[Outcome]:
    """Each text once, ``per_request`` a request, ``tasks`` requests at a time; outcomes in text order."""

    async def main() -> list[Outcome]:
        import httpx

        queue = [list(texts[i : i + per_request]) for i in range(0, len(texts), per_request)]
        jobs = list(enumerate(queue))[::-1]
        out: list[Outcome | None] = [None] * len(queue)
        async with httpx.AsyncClient(timeout=30.0) as client:

            async def worker() -> None:
                while jobs:
                    i, chunk = jobs.pop()
                    out[i] = await post(client, url, chunk)

            await asyncio.gather(*(worker() for _ in range(tasks)))
        return [o for o in out if o is not None]

    return asyncio.run(main())


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many outcomes of each kind (and of each non-200 status)."""
    got: dict[str, int] = {"ok": 0, "http": 0, "refused": 0, "lost": 0}
    for o in outcomes:
        got[o.kind] += 1
        if o.kind == "http":
            got[f"status_{o.status}"] = got.get(f"status_{o.status}", 0) + 1
    return got


def hit_ratio(outcomes: Sequence[Outcome]) -> float | None:
    flags = [c for o in outcomes if o.kind == "ok" for c in o.cached]
    return None if not flags else sum(flags) / len(flags)


# -- 1. load -----------------------------------------------------------------------------------------------------


CHUNK_S = 2  # a row is this many seconds at a time, server and direct taking turns


def bench_load(bundle: Path, texts: list[str], duration_s: int, quick: bool, workdir: Path) -> dict[str, Any]:
    """Load rows; each row's direct and server runs take turns in CHUNK_S pieces, so that the box's other load
    (it is shared) falls on both alike and the ratios hold even when the absolute numbers move."""
    import httpx

    import edgeopt_runtime

    bodies = workdir / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"texts": [t]}) + "\n" for t in texts), encoding="utf-8")
    chunks = max(1, round(duration_s / CHUNK_S))
    chunk_s = max(1, round(duration_s / chunks))
    classifier = edgeopt_runtime.load_classifier(bundle, backend="onnx", cache=False)
    for text in texts[:200]:
        classifier.predict(text)

    # Servers for every variant at once (an idle one costs nothing): the default, and for 2 cores two model calls
    # at once, and two at once of one ORT thread each.
    variants: dict[str, tuple[str, ...]] = {"default": ()}
    if not quick:
        # The defaults (--concurrency = cores at most 4, --threads 1) against one or two calls at once on the
        # backend's own threads (--threads 0: ONNX Runtime takes every core for each call).
        variants |= {
            "c1t0": ("--concurrency", "1", "--threads", "0"),
            "c2t0": ("--concurrency", "2", "--threads", "0"),
        }
    servers = {
        tag: start_server(bundle, workdir, f"load-{tag}", "--cache", "none", "--backend", "onnx", *flags)
        for tag, flags in variants.items()
    }
    server_errors: dict[str, float] = {}

    def add_errors(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        samples = scrape(url)
        for (name, labels), value in samples.items():
            if name == "edgeopt_request_errors_total" and value:
                code = dict(labels)["code"]
                server_errors[code] = server_errors.get(code, 0) + value
        return samples

    def turns(
        body_file: Path, c: int, urls: dict[str, str], direct: Callable[[Tally], None]
    ) -> tuple[Tally, dict[str, Tally]]:
        """``chunks`` rounds of: direct, then each server; each server run starts on an idle server (wrk leaves
        its last requests running when it stops, and those would share the queue limit with the next run)."""
        d = Tally("direct", c)
        got = {tag: Tally(f"server-{tag}", c) for tag in urls}
        for _ in range(chunks):
            direct(d)
            for tag, url in urls.items():
                wait_idle(url)
                run_wrk(f"{url}/v1/classify", body_file, c, chunk_s, workdir, got[tag])
        for url in urls.values():
            wait_idle(url)
        return d, got

    rows: list[dict[str, Any]] = []

    def report(direct: Tally, served: Tally, flags: str) -> None:
        rows.append(
            {
                "flags": flags,
                "server": served.summary(),
                "direct": direct.summary(),
                "throughput_ratio": served.rps / direct.rps,
                "p50_ratio": served.quantile(0.5) / direct.quantile(0.5),
                "loadavg_1m_after": os.getloadavg()[0],
            }
        )
        print(
            f"  {flags} c={served.concurrency}: {served.rps:.0f} req/s p50 {served.quantile(0.5):.2f} ms p99 "
            f"{served.quantile(0.99):.2f} ms errors {served.errors}; direct {direct.rps:.0f}/s p50 "
            f"{direct.quantile(0.5):.2f} ms",
            flush=True,
        )

    try:
        # Parity first: the server answers what the library answers.
        sample = texts[:64]
        served = httpx.post(f"{servers['default'].url}/v1/classify", json={"texts": sample}, timeout=30)
        local = [classifier.predict(t) for t in sample]
        pairs = list(zip(served.json()["predictions"], local, strict=True))
        parity = {
            "texts": len(sample),
            "labels_equal": sum(s["label"] == p.label for s, p in pairs),
            "max_score_diff": max(abs(s["score"] - p.score) for s, p in pairs),
        }
        for server in servers.values():  # warm-up, not counted
            run_wrk(f"{server.url}/v1/classify", bodies, 8, 1, workdir, None)
        for c in (1, 8, 32):
            urls = {tag: srv.url for tag, srv in servers.items() if c > 1 or tag == "default"}
            direct, served_rows = turns(bodies, c, urls, partial(direct_chunk, classifier, texts, c, chunk_s))
            for tag, tally in served_rows.items():
                report(direct, tally, tag)
        for server in servers.values():
            add_errors(server.url)
    finally:
        for server in servers.values():
            server.stop()

    # The hit path: the default SQLite cache (no --cache flag), a few hundred texts repeated, warmed twice (the
    # SQLite cache writes misses a moment later, not at once).
    repeated = texts[:500]
    hot = workdir / "bodies-repeated.jsonl"
    hot.write_text("".join(json.dumps({"texts": [t]}) + "\n" for t in repeated), encoding="utf-8")
    cached_classifier = edgeopt_runtime.load_classifier(
        bundle, backend="onnx", cache=f"sqlite:{workdir / 'direct-cache.sqlite'}"
    )
    for _ in range(2):
        for text in repeated:
            cached_classifier.predict(text)
        time.sleep(1.2)
    server = start_server(bundle, workdir, "load-sqlite", "--backend", "onnx")
    try:
        post_all(server.url, repeated)
        time.sleep(1.2)
        second = post_all(server.url, repeated)
        warmed_hit_ratio = hit_ratio(second)
        run_wrk(f"{server.url}/v1/classify", hot, 8, 1, workdir, None)
        before = scrape(server.url)  # the warm-up's lookups are counted too; the row's are the difference
        c = 8
        direct, served_rows = turns(
            hot, c, {"sqlite": server.url}, partial(direct_chunk, cached_classifier, repeated, c, chunk_s)
        )
        report(direct, served_rows["sqlite"], "sqlite")
        samples = add_errors(server.url)
        lookups = {
            r: metric(samples, "edgeopt_cache_lookups_total", cache="sqlite", result=r)
            - metric(before, "edgeopt_cache_lookups_total", cache="sqlite", result=r)
            for r in ("hit", "miss")
        }
    finally:
        server.stop()
        cached_classifier.close()
        classifier.close()
    return {
        "chunks": chunks,
        "chunk_s": chunk_s,
        "parity": parity,
        "rows": rows,
        "server_request_errors_by_code": server_errors,
        "hit_path": {"warmed_hit_ratio": warmed_hit_ratio, "lookups": lookups, "texts": len(repeated)},
    }


# -- 2. shared cache -------------------------------------------------------------------------------------------


def missing_cache_dir(bundle: Path, workdir: Path, spec: str) -> dict[str, Any]:
    """Does a server on a network cache start when the default cache directory (its key file's) is not there?"""
    port = free_port()
    argv = [sys.executable, "-m", "edgeopt_runtime.cli", "serve", str(bundle), "--port", str(port), "--cache", spec]
    env = {**os.environ, "EDGEOPT_CACHE_DIR": str(workdir / "no-such-dir")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout_s=60, process=process)
        started = True
    except RuntimeError:
        started = False
    finally:
        if process.poll() is None:
            process.terminate()
        output = process.communicate(timeout=30)[0].decode("utf-8", "replace").strip().splitlines()
    return {"started": started, "returncode": None if started else process.returncode, "last_line": output[-1:]}


def bench_shared_cache(bundle: Path, texts: list[str], workdir: Path) -> dict[str, Any]:
    redis = redis_server(workdir).start()
    spec = f"redis://127.0.0.1:{redis.port}/0"
    servers = [start_server(bundle, workdir, f"redis-{n}", "--cache", spec, "--backend", "onnx") for n in "AB"]
    try:
        out: dict[str, Any] = {"texts": len(texts), "redis_port": redis.port}
        out["missing_cache_dir"] = missing_cache_dir(bundle, workdir, spec)
        for name, server in zip("AB", servers, strict=True):
            outcomes = post_all(server.url, texts)
            samples = scrape(server.url)
            hits = metric(samples, "edgeopt_cache_lookups_total", cache="redis", result="hit")
            misses = metric(samples, "edgeopt_cache_lookups_total", cache="redis", result="miss")
            out[name] = {
                "outcomes": counts(outcomes),
                "hit_ratio_flags": hit_ratio(outcomes),
                "metrics_hits": hits,
                "metrics_misses": misses,
                "hit_ratio_metrics": hits / (hits + misses) if hits + misses else None,
                "cache_errors": metric(samples, "edgeopt_cache_errors_total"),
            }
            print(f"  shared cache {name}: {out[name]}", flush=True)
        return out
    finally:
        for server in servers:
            server.stop()
        redis.stop()


# -- 3. faults ---------------------------------------------------------------------------------------------------


def fault_redis_restart(bundle: Path, texts: list[str], workdir: Path, scale: float) -> dict[str, Any]:
    """a. Redis SIGKILLed during load, restarted 2 s later on the same port (empty: no persistence)."""
    redis = redis_server(workdir).start()
    server = start_server(
        bundle, workdir, "redis-kill", "--cache", f"redis://127.0.0.1:{redis.port}/0", "--backend", "onnx"
    )
    # Hits come back about 2 s after the restart: the client leaves the server alone for 1 s after an error,
    # and the restarted Redis is empty, so the 300 texts are written once before they hit.
    kill_at, restart_after = 3.0 * scale, 2.0
    end_at = max(9.0 * scale, kill_at + restart_after + 3.5)
    marks: dict[str, float] = {}
    try:

        async def main() -> list[Outcome]:
            t0 = time.monotonic()
            marks["t0"] = t0
            load = asyncio.create_task(load_until(server.url, texts, lambda: time.monotonic() - t0 > end_at))
            await asyncio.sleep(kill_at)
            redis.kill()
            marks["killed"] = time.monotonic()
            await asyncio.sleep(restart_after)
            await asyncio.to_thread(redis.start)
            marks["restarted"] = time.monotonic()
            return await load

        outcomes = asyncio.run(main())
        samples = scrape(server.url)
    finally:
        server.stop()
        redis.stop()
    t0, killed, restarted = marks["t0"], marks["killed"], marks["restarted"]

    def window(a: float, b: float) -> list[Outcome]:
        return [o for o in outcomes if a <= o.start - t0 < b]

    lat = [o.end - o.start for o in outcomes if o.kind == "ok"]
    outage = [o.end - o.start for o in outcomes if killed <= o.start < restarted]
    return {
        "requests": len(outcomes),
        "outcomes": counts(outcomes),
        "killed_at_s": killed - t0,
        "restarted_at_s": restarted - t0,
        "end_s": end_at,
        "hit_ratio_before_kill": hit_ratio(window(kill_at / 2, killed - t0)),
        "hit_ratio_outage": hit_ratio(window(killed - t0, restarted - t0)),
        "hit_ratio_first_second_after_restart": hit_ratio(window(restarted - t0, restarted - t0 + 1)),
        "hit_ratio_last_2s": hit_ratio(window(end_at - 2, end_at + 1)),
        "first_hit_after_restart_s": min(
            (o.start - restarted for o in outcomes if o.start >= restarted and any(o.cached)), default=None
        ),
        "cache_errors_total": metric(samples, "edgeopt_cache_errors_total", cache="redis"),
        "p50_ms": percentile(lat, 0.5) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "max_ms_outage": max(outage) * 1e3 if outage else None,
    }


def fault_sigterm(bundle: Path, texts: list[str], workdir: Path, scale: float, trial: int) -> dict[str, Any]:
    """b. SIGTERM during load; a new connection per request; /readyz polled on a keep-alive connection."""
    import httpx

    server = start_server(bundle, workdir, f"sigterm-{trial}", "--cache", "none", "--backend", "onnx")
    pid, process = server.process.pid, server.process
    marks: dict[str, float] = {}
    readyz: dict[str, int] = {}

    def exited() -> bool:
        if "exited" not in marks and process.poll() is not None:
            marks["exited"] = time.monotonic()
        return "exited" in marks

    def stop() -> bool:  # keep asking until 0.5 s after the process is gone
        return exited() and time.monotonic() > marks["exited"] + 0.5

    async def probe(client: httpx.AsyncClient) -> None:
        while not exited():
            try:
                key = str((await client.get(f"{server.url}/readyz")).status_code)
            except httpx.TransportError as exc:
                key = type(exc).__name__
            readyz[key] = readyz.get(key, 0) + 1
            await asyncio.sleep(0.005)

    async def main() -> list[Outcome]:
        t0 = time.monotonic()
        load = asyncio.create_task(
            load_until(
                server.url,
                texts,
                lambda: stop() or time.monotonic() - t0 > 60,
                fresh_connections=True,
                after_refused=lambda: not stop(),
            )
        )
        async with httpx.AsyncClient(timeout=30) as client:
            await client.get(f"{server.url}/readyz")  # opens the keep-alive connection before the SIGTERM
            await asyncio.sleep(2.0 * scale)
            os.kill(pid, signal.SIGTERM)
            marks["sigterm"] = time.monotonic()
            await probe(client)
        return await load

    outcomes = asyncio.run(main())
    process.wait(timeout=30)
    term = marks["sigterm"]
    after = [o for o in outcomes if o.start >= term]
    in_flight = [o for o in outcomes if o.start < term < o.end]
    log = server.log.read_text(encoding="utf-8", errors="replace")
    return {
        "requests": len(outcomes),
        "outcomes": counts(outcomes),
        "in_flight_at_sigterm": counts(in_flight),
        "started_after_sigterm": counts(after),
        "first_refused_s": min((o.end - term for o in outcomes if o.kind == "refused"), default=None),
        "last_ok_start_s": max((o.start - term for o in outcomes if o.kind == "ok"), default=None),
        "refused_after_exit": sum(o.kind == "refused" for o in outcomes if o.start >= marks["exited"]),
        "lost": [
            {"start_s": o.start - term, "end_s": o.end - term, "error": o.error} for o in outcomes if o.kind == "lost"
        ],
        "exit_s_after_sigterm": marks["exited"] - term,
        "returncode": process.returncode,
        "server_log_200s": log.count('/v1/classify HTTP/1.1" 200'),
        "readyz_after_sigterm": readyz,
        "sigterm_at_s": 2.0 * scale,
    }


def relabel(source: Path, target: Path, suffix: str) -> str:
    """Copy ``source`` to ``target`` with every label renamed ``LABEL-suffix``; a valid bundle, new fingerprint.

    The way runtime/tests/edgeopt_runtime_fixtures.py's rewrite_manifest(refingerprint=True) does it: the labels
    are in the fingerprint, so answers of the new model are told apart by label name as well as fingerprint.
    """
    from edgeopt_runtime.manifest import compute_fingerprint, read_manifest

    shutil.copytree(source, target)
    path = target / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["labels"] = [f"{label.split('-')[0]}-{suffix}" for label in data["labels"]]
    monitoring = data.get("monitoring") or {}
    if "label_share" in monitoring:
        monitoring["label_share"] = {f"{k.split('-')[0]}-{suffix}": v for k, v in monitoring["label_share"].items()}
    path.write_text(json.dumps(data), encoding="utf-8")
    data["fingerprint"] = compute_fingerprint(read_manifest(target))
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(data["fingerprint"])


def fault_reload(bundle: Path, texts: list[str], workdir: Path, scale: float) -> dict[str, Any]:
    """c. Reload during load: POST /v1/admin/reload to a relabelled bundle, then SIGHUP to another."""
    import httpx

    from edgeopt_runtime.manifest import read_manifest

    live = workdir / "reload" / "live"
    live.parent.mkdir()
    shutil.copytree(bundle, live)
    versions = {"v1": read_manifest(live).fingerprint}
    labels = {"v1": set(read_manifest(live).labels)}
    for v in ("v2", "v3"):
        versions[v] = relabel(bundle, workdir / "reload" / f"new-{v}", v)
        labels[v] = set(read_manifest(workdir / "reload" / f"new-{v}").labels)
    server = start_server(
        live, workdir, "reload-sqlite", "--cache", f"sqlite:{workdir / 'reload.sqlite'}", "--backend", "onnx"
    )
    marks: dict[str, float] = {}
    reply: dict[str, Any] = {}

    def swap(v: str) -> None:
        """Rename a complete directory into place (the old one moved aside first)."""
        os.rename(live, workdir / "reload" / f"old-before-{v}")
        os.rename(workdir / "reload" / f"new-{v}", live)

    try:

        async def main() -> list[Outcome]:
            t0 = time.monotonic()
            end_at = 7.0 * scale
            load = asyncio.create_task(load_until(server.url, texts, lambda: time.monotonic() - t0 > end_at))
            await asyncio.sleep(2.0 * scale)
            swap("v2")
            async with httpx.AsyncClient(timeout=60) as client:
                marks["reload_sent"] = time.monotonic()
                r = await client.post(f"{server.url}/v1/admin/reload")
                marks["reload_returned"] = time.monotonic()
                reply["status"], reply["body"] = r.status_code, r.json()
                await asyncio.sleep(2.5 * scale)
                swap("v3")
                marks["sighup_sent"] = time.monotonic()
                os.kill(server.process.pid, signal.SIGHUP)
                while (await client.get(f"{server.url}/v1/model")).json()["fingerprint"] != versions["v3"]:
                    await asyncio.sleep(0.01)
                marks["sighup_seen"] = time.monotonic()
            return await load

        outcomes = asyncio.run(main())
        samples = scrape(server.url)
    finally:
        server.stop()

    def phase(since: float, version: str, old: Sequence[str]) -> dict[str, Any]:
        started = [o for o in outcomes if o.start >= since and o.kind == "ok"]
        if version == "v2":
            started = [o for o in started if o.start < marks["sighup_sent"]]
        old_fps = {versions[v] for v in old}
        old_labels = set().union(*(labels[v] for v in old))
        return {
            "requests": len(started),
            "old_fingerprint": sum(o.fingerprint in old_fps for o in started),
            "old_label": sum(any(lab in old_labels for lab in o.labels) for o in started),
            "cached_old_label": sum(
                any(lab in old_labels and c for lab, c in zip(o.labels, o.cached, strict=True)) for o in started
            ),
            "hit_ratio": hit_ratio(started),
            "first_hit_after_s": min((o.start - since for o in started if any(o.cached)), default=None),
        }

    before = [o for o in outcomes if o.start < marks["reload_sent"] and o.kind == "ok"]
    straddling = [o for o in outcomes if o.start < marks["reload_returned"] <= o.end]
    return {
        "requests": len(outcomes),
        "outcomes": counts(outcomes),
        "fingerprints": versions,
        "reload_reply": reply,
        "reload_took_s": marks["reload_returned"] - marks["reload_sent"],
        "sighup_to_served_s": marks["sighup_seen"] - marks["sighup_sent"],
        "hit_ratio_before": hit_ratio(before),
        "straddling_reload": {
            "requests": len(straddling),
            "old_fingerprint": sum(o.fingerprint == versions["v1"] for o in straddling),
        },
        "after_reload": phase(marks["reload_returned"], "v2", ["v1"]),
        "after_sighup": phase(marks["sighup_seen"], "v3", ["v1", "v2"]),
        "reloads_metric": {r: metric(samples, "edgeopt_model_reloads_total", result=r) for r in ("ok", "failed")},
        "model_info": {v: metric(samples, "edgeopt_model_info", fingerprint=fp) for v, fp in versions.items()},
    }


def fault_burst(bundle: Path, texts: list[str], workdir: Path, bursts: int) -> dict[str, Any]:
    """d. 200 requests at once at --queue-size 4 --concurrency 1 (16 whole texts each: ~10 ms of model each)."""
    import httpx

    server = start_server(
        bundle, workdir, "burst", "--cache", "none", "--backend", "onnx", "--queue-size", "4", "--concurrency", "1"
    )
    long_texts = sorted(texts, key=len, reverse=True)[:400]
    batch = 16
    try:
        # Warm-up within the limit (one request at a time) and with the burst's batch shape, so that "before"
        # holds the memory a 16-text model call needs and the growth measured is the burst's own.
        warm = post_all(server.url, long_texts[: 10 * batch], tasks=1, per_request=batch)
        if counts(warm)["ok"] != len(warm):
            raise RuntimeError(f"burst warm-up failed: {counts(warm)}")
        queue_full_before = metric(scrape(server.url), "edgeopt_request_errors_total", code="queue_full")
        rss = [vm_rss_kib(server.process.pid)]
        results = []

        async def burst(k: int) -> list[Outcome]:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                jobs = [
                    post(
                        client,
                        server.url,
                        [long_texts[(k * 200 + i * batch + j) % len(long_texts)] for j in range(batch)],
                    )
                    for i in range(200)
                ]
                return list(await asyncio.gather(*jobs))

        for k in range(bursts):
            got = asyncio.run(burst(k))
            rss.append(vm_rss_kib(server.process.pid))
            results.append(
                {
                    "outcomes": counts(got),
                    "429_with_retry_after": sum(o.status == 429 and o.retry_after is not None for o in got),
                    "retry_after_values": sorted({o.retry_after for o in got if o.status == 429 and o.retry_after}),
                }
            )
            print(f"  burst {k + 1}: {results[-1]} VmRSS {rss[-1]} KiB", flush=True)
        healthz = httpx.get(f"{server.url}/healthz", timeout=10).status_code
        after = httpx.post(f"{server.url}/v1/classify", json={"texts": [texts[0]]}, timeout=10).status_code
        samples = scrape(server.url)
    finally:
        server.stop()
    return {
        "requests_per_burst": 200,
        "texts_per_request": batch,
        "bursts": results,
        "healthz_after": healthz,
        "classify_after": after,
        "vm_rss_kib": rss,
        "queue_full_metric": metric(samples, "edgeopt_request_errors_total", code="queue_full") - queue_full_before,
    }


# -- report ------------------------------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    env, load = result["environment"], result["load"]
    lines = [
        "# edgeopt-runtime serve: load, shared cache, faults",
        "",
        f"Command: `{result['command']}` ({result['wall_s']:.0f} s). Commit {env['commit'][:12]}"
        f"{' + uncommitted serve.py' if env['serve_py_modified'] else ''}; {env['cpus']} CPUs ({env['machine']}), "
        f"load average {env['loadavg_before'][0]:.2f} before, {env['loadavg_after'][0]:.2f} after (a shared box: "
        "the client, wrk and the server share these cores). Python "
        f"{env['python']}, {result['texts']} distinct SpamAssassin texts (whole messages, subjects, first sentences).",
        "",
        "## 1. Load: one text per request, server vs the in-process runtime",
        "",
        f"wrk -t1 --latency, keep-alive connections, {result['duration_s']} s a row in {load['chunks']} turn(s) of "
        f"{load['chunk_s']} s: direct, then each server variant, round after round, so that the box's other load "
        "falls on all alike (rows with the same client count share one direct measurement). Each server is one "
        "process (`--workers 1 --backend onnx`, access log on, as by default). Direct: `predict()` in a loop on as "
        "many threads, one classifier (`load_classifier(bundle, backend='onnx', cache=False)`), same texts. "
        "Percentiles pool the turns (wrk's 999 quantiles a turn, weighted by its requests). Ratios are server / "
        "direct. Errors: non-200 answers and socket errors (connect/read/write/timeout) as wrk counts them.",
        "",
        "| server flags | clients | server req/s (= texts/s) | p50 ms | p99 ms | errors | direct req/s | direct p50 ms "
        "| direct p99 ms | throughput ratio | p50 ratio |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "default": f"`--cache none` (defaults here: `--concurrency {default_concurrency()} --threads 1`)",
        "c1t0": "`--cache none --concurrency 1 --threads 0`",
        "c2t0": "`--cache none --concurrency 2 --threads 0`",
        "sqlite": "default SQLite cache, hit path",
    }
    for row in load["rows"]:
        s, d = row["server"], row["direct"]
        errors = sum(s["errors"].values())
        lines.append(
            f"| {names[row['flags']]} | {s['concurrency']} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{errors} | {d['rps']:.0f} | {d['p50_ms']:.3f} | {d['p99_ms']:.3f} | {row['throughput_ratio']:.3f} | "
            f"{row['p50_ratio']:.1f} |"
        )
    p, hp = load["parity"], load["hit_path"]
    lines += [
        "",
        f"Parity: on {p['texts']} texts the server and the library give the same label {p['labels_equal']} times, "
        f"largest score difference {p['max_score_diff']:.2g}. Server-side errors (`edgeopt_request_errors_total`) "
        f"over all load rows, by code: {load['server_request_errors_by_code'] or 'none'}. Hit path: {hp['texts']} "
        f"texts posted twice before the row (second pass hit ratio {fmt(hp['warmed_hit_ratio'], 3)}); during the "
        f"row the server counted {hp['lookups']['hit']:.0f} hits and {hp['lookups']['miss']:.0f} misses. The "
        "hit-path direct column is `predict()` on a warmed SQLite cache, 8 threads.",
        "",
    ]
    sc = result["shared_cache"]
    lines += [
        "## 2. Shared cache: two servers, one Redis",
        "",
        f"{sc['texts']} distinct texts to server A, then the same to server B (one per request, 8 at a time; both "
        "`--cache redis://127.0.0.1:PORT/0`, one secret: same box, same default key file).",
        "",
        "| server | answered 200 | hit ratio (cached flags) | hits / misses (`edgeopt_cache_lookups_total`) | "
        "hit ratio (metrics) | cache errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in "AB":
        r = sc[name]
        lines.append(
            f"| {name} | {r['outcomes']['ok']} | {fmt(r['hit_ratio_flags'], 3)} | {r['metrics_hits']:.0f} / "
            f"{r['metrics_misses']:.0f} | {fmt(r['hit_ratio_metrics'], 3)} | {r['cache_errors']:.0f} |"
        )
    m = sc["missing_cache_dir"]
    lines += [
        "",
        "A server with `--cache redis://...` whose default cache directory (where the shared key file lives: "
        "`EDGEOPT_CACHE_DIR`, else the user cache dir) does not exist yet: "
        + (
            "starts."
            if m["started"]
            else f"exits with {m['returncode']} before listening: `{' '.join(m['last_line'])}` (the SQLite cache "
            "makes its directory; the key file of a network cache does not; this bench makes the directory)."
        ),
    ]
    a, b, c, d = (result["faults"][k] for k in ("redis_restart", "sigterm", "reload", "burst"))
    lines += [
        "",
        "## 3. Faults under load",
        "",
        "An httpx.AsyncClient with 8 tasks, one text per request, every outcome counted: ok (200), http (another "
        "status), refused (`httpx.ConnectError`: never accepted), lost (any other transport error: accepted, no "
        "answer).",
        "",
        "### a. Redis SIGKILLed under load, restarted 2 s later on the same port",
        "",
        f"{a['requests']} requests: {a['outcomes']}. Killed at {a['killed_at_s']:.1f} s, back at "
        f"{a['restarted_at_s']:.1f} s (empty: no persistence), load until {a['end_s']:.0f} s over 300 repeated "
        f'texts. `edgeopt_cache_errors_total{{cache="redis"}}` = {a["cache_errors_total"]:.0f}. Hit ratio: '
        f"{fmt(a['hit_ratio_before_kill'])} before the kill, {fmt(a['hit_ratio_outage'])} while Redis was down, "
        f"{fmt(a['hit_ratio_first_second_after_restart'])} in the first second after the restart, "
        f"{fmt(a['hit_ratio_last_2s'])} in the last 2 s; the first hit after the restart came "
        f"{fmt(a['first_hit_after_restart_s'])} s after it (the client waits 1 s after an error before asking "
        "again, and the restarted Redis is empty: each text is written once before it hits). "
        f"Latency p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms; "
        f"slowest request started during the outage {fmt(a['max_ms_outage'], 1)} ms.",
        "",
        "### b. SIGTERM to the server under load (a new connection per request, `Connection: close`)",
        "",
        f"{len(b)} trials, each a fresh server, SIGTERM after {b[0]['sigterm_at_s']:.1f} s of load; "
        "times in seconds after the SIGTERM. /readyz is polled every 5 ms on a keep-alive connection opened before "
        "the SIGTERM, until the process exits.",
        "",
        "| trial | requests | 200 | other status | refused | lost | in flight at SIGTERM: 200 / all | started after: "
        "200 / refused / lost | last 200 started | first refusal | exit | return code | access-log 200s | "
        "/readyz after SIGTERM |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, t in enumerate(b, 1):
        o, f, a_ = t["outcomes"], t["in_flight_at_sigterm"], t["started_after_sigterm"]
        lines.append(
            f"| {i} | {t['requests']} | {o['ok']} | {o['http']} | {o['refused']} | {o['lost']} | "
            f"{f['ok']} / {sum(f[k] for k in ('ok', 'http', 'refused', 'lost'))} | "
            f"{a_['ok']} / {a_['refused']} / {a_['lost']} | {fmt(t['last_ok_start_s'], 3)} | "
            f"{fmt(t['first_refused_s'], 3)} | {t['exit_s_after_sigterm']:.3f} | {t['returncode']} | "
            f"{t['server_log_200s']} | {t['readyz_after_sigterm']} |"
        )
    lost = [x for t in b for x in t["lost"]]
    lines += [
        "",
        "Return code -15: uvicorn re-raises SIGTERM (143 in a shell). "
        + (
            "Access-log classify 200s equal the client's 200s in every trial: no request was executed and left "
            "unanswered."
            if all(t["server_log_200s"] == t["outcomes"]["ok"] for t in b)
            else "Access-log classify 200s differ from the client's in some trial: see serve.json."
        )
        + (
            f" Lost requests, all trials ({len(lost)}): "
            + "; ".join(f"started {x['start_s']:+.3f}, failed {x['end_s']:+.3f}: {x['error']}" for x in lost[:6])
            + (f"; and {len(lost) - 6} more (serve.json)" if len(lost) > 6 else "")
            + ". See the notes at the end."
            if lost
            else " No request was lost."
        ),
        "",
        "### c. Bundle reload under load (SQLite cache, 200 repeated texts)",
        "",
        "The served path is a copy of the bundle; `v2` and `v3` are copies with every label renamed (`ham-v2`, ...) "
        "and the fingerprint recomputed (valid bundles, same weights), renamed into place, then `POST "
        "/v1/admin/reload` (v2) and SIGHUP (v3; done when GET /v1/model shows it).",
        "",
        f"{c['requests']} requests: {c['outcomes']}. Reload reply {c['reload_reply']['status']} in "
        f"{c['reload_took_s']:.2f} s (`changed`: {c['reload_reply']['body'].get('changed')}); SIGHUP served in "
        f"{c['sighup_to_served_s']:.2f} s. Hit ratio before the reload {fmt(c['hit_ratio_before'])}. Requests that "
        f"started before the reload returned and ended after it: {c['straddling_reload']['requests']} "
        f"({c['straddling_reload']['old_fingerprint']} answered by the old model: allowed).",
        "",
        "| after | requests started after | old fingerprint | old label name | cached answer with old label | "
        "hit ratio | first hit after (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, key in (
        ("POST /v1/admin/reload returned (v2)", "after_reload"),
        ("SIGHUP took effect (v3)", "after_sighup"),
    ):
        r = c[key]
        lines.append(
            f"| {name} | {r['requests']} | {r['old_fingerprint']} | {r['old_label']} | {r['cached_old_label']} | "
            f"{fmt(r['hit_ratio'])} | {fmt(r['first_hit_after_s'], 3)} |"
        )
    lines += [
        "",
        f"`edgeopt_model_reloads_total`: {c['reloads_metric']}; `edgeopt_model_info` per version: {c['model_info']}.",
        "",
        "### d. Burst beyond the queue (`--queue-size 4 --concurrency 1`)",
        "",
        f"{d['requests_per_burst']} requests at once ({d['texts_per_request']} whole texts each), "
        f"{len(d['bursts'])} bursts in a row:",
        "",
        "| burst | 200 | 429 | 429 with Retry-After | other |",
        "|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(d["bursts"], 1):
        o = r["outcomes"]
        other = {k: v for k, v in o.items() if k not in ("ok", "http", "status_429") and v}
        lines.append(f"| {i} | {o['ok']} | {o.get('status_429', 0)} | {r['429_with_retry_after']} | {other or '-'} |")
    rss = d["vm_rss_kib"]
    lines += [
        "",
        f"After the bursts: /healthz {d['healthz_after']}, a classify {d['classify_after']}; "
        f'`edgeopt_request_errors_total{{code="queue_full"}}` = {d["queue_full_metric"]:.0f}. VmRSS '
        f"{rss[0] / 1024:.1f} MiB before, " + ", ".join(f"{x / 1024:.1f}" for x in rss[1:]) + " MiB after each burst.",
        "",
    ]
    lines += notes(result)
    path.write_text("\n".join(lines), encoding="utf-8")


def notes(result: dict[str, Any]) -> list[str]:
    """What the numbers say, each statement checked against them here (so that a rerun cannot contradict it)."""
    out = ["## Notes", ""]
    rows = result["load"]["rows"]
    for c in (8, 32):
        at = [r for r in rows if r["server"]["concurrency"] == c and r["flags"] != "sqlite"]
        if len(at) > 1:
            best = max(at, key=lambda r: r["server"]["rps"])
            base = next(r for r in at if r["flags"] == "default")
            out.append(
                f"- {c} clients: the most requests/s came with `{best['flags']}` "
                f"({best['server']['rps']:.0f}/s, {best['server']['rps'] / base['server']['rps']:.2f}x the default "
                f"flags' {base['server']['rps']:.0f}/s). c1t0 = `--concurrency 1 --threads 0`, c2t0 = "
                "`--concurrency 2 --threads 0` (`--threads 0`: the backend's own threads per call)."
            )
    out.append(
        "- The server's cost per request is HTTP, JSON and the event loop on the same 2 cores as the model and the "
        "load generator: the hit-path row, where the model does not run, shows that ceiling."
    )
    b = result["faults"]["sigterm"]
    lost = [x for t in b for x in t["lost"]]
    if lost:
        gaps = [
            abs(x["end_s"] - t["first_refused_s"]) for t in b for x in t["lost"] if t["first_refused_s"] is not None
        ]
        hit = sum(bool(t["lost"]) for t in b)
        out.append(
            f"- SIGTERM: {len(lost)} request(s) lost in {hit} of {len(b)} trials (a race, so it varies run to run). "
            f"Each failed within {max(gaps) * 1000:.0f} ms of its trial's first refused connection, i.e. when "
            "uvicorn stopped listening and closed the connections whose request it had not read yet; they had "
            f"started {min(x['start_s'] for x in lost):+.3f} to {max(x['start_s'] for x in lost):+.3f} s from the "
            "SIGTERM (client-side times: the client shares the 2 cores, so its send can lag them). Until then, "
            "about 0.1 s (uvicorn's main loop looks at its exit flag every 0.1 s), new connections are accepted and "
            "answered (the 'started after' 200s). The server never read the lost ones (access-log 200s = client "
            f"200s; the client's errors: {', '.join(sorted({x['error'] for x in lost}))}), so no work was dropped, "
            "but to the client they are indistinguishable from a request lost in flight: a POST it must retry "
            "without knowing."
        )
    if not any("503" in t["readyz_after_sigterm"] for t in b):
        seen = sorted({k for t in b for k in t["readyz_after_sigterm"]})
        out.append(
            f"- /readyz never answered 503 after the SIGTERM (seen: {', '.join(seen)}): 200 until uvicorn stopped "
            "listening, then the keep-alive connection closed and new ones refused. runtime/README.md says "
            '"503 while stopping"; `Service.ready` turns False only in `Service.close()`, at lifespan shutdown, '
            "after the last connection has closed, so no client can see it."
            + (
                f" The probe's {', '.join(k for k in seen if k in ('ReadError', 'RemoteProtocolError'))}: a request "
                "sent on a keep-alive connection just as uvicorn closed it (idle connections are closed at the "
                "stop), the same race for keep-alive clients."
                if {"ReadError", "RemoteProtocolError"} & set(seen)
                else ""
            )
        )
    out.append("")
    return out


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    serve_py = ROOT / "runtime" / "edgeopt_runtime" / "serve.py"
    return {
        "commit": git("rev-parse", "HEAD"),
        "serve_py_modified": bool(git("status", "--porcelain", "--", str(serve_py))),
        "serve_py_sha256": hashlib.sha256(serve_py.read_bytes()).hexdigest(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", metavar="BUNDLE", type=Path, help="classifier bundle (bundles/pixel8)")
    parser.add_argument("--duration", type=int, default=None, help="seconds per load row (default 10; --quick 2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="writes OUT.json and OUT.md (default bench/results/serve; --quick: a temporary directory's)",
    )
    parser.add_argument("--texts", type=int, default=None, help="distinct texts (default 4000; --quick 1000)")
    parser.add_argument("--shared-texts", type=int, default=None, help="texts for the shared cache (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s rows, no --concurrency 2 rows")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this part (repeatable); writes OUT.json only (default: a temporary directory's)",
    )
    parser.add_argument("--sigterm-trials", type=int, default=None, help="SIGTERM runs (default 3; --quick 1)")
    args = parser.parse_args(argv)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"bench_serve: {tool} is not installed: run scripts/setup.sh (apt-get install {tool})")
    if not (args.bundle / "manifest.json").is_file():
        sys.exit(f"bench_serve: {args.bundle}/manifest.json not found; build the bundle first")
    sections = args.only or list(SECTIONS)
    duration = args.duration or (2 if args.quick else 10)
    n_texts = args.texts or (1000 if args.quick else 4000)
    n_shared = args.shared_texts or (200 if args.quick else 1000)
    scale = 0.6 if args.quick else 1.0
    # The window a SIGTERM races is about 0.1 s (see fault_sigterm): one trial says little.
    sigterm_trials = args.sigterm_trials or (1 if args.quick else 3)
    started = time.monotonic()
    env = environment()
    texts = load_texts(n_texts, args.seed)
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/bench_serve.py", *(argv or sys.argv[1:])]),
        "duration_s": duration,
        "texts": len(texts),
        "quick": args.quick,
        "fault_scale": scale,
    }
    faults: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)
        if "load" in sections:
            print("1. load", flush=True)
            result["load"] = bench_load(args.bundle, texts, duration, args.quick, workdir)
        if "shared" in sections:
            print("2. shared cache", flush=True)
            result["shared_cache"] = bench_shared_cache(args.bundle, texts[:n_shared], workdir)
        if "redis" in sections:
            faults["redis_restart"] = fault_redis_restart(args.bundle, texts[:300], workdir, scale)
            print(f"3a. Redis restart: {faults['redis_restart']}", flush=True)
        if "sigterm" in sections:
            faults["sigterm"] = [fault_sigterm(args.bundle, texts, workdir, scale, k) for k in range(sigterm_trials)]
            print(f"3b. SIGTERM: {faults['sigterm']}", flush=True)
        if "reload" in sections:
            faults["reload"] = fault_reload(args.bundle, texts[:200], workdir, scale)
            print(f"3c. reload: {faults['reload']}", flush=True)
        if "burst" in sections:
            print("3d. burst", flush=True)
            faults["burst"] = fault_burst(args.bundle, texts, workdir, 2 if args.quick else 3)
    result["faults"] = faults
    env["loadavg_after"] = os.getloadavg()
    result["environment"] = env
    result["wall_s"] = time.monotonic() - started
    if args.out is None:
        scratch = Path(tempfile.gettempdir()) / "bench_serve_scratch"
        args.out = scratch if (args.quick or args.only) else Path("bench/results/serve")
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.only:
        print(f"wrote {out.with_suffix('.json')} in {result['wall_s']:.0f} s", flush=True)
        return 0
    write_markdown(result, out.with_suffix(".md"))
    print(f"wrote {out.with_suffix('.md')} and .json in {result['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
