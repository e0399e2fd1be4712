"""Idempotent ingestion: a batch of posts goes in one transaction; a (source, id) already
stored is skipped, so a replay, a retry or two workers sending the same post store it once. The
call returns only after the commit: what it returns as stored is acknowledged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tunelab.errors import TunelabError
from tunelab.privacy import mask
from tunelab.store import schema
from tunelab.store.schema import posts


@dataclass
class Post:
    post_id: str
    text: str
    time: datetime
    source: str = "default"


def _insert(engine: Engine):
    """INSERT ... ON CONFLICT (source, post_id) DO NOTHING, in the engine's dialect."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(posts).on_conflict_do_nothing(index_elements=["source", "post_id"])


def store_posts(
    engine: Engine,
    batch: list[Post],
    analyses: list[list[dict]] | None = None,
    mentions: list[tuple[str, ...]] | None = None,
) -> dict[tuple[str, str], int]:
    """Store ``batch`` (texts masked first) with each post's analyses (``analyses[i]``: rows of
    ``model``, ``label``, ``score``, ``details``) and the entities it mentions (``mentions[i]``)
    in one transaction and commit; returns (source, id) -> row number of the posts this call
    stored (a post stored before is left out, with its analyses and mentions)."""
    if not batch:
        return {}
    now = datetime.now(timezone.utc)
    rows = [
        {
            "source": p.source,
            "post_id": p.post_id,
            "time": p.time,
            "text": mask(p.text),
            "ingested_at": now,
        }
        for p in batch
    ]
    keys = [(p.source, p.post_id) for p in batch]
    try:
        return _store(engine, rows, keys, analyses, mentions)
    except sa.exc.SQLAlchemyError as e:  # read-only, disk full, server gone: nothing stored
        from tunelab.store.db import first_error

        shown = engine.url.render_as_string(hide_password=True)
        raise TunelabError(f"{shown}: the database refused the write ({first_error(e)})") from None


def _store(engine, rows, keys, analyses, mentions) -> dict[tuple[str, str], int]:
    with engine.begin() as conn:  # one transaction: all of the batch or none of it
        # RETURNING gives exactly the rows this insert added: a post stored before, or twice
        # in this batch, conflicts and is not returned
        new = _insert(engine).returning(posts.c.seq, posts.c.source, posts.c.post_id)
        stored = {(r.source, r.post_id): r.seq for r in conn.execute(new, rows)}
        done: set[tuple[str, str]] = set()
        extra, named = [], []
        for i, key in enumerate(keys):
            if key in stored and key not in done:  # a post twice in one batch: once
                done.add(key)
                if analyses:
                    extra += [{"seq": stored[key], **r} for r in analyses[i]]
                if mentions:
                    named += [
                        {"seq": stored[key], "entity": e}
                        for e in dict.fromkeys(x[:200] for x in mentions[i])
                    ]
        if extra:
            conn.execute(sa.insert(schema.analyses), extra)
        if named:
            conn.execute(sa.insert(schema.mentions), named)
    return stored


def count_posts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(posts)).scalar() or 0)
