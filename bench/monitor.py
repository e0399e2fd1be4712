"""`tunelab monitor` benchmark (issue 22): detection quality, end-to-end throughput, resident
memory over a long replay, database bytes per post.

1. Detection quality over seeds (default 0..4) on the generated scenarios (``make_stream``: a
   negative burst, a volume spike and negative reviews about one entity, in real bundled
   reviews), judged as tests/test_monitor_scenario.py does: each burst's alert fires within two
   windows of its start and resolves after it; any other firing is a false alert. Variants:
   ``en`` (MiniLM run of configs/demo.yaml + the shipped keyword lists), ``zh`` (Gemma 3 270M
   LoRA run on 3,000 bundled Chinese reviews: MiniLM cannot read Chinese), ``ner`` (Chinese
   scenario, entities from a Gemma 3 270M LoRA NER run on 1,500 MSRA sentences; MSRA is the
   only NER data offline and is Chinese news): NER only with the entity burst about a place
   (北京, 上海, 香港: names a news NER tags), NER only with the burst about a brand (京东, 当当,
   三星), and NER on top of the keyword lists. The streams are the held-out splits.
2. Throughput, ingest -> analysis -> committed row, on the same posts of the English scenarios:
   A, ``Monitor`` on the int8 ONNX export (``tunelab export --format onnx --quantize int8``)
   named in a monitor.yaml; B, a hand-written loop, ``transformers.pipeline(batch_size=32)`` on
   the same run's folder + ``sqlite3`` (one INSERT per post, commit per 32); C, ``Monitor`` on
   the PyTorch run (reference). Each in a fresh process, interleaved A, B, C, A, B, C...; torch
   at 2 threads (ONNX Runtime too). Medians and A/B (target >= 3). Below target (or with
   ``--profile``), a stage breakdown and a cProfile of A.
3. Resident memory (VmRSS every 10,000 posts) over a replay of ``--rss-posts`` posts (scenario
   texts cycled, new ids, rising times). When the real int8 model would need over 25 minutes,
   it runs for ``--rss-minutes`` and a stand-in model object (same interface) replays them all.
4. Database bytes per post: the SQLite file + WAL after a checkpoint, over the posts stored.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/monitor.py [--seeds 0 1 2 3 4] \\
        [--variants en zh ner] [--rss-posts 1000000] [--skip-quality] [--skip-throughput] \\
        [--skip-rss] [--resume] [--work /tmp/benchmon] [--out bench/results/monitor.json]

Runs in the order: training (or reuse), 2 (while the machine is quietest), 1, 3, 4. Training
runs, exports, MSRA, the streams and the models' predictions on them (part 1) are cached in
--work and reused on a rerun; ``--resume`` also reuses each part a stopped run finished, when
its arguments and the monitor's code (git tree of src/tunelab/monitor, store, configs/monitor)
are the same. Prints tables and writes every figure, the machine (CPU, cores, versions) and
the command to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def git_state() -> dict:
    """The commit measured, and whether src/ differs from it (others work in this checkout)."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=BENCH.parent, capture_output=True, text=True
        ).stdout.strip()

    watched = ("src/tunelab/monitor", "src/tunelab/store", "configs/monitor")
    return {
        "head": git("rev-parse", "HEAD"),
        "src_changes": git("status", "--short", "src"),
        # what the measured code is: --resume reuses a part only when this is unchanged
        "monitor_code": [git("rev-parse", f"HEAD:{w}") for w in watched]
        + [git("status", "--short", *watched)],
    }


def part(name: str, key: dict, resume: bool, work: Path, result: dict, measure):
    """Measure a part, or with ``resume`` reuse WORK/parts/NAME.json when it was measured with
    the same arguments on the same monitor code (a run stopped half-way loses no finished part)."""
    path = work / "parts" / f"{name}.json"
    key = {**key, "monitor_code": result["git"]["monitor_code"]}
    if resume and path.exists():
        saved = json.loads(path.read_text())
        if saved["key"] == key:
            log(f"[resume] {name}: measured {saved['finished']}, reused")
            result.setdefault("resumed_parts", {})[name] = saved["finished"]
            result["part_seconds"][name] = saved["seconds"]
            return saved["result"]
    t0 = time.perf_counter()
    out = measure()
    seconds = round(time.perf_counter() - t0, 1)
    result["part_seconds"][name] = seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rec = {"key": key, "finished": finished, "seconds": seconds, "result": out}
    path.write_text(json.dumps(rec, ensure_ascii=False, default=str))
    return out


