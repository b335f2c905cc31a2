"""Patient search in result order: every prefix a row, with the kana sort key (patients/search.py)

The table is rebuilt: its rows were whole terms searched by range and sorted afterwards;
they become every prefix of those terms, each carrying the patient's sort key, under one
index (contract_id, term, sort_key, patient_id). The rows are derived data: they are made
again from `patients`, in batches, and the index is built once they are in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from chairside.domain.kana import search_terms
from chairside.patients.search import index_rows

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BATCH = 2000  # patients per round


def _create(with_sort_key: bool) -> sa.Table:
    columns: list[Any] = [
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('patient_id', sa.Uuid(), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('term', sa.String(length=200), nullable=False),
    ]
    if with_sort_key:
        columns.append(sa.Column(
            'sort_key', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'),
            nullable=False))
    table = op.create_table(
        'patient_search_terms',
        *columns,
        sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'],
                                name=op.f('fk_patient_search_terms_contract_id_contracts')),
        sa.ForeignKeyConstraint(['patient_id'], ['patients.id'],
                                name=op.f('fk_patient_search_terms_patient_id_patients'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_search_terms')),
    )
    assert table is not None
    return table


def _patients() -> Iterator[list[Any]]:
    """Every patient (id, contract, chart number, names), BATCH at a time in id order."""
    patients = sa.table('patients', sa.column('id', sa.Uuid()), sa.column('contract_id', sa.Uuid()),
                        sa.column('chart_no', sa.String()), sa.column('name', sa.String()),
                        sa.column('name_kana', sa.String()))
    query = sa.select(patients.c.id, patients.c.contract_id, patients.c.chart_no, patients.c.name,
                      patients.c.name_kana).order_by(patients.c.id).limit(BATCH)
    bind = op.get_bind()
    after = None
    while True:
        rows = bind.execute(query if after is None else query.where(patients.c.id > after)).all()
        if not rows:
            return
        yield list(rows)
        after = rows[-1].id


def _fill(table: sa.Table, rows_of: Callable[[Any], list[dict[str, Any]]]) -> None:
    bind = op.get_bind()
    for batch in _patients():
        rows = [row for p in batch for row in rows_of(p)]
        if rows:
            bind.execute(table.insert(), rows)


def upgrade() -> None:
    with op.batch_alter_table('patient_search_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_search_terms_patient_id'))
        batch_op.drop_index(batch_op.f('ix_patient_search_terms_contract_id_term'))
    op.drop_table('patient_search_terms')
    table = _create(with_sort_key=True)
    _fill(table, lambda p: index_rows(p.id, p.contract_id, p.chart_no, p.name, p.name_kana))
    with op.batch_alter_table('patient_search_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_search_terms_contract_id_term_sort_key_patient_id'),
                              ['contract_id', 'term', 'sort_key', 'patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_patient_search_terms_patient_id'), ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patient_search_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_search_terms_patient_id'))
        batch_op.drop_index(batch_op.f('ix_patient_search_terms_contract_id_term_sort_key_patient_id'))
    op.drop_table('patient_search_terms')
    table = _create(with_sort_key=False)
    _fill(table, lambda p: [
        {'patient_id': p.id, 'contract_id': p.contract_id, 'term': term[:200]}
        for term in sorted(search_terms(p.chart_no, p.name, p.name_kana))
    ])
    with op.batch_alter_table('patient_search_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_search_terms_contract_id_term'), ['contract_id', 'term'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_patient_search_terms_patient_id'), ['patient_id'], unique=False)
