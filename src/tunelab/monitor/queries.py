"""What the dashboard and the reports show, read from the database (so it is the same whichever
process, or how many ingest workers, wrote the posts): volume, negative share and mean score
per time bucket, per source and per topic; top entities and trending entities (growth against
their own baseline); the latest negative posts (stored masked); the alerts.

Times are the posts' own. The period ends at the newest post unless told otherwise, so a replay
of last year's posts shows its own timeline; buckets are SQL ``GROUP BY`` on the server
(SQLite and PostgreSQL), so a million stored posts cost one indexed scan of the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tunelab.store.schema import alerts, analyses, mentions, posts

BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_POINTS = 150


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _db_time(engine: Engine, t: datetime) -> datetime:
    """SQLite keeps times as naive UTC text: compare with naive UTC."""
    t = _utc(t)
    return t.replace(tzinfo=None) if engine.dialect.name == "sqlite" else t


def _bucket(engine: Engine, size: int):
    """The start (epoch seconds) of the ``size``-second bucket of each post's time."""
    if engine.dialect.name == "sqlite":
        epoch = sa.cast(sa.func.strftime("%s", posts.c.time), sa.Integer)
        return (epoch // size) * size
    epoch = sa.cast(sa.func.floor(sa.extract("epoch", posts.c.time)), sa.BigInteger)
    return (epoch // size) * size


def latest_time(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        t = conn.execute(sa.select(sa.func.max(posts.c.time))).scalar()
    return None if t is None else _utc(t)


def pick_bucket(span_s: float, window_s: float | None = None) -> int:
    """The smallest bucket (at least the rules' window) that draws ``span_s`` in at most
    ``MAX_POINTS`` points."""
    floor = window_s or 60
    for b in BUCKETS:
        if b >= floor and span_s / b <= MAX_POINTS:
            return b
    return BUCKETS[-1]


def period(
    engine: Engine, span_s: float, until: datetime | None = None
) -> tuple[datetime, datetime]:
    """``span_s`` seconds ending at ``until`` (default: the newest post, or now)."""
    end = until or latest_time(engine) or datetime.now(timezone.utc)
    end = _utc(end) + timedelta(microseconds=1)  # the newest post is inside
    return end - timedelta(seconds=span_s), end


def _in(engine: Engine, start: datetime, end: datetime):
    return sa.and_(posts.c.time >= _db_time(engine, start), posts.c.time < _db_time(engine, end))


_sentiment = analyses.alias("sentiment")
_topic = analyses.alias("topic")


def _joined():
    return posts.outerjoin(
        _sentiment, sa.and_(_sentiment.c.seq == posts.c.seq, _sentiment.c.model == "sentiment")
    )


def _counts(negative: str):
    return (
        sa.func.count().label("volume"),
        sa.func.sum(sa.case((_sentiment.c.label == negative, 1), else_=0)).label("negative"),
        sa.func.avg(_sentiment.c.score).label("mean_score"),
    )


def _row(r, **extra) -> dict:
    vol, neg = int(r.volume), int(r.negative or 0)
    return {
        **extra,
        "volume": vol,
        "negative": neg,
        "negative_share": round(neg / vol, 4) if vol else None,
        "mean_score": None if r.mean_score is None else round(float(r.mean_score), 4),
    }


def series(
    engine: Engine, start: datetime, end: datetime, bucket_s: int, negative: str = "negative"
) -> list[dict]:
    """Per bucket: volume, negative posts, negative share, mean score (empty buckets included)."""
    b = _bucket(engine, bucket_s).label("bucket")
    q = sa.select(b, *_counts(negative)).select_from(_joined())
    q = q.where(_in(engine, start, end)).group_by(b).order_by(b)
    with engine.connect() as conn:
        found = {int(r.bucket): _row(r) for r in conn.execute(q)}
    first = int(start.timestamp()) // bucket_s * bucket_s
    empty = {"volume": 0, "negative": 0, "negative_share": None, "mean_score": None}
    return [
        {"t": t, **found.get(t, empty)} for t in range(first, int(end.timestamp()) + 1, bucket_s)
    ]


def by_group(
    engine: Engine, start: datetime, end: datetime, what: str, negative: str = "negative"
) -> list[dict]:
    """Volume and sentiment per ``source`` or per ``topic``, the largest first."""
    if what == "source":
        key, joined = posts.c.source, _joined()
    else:
        key = _topic.c.label
        joined = _joined().join(
            _topic, sa.and_(_topic.c.seq == posts.c.seq, _topic.c.model == "topic")
        )
    q = sa.select(key.label("name"), *_counts(negative)).select_from(joined)
    q = q.where(_in(engine, start, end)).group_by(key).order_by(sa.desc("volume")).limit(50)
    with engine.connect() as conn:
        return [_row(r, name=r.name) for r in conn.execute(q)]


def entities(
    engine: Engine,
    start: datetime,
    end: datetime,
    bucket_s: int,
    negative: str = "negative",
    recent_buckets: int = 3,
    top: int = 15,
    first: int | None = None,
) -> dict:
    """Top entities of the period, and trending ones: mentions in the last ``recent_buckets``
    buckets against their own mean over the buckets before (growth = (recent + 1) /
    (baseline + 1), so a name never seen before needs a few mentions to trend). The baseline
    starts at ``first`` (epoch seconds; default the period's start): the first post's bucket,
    so the empty time before a stream began does not dilute it."""
    b = _bucket(engine, bucket_s).label("bucket")
    neg = sa.func.sum(sa.case((_sentiment.c.label == negative, 1), else_=0)).label("negative")
    q = (
        sa.select(mentions.c.entity, b, sa.func.count().label("n"), neg)
        .select_from(_joined().join(mentions, mentions.c.seq == posts.c.seq))
        .where(_in(engine, start, end))
        .group_by(mentions.c.entity, b)
    )
    per: dict[str, dict[int, tuple[int, int]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(q):
            per.setdefault(r.entity, {})[int(r.bucket)] = (int(r.n), int(r.negative or 0))
    last = int((end - timedelta(microseconds=1)).timestamp()) // bucket_s * bucket_s
    cut = last - (recent_buckets - 1) * bucket_s
    lo = int(start.timestamp()) // bucket_s * bucket_s
    first = lo if first is None else max(first, lo)
    n_base = max(1, (cut - first) // bucket_s)
    tops: list[dict] = []
    trending: list[tuple[float, str, int, float]] = []
    for name, counts in per.items():
        total = sum(n for n, _ in counts.values())
        negs = sum(x for _, x in counts.values())
        tops.append({"entity": name, "volume": total, "negative": negs})
        recent = sum(n for t, (n, _) in counts.items() if t >= cut)
        base = sum(n for t, (n, _) in counts.items() if t < cut) / n_base * recent_buckets
        growth = (recent + 1) / (base + 1)
        if recent >= 3 and growth >= 1.5:
            trending.append((-growth, name, recent, base))
    tops.sort(key=lambda e: (-e["volume"], e["entity"]))
    rising = [
        {"entity": n, "recent": r, "baseline": round(b, 2), "growth": round(-g, 2)}
        for g, n, r, b in sorted(trending)[:top]
    ]
    return {"top": tops[:top], "trending": rising, "recent_from": cut}


def latest_negative(
    engine: Engine, start: datetime, end: datetime, limit: int = 20, negative: str = "negative"
) -> list[dict]:
    """The newest negative posts of the period (texts as stored: masked), with entities."""
    q = (
        sa.select(posts.c.seq, posts.c.time, posts.c.source, posts.c.post_id, posts.c.text)
        .add_columns(_sentiment.c.score)
        .select_from(_joined())
        .where(_in(engine, start, end), _sentiment.c.label == negative)
        .order_by(posts.c.time.desc(), posts.c.seq.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(q))
        names: dict[int, list[str]] = {}
        if rows:
            m = sa.select(mentions).where(mentions.c.seq.in_([r.seq for r in rows]))
            for r in conn.execute(m):
                names.setdefault(r.seq, []).append(r.entity)
    return [
        {
            "time": _utc(r.time).isoformat(),
            "source": r.source,
            "id": r.post_id,
            "text": r.text,
            "score": None if r.score is None else round(float(r.score), 4),
            "entities": sorted(names.get(r.seq, [])),
        }
        for r in rows
    ]


def alerts_in(engine: Engine, start: datetime, end: datetime, limit: int = 100) -> list[dict]:
    """Alerts that were active at some point of the period, newest first."""
    s, e = _db_time(engine, start), _db_time(engine, end)
    q = (
        sa.select(alerts)
        .where(
            alerts.c.started_at < e,
            sa.or_(alerts.c.resolved_at.is_(None), alerts.c.resolved_at >= s),
        )
        .order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            row = dict(r._mapping)
            for k in ("started_at", "fired_at", "resolved_at"):
                row[k] = None if row[k] is None else _utc(row[k]).isoformat()
            out.append(row)
    return out


def overview(
    engine: Engine,
    span_s: float = 86400,
    until: datetime | None = None,
    bucket_s: int | None = None,
    window_s: float | None = None,
) -> dict:
    """Everything the dashboard draws, for the ``span_s`` seconds ending at ``until``."""
    start, end = period(engine, span_s, until)
    bucket = bucket_s or pick_bucket(span_s, window_s)
    points = series(engine, start, end, bucket)
    first = next((i for i, p in enumerate(points) if p["volume"]), len(points))
    points = points[first:]  # not the empty buckets before the first post
    volume = sum(p["volume"] for p in points)
    negative = sum(p["negative"] for p in points)
    history = alerts_in(engine, start, end)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "bucket_s": bucket,
        "totals": {
            "posts": volume,
            "negative": negative,
            "negative_share": round(negative / volume, 4) if volume else None,
            "alerts": len(history),
            "firing": sum(a["state"] == "firing" for a in history),
        },
        "series": points,
        "sources": by_group(engine, start, end, "source"),
        "topics": by_group(engine, start, end, "topic"),
        "entities": entities(engine, start, end, bucket, first=points[0]["t"] if points else None),
        "negative_posts": latest_negative(engine, start, end),
        "alerts": history,
    }
