"""Webhook deliveries: tries, the last error, dead-lettering, and the alerts set aside by the schema.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("set_aside", sa.JSON(), nullable=True))
    op.create_index("ix_webhook_deliveries_dead_at", "webhook_deliveries", ["dead_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_dead_at", "webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        for column in ("set_aside", "dead_at", "last_error", "attempts"):
            batch.drop_column(column)
