"""Throughput and resident memory of `tunelab monitor` (parts 2-4 of bench/monitor.py): the
parent's side. Each measurement runs in a child process (bench/monitor_children.py).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from monitor_children import THREADS, child
from monitor_runs import ROOT


# --- the parent's side ------------------------------------------------------------------------
def prepare_posts(work: Path, n: int, warm: int = 256) -> tuple[str, str]:
    """The first ``n`` posts of the English scenarios (seeds 0, 1, ... one after the other in
    post time), and ``warm`` more for the warm-ups: WORK/speed/posts.jsonl and warm.jsonl."""
    from datetime import datetime

    from monitor_runs import stream

    rows: list[dict] = []
    seed = 0
    while len(rows) < n + warm:
        path, truth = stream(work, "en", seed)
        shift = timedelta(seconds=seed * 48 * truth["window_s"])
        for line in path.open(encoding="utf-8"):
            r = json.loads(line)
            r["time"] = (datetime.fromisoformat(r["time"]) + shift).isoformat()
            rows.append(r)
        seed += 1
    d = work / "speed"
    d.mkdir(parents=True, exist_ok=True)
    for name, part in (("posts", rows[:n]), ("warm", rows[n : n + warm])):
        (d / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8"
        )
    return str(d / "posts.jsonl"), str(d / "warm.jsonl")


def monitor_yaml(work: Path, name: str, sentiment: str) -> str:
    path = work / "speed" / f"monitor-{name}.yaml"
    path.write_text(
        f"database: {work / 'speed' / name}.db\nrules: {ROOT / 'configs/monitor/rules.yaml'}\n"
        f"sentiment: {sentiment}\n"  # the default batch size
    )
    return str(path)


def throughput(work: Path, n: int, rounds: int, log, profile: bool = False) -> dict:
    """A (Monitor, int8 ONNX export), B (the hand-written pipeline loop) and C (Monitor, the
    PyTorch run) in fresh processes, interleaved A, B, C, A, B, C, ...; medians and A/B."""
    import statistics

    from monitor_runs import export_int8, run

    folder = run("en", work)["folder"]
    exp = export_int8("en", work)
    posts, warm = prepare_posts(work, n)
    d = work / "speed"
    variants = {
        "A": ("monitor", {"config": monitor_yaml(work, "int8", exp["folder"])}),
        "B": ("pipeline", {"model": folder}),
        "C": ("monitor", {"config": monitor_yaml(work, "pytorch", folder)}),
    }
    names = {
        "A": "tunelab monitor, int8 ONNX export (via monitor.yaml)",
        "B": "hand-written: transformers.pipeline(batch_size=32) + sqlite3 INSERT/commit per 32",
        "C": "tunelab monitor, PyTorch run (reference)",
    }
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for i in range(rounds):
        for k, (kind, extra) in variants.items():
            r = child(kind, {**extra, "posts": posts, "warm": warm, "db": str(d / f"{k}.db")}, log)
            runs[k].append(r)
            r["cpu_ms_per_post"] = 1000 * r["cpu_s"] / r["posts"]
            log(f"[throughput] round {i + 1}/{rounds} {k}: {r['posts_per_s']:.1f} posts/s "
                f"{r['cpu_ms_per_post']:.2f} CPU ms/post, load {r['loadavg_after'][0]:.1f} "
                f"({r['stored']} stored, {r['seconds']:.2f} s, {r['backend']})")  # fmt: skip
    med = {k: statistics.median(r["posts_per_s"] for r in v) for k, v in runs.items()}
    out = {
        "posts": n,
        "rounds": rounds,
        "order": "A, B, C per round, each in a fresh process",
        "torch_threads": THREADS,
        "export": exp,
        "variants": {
            k: {
                "what": names[k],
                "backend": runs[k][0]["backend"],
                "median_posts_per_s": med[k],
                "median_cpu_ms_per_post": statistics.median(r["cpu_ms_per_post"] for r in runs[k]),
                "posts_per_s": [round(r["posts_per_s"], 1) for r in runs[k]],
                "runs": runs[k],
            }
            for k in variants
        },
        "ratio_A_over_B": med["A"] / med["B"],
        "ratio_per_round": [
            a["posts_per_s"] / b["posts_per_s"] for a, b in zip(runs["A"], runs["B"], strict=True)
        ],
        "ratio_C_over_B": med["C"] / med["B"],
        "target": "A >= 3x B",
    }
    out["meets_target"] = out["ratio_A_over_B"] >= 3
    if profile or not out["meets_target"]:
        prof = str(d / "profile.txt")
        r = child("monitor", {**variants["A"][1], "posts": posts, "warm": warm,
                              "db": str(d / "P.db"), "profile": prof}, log)  # fmt: skip
        out["profile"] = {"text": prof, "stages": r["stages"], "top_tottime": r["profile"]}
    return out


def probe_rate(work: Path, log) -> float:
    """posts/s of the int8 Monitor on 2,000 posts (one child): to size the long replay."""
    from monitor_runs import export_int8

    posts, warm = prepare_posts(work, 2000)
    cfg = monitor_yaml(work, "int8", export_int8("en", work)["folder"])
    r = child("monitor", {"config": cfg, "posts": posts, "warm": warm,
                          "db": str(work / "speed" / "probe.db")}, log)  # fmt: skip
    log(f"[rss] probe: {r['posts_per_s']:.0f} posts/s")
    return r["posts_per_s"]


def _kept(work: Path, name: str, args: dict, key: dict | None, measure) -> dict:
    """A child's result, kept in WORK/parts/NAME.json; reused when ``key`` (None: never) and
    the child's arguments are those it was measured with (--resume after a stopped run)."""
    path = work / "parts" / f"{name}.json"
    if key is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved["key"] == key and saved["args"] == args:
            return {**saved["result"], "resumed_from": saved["finished"]}
    t0 = time.perf_counter()
    r = measure()
    r["wall_s"] = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    done = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path.write_text(json.dumps({"key": key, "args": args, "finished": done, "result": r}))
    return r


