"""deploy/: alert rules checked by promtool, and every Grafana panel query run against a live Prometheus that scraped
a live ``edgeopt-runtime serve`` (with a real Redis cache that is killed midway, so the cache-error panel has data)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import LocalServer, ServerProcess, binary, free_port, redis_server

from edgeopt_runtime.monitor import CONFIDENCE_EDGES, Reference
from edgeopt_runtime_fixtures import TinyBundle, rewrite_manifest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "edgeopt-serve.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool", "prometheus"), *args], capture_output=True, text=True, check=False)


def test_alert_rules_and_scrape_config_are_valid() -> None:
    checked = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    config = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_fire_when_they_should() -> None:
    tested = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def test_every_dashboard_panel_has_a_query() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["panels"] and all(panel["targets"] for panel in board["panels"])
    assert len(dashboard_queries()) >= 10


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[LocalServer]:
    server = redis_server(tmp_path).start()
    yield server
    server.kill()


def start_prometheus(workdir: Path, target_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{DEPLOY / 'prometheus' / 'alerts.yml'}]\n"
        "scrape_configs:\n"
        f"  - job_name: edgeopt\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
        encoding="utf-8",
    )
    argv = [
        binary("prometheus", "prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (workdir / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def query(http: httpx.Client, base: str, expr: str) -> list[dict[str, Any]]:
    answer = http.get(f"{base}/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_the_server_and_every_panel_query_answers(
    tiny_bundle: TinyBundle, tmp_path: Path, redis: LocalServer
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle.path, tmp_path / "bundle"))
    bins = len(CONFIDENCE_EDGES) - 1
    reference = Reference(
        texts=200,
        label_share={"ham": 0.9, "spam": 0.1},
        confidence_share=(0.0,) * (bins - 1) + (1.0,),
        truncated_share=0,
    )
    rewrite_manifest(bundle, lambda d: d.update(monitoring=reference.to_dict()))
    server = ServerProcess(bundle, "--backend", "onnx", "--cache", f"redis://127.0.0.1:{redis.port}/0")
    prometheus, base = start_prometheus(tmp_path, server.port)
    try:
        with httpx.Client(timeout=30) as http:
            texts = [*tiny_bundle.texts, "win " * 400]  # the last one is longer than max_seq_len
            for i in range(8):
                batch = [f"{t} {i}" for t in texts]
                assert http.post(f"{server.url}/v1/classify", json={"texts": batch}).status_code == 200
                assert http.post(f"{server.url}/v1/classify", json={"texts": batch}).status_code == 200  # hits
            assert http.post(f"{server.url}/v1/classify", content=b"{").status_code == 400
            redis.kill()  # the cache goes away: answers go on, errors are counted
            for i in range(3):
                response = http.post(f"{server.url}/v1/classify", json={"texts": [f"after redis {i}"]})
                assert response.status_code == 200
                time.sleep(1.1)  # past the client's one-second pause, so that it tries the server again
            deadline = time.monotonic() + 60
            while True:
                up = query(http, base, 'up{job="edgeopt"}') if prometheus.poll() is None else []
                errors = query(http, base, "edgeopt_cache_errors_total") if up else []
                if up and up[0]["value"][1] == "1" and errors and float(errors[0]["value"][1]) >= 2:
                    break
                assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "Prometheus did not scrape the server in 60 s"
                time.sleep(0.5)
            time.sleep(3)  # a few more scrapes, so that rate() over the panel windows has two points
            empty = [(title, expr) for title, expr in dashboard_queries() if not query(http, base, expr)]
            assert not empty, f"panel queries without data: {empty}"
            drift = query(http, base, "edgeopt_drift_label_psi")
            assert float(drift[0]["value"][1]) > 0  # the reference says 10% spam; the texts are half spam
            hits = query(http, base, 'edgeopt_cache_lookups_total{cache="redis",result="hit"}')
            assert float(hits[0]["value"][1]) == 8 * len(texts)
    finally:
        server.stop()
        prometheus.terminate()
        prometheus.wait(timeout=30)
