"""`tunelab serve` as a real process on a loopback port: every endpoint, auth, limits, bad
requests, a concurrent burst, hot reload, graceful shutdown, several workers."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tunelab
from serving_helpers import Server
from tunelab.cli import main

WORDS = ["good", "great", "bad", "awful", "film", "plot", "fine", "dull", "wonderful", "terrible"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    f = d / "keys.txt"
    from tunelab.web.keys import add_key

    return {"file": f, "user": add_key(f, "alice"), "admin": add_key(f, "ops", admin=True)}


@pytest.fixture(scope="module")
def server(trained_runs, keys, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    s = Server(
        [
            "--model",
            f"sent={trained_runs['full']}",
            "--model",
            f"lora={trained_runs['lora']}",
            "--api-keys-file",
            str(keys["file"]),
            "--rate-limit",
            "0",
            "--max-wait-ms",
            "20",
            "--max-texts",
            "8",
            "--max-text-chars",
            "500",
            "--max-body-bytes",
            "20000",
            "--log-requests",
        ],
        log,
    )
    yield s
    s.stop()


def texts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def test_health_ready_docs_and_openapi(server):
    assert server.request("GET", "/healthz")[:2] == (200, {"status": "ok"})
    assert server.request("GET", "/readyz")[1] == {"status": "ready", "models": ["sent", "lora"]}
    status, page, _ = server.request("GET", "/docs")
    assert status == 200 and "swagger" in page.lower()
    spec = server.request("GET", "/openapi.json")[1]
    # one predict operation per served model, each with the body that model takes
    assert {
        "/v1/models",
        "/v1/models/sent/predict",
        "/v1/models/lora/predict",
        "/v1/models/{name}/reload",
    } <= set(spec["paths"])
    body = spec["paths"]["/v1/models/sent/predict"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"].endswith("TextRequest")


def test_predictions_match_the_model_in_python(server, keys, trained_runs):
    sample = texts(5)
    expected = tunelab.load(trained_runs["full"]).predict(sample)
    status, body, _ = server.request(
        "POST", "/v1/models/sent/predict", {"inputs": sample}, key=keys["user"]
    )
    assert status == 200 and body["model"] == "sent"
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    status, one, _ = server.request(
        "POST", "/v1/models/lora/predict", {"inputs": "good great"}, key=keys["user"]
    )
    assert status == 200 and len(one["predictions"]) == 1
    assert set(one["predictions"][0]) == {"label", "score", "probabilities"}


def test_models_endpoint_describes_each_model(server, keys):
    status, models, _ = server.request("GET", "/v1/models", key=keys["user"])
    assert status == 200
    by_name = {m["name"]: m for m in models}
    assert by_name["sent"]["task"] == "text-classification"
    assert by_name["lora"]["method"] == "lora" and by_name["sent"]["method"] == "full"
    assert by_name["sent"]["labels"] == ["negative", "positive"]
    assert (
        "accuracy" in by_name["sent"]["metrics"]
        and by_name["sent"]["backend"] == "pytorch fp32 (cpu)"
    )


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer "])
def test_missing_or_wrong_keys_get_401_without_detail(server, header):
    import urllib.request

    req = urllib.request.Request(server.url + "/v1/models")
    if header:
        req.add_header("Authorization", header)
    try:
        urllib.request.urlopen(req)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401 and e.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(e.read()) == {"detail": "missing or invalid API key"}


def test_auth_comes_before_parsing(server):
    status, body, _ = server.request("POST", "/v1/models/sent/predict", raw=b"{not json")
    assert status == 401


def test_keys_are_stored_hashed(keys):
    text = keys["file"].read_text()
    assert keys["user"] not in text and keys["admin"] not in text
    assert re.fullmatch(r"alice:user:[0-9a-f]{64}\nops:admin:[0-9a-f]{64}\n", text)


@pytest.mark.parametrize(
    "body, raw, ctype, status, message",
    [
        ({"inputs": ["x"] * 9}, None, "application/json", 413, "the limit is 8"),
        (
            {"inputs": "good " * 120},
            None,
            "application/json",
            422,
            "600 characters; the limit is 500",
        ),
        (None, b'{"inputs": ' + b'"a",' * 6000 + b'"b"}', "application/json", 413, ""),
        (None, b'{"inputs": "good"', "application/json", 400, "malformed JSON"),
        (None, b'{"inputs": "good"}', "text/plain", 415, "Content-Type: application/json"),
        (None, b'{"inputs": ["\\ud800abc"]}', "application/json", 422, "lone UTF-16 surrogate"),
        ({"inputs": "   "}, None, "application/json", 422, "empty text"),
        ({"inputs": "good", "extra": 1}, None, "application/json", 422, ""),
        (
            {"inputs": {"question": "q", "context": "c"}},
            None,
            "application/json",
            422,
            "valid string",
        ),
        ({"text": "good"}, None, "application/json", 422, ""),
    ],
)
def test_bad_requests_get_clear_4xx(server, keys, body, raw, ctype, status, message):
    got, answer, _ = server.request(
        "POST", "/v1/models/sent/predict", body, key=keys["user"], raw=raw, content_type=ctype
    )
    assert got == status, answer
    if message:
        assert message in json.dumps(answer)
    # one error model: every body is JSON; 422s in the declared validation format
    assert isinstance(answer, dict) and "detail" in answer, answer
    if status == 422:
        assert isinstance(answer["detail"], list) and {"loc", "msg", "type"} <= set(
            answer["detail"][0]
        ), answer
    else:
        assert isinstance(answer["detail"], str), answer


def test_unknown_model_is_404(server, keys):
    status, body, _ = server.request(
        "POST", "/v1/models/nope/predict", {"inputs": "good"}, key=keys["user"]
    )
    assert status == 404 and "unknown model 'nope'" in body["detail"]


def test_concurrent_burst_loses_nothing_and_batches(server, keys, trained_runs):
    sample = texts(96, seed=1)
    expected = tunelab.load(trained_runs["full"]).predict(sample)

    def call(i):
        return server.request(
            "POST", "/v1/models/sent/predict", {"inputs": sample[i]}, key=keys["user"]
        )

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(len(sample))))
    assert all(r[0] == 200 for r in results), [r for r in results if r[0] != 200][:3]
    for (_, body, _), want in zip(
        results, expected, strict=True
    ):  # each answer belongs to its own text
        assert body["predictions"][0]["label"] == want["label"]
        assert body["predictions"][0]["score"] == pytest.approx(want["score"], abs=1e-5)
    metrics = server.request("GET", "/metrics")[1]
    count = _metric(metrics, 'tunelab_batch_size_count{model="sent"}')
    total = _metric(metrics, 'tunelab_batch_size_sum{model="sent"}')
    assert total >= 96 and total / count > 1.5, (total, count)  # requests shared passes


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_requests_by_model_and_status(server, keys):
    server.request("POST", "/v1/models/lora/predict", {"inputs": "good"}, key=keys["user"])
    server.request("GET", "/v1/models")  # 401
    text = server.request("GET", "/metrics")[1]
    assert (
        _metric(text, 'tunelab_requests_total{endpoint="predict",model="lora",status="200"}') >= 1
    )
    assert _metric(text, 'tunelab_requests_total{endpoint="models",model="-",status="401"}') >= 1
    assert (
        'tunelab_request_latency_seconds_bucket{endpoint="predict",le="0.1",model="lora"}' in text
    )
    assert 'tunelab_queue_depth{model="sent"}' in text


def test_reload_needs_an_admin_key_and_drops_nothing(server, keys):
    status, body, _ = server.request("POST", "/v1/models/sent/reload", key=keys["user"])
    assert status == 403 and body == {"detail": "reloading a model needs an admin key"}
    stop = threading.Event()
    codes: list[int] = []

    def traffic():
        while not stop.is_set():
            codes.append(
                server.request(
                    "POST", "/v1/models/sent/predict", {"inputs": "good film"}, key=keys["user"]
                )[0]
            )

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    before = server.request("GET", "/v1/models", key=keys["user"])[1]
    status, info, _ = server.request("POST", "/v1/models/sent/reload", key=keys["admin"])
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert status == 200 and info["name"] == "sent"
    assert len(codes) > 10 and set(codes) == {200}
    assert [m["name"] for m in before] == ["sent", "lora"]


def test_request_log_masks_personal_data(server, keys):
    secret = "mail me at jane.doe@example.com or call +86 138-0013-8000, id 11010519491231002X"
    assert (
        server.request("POST", "/v1/models/sent/predict", {"inputs": secret}, key=keys["user"])[0]
        == 200
    )
    time.sleep(0.2)
    log = server.log.read_text()
    assert "<email>" in log and "<phone>" in log and "<id>" in log
    assert "jane.doe" not in log and "0013" not in log and "11010519491231002X" not in log


def test_masking_rules():
    from tunelab.web.guard import mask_personal_data

    assert mask_personal_data("write to a.b+c@mail.example.org now") == "write to <email> now"
    assert (
        mask_personal_data("电话 13800138000 身份证 110105194912310021")
        == "电话 <phone> 身份证 <id>"
    )
    assert mask_personal_data("(555) 123-4567") == "<phone>"
    assert mask_personal_data("a great film, 10 out of 10") == "a great film, 10 out of 10"


def test_rate_limit_answers_429(trained_runs, keys, tmp_path):
    s = Server(
        [
            "--model",
            f"sent={trained_runs['full']}",
            "--api-keys-file",
            str(keys["file"]),
            "--rate-limit",
            "3",
        ],
        tmp_path / "log",
    )
    try:
        codes = [
            s.request("POST", "/v1/models/sent/predict", {"inputs": "good"}, key=keys["user"])[:3]
            for _ in range(5)
        ]
        assert [c[0] for c in codes] == [200, 200, 200, 429, 429]
        assert int(codes[3][2]["retry-after"]) >= 1
        # the limit is per key: another key still gets through
        assert (
            s.request("POST", "/v1/models/sent/predict", {"inputs": "good"}, key=keys["admin"])[0]
            == 200
        )
    finally:
        s.stop()


def test_graceful_shutdown_finishes_requests_in_flight(trained_runs, tmp_path):
    s = Server(
        [
            "--model",
            f"sent={trained_runs['full']}",
            "--max-wait-ms",
            "1500",
            "--max-batch-size",
            "64",
        ],
        tmp_path / "log",
    )
    got = []
    t = threading.Thread(
        target=lambda: got.append(s.request("POST", "/v1/models/sent/predict", {"inputs": "good"}))
    )
    t.start()
    time.sleep(0.5)  # the request now waits in the batcher
    # uvicorn re-raises the signal once it has shut down gracefully
    assert s.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    t.join()
    assert got and got[0][0] == 200 and got[0][1]["predictions"][0]["label"]
    log = s.log.read_text()
    assert "Waiting for connections to close" in log or "Shutting down" in log, log


def test_two_workers_serve_and_share_metrics(trained_runs, tmp_path):
    s = Server(["--model", f"sent={trained_runs['full']}", "--workers", "2"], tmp_path / "log")
    try:
        ready, end = 0, time.time() + 120
        while ready < 10 and time.time() < end:  # each worker loads its own copy
            ready = ready + 1 if s.request("GET", "/readyz")[0] == 200 else 0
            time.sleep(0.05)
        for _ in range(12):
            assert s.request("POST", "/v1/models/sent/predict", {"inputs": "good"})[0] == 200
        text = s.request("GET", "/metrics")[1]
        assert (
            _metric(text, 'tunelab_requests_total{endpoint="predict",model="sent",status="200"}')
            == 12
        )
    finally:
        s.stop()


def test_onnx_export_is_served_on_onnxruntime(trained_runs, tmp_path):
    out = tmp_path / "onnx"
    assert (
        main(
            [
                "export",
                "--model-dir",
                str(trained_runs["full"]),
                "--format",
                "onnx",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    s = Server(["--model", f"fast={out}"], tmp_path / "log")
    try:
        models = s.request("GET", "/v1/models")[1]
        assert models[0]["backend"] == "onnxruntime fp32"
        status, body, _ = s.request("POST", "/v1/models/fast/predict", {"inputs": ["good"]})
        want = tunelab.load(trained_runs["full"]).predict(["good"])[0]
        assert status == 200 and body["predictions"][0]["label"] == want["label"]
    finally:
        s.stop()


def test_serve_refuses_bad_arguments(tmp_path, capsys):
    assert main(["serve", "--model", "x"]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err
    assert main(["serve", "--model", f"x={tmp_path}"]) == 2
    assert "not a tunelab run folder" in capsys.readouterr().err
    bad = tmp_path / "keys.txt"
    bad.write_text("alice:user:plaintext-key\n")
    assert main(["keys", "add", "bob", "--file", str(bad)]) == 0
    capsys.readouterr()
    from tunelab.errors import TunelabError
    from tunelab.web.keys import read_keys

    with pytest.raises(TunelabError, match=r"keys.txt:1: expected name:role:sha256-hex"):
        read_keys(bad)
