"""e-mail receipts: when a payment's receipt was claimed for sending, and when it went out

Revision ID: 0006_receipts
Revises: 0005_scale_indexes
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006_receipts"
down_revision: str | None = "0005_scale_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    # Nullable columns with no default: an instant ALTER on MariaDB, whatever the table's size.
    with op.batch_alter_table("payment_transaction") as batch:
        batch.add_column(sa.Column("receipt_claimed_at", Time, nullable=True))
        batch.add_column(sa.Column("receipt_sent_at", Time, nullable=True))
    # Payments made before receipts existed are not sent one now: their receipt counts as
    # claimed (never as sent).
    op.execute(
        "UPDATE payment_transaction SET receipt_claimed_at = updated_at WHERE status = 'success'"
    )
    op.create_index(
        "ix_payment_transaction_receipt_due",
        "payment_transaction",
        ["receipt_claimed_at", "status", "updated_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_payment_transaction_receipt_due", table_name="payment_transaction")
    with op.batch_alter_table("payment_transaction") as batch:
        batch.drop_column("receipt_sent_at")
        batch.drop_column("receipt_claimed_at")
