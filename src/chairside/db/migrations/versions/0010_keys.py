"""Encryption at rest: data keys per contract

Each row is a data key wrapped by the master key it names (keys/, docs/security.md).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'data_keys',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('scope', sa.String(length=64), nullable=False),
        sa.Column('wrapped', sa.LargeBinary(), nullable=False),
        sa.Column('master_key_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_keys')),
    )
    op.create_index(op.f('ix_data_keys_scope'), 'data_keys', ['scope'], unique=False)
    op.create_index(op.f('ix_data_keys_master_key_id'), 'data_keys', ['master_key_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_data_keys_master_key_id'), table_name='data_keys')
    op.drop_index(op.f('ix_data_keys_scope'), table_name='data_keys')
    op.drop_table('data_keys')
