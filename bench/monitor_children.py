"""The measurements of parts 2-4 of bench/monitor.py (throughput, resident memory, database
size), each in a child process of its own
(``python bench/monitor_children.py child '{json}'``, one JSON line out), so no run inherits
another's threads, caches or heap; only the part named in each child is timed (models are
loaded and warmed up on 256 other posts first).

- ``monitor``: ``Monitor(load_config(yaml))`` on the posts, timed around ``Monitor.run``: read
  from the source, analysed, masked, committed (one transaction per batch of 64), windows and
  rules. ``profile`` adds a stage breakdown and a cProfile of a second pass.
- ``pipeline``: what a user writes by hand: ``transformers.pipeline("text-classification",
  model=RUN, batch_size=32)`` over batches of 32 posts, one ``INSERT`` per post (id, source,
  time, text, label, score) into a plain ``sqlite3`` table, ``commit()`` per batch.
- ``rss``: a long replay (scenario texts cycled with new ids, one post every 6 s of post time,
  about 50 per 5-minute window), VmRSS sampled every 10,000 posts, then the SQLite file and its
  WAL measured after a checkpoint.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitor_runs import ENV, ROOT  # noqa: E402

THREADS = 2
CHILD_ENV = {**ENV, "OMP_NUM_THREADS": str(THREADS)}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def db_bytes(path: str, posts: int) -> dict:
    """SQLite file + WAL over the posts stored, after a checkpoint that empties the WAL."""
    before = {s: os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)}
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    con.close()
    after = {s: os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)}
    total = sum(after.values())
    return {
        "posts": posts,
        "bytes_before_checkpoint": before,
        "bytes_after_checkpoint": after,
        "pages": pages,
        "free_pages": free,
        "bytes_per_post": round(total / posts, 1) if posts else None,
    }


class StandIn:
    """A stand-in for a loaded sentiment model (the interface Monitor uses: ``labels``,
    ``backend``, ``predict(texts, batch_size=...)``): a label from the text's CRC32 (about
    15% negative) at a fixed score, so the replay measures the pipeline, not a model."""

    labels = ["negative", "positive"]
    backend = "stand-in (no model: label from CRC32 of the text)"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        out = []
        for t in texts:
            neg = zlib.crc32(t.encode()) % 100 < 15
            p = 0.9 if neg else 0.1
            out.append(
                {
                    "label": "negative" if neg else "positive",
                    "score": max(p, 1 - p),
                    "probabilities": {"negative": p, "positive": 1 - p},
                }
            )
        return out


# --- the children ---------------------------------------------------------------------------
def _posts(path: str) -> list:
    from tunelab.monitor.sources import replay

    return list(replay(path))


def _fresh(db: str) -> None:
    for s in ("", "-wal", "-shm", ".migrate-lock"):
        Path(db + s).unlink(missing_ok=True)


def child_monitor(a: dict) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from tunelab.monitor.config import load_config
    from tunelab.monitor.engine import Monitor

    posts, warm_posts = _posts(a["posts"]), _posts(a["warm"])
    cfg = load_config(a["config"])
    for db in (a["db"], a["db"] + ".warm"):
        _fresh(db)
    warm = Monitor(replace(cfg, database=a["db"] + ".warm"))  # loads the model from the config
    warm.run(iter(warm_posts))
    mon = Monitor(replace(cfg, database=a["db"]), model=warm.model)
    t0, c0 = time.perf_counter(), time.process_time()
    s = mon.run(iter(posts))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {
        "cpu_s": cpu,
        "loadavg_after": os.getloadavg(),
        "backend": warm.model.backend,
        "posts": s.posts,
        "stored": s.stored,
        "seconds": seconds,
        "posts_per_s": s.posts / seconds,
        "db": db_bytes(a["db"], s.stored),
    }
    if a.get("profile"):
        out["stages"] = _stages(cfg, warm.model, posts, a["db"] + ".stages")
        out["profile"] = _profile(cfg, warm.model, posts, a["db"] + ".prof", a["profile"])
    return out


def _stages(cfg, model, posts, db: str) -> dict:
    """Wall seconds per stage of one more pass, measured by wrapping each stage."""
    import tunelab.monitor.engine as engine
    import tunelab.store.posts as store
    from tunelab.monitor.engine import Monitor

    _fresh(db)
    mon = Monitor(replace(cfg, database=db), model=model)
    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    class Model:
        labels, backend = model.labels, model.backend
        predict = staticmethod(
            timed("model.predict (tokenize + ONNX/torch + decode)", model.predict)
        )

    saved = (engine.store_posts, store.mask)
    mon.model = Model()
    mon.keywords = timed("keyword entities (regex)", mon.keywords)
    mon.windows.add = timed("windows", mon.windows.add)
    mon._on_window = timed("rules + alert rows", mon._on_window)  # type: ignore[method-assign]
    engine.store_posts = timed("store_posts (mask + INSERT ... RETURNING + commit)", saved[0])
    store.mask = timed("  of which mask()", saved[1])
    t0 = time.perf_counter()
    try:
        mon.run(iter(posts))
    finally:
        engine.store_posts, store.mask = saved
    total = time.perf_counter() - t0
    spent["other (queue, reader thread, Analysed rows, summary)"] = total - sum(
        v for k, v in spent.items() if not k.startswith("  ")
    )
    return {"total_s": total, "seconds": spent}


def _profile(cfg, model, posts, db: str, out_path: str) -> list[dict]:
    import cProfile
    import pstats

    from tunelab.monitor.engine import Monitor

    _fresh(db)
    mon = Monitor(replace(cfg, database=db), model=model)
    prof = cProfile.Profile()
    prof.enable()
    mon.run(iter(posts))
    prof.disable()
    with open(out_path, "w") as f:
        pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(30)
    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({fn})",
                "calls": nc,
                "tottime": tt,
                "cumtime": ct,
            }
        )
    rows.sort(key=lambda r: -r["tottime"])
    return rows[:25]


def child_pipeline(a: dict) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from transformers import pipeline

    posts, warm_posts = _posts(a["posts"]), _posts(a["warm"])
    pipe = pipeline("text-classification", model=a["model"], batch_size=32)
    pipe([p.text for p in warm_posts])
    _fresh(a["db"])
    con = sqlite3.connect(a["db"])
    con.execute(
        "CREATE TABLE posts (id TEXT PRIMARY KEY, source TEXT, time TEXT, text TEXT, "
        "label TEXT, score REAL)"
    )
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(posts), 32):
        chunk = posts[i : i + 32]
        outs = pipe([p.text for p in chunk])
        cur = con.cursor()
        for p, o in zip(chunk, outs, strict=True):
            cur.execute(
                "INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?)",
                (p.post_id, p.source, p.time.isoformat(), p.text, o["label"], o["score"]),
            )
        con.commit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = con.execute("SELECT count(*) FROM posts").fetchone()[0]
    con.close()
    return {
        "cpu_s": cpu,
        "loadavg_after": os.getloadavg(),
        "backend": f"transformers.pipeline, torch {pipe.model.dtype}",
        "posts": len(posts),
        "stored": n,
        "seconds": seconds,
        "posts_per_s": len(posts) / seconds,
        "db_bytes_per_post": round(os.path.getsize(a["db"]) / n, 1),
    }


def child_rss(a: dict) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from tunelab.monitor.config import load_config
    from tunelab.monitor.engine import Monitor
    from tunelab.store.posts import Post

    texts = [p.text for p in _posts(a["texts"])]
    cfg = replace(load_config(a["config"]), database=a["db"])
    _fresh(a["db"])
    mon = Monitor(cfg, model=StandIn() if a["standin"] else None)
    t_start = time.monotonic()
    deadline = t_start + a["max_seconds"]
    limit = a["max_posts"]

    # post times from 2025-01-01, one every 6 s: 1,000,000 posts end in March 2025, far from
    # the wall clock (Monitor.tick closes windows on the clock once post times reach it)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def posts():
        for i in range(limit):
            if i % 1000 == 0 and time.monotonic() > deadline:
                return
            yield Post(f"rss-{i}", texts[i % len(texts)], start + timedelta(seconds=6 * i), "r")

    samples = [{"posts": 0, "rss_mb": rss_mb(), "s": 0.0}]
    process, every = mon.process, a["every"]

    def sampled(batch):
        process(batch)
        if mon.summary.posts // every > (mon.summary.posts - len(batch)) // every:
            samples.append(
                {
                    "posts": mon.summary.posts,
                    "rss_mb": round(rss_mb(), 1),
                    "s": round(time.monotonic() - t_start, 1),
                }
            )

    mon.process = sampled  # type: ignore[method-assign]
    s = mon.run(posts())
    if samples[-1]["posts"] != s.posts:
        samples.append({"posts": s.posts, "rss_mb": round(rss_mb(), 1), "s": round(s.seconds, 1)})
    db = db_bytes(a["db"], s.stored)  # before the engine closes (the last close checkpoints)
    mon.engine.dispose()
    return {
        "backend": mon.model.backend,
        "posts": s.posts,
        "stored": s.stored,
        "seconds": s.seconds,
        "posts_per_s": s.posts / s.seconds,
        "windows": s.windows,
        "alerts": len(s.alerts),
        "time_limited": s.posts < limit,
        "open_windows_at_end": len(mon.windows.open),
        "peak_mb": round(peak_mb(), 1),
        "samples": samples,
        "db": db,
    }


CHILDREN = {"monitor": child_monitor, "pipeline": child_pipeline, "rss": child_rss}


def child(kind: str, args: dict, log, timeout: float | None = None) -> dict:
    """Run one measurement in a fresh process; its JSON result."""
    cmd = [sys.executable, __file__, "child", json.dumps({"kind": kind, **args})]
    p = subprocess.run(
        cmd, cwd=ROOT, env=CHILD_ENV, capture_output=True, text=True, timeout=timeout
    )
    if p.returncode:
        sys.exit(f"{kind} child failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    sys.path.insert(0, str(ROOT / "src"))
    spec = json.loads(sys.argv[2])
    print(json.dumps(CHILDREN[spec.pop("kind")](spec)))
