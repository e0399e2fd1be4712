"""Mentions: one row per (post, entity), so the dashboard and the reports count entities with
an index instead of reading every analysis's JSON.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mentions",
        sa.Column("seq", sa.Integer, sa.ForeignKey("posts.seq"), primary_key=True),
        sa.Column("entity", sa.String(200), primary_key=True),
    )
    op.create_index("ix_mentions_entity", "mentions", ["entity"])


def downgrade() -> None:
    op.drop_index("ix_mentions_entity", "mentions")
    op.drop_table("mentions")
