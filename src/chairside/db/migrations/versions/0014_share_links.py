"""Share links: expiring, revocable read-only links to some of one patient's items

Only the SHA-256 of each link's token is stored (sharing/links.py, docs/viewer.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 04:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'share_links',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('patient_id', sa.Uuid(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('media_ids', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_by', sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_share_links_contract_id_contracts')),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_share_links_patient_id_patients')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_share_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_share_links_token_hash')),
    )
    op.create_index(op.f('ix_share_links_contract_id'), 'share_links', ['contract_id'], unique=False)
    op.create_index(op.f('ix_share_links_patient_id'), 'share_links', ['patient_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_share_links_patient_id'), table_name='share_links')
    op.drop_index(op.f('ix_share_links_contract_id'), table_name='share_links')
    op.drop_table('share_links')
