"""The patient list without a query reads an index in order: patients (contract_id, updated_at, id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 02:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_patients_contract_id_updated_at_id'), 'patients', ['contract_id', 'updated_at', 'id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_patients_contract_id_updated_at_id'), table_name='patients')
