"""viewer: drawings over media (annotations), media tags, browser-ready copies (display JPEGs)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.Column("media_time_s", sa.Float(), nullable=True),
        sa.Column("shapes", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], name=op.f("fk_annotations_contract_id_contracts")),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_annotations_media_id_media"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotations")),
    )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotations_media_id_created_at"), ["media_id", "created_at"],
                              unique=False)

    op.create_table(
        "media_derivatives",
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime", sa.String(length=50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_media_derivatives_media_id_media"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("media_id", "kind", name=op.f("pk_media_derivatives")),
    )
    with op.batch_alter_table("media_derivatives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_media_derivatives_sha256"), ["sha256"], unique=False)

    op.create_table(
        "media_tags",
        sa.Column("media_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], name=op.f("fk_media_tags_contract_id_contracts")),
        sa.ForeignKeyConstraint(["media_id"], ["media.id"], name=op.f("fk_media_tags_media_id_media"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("media_id", "tag", name=op.f("pk_media_tags")),
    )


def downgrade() -> None:
    op.drop_table("media_tags")
    with op.batch_alter_table("media_derivatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_derivatives_sha256"))
    op.drop_table("media_derivatives")
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotations_media_id_created_at"))
    op.drop_table("annotations")
