"""``tunelab monitor``: replay, run (follow a file or read stdin) and the alert history."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """examples:
  tunelab monitor make-stream --lang en --seed 0 --out runs/posts.jsonl   # a scenario
  tunelab monitor replay posts.jsonl --config monitor.yaml            # as fast as it goes
  tunelab monitor replay data/posts/ --config monitor.yaml --rate 200  # paced (posts/s)
  tunelab monitor run --config monitor.yaml --follow incoming.jsonl    # like tail -F
  producer | tunelab monitor run --config monitor.yaml --stdin
  tunelab monitor alerts --config monitor.yaml --limit 20
"""


def add_monitor(sub) -> None:
    m = sub.add_parser(
        "monitor",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="public-opinion monitoring: posts -> your models -> a database -> alerts",
        description="Analyse a stream of posts with your fine-tuned sentiment run (and keyword "
        "or NER entities), store them in SQLite or any SQLAlchemy database (personal data "
        "masked; a batch is acknowledged once committed; the same id is stored once), count "
        "them in windows of their own time and raise alerts from a YAML rule file (threshold, "
        "spike, mention; pending -> firing -> resolved with for: and cooldown).",
        epilog=EPILOG,
    )
    verbs = m.add_subparsers(dest="verb", metavar="VERB", required=True)
    r = verbs.add_parser("replay", help="replay a CSV/TSV/JSONL/TXT file or folder")
    r.add_argument("target", help="a file, or a folder of them (read in name order)")
    r.add_argument("--rate", type=float, help="posts per second (default: as fast as it goes)")
    run = verbs.add_parser("run", help="follow a growing JSONL file, or read stdin")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--follow", metavar="FILE", help="a JSONL file others append to")
    src.add_argument("--stdin", action="store_true", help="JSONL posts on standard input")
    mk = verbs.add_parser(
        "make-stream",
        help="write a replay scenario from the bundled reviews (bursts drawn from a seed)",
    )
    mk.add_argument("--out", required=True, help="the JSONL to write (and OUT.truth.json)")
    mk.add_argument("--lang", choices=("en", "zh"), default="en")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--windows", type=int, default=48, help="5-minute windows (default 48: 4 h)")
    al = verbs.add_parser("alerts", help="the alert history, newest first (JSON lines)")
    al.add_argument("--limit", type=int, default=50)
    for p in (r, run, al):
        p.add_argument("--config", required=True, help="monitor.yaml")
    mk.set_defaults(func=cmd_make_stream)
    m.set_defaults(func=cmd_monitor)


def cmd_make_stream(a: argparse.Namespace) -> int:
    from tunelab.monitor.scenario import make_stream

    truth = make_stream(a.out, a.lang, a.seed, a.windows)
    print(json.dumps(truth, ensure_ascii=False))
    return 0


def cmd_monitor(a: argparse.Namespace) -> int:
    from tunelab.monitor.config import load_config

    cfg = load_config(a.config)
    if a.verb == "alerts":
        from tunelab.store.alerts import alert_history
        from tunelab.store.db import open_store

        for row in alert_history(open_store(cfg.database), a.limit):
            print(json.dumps(row, default=str, ensure_ascii=False))
        return 0
    from tunelab.monitor import sources
    from tunelab.monitor.engine import Monitor

    if a.verb == "replay":
        posts = sources.replay(a.target, a.rate)
    elif a.follow:
        posts = sources.follow(a.follow)
    else:
        posts = sources.stdin_posts()
    mon = Monitor(cfg)
    print(
        f"tunelab monitor: {cfg.sentiment} ({mon.model.backend}) -> {cfg.database}; "
        f"{len(cfg.rules.rules)} rules, windows of {cfg.rules.window_s:g} s",
        file=sys.stderr,
    )
    try:
        summary = mon.run(posts)
    except KeyboardInterrupt:
        print("tunelab monitor: stopped; every batch reported stored is committed", file=sys.stderr)
        summary = mon.summary
    print(json.dumps(summary.to_dict(), ensure_ascii=False))
    return 0
