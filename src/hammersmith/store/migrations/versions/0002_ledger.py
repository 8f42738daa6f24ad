"""Create the remediation ledger: findings, actions, breakers, locks, notifications and sweeps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("hammer", sa.String(64), nullable=False),
        sa.Column("node_uuid", sa.String(64), nullable=False),
        sa.Column("node_name", sa.String(255), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_findings_site_node_uuid", "findings", ["site", "node_uuid"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("hammer", sa.String(64), nullable=False),
        sa.Column("node_uuid", sa.String(64), nullable=False),
        sa.Column("node_name", sa.String(255), nullable=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("agent", sa.String(255), nullable=True),
    )
    op.create_index("ix_actions_site_node_uuid", "actions", ["site", "node_uuid"])
    op.create_index("ix_actions_site_hammer_started_at", "actions", ["site", "hammer", "started_at"])
    op.create_table(
        "breakers",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reset_by", sa.String(255), nullable=True),
    )
    op.create_table(
        "locks",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("node_uuid", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("site", "key", name="uq_notifications_site_key"),
    )
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
    )
    op.create_index("ix_sweeps_site_started_at", "sweeps", ["site", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_sweeps_site_started_at", table_name="sweeps")
    op.drop_table("sweeps")
    op.drop_table("notifications")
    op.drop_table("locks")
    op.drop_table("breakers")
    op.drop_index("ix_actions_site_hammer_started_at", table_name="actions")
    op.drop_index("ix_actions_site_node_uuid", table_name="actions")
    op.drop_table("actions")
    op.drop_index("ix_findings_site_node_uuid", table_name="findings")
    op.drop_table("findings")
