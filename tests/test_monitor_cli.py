"""`tunelab monitor` end to end on the tiny sentiment run: a replay with an injected burst of
negative posts raises and resolves its alert, stores every post once with personal data masked;
SIGKILL mid-replay then a restart gives the counts and alerts of an uninterrupted run; bad
config and bad posts are one-line errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from conftest import FILLER, NEG, POS
from tunelab.store import schema
from tunelab.store.db import open_store

TUNELAB = str(Path(sys.executable).parent / "tunelab")
W = 300
RULES = """
window: 5m
entities:
  Acme: [acme]
rules:
  - {name: negative-surge, kind: threshold, metric: negative_share, op: ">", value: 0.5,
     min_volume: 10, for: 5m, cooldown: 15m, severity: critical}
"""


def _posts(path: Path, seed: int = 0) -> tuple[int, int]:
    """24 windows of 20 toy posts; windows 14-16 are 80% negative. Returns (posts, burst
    start in seconds)."""
    rng = random.Random(seed)
    lines = []
    for w in range(24):
        neg = 0.8 if 14 <= w <= 16 else 0.1
        for i in range(20):
            cues = NEG if rng.random() < neg else POS
            words = rng.sample(FILLER, 3) + rng.sample(cues, 2)
            rng.shuffle(words)
            text = " ".join(words) + (" call 13812345678" if i == 0 else "")
            t = w * W + i * (W / 20)
            lines.append(json.dumps({"id": f"{w}-{i}", "text": text, "time": t, "source": "app"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines), 14 * W


def _config(d: Path, run: Path, db: str) -> Path:
    (d / "rules.yaml").write_text(RULES, encoding="utf-8")
    cfg = d / f"monitor-{db}.yaml"
    cfg.write_text(
        f"database: {db}.db\nrules: rules.yaml\nsentiment: {run}\nbatch_size: 16\n",
        encoding="utf-8",
    )
    return cfg


def _monitor(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TUNELAB, "monitor", *args], capture_output=True, text=True, timeout=timeout
    )


def _alerts(db: Path) -> list[tuple]:
    engine = open_store(str(db))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.alerts.c.rule, schema.alerts.c.state, schema.alerts.c.started_at)
        ).all()
    return sorted((r.rule, r.state, str(r.started_at)) for r in rows)


def test_a_replay_raises_and_resolves_the_alert_and_stores_each_post_once(trained_runs, tmp_path):
    n, burst = _posts(tmp_path / "posts.jsonl")
    cfg = _config(tmp_path, trained_runs["full"], "a")
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["posts"] == summary["stored"] == n and summary["duplicates"] == 0
    states = [(a["rule"], a["state"], a["at"]) for a in summary["alerts"]]
    firing = [s for s in states if s[1] == "firing"]
    resolved = [s for s in states if s[1] == "resolved"]
    assert len(firing) == 1 and burst < firing[0][2] <= burst + 2 * W, states
    assert len(resolved) == 1 and resolved[0][2] > firing[0][2]
    assert "alert negative-surge firing" in r.stderr  # the log line
    # the same replay again stores nothing new and the history holds the alert once
    again = json.loads(
        _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg)).stdout.splitlines()[
            -1
        ]
    )
    assert again["stored"] == 0 and again["duplicates"] == n
    engine = open_store(str(tmp_path / "a.db"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.posts)).scalar() == n
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.analyses)).scalar() == n
        texts = conn.execute(sa.select(schema.posts.c.text)).scalars().all()
    assert not any("13812345678" in t for t in texts) and any("<phone>" in t for t in texts)
    history = [json.loads(x) for x in _monitor("alerts", "--config", str(cfg)).stdout.splitlines()]
    assert [h["state"] for h in history] == ["resolved"]  # one row per alert, its last state


def test_sigkill_mid_replay_then_a_restart_equals_an_uninterrupted_run(trained_runs, tmp_path):
    n, _ = _posts(tmp_path / "posts.jsonl", seed=1)
    clean = _config(tmp_path, trained_runs["full"], "clean")
    assert _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(clean)).returncode == 0
    cfg = _config(tmp_path, trained_runs["full"], "crash")
    proc = subprocess.Popen(
        [
            TUNELAB,
            "monitor",
            "replay",
            str(tmp_path / "posts.jsonl"),
            "--config",
            str(cfg),
            "--rate",
            "150",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "crash.db"
    deadline = time.time() + 120
    stored = 0
    while stored < n // 3 and time.time() < deadline:  # a third in, mid-batch most likely
        time.sleep(0.1)
        if db.exists():
            with open_store(str(db)).connect() as conn:
                stored = conn.execute(sa.select(sa.func.count()).select_from(schema.posts)).scalar()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < stored < n
    r = _monitor("replay", str(tmp_path / "posts.jsonl"), "--config", str(cfg))
    assert r.returncode == 0, r.stderr[-2000:]
    engine = open_store(str(db))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.posts)).scalar() == n
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.analyses)).scalar() == n
    assert _alerts(db) == _alerts(tmp_path / "clean.db") != []


def test_bad_config_and_bad_posts_are_one_line_errors(trained_runs, tmp_path):
    cfg = _config(tmp_path, trained_runs["full"], "bad")
    (tmp_path / "rules.yaml").write_text(RULES.replace("for: 5m", "for: soon"), encoding="utf-8")
    r = _monitor("replay", str(tmp_path), "--config", str(cfg))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "rules.yaml: rule 1 (negative-surge): for: 'soon' is not a duration" in r.stderr
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": 1, "text": "good"}\n{"id": 2, "text": "ok", "time": "noon"}\n')
    r = _monitor("replay", str(posts), "--config", str(cfg))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "posts.jsonl:2: field 'time'" in r.stderr
    cfg.write_text(cfg.read_text() + "colour: blue\n", encoding="utf-8")
    r = _monitor("replay", str(posts), "--config", str(cfg))
    assert "unknown key 'colour'" in r.stderr and r.returncode != 0