def runs_part(work: Path, variants: list[str], speed: bool, result: dict) -> None:
    """Train (or reuse) the runs the parts asked for need, and the int8 export."""
    from monitor_runs import export_int8, run

    names = {"en", "zh"} & set(variants)
    names |= {"zh", "ner"} if "ner" in variants else set()
    names |= {"en"} if speed else set()
    for n in sorted(names):
        r = run(n, work)
        s = r.get("summary", {})
        result["runs"][n] = {
            "folder": r["folder"],
            "command": r.get("command"),
            "train_wall_s": r.get("wall_s"),
            "reused_now": r["reused"],
            "test": s.get("test"),
            "validation": s.get("validation"),
        }
    if speed:
        e = export_int8("en", work)
        result["runs"]["en-int8"] = {k: e.get(k) for k in ("folder", "command", "wall_s", "export")}


def print_runs(result: dict) -> None:
    print("\n== Runs (cached in the work folder) ==")
    for n, r in result["runs"].items():
        t = r.get("test") or (r.get("export") or {}).get("metrics_after")
        brief = {k: round(v, 4) for k, v in (t or {}).items() if isinstance(v, float)}
        wall = r.get("train_wall_s", r.get("wall_s"))
        print(f"{n:8} {r['folder']}  built in {wall} s  test {brief}")
        print(f"         {r.get('command')}")


def print_throughput(t: dict) -> None:
    print(f"\n== 2. Throughput: {t['posts']} posts, {t['rounds']} rounds ({t['order']}) ==")
    print(f"{'':2} {'what':86} {'median posts/s':>14}  per round")
    for k, v in t["variants"].items():
        print(f"{k:2} {v['what'][:86]:86} {v['median_posts_per_s']:>14.1f}  {v['posts_per_s']}")
        print(f"{'':5}backend: {v['backend']}; median {v['median_cpu_ms_per_post']:.2f} CPU "
              "ms/post "
              f"(process CPU time, all threads); 1-min load after each: "
              f"{[round(r['loadavg_after'][0], 1) for r in v['runs']]}")  # fmt: skip
    per = ", ".join(f"{x:.2f}" for x in t["ratio_per_round"])
    print(
        f"A/B (median over median): {t['ratio_A_over_B']:.2f}x  (per round: {per}); target "
        f">= 3x: {'met' if t['meets_target'] else 'MISSED'};  C/B: {t['ratio_C_over_B']:.2f}x"
    )
    if "profile" in t:
        st = t["profile"]["stages"]
        print(f"\nWhere A's time goes (one more pass, {st['total_s']:.2f} s, stages wrapped):")
        for k, v in st["seconds"].items():
            print(f"  {k:58} {v:7.2f} s  {100 * v / st['total_s']:5.1f}%")
        print(f"cProfile of A (main thread; top by own time; full text {t['profile']['text']}):")
        print(f"  {'function':72} {'calls':>8} {'own s':>7} {'cum s':>7}")
        for r in t["profile"]["top_tottime"][:18]:
            print(
                f"  {r['function'][:72]:72} {r['calls']:>8} {r['tottime']:7.2f} {r['cumtime']:7.2f}"
            )


