"""quota billing: stored video counter, plan history and requests, notices, jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("result", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("key", name=op.f("uq_jobs_key")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_done_at_run_after"), ["done_at", "run_after"], unique=False)

    op.create_table(
        "notices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("threshold_percent", sa.Integer(), nullable=False),
        sa.Column("crossing", sa.Integer(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=False),
        sa.Column("plan_hours", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], name=op.f("fk_notices_contract_id_contracts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sa.UniqueConstraint(
            "contract_id", "threshold_percent", "crossing",
            name=op.f("uq_notices_contract_id_threshold_percent_crossing"),
        ),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notices_contract_id_created_at"), ["contract_id", "created_at"], unique=False
        )

    op.create_table(
        "plan_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("previous_hours", sa.Integer(), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_plan_changes_contract_id_contracts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_changes")),
    )
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_changes_contract_id_effective_at"), ["contract_id", "effective_at"], unique=False
        )

    op.create_table(
        "plan_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("plan_hours_then", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("requested_by_name", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_plan_requests_contract_id_contracts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_requests")),
    )
    with op.batch_alter_table("plan_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_requests_contract_id_requested_at"), ["contract_id", "requested_at"], unique=False
        )

    op.create_table(
        "quota_daily",
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("recorded_ms", sa.BigInteger(), nullable=False),
        sa.Column("freed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], name=op.f("fk_quota_daily_contract_id_contracts")),
        sa.PrimaryKeyConstraint("contract_id", "day", name=op.f("pk_quota_daily")),
    )
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored_video_ms", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("contact_emails", sa.JSON(), nullable=True))

    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_over_limit", sa.Boolean(), server_default=sa.false(), nullable=False))

    _backfill()


def _backfill() -> None:
    """Existing contracts: count the videos already stored (trash included), and record the
    current plan as the first of the history, from the day the contract was created.
    Milliseconds are rounded half up, as chairside.quota.usage.video_ms does."""
    op.execute(
        "UPDATE contracts SET stored_video_ms = (SELECT COALESCE(SUM(CAST(ROUND(CAST(media.duration_s * 1000 "
        "AS NUMERIC)) AS BIGINT)), 0) FROM media WHERE media.contract_id = contracts.id AND media.kind = 'video' "
        "AND media.duration_s IS NOT NULL)"
    )
    op.execute(
        "INSERT INTO plan_changes (contract_id, hours, previous_hours, effective_at, reason, actor) "
        "SELECT id, plan_hours, NULL, created_at, 'onboarding', 'migration 0003' FROM contracts"
    )


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("created_over_limit")

    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_column("contact_emails")
        batch_op.drop_column("stored_video_ms")

    op.drop_table("quota_daily")
    with op.batch_alter_table("plan_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_requests_contract_id_requested_at"))
    op.drop_table("plan_requests")
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_changes_contract_id_effective_at"))
    op.drop_table("plan_changes")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notices_contract_id_created_at"))
    op.drop_table("notices")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_done_at_run_after"))
    op.drop_table("jobs")
