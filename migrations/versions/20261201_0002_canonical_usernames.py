"""canonical usernames: user.username_canonical, unique, the form sign-in looks names up in

Every existing row gets its canonical form (NFKC, case-folded, stripped, accents removed:
app/usernames.py, frozen below). Two existing accounts whose names share a canonical form
(`alice` and `Álice`) cannot both keep their names, and this migration will not pick one for
you: it stops, changes nothing, and lists them. Rename all but one (UPDATE user SET
username = ... WHERE id = ...) and run it again.

The unique index moves from `username` (which MariaDB compared case- and accent-blind and
SQLite case-blind only) to `username_canonical`, compared byte for byte on both.

Revision ID: 0002_canonical_usernames
Revises: 0001
Create Date: 2026-12-01
"""

import unicodedata
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_canonical_usernames"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies, so this file never changes when the app does.
Username = sa.String(length=150).with_variant(sa.String(length=150, collation="NOCASE"), "sqlite")
Canonical = sa.String(length=150).with_variant(
    sa.String(length=150, collation="utf8mb4_bin"), "mysql", "mariadb"
)
_ACCENT_BLOCKS = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)


def canonical_username(raw: str) -> str:
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()
    decomposed = unicodedata.normalize("NFD", text)
    kept = (c for c in decomposed if not any(lo <= ord(c) <= hi for lo, hi in _ACCENT_BLOCKS))
    return unicodedata.normalize("NFC", "".join(kept))


class UsernameClash(RuntimeError):
    pass


def clashes(rows: Sequence[tuple[int, str]]) -> dict[str, list[tuple[int, str]]]:
    """Canonical forms that more than one account's name comes to."""
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user_id, username in rows:
        groups[canonical_username(username)].append((user_id, username))
    return {key: group for key, group in groups.items() if len(group) > 1}


def upgrade() -> None:
    bind = op.get_bind()
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("username", sa.String))
    rows = [(r.id, r.username) for r in bind.execute(sa.select(user.c.id, user.c.username))]
    found = clashes(rows)
    if found:
        lines = [
            f"  {key!r}: " + ", ".join(f"id {uid} {name!r}" for uid, name in group)
            for key, group in sorted(found.items())
        ]
        raise UsernameClash(
            "0002_canonical_usernames: these accounts' usernames are the same name in "
            "canonical form (case, width, accents or surrounding spaces apart), so they "
            "cannot stay separate accounts under SPEC §9. Nothing was changed. Rename all "
            "but one in each group, then migrate again:\n" + "\n".join(lines)
        )
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("username_canonical", Canonical, nullable=True))
    user_c = sa.table(
        "user", sa.column("id", sa.Integer), sa.column("username_canonical", sa.String)
    )
    for user_id, username in rows:
        bind.execute(
            sa.update(user_c)
            .where(user_c.c.id == user_id)
            .values(username_canonical=canonical_username(username))
        )
    with op.batch_alter_table("user") as batch:
        batch.alter_column("username_canonical", existing_type=Canonical, nullable=False)
        batch.drop_constraint(op.f("uq_user_username"), type_="unique")
        batch.create_unique_constraint(op.f("uq_user_username_canonical"), ["username_canonical"])


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint(op.f("uq_user_username_canonical"), type_="unique")
        batch.create_unique_constraint(op.f("uq_user_username"), ["username"])
        batch.drop_column("username_canonical")
