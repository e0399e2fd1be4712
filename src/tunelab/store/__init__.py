"""Database access shared by the systems that store what they see (the monitor's posts,
analyses and alerts; the assistant's tickets next): SQLite (WAL) as the embedded default, any
SQLAlchemy URL (PostgreSQL) for a shared deployment, the schema under Alembic migrations.

``db`` (engines and migrations), ``schema`` (the tables), ``posts`` (idempotent ingestion: a
post is stored once per (source, id), and acknowledged only after its transaction commits).
"""
