"""The tables, as SQLAlchemy Core objects; the migrations in ``migrations/versions`` create them
(a change here is a new migration there, checked by a test)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

posts = sa.Table(
    "posts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("post_id", sa.String(200), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),  # the post's own time
    sa.Column("text", sa.Text, nullable=False),  # personal data masked before it gets here
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "post_id", name="uq_posts_source_post_id"),
)
sa.Index("ix_posts_time", posts.c.time)

analyses = sa.Table(
    "analyses",
    metadata,
    sa.Column("seq", sa.Integer, sa.ForeignKey("posts.seq"), primary_key=True),
    sa.Column("model", sa.String(100), primary_key=True),
    sa.Column("label", sa.String(100)),
    sa.Column("score", sa.Float),
    sa.Column("details", sa.JSON),  # entities, every label's probability, ...
)

mentions = sa.Table(
    "mentions",
    metadata,
    sa.Column("seq", sa.Integer, sa.ForeignKey("posts.seq"), primary_key=True),
    sa.Column("entity", sa.String(200), primary_key=True),
)
sa.Index("ix_mentions_entity", mentions.c.entity)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending, firing, resolved
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("value", sa.Float),
    sa.Column("details", sa.JSON),
    sa.UniqueConstraint("rule", "started_at", name="uq_alerts_rule_started"),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kb", sa.String(200), nullable=False),  # the knowledge base's folder name
    sa.Column("session", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("question", sa.Text, nullable=False),  # personal data masked before it gets here
    sa.Column("conversation", sa.JSON, nullable=False),  # [{role, text}], masked
    sa.Column("candidates", sa.JSON, nullable=False),  # [{id, question, probability}]
    sa.Column("status", sa.String(20), nullable=False),  # open, answered
    sa.Column("answer", sa.Text),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
)
sa.Index("ix_tickets_status", tickets.c.status)
