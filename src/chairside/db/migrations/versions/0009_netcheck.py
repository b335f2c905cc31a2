"""Onboarding line checks: netcheck codes

A code opens the cloud's line-check endpoints (api/netcheck.py) to one clinic: stored as a SHA-256
hash, expiring, good for a few runs (docs/netcheck.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'netcheck_codes',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('runs', sa.Integer(), nullable=False),
        sa.Column('run_until', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'],
                                name=op.f('fk_netcheck_codes_contract_id_contracts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_netcheck_codes')),
        sa.UniqueConstraint('code_hash', name=op.f('uq_netcheck_codes_code_hash')),
    )
    op.create_index(op.f('ix_netcheck_codes_contract_id'), 'netcheck_codes', ['contract_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_netcheck_codes_contract_id'), table_name='netcheck_codes')
    op.drop_table('netcheck_codes')
