"""Issued invoices keep what late interest accrues on: issued_invoices.interest_base_yen

Late interest is simple: it accrues on an overdue invoice's charges, its total less the
late-interest lines it carried, never on interest (docs/billing.md, rule 7). `invoices --issue`
records that base with each invoice from now on.

Rows issued before this migration get their amount_yen, interest included: the ledger kept only
the total, not the lines, and the lines cannot be recomputed faithfully. An invoice computed
again now reads today's facts (payments recorded since it was issued, which change its interest
lines; plans or accounts corrected), so it can differ from the one sent, and a base guessed from
it could be wrong either way without anyone seeing it. The amount keeps every existing row's
interest exactly as it has been billed so far. A row whose printed invoice carried late interest
can be set by hand to the total of its other lines.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 04:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added nullable, filled, then made NOT NULL (SQLite rebuilds the table for that: see db/migrate.py).
    with op.batch_alter_table('issued_invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interest_base_yen', sa.BigInteger(), nullable=True))
    op.execute(sa.text('UPDATE issued_invoices SET interest_base_yen = amount_yen'))
    with op.batch_alter_table('issued_invoices', schema=None) as batch_op:
        batch_op.alter_column('interest_base_yen', existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('issued_invoices', schema=None) as batch_op:
        batch_op.drop_column('interest_base_yen')
