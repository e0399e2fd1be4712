"""What goes wrong around the monitor, on real processes and a real PostgreSQL server: a webhook
that answers (every state change arrives as JSON) or is unreachable (retried, logged, never
holding up ingestion, the alerts still in the history); a database that refuses writes (a
one-line error, what was stored before is intact, a rerun completes it); two ingest workers on
one PostgreSQL storing each post once, and the dashboard's queries on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa

from serving_helpers import free_port
from test_monitor_cli import RULES, W, _config, _monitor, _posts
from tunelab.store import schema
from tunelab.store.db import open_store


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _with(cfg, extra: str) -> None:
    cfg.write_text(cfg.read_text() + extra, encoding="utf-8")


def test_webhook_gets_each_state_change_and_an_unreachable_one_blocks_nothing(
    trained_runs, tmp_path
):
    n, burst = _posts(tmp_path / "posts.jsonl", seed=2)
    hook = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    ok = _config(tmp_path, trained_runs["full"], "ok")
    _with(ok, f"webhook: http://127.0.0.1:{hook.server_port}/alerts\n")
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(ok))
    hook.shutdown()
    assert r.returncode == 0, r.stderr[-2000:]
    states = [(h["rule"], h["state"]) for h in _Hook.received]
    assert states == [("negative-surge", s) for s in ("pending", "firing", "resolved")]
    assert "negative_share > 0.5" in _Hook.received[1]["details"]["condition"]

    dead = _config(tmp_path, trained_runs["full"], "dead")
    _with(dead, f"webhook: http://127.0.0.1:{free_port()}/x\nwebhook_timeout: 1s\n")
    _with(dead, "webhook_retries: 1\n")
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(dead))
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "not delivered" in r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["stored"] == n
    with open_store(str(tmp_path / "dead.db")).connect() as conn:
        history = conn.execute(sa.select(schema.alerts.c.rule, schema.alerts.c.state)).all()
    assert [tuple(h) for h in history] == [("negative-surge", "resolved")]


def test_a_database_refusing_writes_is_a_one_line_error_and_loses_nothing(trained_runs, tmp_path):
    n, _ = _posts(tmp_path / "posts.jsonl", seed=4)
    lines = (tmp_path / "posts.jsonl").read_text().splitlines()
    (tmp_path / "first.jsonl").write_text("\n".join(lines[:200]) + "\n")
    cfg = _config(tmp_path, trained_runs["full"], "ro")
    assert _monitor("replay", str(tmp_path / "first.jsonl"), "--config", str(cfg)).returncode == 0
    db = tmp_path / "ro.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT seq, post_id, text FROM posts ORDER BY seq").fetchall()
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON posts "
            "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
        )
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (
        "the database refused the write (disk quota exceeded)" in r.stderr.strip().splitlines()[-1]
    )
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT seq, post_id, text FROM posts ORDER BY seq").fetchall() == before
        )
        conn.execute("DROP TRIGGER refuse")
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg))
    assert r.returncode == 0
    assert json.loads(r.stdout.splitlines()[-1])["stored"] == n - 200


def test_two_ingest_workers_on_one_postgresql_store_each_post_once(
    trained_runs, tmp_path, postgres_url
):
    import subprocess
    import sys
    from pathlib import Path

    from tunelab.monitor import queries

    n, burst = _posts(tmp_path / "posts.jsonl", seed=6)
    url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS monitor_workers"))
        conn.execute(sa.text("CREATE DATABASE monitor_workers"))
    db_url = postgres_url.rsplit("/", 1)[0] + "/monitor_workers"
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    cfg = tmp_path / "pg.yaml"
    cfg.write_text(
        f"database: {db_url}\nrules: rules.yaml\nsentiment: {trained_runs['full']}\n"
        "batch_size: 16\n",
        encoding="utf-8",
    )
    tunelab = str(Path(sys.executable).parent / "tunelab")
    workers = [  # the same stream twice, at once: overlapping batches, racing inserts
        subprocess.Popen(
            [tunelab, "monitor", "replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-1500:] for o in outs]
    stored = [json.loads(o[0].splitlines()[-1])["stored"] for o in outs]
    assert sum(stored) == n  # each post stored by exactly one of them
    pg = open_store(db_url)
    with pg.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.posts)).scalar() == n
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.analyses)).scalar() == n
        alerts = conn.execute(sa.select(schema.alerts.c.rule, schema.alerts.c.state)).all()
    assert [tuple(a) for a in alerts] == [("negative-surge", "resolved")]  # one row, not two
    o = queries.overview(pg, 2 * 3600, window_s=W)  # the dashboard's SQL on PostgreSQL
    assert o["bucket_s"] == W and o["totals"]["posts"] == n
    share = {p["t"]: p["negative_share"] for p in o["series"]}
    assert share[burst] > 0.5 > share[0]
    assert o["alerts"][0]["details"]["kind"] == "threshold"
