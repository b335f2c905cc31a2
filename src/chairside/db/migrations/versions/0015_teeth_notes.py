"""Dentistry: tooth numbers on items (media_teeth), notes on items and patients, each clinic's tooth notation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 06:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'media_teeth',
        sa.Column('media_id', sa.Uuid(), nullable=False),
        sa.Column('tooth', sa.Integer(), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_media_teeth_contract_id_contracts')),
        sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_media_teeth_media_id_media'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('media_id', 'tooth', name=op.f('pk_media_teeth')),
    )
    op.create_table(
        'notes',
        sa.Column('entity_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('media_id', sa.Uuid(), nullable=True),
        sa.Column('patient_id', sa.Uuid(), nullable=True),
        sa.Column('text', sa.String(length=2000), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('author_id', sa.Uuid(), nullable=True),
        sa.Column('author_name', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_notes_contract_id_contracts')),
        sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_notes_media_id_media'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_notes_patient_id_patients'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('entity_id', name=op.f('pk_notes')),
    )
    op.create_index(op.f('ix_notes_contract_id'), 'notes', ['contract_id'], unique=False)
    op.create_index(op.f('ix_notes_media_id'), 'notes', ['media_id'], unique=False)
    op.create_index(op.f('ix_notes_patient_id'), 'notes', ['patient_id'], unique=False)
    with op.batch_alter_table('clinics') as batch:
        batch.add_column(sa.Column('tooth_notation', sa.String(length=10), server_default='fdi', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('clinics') as batch:
        batch.drop_column('tooth_notation')
    op.drop_index(op.f('ix_notes_patient_id'), table_name='notes')
    op.drop_index(op.f('ix_notes_media_id'), table_name='notes')
    op.drop_index(op.f('ix_notes_contract_id'), table_name='notes')
    op.drop_table('notes')
    op.drop_table('media_teeth')
