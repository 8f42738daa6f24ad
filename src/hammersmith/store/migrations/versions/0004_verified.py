"""Verified outcomes: when an action's fix was verified, and when a finding was last seen.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_actions_site_outcome", "actions", ["site", "outcome"])
    op.create_index("ix_findings_seen_at", "findings", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_findings_seen_at", "findings")
    op.drop_index("ix_actions_site_outcome", "actions")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("last_seen_at")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("verified_at")
