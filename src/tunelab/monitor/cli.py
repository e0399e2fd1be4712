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
  tunelab monitor serve --config monitor.yaml          # dashboard + POST /v1/monitor/posts
  tunelab monitor report --config monitor.yaml --since 24h --format html --output report.html
  tunelab monitor prometheus-rules --config monitor.yaml > tunelab-alerts.yml
  tunelab monitor backfill archive/ --config monitor.yaml --model exports/int8   # Ray Data
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
        help="write a replay scenario from the bundled reviews' held-out splits (bursts drawn "
        "from a seed)",
    )
    mk.add_argument("--out", required=True, help="the JSONL to write (and OUT.truth.json)")
    mk.add_argument("--lang", choices=("en", "zh"), default="en")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--windows", type=int, default=48, help="5-minute windows (default 48: 4 h)")
    mk.add_argument(
        "--entity",
        action="append",
        help="a name the entity burst may be about (repeat; default: the shipped rule file's "
        "keyword entities: Hollywood, Disney, Bond / 京东, 当当, 三星)",
    )
    al = verbs.add_parser("alerts", help="the alert history, newest first (JSON lines)")
    al.add_argument("--limit", type=int, default=50)
    sv = verbs.add_parser(
        "serve",
        help="the live dashboard and the HTTP ingest route (POST /v1/monitor/posts)",
        description="Serve the dashboard (/monitor) and, unless --no-ingest, the ingest route "
        'POST /v1/monitor/posts: a JSON body {"posts": [{id, text, time, source}, ...]}, '
        "answered once the batch is committed. API keys as in `tunelab serve`.",
    )
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=7870)
    sv.add_argument(
        "--api-keys-file", help="API keys (`tunelab keys add`); needed off this machine"
    )
    sv.add_argument("--no-ingest", action="store_true", help="the dashboard only (no models)")
    rp = verbs.add_parser("report", help="a period's summary as HTML (with plots) or CSV")
    rp.add_argument("--since", default="24h", help="a duration before --until (24h, 7d) or ISO")
    rp.add_argument("--until", help="ISO time (default: the newest post)")
    rp.add_argument("--format", choices=("html", "csv"), default="html")
    rp.add_argument("--output", help="the file to write (default: standard output)")
    bf = verbs.add_parser(
        "backfill",
        help="a large archive through Ray Data into the database (tunelab[distributed])",
        description="Analyse and store every post of an archive (a file or folder of "
        "JSONL/CSV/TSV/TXT) with Ray Data: files read in parallel, a pool of actors each "
        "loading the model once (a run, or its int8 ONNX export), batches stored idempotently "
        "(a rerun stores nothing twice). No alert rules run (replay the archive for alerts).",
    )
    bf.add_argument("archive", help="a file, or a folder of them")
    bf.add_argument("--model", help="a run or export folder (default: the config's sentiment)")
    bf.add_argument("--address", help="a Ray cluster to join (auto, HOST:6379); default local")
    bf.add_argument("--concurrency", type=int, help="analysis actors (default: one per CPU)")
    bf.add_argument("--batch-size", type=int, default=256)
    pr = verbs.add_parser(
        "prometheus-rules",
        help="the rule file as Prometheus alerting rules, for teams that run Alertmanager",
    )
    pr.add_argument("--output", help="the file to write (default: standard output)")
    for p in (r, run, al, sv, rp, pr, bf):
        p.add_argument("--config", required=True, help="monitor.yaml")
    mk.set_defaults(func=cmd_make_stream)
    m.set_defaults(func=cmd_monitor)


def cmd_make_stream(a: argparse.Namespace) -> int:
    from tunelab.monitor.scenario import make_stream

    truth = make_stream(a.out, a.lang, a.seed, a.windows, entities=a.entity)
    print(json.dumps(truth, ensure_ascii=False))
    return 0


def cmd_monitor(a: argparse.Namespace) -> int:
    from tunelab.monitor.config import load_config

    cfg = load_config(a.config)
    if a.verb == "serve":
        return _serve(a, cfg)
    if a.verb == "report":
        from tunelab.monitor.report import write_report

        write_report(cfg, a.since, a.until, a.format, a.output)
        return 0
    if a.verb == "prometheus-rules":
        from tunelab.files import atomic_write_text
        from tunelab.monitor.prometheus import alerting_rules

        text = alerting_rules(cfg.rules)
        if a.output:
            atomic_write_text(a.output, text)
        else:
            sys.stdout.write(text)
        return 0
    if a.verb == "backfill":
        from tunelab.monitor.backfill import backfill

        result = backfill(
            a.archive,
            a.model or cfg.sentiment,
            cfg.database,
            batch_size=a.batch_size,
            concurrency=a.concurrency,
            address=a.address,
            rules=cfg.rules_file,
        )
        print(json.dumps(result))
        return 0
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


def _serve(a: argparse.Namespace, cfg) -> int:
    import uvicorn

    from tunelab import __version__
    from tunelab.errors import TunelabError
    from tunelab.monitor.web import monitor_part
    from tunelab.web.admission import (
        AUTH_FAILURES_PER_MINUTE,
        MAX_BODY_BYTES,
        REQUESTS_PER_MINUTE_WITH_KEYS,
        Limits,
    )
    from tunelab.web.app import create_app
    from tunelab.web.keys import read_keys

    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_keys_file:
        raise TunelabError(f"--host {a.host} opens the monitor to others: give --api-keys-file")
    keys = read_keys(a.api_keys_file) if a.api_keys_file else []
    limits = Limits.of(
        REQUESTS_PER_MINUTE_WITH_KEYS if keys else 0, AUTH_FAILURES_PER_MINUTE, MAX_BODY_BYTES
    )
    app = create_app(
        [monitor_part(cfg, ingest=not a.no_ingest)],
        keys,
        limits,
        title="tunelab monitor",
        version=__version__,
        description="The monitor's dashboard and ingest API (/v1/monitor).",
        brand="monitor",
    )
    print(f"tunelab monitor: http://{a.host}:{a.port}/monitor ({cfg.database})", file=sys.stderr)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
