"""initial schema: user, file_upload, payment_transaction, activity_log

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types, so this file never changes when the models do.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
Json = sa.JSON().with_variant(mysql.JSON(), "mysql")
UnsignedInt = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql")
# Usernames are unique regardless of case: MariaDB's _ci collation, NOCASE on SQLite.
Username = sa.String(length=150).with_variant(sa.String(length=150, collation="NOCASE"), "sqlite")
# Independent of the server's defaults.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "user",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("username", Username, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_staff", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("date_joined", Time, nullable=False),
        sa.Column("upload_credits", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("username", name=op.f("uq_user_username")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "activity_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("timestamp", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_activity_log_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_log")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_activity_log_user_time", "activity_log", ["user_id", "timestamp"])
    op.create_table(
        "file_upload",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("upload_time", Time, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "processing",
                "completed",
                "failed",
                name="upload_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("word_count", UnsignedInt, nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("completed_at", Time, nullable=True),
        sa.Column("queued_at", Time, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "word_count IS NULL OR word_count >= 0",
            name=op.f("ck_file_upload_word_count_unsigned"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_file_upload_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_upload")),
        sa.UniqueConstraint("file", name=op.f("uq_file_upload_file")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_file_upload_user_time", "file_upload", ["user_id", "upload_time"])
    op.create_index(
        "ix_file_upload_user_status_time", "file_upload", ["user_id", "status", "upload_time"]
    )
    op.create_index("ix_file_upload_status_queued", "file_upload", ["status", "queued_at"])
    op.create_table(
        "payment_transaction",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("transaction_id", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "success",
                "failed",
                "cancelled",
                name="payment_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("gateway_response", Json, nullable=False),
        sa.Column("pg_txnid", sa.String(length=64), nullable=True),
        sa.Column("timestamp", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_payment_transaction_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transaction")),
        sa.UniqueConstraint("pg_txnid", name=op.f("uq_payment_transaction_pg_txnid")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_payment_transaction_transaction_id")),
        **MYSQL_TABLE,
    )
    op.create_index(
        "ix_payment_transaction_user_time", "payment_transaction", ["user_id", "timestamp"]
    )
    op.create_index(
        "ix_payment_transaction_user_status", "payment_transaction", ["user_id", "status"]
    )
    op.create_index(
        "ix_payment_transaction_status_time", "payment_transaction", ["status", "timestamp"]
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping them first would trip MariaDB, which keeps
    # the user_id indexes for the foreign keys.
    op.drop_table("payment_transaction")
    op.drop_table("file_upload")
    op.drop_table("activity_log")
    op.drop_table("user")
