"""indexes for lists at a million rows: the admin's sorts, filters and prefix searches

Every list of the admin sorts on a time column (or the id) and pages through an index that
leads on it; its filters (`status`, `action`, `currency`) and prefix searches (file name)
have their own. On MariaDB/MySQL each index is built online (ALGORITHM=INPLACE, LOCK=NONE:
reads and writes go on while it is built); elsewhere with a plain CREATE INDEX.

Revision ID: 0005_scale_indexes
Revises: 0004_browser_sessions
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_scale_indexes"
down_revision: str | None = "0004_browser_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, table, columns), in the order they are built.
INDEXES: list[tuple[str, str, list[str]]] = [
    ("ix_user_date_joined", "user", ["date_joined"]),
    ("ix_payment_transaction_timestamp", "payment_transaction", ["timestamp"]),
    ("ix_payment_transaction_amount", "payment_transaction", ["amount"]),
    ("ix_payment_transaction_currency", "payment_transaction", ["currency"]),
    ("ix_file_upload_upload_time", "file_upload", ["upload_time"]),
    ("ix_file_upload_status_time", "file_upload", ["status", "upload_time"]),
    ("ix_file_upload_filename", "file_upload", ["filename"]),
    ("ix_activity_log_timestamp", "activity_log", ["timestamp"]),
    ("ix_activity_log_action_time", "activity_log", ["action", "timestamp"]),
]


def upgrade() -> None:
    online = op.get_bind().dialect.name == "mysql"
    for name, table, columns in INDEXES:
        if online:
            quoted = ", ".join(f"`{column}`" for column in columns)
            op.execute(
                f"ALTER TABLE `{table}` ADD INDEX `{name}` ({quoted}), ALGORITHM=INPLACE, LOCK=NONE"
            )
        else:
            op.create_index(name, table, columns)


def downgrade() -> None:
    online = op.get_bind().dialect.name == "mysql"
    for name, table, _columns in reversed(INDEXES):
        if online:
            op.execute(f"ALTER TABLE `{table}` DROP INDEX `{name}`, ALGORITHM=INPLACE, LOCK=NONE")
        else:
            op.drop_index(name, table_name=table)
