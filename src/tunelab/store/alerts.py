"""The alert history: one row per alert (rule, started_at), updated as it goes pending ->
firing -> resolved; writing the same state twice (a replay after a crash) changes nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tunelab.store.schema import alerts


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


def record_alert(engine: Engine, a, details: dict | None = None) -> None:
    """Insert or update the row of alert ``a`` (a ``monitor.rules.Alert``)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    row = {
        "rule": a.rule,
        "severity": a.severity,
        "state": a.state,
        "started_at": _dt(a.started_at),
        "fired_at": _dt(a.fired_at),
        "resolved_at": _dt(a.resolved_at),
        "value": a.value,
        "details": details,
    }
    q = dialect.insert(alerts).values(**row)
    q = q.on_conflict_do_update(
        index_elements=["rule", "started_at"],
        set_={k: q.excluded[k] for k in ("state", "fired_at", "resolved_at", "value", "details")},
    )
    with engine.begin() as conn:
        conn.execute(q)


def alert_history(engine: Engine, limit: int = 100) -> list[dict]:
    """The newest alerts first."""
    q = sa.select(alerts).order_by(alerts.c.started_at.desc(), alerts.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
