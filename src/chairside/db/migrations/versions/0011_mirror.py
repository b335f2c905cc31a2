"""The mirror site: mirrors and epochs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 03:30:00.000000
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mirrors',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mirrors')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_mirrors_token_hash'))
    )
    op.create_table('mirror_progress',
    sa.Column('mirror_id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_mirror_progress_contract_id_contracts')),
    sa.ForeignKeyConstraint(['mirror_id'], ['mirrors.id'], name=op.f('fk_mirror_progress_mirror_id_mirrors')),
    sa.PrimaryKeyConstraint('mirror_id', 'contract_id', name=op.f('pk_mirror_progress'))
    )
    op.create_table('site_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Uuid(), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('promoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fenced_epoch', sa.BigInteger(), nullable=True),
    sa.Column('fenced_primary', sa.String(length=500), nullable=True),
    sa.Column('fenced_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site_state'))
    )
    # The one row, made here so that concurrent first requests never race to create it: a new deployment, epoch 1.
    op.execute(sa.text("INSERT INTO site_state (id, deployment_id, epoch) VALUES (1, :d, 1)")
               .bindparams(sa.bindparam("d", uuid.uuid4(), type_=sa.Uuid())))


def downgrade() -> None:
    op.drop_table('site_state')
    op.drop_table('mirror_progress')
    op.drop_table('mirrors')