def print_memory(m: dict) -> None:
    print(f"\n== 3. Resident memory over a long replay (estimated real-model time "
          f"{m['estimated_real_minutes']:.1f} min) ==")  # fmt: skip
    for k, label in (("real", "real int8 ONNX model"), ("standin", "stand-in model object")):
        if k not in m:
            continue
        r, s = m[k], m[k]["summary"]
        limited = " (stopped by the time limit)" if r["time_limited"] else ""
        print(f"-- {label}: {r['posts']:,} posts{limited} in {r['seconds']:.0f} s, "
              f"{r['posts_per_s']:.0f} posts/s; {r['windows']} windows, {r['alerts']} alert "
              f"changes; backend {r['backend']}")  # fmt: skip
        step = max(1, len(r["samples"]) // 12)
        pts = r["samples"][::step] + ([r["samples"][-1]] if (len(r["samples"]) - 1) % step else [])
        print("   posts:  " + " ".join(f"{p['posts']:>8,}" for p in pts))
        print("   RSS MB: " + " ".join(f"{p['rss_mb']:>8.1f}" for p in pts))
        print(f"   after warm-up ({s['warm_posts']:,} posts) {s['warm_mb']:.1f} MB, at the end "
              f"{s['end_mb']:.1f} MB: growth {s['growth_mb']:+.1f} MB; range after warm-up "
              f"{s['min_after_warm_mb']:.1f}-{s['max_after_warm_mb']:.1f} MB; slope "
              f"{s['slope_mb_per_100k_posts']} MB per 100k posts; "
              f"peak {r['peak_mb']:.1f} MB")  # fmt: skip


def print_db(result: dict) -> None:
    print("\n== 4. Database bytes per post (SQLite file + WAL after a checkpoint) ==")
    rows = []
    for k, label in (("real", "real model"), ("standin", "stand-in")):
        if k in result.get("memory", {}):
            rows.append((f"monitor, long replay, {label}", result["memory"][k]["db"]))
    t = result.get("throughput")
    if t:
        rows.append(
            (f"monitor, {t['posts']} scenario posts (A)", t["variants"]["A"]["runs"][-1]["db"])
        )
        b = t["variants"]["B"]["runs"][-1]
        print(f"  hand-written sqlite3 table (id, source, time, text, label, score), no analyses "
              f"JSON: {b['db_bytes_per_post']} bytes/post")  # fmt: skip
    for label, d in rows:
        size = d["bytes_after_checkpoint"]
        print(f"  {label:44} {d['posts']:>9,} posts  {sum(size.values()) / 1e6:9.1f} MB "
              f"(file {size.get('', 0):,}, wal {size.get('-wal', 0):,})  "
              f"{d['bytes_per_post']} bytes/post")  # fmt: skip


def main() -> int:
    from tunelab.machine import describe

    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    a.add_argument(
        "--variants", nargs="+", choices=("en", "zh", "ner"), default=["en", "zh", "ner"]
    )
    a.add_argument("--rss-posts", type=int, default=1_000_000)
    a.add_argument("--rss-every", type=int, default=10_000, help="posts between RSS samples")
    a.add_argument(
        "--rss-minutes",
        type=float,
        default=20.0,
        help="time for the real-model replay when all posts would take over 25 minutes",
    )
    a.add_argument("--throughput-posts", type=int, default=3000)
    a.add_argument("--rounds", type=int, default=5, help="interleaved A, B, C rounds")
    a.add_argument("--profile", action="store_true", help="profile A even when it meets 3x")
    a.add_argument("--skip-quality", action="store_true")
    a.add_argument("--skip-throughput", action="store_true")
    a.add_argument("--skip-rss", action="store_true")
    a.add_argument(
        "--resume",
        action="store_true",
        help="reuse the parts a stopped run finished (same arguments, same monitor code)",
    )
    a.add_argument("--work", type=Path, default=Path("/tmp/benchmon"))
    a.add_argument("--out", type=Path, default=BENCH / "results" / "monitor.json")
    args = a.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = os.path.relpath(sys.executable, BENCH.parent)
    result: dict = {
        "command": shlex.join(["HF_HUB_OFFLINE=1", py, *sys.argv]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe(),
        "git": git_state(),
        "load_average_at_start": os.getloadavg(),
        "work": str(work),
        "runs": {},
        "part_seconds": {},
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str) + "\n")

    m = result["machine"]
    print(f"CPU: {m['cpu']}, {m['cores']} cores, flags {','.join(m['flags'])}; torch "
          f"{m['versions']['torch']}, onnxruntime {m['versions'].get('onnxruntime')}")  # fmt: skip
    t0 = time.perf_counter()
    speed = not (args.skip_throughput and args.skip_rss)
    runs_part(work, [] if args.skip_quality else args.variants, speed, result)
    result["part_seconds"]["runs"] = round(time.perf_counter() - t0, 1)
    print_runs(result)
    save()
    from monitor_speed import memory, probe_rate, throughput

    if not args.skip_throughput:
        key = {"posts": args.throughput_posts, "rounds": args.rounds, "profile": args.profile}
        result["throughput"] = part(
            "throughput",
            key,
            args.resume,
            work,
            result,
            lambda: throughput(work, args.throughput_posts, args.rounds, log, args.profile),
        )
        print_throughput(result["throughput"])
        save()
    if not args.skip_quality:
        from monitor_quality import measure, table

        result["quality"] = part(
            "quality",
            {"seeds": args.seeds, "variants": args.variants},
            args.resume,
            work,
            result,
            lambda: measure(args.variants, args.seeds, work, log),
        )
        print(f"\n== 1. Detection quality, seeds {args.seeds} (delays: windows of 5 min after the "
              "burst starts; 1 = at the end of its first window) ==")  # fmt: skip
        print(table(result["quality"]))
        save()
    if not args.skip_rss:

        def rss() -> dict:
            if "throughput" in result:
                rate = result["throughput"]["variants"]["A"]["median_posts_per_s"]
            else:
                rate = probe_rate(work, log)
            reuse = {**key, "monitor_code": result["git"]["monitor_code"]} if args.resume else None
            return memory(
                work, args.rss_posts, args.rss_every, rate, args.rss_minutes * 60, log, reuse
            )

        key = {"posts": args.rss_posts, "every": args.rss_every, "minutes": args.rss_minutes}
        result["memory"] = part("rss", key, args.resume, work, result, rss)
        print_memory(result["memory"])
    if "memory" in result or "throughput" in result:
        print_db(result)
    result["load_average_at_end"] = os.getloadavg()
    print(f"\nseconds per part: {result['part_seconds']}")
    save()
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
