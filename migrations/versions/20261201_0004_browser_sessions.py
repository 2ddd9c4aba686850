"""browser sessions: revoked_session (signed-out browser sessions until their token expires)

Revision ID: 0004_browser_sessions
Revises: 0003_payment_limits
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004_browser_sessions"
down_revision: str | None = "0003_payment_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model type, so this file never changes when the models do.
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "revoked_session",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("expires_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_revoked_session")),
        **MYSQL_TABLE,
    )
    op.create_index(
        op.f("ix_revoked_session_expires_at"), "revoked_session", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("revoked_session")
