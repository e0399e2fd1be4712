"""Alerts are keyed by (rule, started_at): a replay after a crash updates an alert's row
instead of adding a second one.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:  # SQLite: a table rebuild, done by Alembic
        batch.create_unique_constraint("uq_alerts_rule_started", ["rule", "started_at"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("uq_alerts_rule_started", type_="unique")