def memory(
    work: Path, posts: int, every: int, est_rate: float, limit_s: float, log, key=None
) -> dict:
    """The long replay through the int8 Monitor; when it would take over 25 minutes, as many
    posts as fit in ``limit_s`` and, besides, all of them through the stand-in model. ``key``:
    reuse each replay a stopped run finished (see _kept)."""
    from monitor_runs import export_int8

    exp = export_int8("en", work)
    texts, _ = prepare_posts(work, 3000)
    cfg = monitor_yaml(work, "int8", exp["folder"])
    d = work / "speed"
    need_s = posts / est_rate
    split = need_s > 25 * 60
    log(f"[rss] {posts} posts at about {est_rate:.0f} posts/s would take {need_s / 60:.1f} min: "
        + ("real model for %.0f min, and a stand-in for all of them" % (limit_s / 60)
           if split else "real model for all of them"))  # fmt: skip
    base = {"texts": texts, "config": cfg, "max_posts": posts, "every": every}
    out = {"estimated_real_minutes": need_s / 60, "split": split}
    real = {**base, "db": str(d / "rss-real.db"), "standin": False,
            "max_seconds": limit_s if split else 1e9}  # fmt: skip
    out["real"] = _kept(work, "rss-real", real, key, lambda: child("rss", real, log))
    log(f"[rss] real model: {out['real']['posts']} posts in {out['real']['seconds']:.0f} s")
    if split:
        standin = {**base, "db": str(d / "rss-standin.db"), "standin": True, "max_seconds": 1e9}
        out["standin"] = _kept(
            work, "rss-standin", standin, key, lambda: child("rss", standin, log)
        )
        log(f"[rss] stand-in: {out['standin']['posts']} posts in "
            f"{out['standin']['seconds']:.0f} s")  # fmt: skip
    for k in ("real", "standin"):
        if k in out:
            out[k]["summary"] = flatness(out[k]["samples"])
    return out


def flatness(samples: list[dict]) -> dict:
    """RSS after warm-up (the first sample at or past a tenth of the posts, at most 50,000),
    at the end, the growth between, and the least-squares slope after warm-up."""
    end = samples[-1]
    warm_at = min(50_000, max(10_000, end["posts"] // 10))
    warm = next((s for s in samples if s["posts"] >= warm_at), end)
    after = [s for s in samples if s["posts"] >= warm["posts"]]
    slope = None
    if len(after) >= 3:
        xs, ys = [s["posts"] for s in after], [s["rss_mb"] for s in after]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = (
            sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 100_000
            if sxx
            else None
        )
    return {
        "start_mb": samples[0]["rss_mb"],
        "warm_posts": warm["posts"],
        "warm_mb": warm["rss_mb"],
        "end_posts": end["posts"],
        "end_mb": end["rss_mb"],
        "growth_mb": round(end["rss_mb"] - warm["rss_mb"], 1),
        "min_after_warm_mb": min(s["rss_mb"] for s in after),
        "max_after_warm_mb": max(s["rss_mb"] for s in after),
        "slope_mb_per_100k_posts": None if slope is None else round(slope, 2),
    }
