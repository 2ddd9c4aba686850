"""payment limits: one gateway question per transaction per interval, fair reconcile order

Revision ID: 0003_payment_limits
Revises: 0002_canonical_usernames
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_payment_limits"
down_revision: str | None = "0002_canonical_usernames"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model type, so this file never changes when the models do.
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    with op.batch_alter_table("payment_transaction") as batch:
        batch.add_column(sa.Column("checked_at", Time, nullable=True))
        batch.add_column(sa.Column("check_outcome", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("check_detail", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("next_check_at", Time, nullable=True))
    op.create_index(
        "ix_payment_transaction_status_next_check",
        "payment_transaction",
        ["status", "next_check_at", "timestamp"],
    )


def downgrade() -> None:
    op.drop_index("ix_payment_transaction_status_next_check", table_name="payment_transaction")
    with op.batch_alter_table("payment_transaction") as batch:
        batch.drop_column("next_check_at")
        batch.drop_column("check_detail")
        batch.drop_column("check_outcome")
        batch.drop_column("checked_at")
