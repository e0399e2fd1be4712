"""The monitor's tables: posts, analyses, alerts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("post_id", sa.String(200), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source", "post_id", name="uq_posts_source_post_id"),
    )
    op.create_index("ix_posts_time", "posts", ["time"])
    op.create_table(
        "analyses",
        sa.Column("seq", sa.Integer, sa.ForeignKey("posts.seq"), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("label", sa.String(100)),
        sa.Column("score", sa.Float),
        sa.Column("details", sa.JSON),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("value", sa.Float),
        sa.Column("details", sa.JSON),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("analyses")
    op.drop_index("ix_posts_time", table_name="posts")
    op.drop_table("posts")
