"""Replication (changes feed, relays, outbox, cache), merge flags and clocks on patients, billing records

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 01:38:32.426382
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cached_blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_cached_blobs'))
    )
    with op.batch_alter_table('cached_blobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cached_blobs_last_used_at'), ['last_used_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('op_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('entity_id', sa.Uuid(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sent_bytes', sa.BigInteger(), nullable=False),
    sa.Column('upstream_url', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_try_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('op_id', name=op.f('uq_outbox_op_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_done_at_id'), ['done_at', 'id'], unique=False)

    op.create_table('relay_state',
    sa.Column('key', sa.String(length=50), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_relay_state'))
    )
    op.create_table('applied_ops',
    sa.Column('op_id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_applied_ops_contract_id_contracts')),
    sa.PrimaryKeyConstraint('op_id', name=op.f('pk_applied_ops'))
    )
    op.create_table('changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('entity_id', sa.Uuid(), nullable=False),
    sa.Column('clinic_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_changes_contract_id_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_changes')),
    sa.UniqueConstraint('contract_id', 'seq', name=op.f('uq_changes_contract_id_seq'))
    )
    op.create_table('issued_invoices',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('amount_yen', sa.BigInteger(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_issued_invoices_contract_id_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_invoices')),
    sa.UniqueConstraint('contract_id', 'month', name=op.f('uq_issued_invoices_contract_id_month'))
    )
    op.create_table('relays',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('clinic_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_relays_clinic_id_clinics')),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_relays_contract_id_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relays')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_relays_token_hash'))
    )
    with op.batch_alter_table('relays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relays_clinic_id'), ['clinic_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_relays_contract_id'), ['contract_id'], unique=False)

    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feed_seq', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cancellation_notice_on', sa.Date(), nullable=True))

    # The chart number stays unique per clinic except for patients flagged for a merge: the table
    # constraint becomes a partial unique index (SQLite rebuilds the table: see db/migrate.py).
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('field_clocks', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('merge_with', sa.Uuid(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_patients_clinic_id_chart_no'), type_='unique')
    op.create_index('uq_patients_clinic_id_chart_no', 'patients', ['clinic_id', 'chart_no'], unique=True,
                    sqlite_where=sa.text('merge_with IS NULL'), postgresql_where=sa.text('merge_with IS NULL'))



def downgrade() -> None:
    op.drop_index('uq_patients_clinic_id_chart_no', table_name='patients')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_patients_clinic_id_chart_no'), ['clinic_id', 'chart_no'])
        batch_op.drop_column('merge_with')
        batch_op.drop_column('field_clocks')

    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.drop_column('cancellation_notice_on')
        batch_op.drop_column('feed_seq')

    with op.batch_alter_table('relays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relays_contract_id'))
        batch_op.drop_index(batch_op.f('ix_relays_clinic_id'))

    op.drop_table('relays')
    op.drop_table('issued_invoices')
    op.drop_table('changes')
    op.drop_table('applied_ops')
    op.drop_table('relay_state')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_done_at_id'))

    op.drop_table('outbox')
    with op.batch_alter_table('cached_blobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cached_blobs_last_used_at'))

    op.drop_table('cached_blobs')
