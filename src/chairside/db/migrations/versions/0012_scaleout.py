"""Scale-out: uploads streamed to the object store

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('upload_s3_state',
    sa.Column('upload_id', sa.String(length=32), nullable=False),
    sa.Column('s3_upload_id', sa.String(length=1024), nullable=True),
    sa.Column('parts', sa.JSON(), nullable=False),
    sa.Column('parts_bytes', sa.BigInteger(), nullable=False),
    sa.Column('tail_key', sa.String(length=1024), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('upload_id', name=op.f('pk_upload_s3_state'))
    )


def downgrade() -> None:
    op.drop_table('upload_s3_state')

