"""One bad request never hurts another, a damaged file never takes the server down, and every
response (errors included) is JSON, declared, and counted: a real `tunelab serve` process."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving_helpers import Server

FAULTY = [sys.executable, str(Path(__file__).parent / "faulty_serve.py")]
POISON = b'{"inputs": ["\\ud800abc"]}'  # valid JSON, a lone UTF-16 surrogate


def metric(text: str, line: str) -> float:
    m = re.search(re.escape(line) + r" ([0-9.e+]+)", text)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from tunelab.web.keys import add_key

    f = tmp_path_factory.mktemp("keys") / "keys.txt"
    return {"file": f, "user": add_key(f, "alice"), "admin": add_key(f, "ops", admin=True)}


@pytest.fixture(scope="module")
def copies(trained_runs, tmp_path_factory):
    """Two served copies of the full run, one of them damaged by the tests."""
    root = tmp_path_factory.mktemp("served")
    return {n: Path(shutil.copytree(trained_runs["full"], root / n)) for n in ("a", "b")}


@pytest.fixture(scope="module")
def server(copies, keys, tmp_path_factory):
    s = Server(
        [
            "--model",
            f"a={copies['a']}",
            "--model",
            f"b={copies['b']}",
            "--api-keys-file",
            str(keys["file"]),
            "--rate-limit",
            "0",
            "--auth-failure-limit",
            "5",
            "--max-wait-ms",
            "30",
            "--max-body-bytes",
            "5000",
        ],
        tmp_path_factory.mktemp("log") / "server.log",
        command=FAULTY,
    )
    yield s
    s.stop()


def _burst(server, key: str, bad_body: bytes, clients=(6, 2), rounds: int = 15):
    """``clients[0]`` threads send valid texts, ``clients[1]`` send ``bad_body``, together."""

    def valid(i: int) -> list[tuple[int, object]]:
        return [
            server.request("POST", "/v1/models/a/predict", {"inputs": [f"good film {i}"]}, key=key)[
                :2
            ]
            for _ in range(rounds)
        ]

    def bad(_: int) -> list[tuple[int, object]]:
        return [
            server.request("POST", "/v1/models/a/predict", key=key, raw=bad_body)[:2]
            for _ in range(rounds)
        ]

    with ThreadPoolExecutor(sum(clients)) as pool:
        good = [pool.submit(valid, i) for i in range(clients[0])]
        poisoned = [pool.submit(bad, i) for i in range(clients[1])]
        return [r for f in good for r in f.result()], [r for f in poisoned for r in f.result()]


def test_a_lone_surrogate_is_refused_and_fails_no_one_else(server, keys):
    good, bad = _burst(server, keys["user"], POISON)
    assert len(good) == 90 and {s for s, _ in good} == {200}
    assert {s for s, _ in bad} == {422}
    assert "surrogate" in str(bad[0][1])


def test_a_model_failure_fails_only_its_own_request(server, keys):
    # BOOM passes validation and breaks the forward pass it shares (tests/faulty_serve.py)
    good, bad = _burst(server, keys["user"], b'{"inputs": ["BOOM"]}')
    assert len(good) == 90 and {s for s, _ in good} == {200}
    assert {s for s, _ in bad} == {500}
    assert isinstance(bad[0][1], dict) and "other requests are unaffected" in bad[0][1]["detail"]
    text = server.request("GET", "/metrics")[1]
    assert metric(text, 'tunelab_requests_total{endpoint="predict",model="a",status="500"}') >= 30
    assert "Traceback" not in server.log.read_text()


def test_oversized_body_is_json_413_and_counted(server, keys):
    status, body, _ = server.request(
        "POST", "/v1/models/a/predict", {"inputs": "good " * 2000}, key=keys["user"]
    )
    assert status == 413 and "5,000 bytes" in body["detail"]
    text = server.request("GET", "/metrics")[1]
    assert metric(text, 'tunelab_requests_total{endpoint="predict",model="a",status="413"}') >= 1


def test_empty_inputs_give_no_predictions(server, keys):
    status, body, _ = server.request(
        "POST", "/v1/models/b/predict", {"inputs": []}, key=keys["user"]
    )
    assert (status, body) == (200, {"model": "b", "predictions": []})


def test_paths_only_for_admin_keys(server, keys, copies):
    user = server.request("GET", "/v1/models", key=keys["user"])[1]
    admin = server.request("GET", "/v1/models", key=keys["admin"])[1]
    assert [m["folder"] for m in user] == ["a", "b"]
    assert admin[0]["folder"] == str(copies["a"].resolve())


def test_a_damaged_weights_file_never_takes_the_server_down(server, keys, copies):
    """Truncated in place while served (SIGBUS with memory-mapped weights), then reloads of
    truncated, bit-flipped and missing files: 409, the old model serves on, and so does b."""
    weights = copies["a"] / "model.safetensors"
    original = weights.read_bytes()
    stop, codes = threading.Event(), []

    def traffic_on_b():
        while not stop.is_set():
            codes.append(
                server.request(
                    "POST", "/v1/models/b/predict", {"inputs": "fine"}, key=keys["user"]
                )[0]
            )

    t = threading.Thread(target=traffic_on_b)
    t.start()
    try:
        with open(weights, "r+b") as f:
            f.truncate(len(original) // 3)
        for _ in range(3):
            r = server.request("POST", "/v1/models/a/predict", {"inputs": "good"}, key=keys["user"])
            assert r[0] == 200, r
        damages = {
            "truncated": lambda: weights.write_bytes(original[: len(original) // 2]),
            "empty": lambda: weights.write_bytes(b""),
            "bit-flipped": lambda: weights.write_bytes(
                original[:-100] + bytes([original[-100] ^ 1]) + original[-99:]
            ),
            "missing": weights.unlink,
        }
        for name, damage in damages.items():
            damage()
            status, body, _ = server.request("POST", "/v1/models/a/reload", key=keys["admin"])
            assert status == 409, (name, body)
            assert "model.safetensors" in body["detail"] and "still serving" in body["detail"]
            r = server.request("POST", "/v1/models/a/predict", {"inputs": "good"}, key=keys["user"])
            assert r[0] == 200, (name, r)
        weights.write_bytes(original)
        assert server.request("POST", "/v1/models/a/reload", key=keys["admin"])[0] == 200
    finally:
        stop.set()
        t.join()
    assert server.proc.poll() is None
    assert len(codes) > 5 and set(codes) == {200}
    log = server.log.read_text()
    assert "reload of model a refused" in log and "Traceback" not in log


def test_failed_authentication_is_limited_per_address(server, keys):
    codes = [server.request("GET", "/v1/models", key=f"wrong-{i}")[0] for i in range(8)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    # blocked whatever key comes next: a right key cannot be told from a wrong one
    assert server.request("GET", "/v1/models", key=keys["user"])[0] == 429
    text = server.request("GET", "/metrics")[1]
    assert metric(text, 'tunelab_requests_total{endpoint="models",model="-",status="429"}') >= 3
    log = server.log.read_text()
    assert "5 failed authentications/min per address" in log  # the limits, printed at start


def test_without_keys_no_rate_limit_and_no_reload(trained_runs, tmp_path):
    s = Server(["--model", f"sent={trained_runs['full']}"], tmp_path / "log")
    try:
        codes = [
            s.request("POST", "/v1/models/sent/predict", {"inputs": "good"})[0] for _ in range(40)
        ]
        assert set(codes) == {200}
        status, body, _ = s.request("POST", "/v1/models/sent/reload")
        assert status == 403 and "--api-keys-file" in body["detail"]
        assert "no request rate limit" in s.log.read_text()
    finally:
        s.stop()


def test_a_model_damaged_at_start_up_leaves_the_others_serving(copies, trained_runs, tmp_path):
    bad = Path(shutil.copytree(trained_runs["full"], tmp_path / "bad"))
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    s = Server(["--model", f"bad={bad}", "--model", f"good={copies['b']}"], tmp_path / "log", False)
    try:
        s.wait("/healthz")
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body, _ = s.request("GET", "/readyz")
            if body.get("status") == "failed":
                break
            time.sleep(0.2)
        assert status == 503 and "model.safetensors" in body["error"], body
        assert s.request("POST", "/v1/models/good/predict", {"inputs": "fine"})[0] == 200
        status, body, _ = s.request("POST", "/v1/models/bad/predict", {"inputs": "fine"})
        assert status == 503 and "failed to load" in body["detail"]
    finally:
        s.stop()


def test_sigkill_during_start_up_changes_nothing(copies, tmp_path):
    """Killed at seeded moments while starting (importing, loading, serving): the folder is
    untouched and the next start serves."""
    import random
    import signal

    from tunelab.integrity import record_files
    from tunelab.runs import read_run

    rng = random.Random(19)
    for delay in sorted(rng.uniform(0.3, 4.0) for _ in range(3)):
        s = Server(["--model", f"m={copies['b']}"], tmp_path / f"log-{delay:.2f}", False)
        time.sleep(delay)
        s.stop(signal.SIGKILL)
        assert read_run(copies["b"]).files == record_files(copies["b"])
    s = Server(["--model", f"m={copies['b']}"], tmp_path / "log")
    try:
        assert s.request("POST", "/v1/models/m/predict", {"inputs": "fine"})[0] == 200
    finally:
        s.stop()
