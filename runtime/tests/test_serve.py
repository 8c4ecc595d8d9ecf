"""``edgeopt-runtime serve``: the endpoints in-process (Starlette's test client), then a real server process."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import ServerProcess
from starlette.testclient import TestClient

from edgeopt_runtime import load_classifier
from edgeopt_runtime.cli import main
from edgeopt_runtime.serve import ServeSettings, create_app
from edgeopt_runtime_fixtures import TinyBundle

TOKEN = "t0ken-for-tests"


@pytest.fixture()
def client(tiny_bundle: TinyBundle, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServeSettings(str(tiny_bundle.path), backend="onnx", cache=f"sqlite:{tmp_path / 'c.sqlite'}", max_texts=8)
    )
    with TestClient(app) as test_client:
        yield test_client


def test_classify_answers_as_the_runtime_does(client: TestClient, tiny_bundle: TinyBundle) -> None:
    texts = list(tiny_bundle.texts[:5])
    response = client.post("/v1/classify", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    with load_classifier(tiny_bundle.path, backend="onnx", cache=False) as clf:
        expected = clf.predict_batch(texts)
        assert body["model"] == clf.manifest.fingerprint
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["score"] == pytest.approx(want.score, abs=1e-9)
        assert set(got) == {"label", "score", "scores", "cached", "truncated"}
        assert got["cached"] is False
    again = client.post("/v1/classify", json={"texts": texts[:1]}).json()
    assert again["predictions"][0]["cached"] is True


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"[1, 2]", 422, "invalid_field", None),
        (b'{"text": ["a"]}', 422, "invalid_field", "text"),
        (b'{"texts": "hello"}', 422, "invalid_field", "texts"),
        (b'{"texts": []}', 422, "invalid_field", "texts"),
        (b'{"texts": ["ok", 3]}', 422, "invalid_field", "texts[1]"),
        (b'{"texts": ["ok", "   "]}', 422, "invalid_field", "texts[1]"),
        (b'{"texts": ["a","b","c","d","e","f","g","h","i"]}', 422, "too_many_texts", "texts"),
        (b'{"texts": ["' + b"x" * 20_001 + b'"]}', 422, "text_too_long", "texts[0]"),
        (b"[" * 100_000, 400, "invalid_json", None),
        (b'{"texts": ["ok", "\\u200b\\u0000"]}', 422, "invalid_field", "texts[1]"),  # nothing the model reads
        (b'{"texts": ["\\u0007"]}', 422, "invalid_field", "texts[0]"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    client: TestClient, body: bytes, status: int, code: str, field: str | None
) -> None:
    response = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert error["message"]


def test_a_body_over_the_limit_gets_413(tiny_bundle: TinyBundle) -> None:
    app = create_app(ServeSettings(str(tiny_bundle.path), backend="onnx", cache="none", max_body_bytes=100))
    with TestClient(app) as small:
        response = small.post("/v1/classify", json={"texts": ["x" * 200]})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            yield b'{"texts": ["'
            yield b"y" * 500
            yield b'"]}'

        streamed = small.post("/v1/classify", content=chunks())
        assert streamed.status_code == 413


def test_other_endpoints(client: TestClient, tiny_bundle: TinyBundle) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    model = client.get("/v1/model").json()
    assert model["task"] == "text-classification" and model["backend"] == "onnx" and model["cache"] == "sqlite"
    assert model["fingerprint"] == ready["model"]
    wrong = client.post("/v1/embed", json={"texts": ["a"]})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "wrong_task"
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    method = client.get("/v1/classify")
    assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"
    document = client.get("/openapi.json").json()
    served = {route.path for route in client.app.routes}  # type: ignore[attr-defined]
    assert set(document["paths"]) == served
    assert document["components"]["schemas"]["TextsRequest"]["properties"]["texts"]["maxItems"] == 8


def test_metrics_count_requests_cache_and_drift(client: TestClient, tiny_bundle: TinyBundle) -> None:
    texts = list(tiny_bundle.texts[:6])
    client.post("/v1/classify", json={"texts": texts})
    client.post("/v1/classify", json={"texts": texts})
    client.post("/v1/classify", content=b"nope")
    text = client.get("/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edgeopt_requests_total", (("endpoint", "classify"), ("status", "200")))] == 2
    assert samples[("edgeopt_requests_total", (("endpoint", "classify"), ("status", "400")))] == 1
    assert samples[("edgeopt_request_errors_total", (("code", "invalid_json"), ("endpoint", "classify")))] == 1
    assert samples[("edgeopt_cache_lookups_total", (("cache", "sqlite"), ("result", "miss")))] == 6
    assert samples[("edgeopt_cache_lookups_total", (("cache", "sqlite"), ("result", "hit")))] == 6
    assert samples[("edgeopt_model_duration_seconds_count", (("backend", "onnx"),))] == 1
    assert samples[("edgeopt_tokenize_duration_seconds_count", (("backend", "onnx"),))] == 1
    assert samples[("edgeopt_texts_total", (("endpoint", "classify"),))] == 12
    assert samples[("edgeopt_monitor_window_texts", ())] == 6  # updated on the first answer (then once a second)
    info = [k for k in samples if k[0] == "edgeopt_model_info"]
    assert len(info) == 1 and dict(info[0][1])["backend"] == "onnx"
    shares = [v for (name, _labels), v in samples.items() if name == "edgeopt_label_share"]
    assert sum(shares) == pytest.approx(1.0)


def test_the_token_guards_every_endpoint_but_health(tiny_bundle: TinyBundle) -> None:
    app = create_app(ServeSettings(str(tiny_bundle.path), backend="onnx", cache="none", token=TOKEN))
    with TestClient(app) as guarded:
        for method, path in [
            ("POST", "/v1/classify"),
            ("GET", "/v1/model"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
        ]:
            response = guarded.request(method, path, json={"texts": ["a"]})
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Bearer")
            wrong = guarded.request(method, path, json={"texts": ["a"]}, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
        assert guarded.get("/healthz").status_code == 200
        assert guarded.get("/readyz").status_code == 200
        ok = guarded.post("/v1/classify", json={"texts": ["a"]}, headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


def test_a_full_queue_gets_429_with_retry_after(tiny_bundle: TinyBundle) -> None:
    app = create_app(ServeSettings(str(tiny_bundle.path), backend="onnx", cache="none", concurrency=1, queue_size=0))
    service = app.state.service
    gate = threading.Event()
    model = service.current.model
    original = model.predict_batch

    def slow(texts: list[str]) -> Any:
        gate.wait(10)
        return original(texts)

    model.predict_batch = slow  # the real model, held at a gate so that one request occupies the only slot
    with TestClient(app) as test_client:
        results: list[httpx.Response] = []
        first = threading.Thread(target=lambda: results.append(test_client.post("/v1/classify", json={"texts": ["a"]})))
        first.start()
        deadline = time.monotonic() + 10
        while service.pending == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = test_client.post("/v1/classify", json={"texts": ["b"]})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        gate.set()
        first.join(10)
        assert results[0].status_code == 200


def test_a_slow_model_call_gets_503_after_the_timeout(tiny_bundle: TinyBundle) -> None:
    app = create_app(ServeSettings(str(tiny_bundle.path), backend="onnx", cache="none", request_timeout_s=0.2))
    model = app.state.service.current.model
    original = model.predict_batch
    model.predict_batch = lambda texts: (time.sleep(1.0), original(texts))[1]
    with TestClient(app) as test_client:
        response = test_client.post("/v1/classify", json={"texts": ["a"]})
        assert response.status_code == 503 and response.json()["error"]["code"] == "timeout"


def test_reload_serves_the_new_model_and_never_its_old_cached_answer(
    tiny_bundle: TinyBundle, tmp_path: Path, embed_bundle: TinyBundle
) -> None:
    live = Path(shutil.copytree(tiny_bundle.path, tmp_path / "live"))
    app = create_app(ServeSettings(str(live), backend="onnx", cache=f"sqlite:{tmp_path / 'c.sqlite'}"))
    with TestClient(app) as test_client:
        before = test_client.post("/v1/classify", json={"texts": ["hello"]}).json()
        assert test_client.post("/v1/classify", json={"texts": ["hello"]}).json()["predictions"][0]["cached"]
        # The operator swaps in another bundle (here: the embed bundle) at the same path, then reloads.
        shutil.rmtree(live)
        shutil.copytree(embed_bundle.path, live)
        reloaded = test_client.post("/v1/admin/reload").json()
        assert reloaded["changed"] is True and reloaded["previous"] == before["model"]
        embedded = test_client.post("/v1/embed", json={"texts": ["hello"]}).json()
        assert embedded["model"] == reloaded["model"] and embedded["embeddings"][0]["cached"] is False
        assert test_client.post("/v1/classify", json={"texts": ["hello"]}).status_code == 409
        # A broken bundle: the reload fails, the model in service goes on answering.
        (live / "manifest.json").write_text("{", encoding="utf-8")
        failed = test_client.post("/v1/admin/reload")
        assert failed.status_code == 409 and failed.json()["error"]["code"] == "reload_failed"
        assert test_client.post("/v1/embed", json={"texts": ["hi"]}).status_code == 200


# Any character, lone surrogates and control / format / zero-width ones included.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.floats() | ANY_TEXT | st.lists(ANY_TEXT, min_size=1, max_size=4),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=8,
    )
)
def test_no_json_body_gets_a_500(client: TestClient, payload: Any) -> None:
    for body in ({"texts": payload}, payload):
        response = client.post(
            "/v1/classify", content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code in (200, 400, 422), response.text
        assert response.json()  # always a JSON body: predictions or an error


def test_serve_flags_are_checked_before_listening(
    tiny_bundle: TinyBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tiny_bundle.path), "--token-file", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == (
        f"edgeopt-runtime: error: --token-file {tmp_path / 'none'} does not exist; write a secret to it (one line)\n"
    )
    assert main(["serve", str(tiny_bundle.path), "--queue-size", "-1"]) == 2
    assert capsys.readouterr().err == "edgeopt-runtime: error: --queue-size -1 must be zero or a positive integer\n"
    assert main(["serve", str(tmp_path / "missing"), "--cache", "none"]) == 2
    assert "edgeopt-runtime: error: " in capsys.readouterr().err


# -- a real server process --------------------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_requests(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    server = ServerProcess(tiny_bundle.path, "--backend", "onnx", "--cache", "none", "--concurrency", "2")
    texts = [f"free prize {i} " * 40 for i in range(64)]
    results: list[int] = []

    def call() -> None:
        # A new connection per request: an idle keep-alive connection closed at shutdown is not a lost request.
        while True:
            try:
                with httpx.Client(timeout=30, headers={"connection": "close"}) as http:
                    results.append(http.post(f"{server.url}/v1/classify", json={"texts": texts}).status_code)
            except httpx.ConnectError:
                results.append(-1)  # refused: the listening socket is closed
                return
            except httpx.RemoteProtocolError:
                # Still in the kernel's accept queue when the listening socket closed: reset unread. Checked
                # below against the server's log: the server never read it.
                results.append(-2)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(results) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM so that the exit status says what ended it.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    out = server.output()
    assert "Finished server process" in out
    answered = [code for code in results if code >= 0]
    assert len(answered) >= 8 and set(answered) == {200}, results
    # Every request the server read was answered: as many 200s logged as the clients received.
    assert out.count('"POST /v1/classify HTTP/1.1" 200') == len(answered), results


def test_drain_answers_not_ready_and_serves_on_before_closing(tiny_bundle: TinyBundle) -> None:
    server = ServerProcess(tiny_bundle.path, "--backend", "onnx", "--cache", "none", "--drain", "1.5")
    with httpx.Client(timeout=10, headers={"connection": "close"}) as http:
        assert http.get(f"{server.url}/readyz").status_code == 200
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert http.get(f"{server.url}/readyz").status_code == 503  # a health checker stops sending
        assert http.post(f"{server.url}/v1/classify", json={"texts": ["still here"]}).status_code == 200
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert time.monotonic() - signalled >= 1.5


def test_sighup_reloads_without_failing_requests(
    tiny_bundle: TinyBundle, tmp_path: Path, embed_bundle: TinyBundle
) -> None:
    live = Path(shutil.copytree(tiny_bundle.path, tmp_path / "live"))
    server = ServerProcess(live, "--backend", "onnx", "--cache", f"sqlite:{tmp_path / 'c.sqlite'}")
    try:
        with httpx.Client(timeout=30) as http:
            first = http.get(f"{server.url}/v1/model").json()["fingerprint"]
            staged = Path(shutil.copytree(embed_bundle.path, tmp_path / "staged"))
            shutil.rmtree(live)
            staged.rename(live)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while http.get(f"{server.url}/v1/model").json()["fingerprint"] == first:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert http.post(f"{server.url}/v1/embed", json={"texts": ["a"]}).status_code == 200
    finally:
        server.stop()


def test_workers_add_up_their_metrics_and_sighup_restarts_them_on_the_new_bundle(
    tiny_bundle: TinyBundle, tmp_path: Path, embed_bundle: TinyBundle
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    live = Path(shutil.copytree(tiny_bundle.path, tmp_path / "live"))
    server = ServerProcess(live, "--backend", "onnx", "--cache", "none", "--workers", "2")
    try:
        with httpx.Client(timeout=30, headers={"connection": "close"}) as http:
            old = http.get(f"{server.url}/v1/model").json()["fingerprint"]
            for i in range(20):  # new connections, spread over both workers
                assert http.post(f"{server.url}/v1/classify", json={"texts": [f"hello {i}"]}).status_code == 200

            def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                text = http.get(f"{server.url}/metrics").text
                return {
                    (s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                }

            assert samples()[("edgeopt_texts_total", (("endpoint", "classify"),))] == 20
            staged = Path(shutil.copytree(embed_bundle.path, tmp_path / "staged"))
            shutil.rmtree(live)
            staged.rename(live)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get(f"{server.url}/v1/model").json()["fingerprint"] != old:
                        seen = {http.get(f"{server.url}/v1/model").json()["fingerprint"] for _ in range(10)}
                        if old not in seen:
                            break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the workers did not restart on the new bundle"
                time.sleep(0.2)
            # uvicorn restarts the workers one at a time: once the last old one has stopped, its model info
            # leaves the sum with it.
            while True:
                info = {dict(k[1])["fingerprint"]: v for k, v in samples().items() if k[0] == "edgeopt_model_info"}
                if info.get(old, 0) == 0:
                    break
                assert time.monotonic() < deadline, f"the old model is still reported: {info}"
                time.sleep(0.2)
            assert sorted(info.values())[-1] == 1
    finally:
        server.stop()
