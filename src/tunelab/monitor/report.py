"""``tunelab monitor report``: a period's summary, read from the database.

--format csv    one row per window: start, end, posts, negative, negative share, mean
                score, the alerts active in it
--format html   one self-contained page (plots embedded): the totals, volume and sentiment
                over time with the alerts shaded, sources and topics, top and trending
                entities, the alerts with what fired and why, the latest negative posts
                (masked as stored)
"""

from __future__ import annotations

import base64
import csv
import html
import io
import sys
from datetime import datetime, timezone

from tunelab.errors import ConfigError
from tunelab.monitor import queries
from tunelab.monitor.config import MonitorConfig


def _when(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def resolve_period(engine, since: str, until: str | None) -> tuple[float, datetime | None]:
    """``since`` is a duration before ``until`` (24h, 7d) or an ISO time."""
    from tunelab.monitor.rules import parse_duration

    end = _when(until, "--until")
    if since[:1].isdigit() and since[-1:] in "smhd" and "-" not in since:
        return parse_duration(since, "--since"), end
    start = _when(since, "--since")
    assert start is not None
    stop = end or queries.latest_time(engine) or datetime.now(timezone.utc)
    if start >= stop:
        raise ConfigError(f"--since {since} is not before the end of the period ({stop})")
    return (stop - start).total_seconds(), stop


def write_report(
    cfg: MonitorConfig, since: str, until: str | None, fmt: str, output: str | None
) -> dict:
    from tunelab.store.db import open_store

    engine = open_store(cfg.database)
    span, end = resolve_period(engine, since, until)
    o = queries.overview(engine, span, end, window_s=cfg.rules.window_s)
    text = _csv(o) if fmt == "csv" else _html(o, cfg)
    if output:
        from tunelab.files import atomic_write_text

        atomic_write_text(output, text)
        print(f"tunelab monitor: {fmt.upper()} report in {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return o


def _active(o: dict, start: float, end: float) -> list[str]:
    """Rules whose alert fired during [start, end)."""
    names = []
    for a in o["alerts"]:
        if not a["fired_at"]:
            continue
        fired = datetime.fromisoformat(a["fired_at"]).timestamp()
        stop = datetime.fromisoformat(a["resolved_at"]).timestamp() if a["resolved_at"] else 1e18
        if fired < end and stop > start:
            names.append(a["rule"])
    return sorted(set(names))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _csv(o: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "window_start",
            "window_end",
            "posts",
            "negative",
            "negative_share",
            "mean_score",
            "alerts",
        ]
    )
    b = o["bucket_s"]
    for p in o["series"]:
        share = "" if p["negative_share"] is None else p["negative_share"]
        score = "" if p["mean_score"] is None else p["mean_score"]
        alerts = ";".join(_active(o, p["t"], p["t"] + b))
        w.writerow(
            [_iso(p["t"]), _iso(p["t"] + b), p["volume"], p["negative"], share, score, alerts]
        )
    return buf.getvalue()


def _plot(o: dict) -> str:
    """Volume and negative share over time, alerts shaded; a PNG as a data URL."""
    import matplotlib.dates as mdates

    from tunelab.plots import plt  # headless matplotlib

    s = o["series"]
    t = [datetime.fromtimestamp(p["t"], timezone.utc) for p in s]
    width = o["bucket_s"] / 86400 * 0.9
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    a.bar(t, [p["volume"] for p in s], width=width, color="#93c5fd", label="posts")
    a.bar(t, [p["negative"] for p in s], width=width, color="#f87171", label="negative")
    a.set_ylabel("posts per window"), a.legend(loc="upper left"), a.grid(alpha=0.3)
    share = [p["negative_share"] if p["negative_share"] is not None else float("nan") for p in s]
    b.plot(t, share, color="#dc2626", label="negative share")
    b.set_ylim(0, 1), b.set_ylabel("negative share"), b.grid(alpha=0.3)
    for al in o["alerts"]:
        if not al["fired_at"]:
            continue
        x0 = datetime.fromisoformat(al["fired_at"])
        x1 = datetime.fromisoformat(al["resolved_at"]) if al["resolved_at"] else t[-1]
        for ax in (a, b):
            ax.axvspan(x0, x1, color="#fde68a", alpha=0.5, lw=0)
        b.annotate(al["rule"], (x0, 0.92), fontsize=8, color="#92400e")
    b.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(headers: list[str], rows: list[list]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if rows
        else ("<p class=muted>none</p>")
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _html(o: dict, cfg: MonitorConfig) -> str:
    tot = o["totals"]
    groups = [
        [f"source: {g['name']}", g["volume"], _pct(g["negative_share"])] for g in o["sources"]
    ]
    groups += [[f"topic: {g['name']}", g["volume"], _pct(g["negative_share"])] for g in o["topics"]]
    alerts = [
        [
            a["rule"],
            a["severity"],
            a["state"],
            a["started_at"],
            a["fired_at"],
            a["resolved_at"],
            a["value"],
            (a["details"] or {}).get("condition", ""),
        ]
        for a in o["alerts"]
    ]
    ents = o["entities"]
    e = html.escape
    sections = [
        f"<h1>Monitoring report</h1><p class=muted>{e(o['from'])} to {e(o['to'])} (UTC, the "
        f"posts' own time); windows of {o['bucket_s'] // 60} min; database "
        f"{e(cfg.database)}</p>",
        _table(
            ["posts", "negative", "negative share", "alerts", "firing at the end"],
            [
                [
                    tot["posts"],
                    tot["negative"],
                    _pct(tot["negative_share"]),
                    tot["alerts"],
                    tot["firing"],
                ]
            ],
        ),
        f"<h2>Volume and sentiment</h2><img alt='volume and negative share' src='{_plot(o)}'>",
        "<h2>Alerts</h2>"
        + _table(
            ["rule", "severity", "state", "started", "fired", "resolved", "value", "why"], alerts
        ),
        "<h2>Sources and topics</h2>" + _table(["group", "posts", "negative share"], groups),
        "<h2>Top entities</h2>"
        + _table(
            ["entity", "posts", "negative"],
            [[x["entity"], x["volume"], x["negative"]] for x in ents["top"]],
        ),
        "<h2>Trending entities</h2><p class=muted>mentions in the last three windows against "
        "their own earlier rate</p>"
        + _table(
            ["entity", "recent", "baseline", "growth"],
            [[x["entity"], x["recent"], x["baseline"], x["growth"]] for x in ents["trending"]],
        ),
        "<h2>Latest negative posts</h2><p class=muted>personal data masked before storage</p>"
        + _table(
            ["time", "source", "text", "score", "entities"],
            [
                [p["time"], p["source"], p["text"], p["score"], ", ".join(p["entities"])]
                for p in o["negative_posts"]
            ],
        ),
    ]
    style = (
        "body{font:14px/1.45 system-ui,'Noto Sans CJK SC',sans-serif;max-width:1100px;margin:2rem"
        " auto;color:#111827}table{border-collapse:collapse;width:100%;margin-bottom:1rem}"
        "th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align"
        ":top}.muted{color:#6b7280}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tunelab monitor report</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )
