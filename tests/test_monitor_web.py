"""`tunelab monitor serve` as a real server on the tiny sentiment run: the ingest route behind API
keys (acknowledged after the commit, stored once per id, each bad item named), a database that
refuses writes (503, nothing half-stored, the server keeps serving, a retry stores the batch),
the dashboard's JSON, the Prometheus gauges the exported alerting rules read, and the period
report as HTML and CSV."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving_helpers import Server
from test_monitor_cli import RULES, W, _posts
from tunelab.web.keys import add_key

TUNELAB = str(Path(sys.executable).parent / "tunelab")


@pytest.fixture(scope="module")
def server(trained_runs, tmp_path_factory):
    d = tmp_path_factory.mktemp("monitor-serve")
    (d / "rules.yaml").write_text(RULES, encoding="utf-8")
    cfg = d / "monitor.yaml"
    cfg.write_text(
        f"database: m.db\nrules: rules.yaml\nsentiment: {trained_runs['full']}\n", encoding="utf-8"
    )
    key = add_key(d / "keys.txt", "ingest")
    srv = Server(
        ["--config", str(cfg), "--api-keys-file", str(d / "keys.txt")],
        d / "serve.log",
        command=[TUNELAB, "monitor", "serve"],
    )
    yield srv, key, d
    srv.stop()


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_ingest_needs_a_key_stores_once_and_names_each_bad_item(server):
    srv, key, d = server
    batch = {
        "posts": [{"id": "a1", "text": "mail me: jo@example.com", "time": -86400, "source": "s"}]
    }
    assert srv.request("POST", "/v1/monitor/posts", batch)[0] == 401
    status, body, _ = srv.request("POST", "/v1/monitor/posts", batch, key=key)
    assert status == 200 and body == {
        "received": 1,
        "stored": 1,
        "duplicates": 0,
        "stored_ids": ["a1"],
    }
    assert srv.request("POST", "/v1/monitor/posts", batch, key=key)[1]["duplicates"] == 1
    with sqlite3.connect(d / "m.db") as conn:  # acknowledged: committed, masked
        assert conn.execute("SELECT text FROM posts WHERE post_id='a1'").fetchone() == (
            "mail me: <email>",
        )
    bad = {"posts": [{"id": "b1", "text": "fine"}, {"id": "b2", "text": " "}, {"text": "x"}]}
    status, body, _ = srv.request("POST", "/v1/monitor/posts", bad, key=key)
    assert status == 422
    locs = {tuple(e["loc"]) for e in body["detail"]}
    assert locs == {("body", "posts", 1, "text"), ("body", "posts", 2, "id")}
    status, body, _ = srv.request(
        "POST", "/v1/monitor/posts", {"posts": [{"id": 1, "text": "t", "time": "noon"}]}, key=key
    )
    assert status == 422 and "not ISO 8601" in body["detail"][0]["msg"]
    too_many = {"posts": [{"id": i, "text": "t"} for i in range(1001)]}
    assert srv.request("POST", "/v1/monitor/posts", too_many, key=key)[0] == 422
    with sqlite3.connect(d / "m.db") as conn:  # none of the refused batches' posts
        assert conn.execute("SELECT count(*) FROM posts WHERE post_id LIKE 'b%'").fetchone() == (0,)


def test_a_database_refusing_writes_gets_503_and_a_retry_stores_the_batch(server):
    srv, key, d = server
    with sqlite3.connect(d / "m.db") as conn:  # the database rejects every new post
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON posts "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    batch = {"posts": [{"id": f"r{i}", "text": "awful", "time": -86000 + i} for i in range(5)]}
    status, body, _ = srv.request("POST", "/v1/monitor/posts", batch, key=key)
    assert status == 503 and "refused by the test" in body["detail"]
    assert "nothing of this batch was stored" in body["detail"]
    assert srv.request("GET", "/v1/monitor/alerts", key=key)[0] == 200  # still serving
    with sqlite3.connect(d / "m.db") as conn:
        conn.execute("DROP TRIGGER refuse")
    status, body, _ = srv.request("POST", "/v1/monitor/posts", batch, key=key)
    assert status == 200 and body["stored"] == 5


def test_the_dashboard_json_report_and_prometheus_rules_agree_with_the_stream(server, tmp_path):
    srv, key, d = server
    n, burst = _posts(tmp_path / "posts.jsonl", seed=3)
    posts = _lines(tmp_path / "posts.jsonl")
    for i in range(0, n, 100):
        assert (
            srv.request("POST", "/v1/monitor/posts", {"posts": posts[i : i + 100]}, key=key)[0]
            == 200
        )
    status, o, _ = srv.request("GET", "/v1/monitor/overview?span=2h", key=key)
    assert status == 200 and o["bucket_s"] == W
    assert sum(p["volume"] for p in o["series"]) == o["totals"]["posts"] == n
    share = {p["t"]: p["negative_share"] for p in o["series"]}
    assert min(share[burst + k * W] for k in range(3)) > 0.5 > max(share[0], share[W])
    assert [s["name"] for s in o["sources"]] == ["app"]
    firing = [a for a in o["alerts"] if a["rule"] == "negative-surge"]
    assert firing and "negative_share > 0.5" in firing[0]["details"]["condition"]
    assert all("13812345678" not in p["text"] for p in o["negative_posts"])
    assert srv.request("GET", "/v1/monitor/overview?span=forever", key=key)[0] == 400

    # the exported alerting rules read gauges this server publishes
    cfg = str(d / "monitor.yaml")
    out = subprocess.run(
        [TUNELAB, "monitor", "prometheus-rules", "--config", cfg], capture_output=True, text=True
    )
    rule = yaml.safe_load(out.stdout)["groups"][0]["rules"][0]
    assert rule["alert"] == "negative-surge" and rule["for"] == "5m"
    assert rule["labels"]["severity"] == "critical"
    metrics = srv.request("GET", "/metrics", key=key)[1]
    for name in ("tunelab_monitor_window_negative_share", "tunelab_monitor_window_posts"):
        assert f'{name}{{group="all"}}' in metrics and name in rule["expr"]

    # the period report: one CSV row per window, the burst's windows marked with the alert
    r = subprocess.run(
        [TUNELAB, "monitor", "report", "--config", cfg, "--since", "2h", "--format", "csv"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert sum(int(x["posts"]) for x in rows) == n
    marked = [x["window_start"] for x in rows if "negative-surge" in x["alerts"]]
    assert marked and all(x["alerts"] == "" for x in rows[:10])
    html = tmp_path / "report.html"
    r = subprocess.run(
        [
            TUNELAB,
            "monitor",
            "report",
            "--config",
            cfg,
            "--since",
            "1970-01-01T00:00:00Z",
            "--format",
            "html",
            "--output",
            str(html),
        ],
        capture_output=True,
        text=True,
    )
    page = html.read_text(encoding="utf-8")
    assert r.returncode == 0 and "data:image/png;base64," in page and "negative-surge" in page
    r = subprocess.run(
        [TUNELAB, "monitor", "report", "--config", cfg, "--since", "last week"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--since" in r.stderr
