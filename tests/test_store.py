"""The shared database layer (tunelab.store) on SQLite and on a real PostgreSQL server: the
schema under migrations (also when processes start together), idempotent ingestion, masking
before storage, and no acknowledged post lost or doubled by a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from tunelab.errors import TunelabError
from tunelab.store import db, schema
from tunelab.store.posts import Post, count_posts, store_posts

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database of each kind: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return str(tmp_path / "m.db")
    server = request.getfixturevalue("postgres_url")
    name = f"t{abs(hash(request.node.nodeid)) % 10**12}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def test_a_new_database_gets_the_newest_schema_and_reopening_changes_nothing(db_url):
    engine = db.open_store(db_url)
    head = db.revision(engine)
    assert head == "0004"
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        tables = set(sa.inspect(conn).get_table_names())
    assert {"posts", "analyses", "alerts", "alembic_version"} <= tables
    engine.dispose()
    assert db.revision(db.open_store(db_url)) == head  # a second start: already current


def test_processes_starting_together_migrate_once(db_url):
    """Several ingest workers opening a new database at once: one migrates, the others wait
    and find it current."""
    code = "import sys; from tunelab.store.db import open_store; open_store(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert db.revision(db.open_store(db_url)) == "0004"


def test_the_migrations_build_exactly_the_declared_schema(db_url):
    """schema.py and migrations/versions agree: a change to one needs the other."""
    engine = db.open_store(db_url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in schema.metadata.sorted_tables:
            migrated = {c["name"] for c in inspector.get_columns(table.name)}
            assert migrated == {c.name for c in table.columns}, table.name


def test_the_same_post_is_stored_once_and_masked(db_url):
    engine = db.open_store(db_url)
    batch = [
        Post("1", "call me on 13812345678", T0, "weibo"),
        Post("2", "great service", T0, "weibo"),
        Post("1", "same id, other source", T0, "forum"),
    ]
    stored = store_posts(engine, batch)
    assert set(stored) == {("weibo", "1"), ("weibo", "2"), ("forum", "1")}
    again = store_posts(engine, [*batch, Post("3", "new", T0, "weibo")])
    assert set(again) == {("weibo", "3")}  # the replayed ones are skipped, not doubled
    assert count_posts(engine) == 4
    with engine.connect() as conn:
        text = conn.execute(
            sa.select(schema.posts.c.text).where(schema.posts.c.post_id == "1")
        ).scalars()
        assert "call me on <phone>" in list(text)


def test_a_database_that_cannot_be_opened_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TunelabError, match=r"cannot open the database") as e:
        db.open_store(f"sqlite:///{blocker}/sub/m.db")
    assert "\n" not in str(e.value) and str(blocker) in str(e.value)


INGEST = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from tunelab.store.db import open_store
    from tunelab.store.posts import Post, store_posts

    engine = open_store(sys.argv[1])
    t = datetime(2026, 12, 1, tzinfo=timezone.utc)
    for start in range(0, 100_000, 50):
        batch = [Post(str(i), f"post {i}", t, "replay") for i in range(start, start + 50)]
        stored = store_posts(engine, batch)
        print(" ".join(sorted(k[1] for k in stored)), flush=True)  # acknowledged
    """
)


def test_sigkill_during_ingestion_loses_no_acknowledged_post_and_doubles_none(db_url):
    url = db_url
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    acked: set[str] = set()
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.update(line.split())
        if len(acked) >= 2_000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    engine = db.open_store(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.posts.c.post_id)).scalars().all()
    assert acked <= set(rows)  # every acknowledged post is there
    assert len(rows) == len(set(rows))  # and none twice
    # the replay after the crash stores only what is missing: the counts equal one clean run
    for start in range(0, 3_000, 500):
        store_posts(
            engine, [Post(str(i), f"post {i}", T0, "replay") for i in range(start, start + 500)]
        )
    assert count_posts(engine) == 3_000
    json.dumps(sorted(acked))  # the acknowledged ids were plain strings
