"""Engines and migrations. ``open_store(url)`` gives an engine on a database whose schema is
at the newest migration (created on first use, upgraded in place later).

SQLite runs in WAL mode (readers never block the writer) with ``synchronous=NORMAL``: a
committed transaction survives the process being killed at any point; ``?synchronous=full`` in
the URL also survives a power cut, at some cost in commits per second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tunelab.errors import TunelabError

MIGRATIONS = Path(__file__).with_name("migrations")


def url_of(target: str) -> str:
    """A SQLAlchemy URL from a URL or a plain file path (a SQLite file)."""
    if "://" in target:
        return target
    return f"sqlite:///{Path(target).expanduser()}"


def engine_for(target: str) -> Engine:
    url = sa.engine.make_url(url_of(target))
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    sync = url.query.get("synchronous", "normal")
    url = url.difference_update_query(["synchronous"])
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={'FULL' if str(sync).lower() == 'full' else 'NORMAL'}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def migrate(engine: Engine) -> str:
    """Upgrade the schema to the newest migration; returns its revision. Processes starting
    together (several ingest workers) take turns: a file lock beside a SQLite file, an
    advisory lock on PostgreSQL; the later ones find the schema current."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migration_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7416230)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return str(ScriptDirectory.from_config(cfg).get_current_head())


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def revision(engine: Engine) -> str | None:
    """The schema's current migration, or None for a database never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def open_store(target: str) -> Engine:
    """An engine on ``target`` (a URL or a SQLite file path) with the newest schema; a
    database that cannot be reached or written is a one-line error naming it."""
    shown = sa.engine.make_url(url_of(target)).render_as_string(hide_password=True)
    try:
        engine = engine_for(target)
        migrate(engine)
    except (sa.exc.SQLAlchemyError, OSError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else first_error(e)
        raise TunelabError(f"{shown}: cannot open the database ({why})") from None
    return engine


def first_error(e: Exception) -> str:
    orig = getattr(e, "orig", None) or e
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
