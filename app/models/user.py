from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow
from app.usernames import MAX_CANONICAL_LENGTH, canonical_username


def _canonical_of_row(context: DefaultExecutionContext) -> str:
    """An insert that names no canonical form gets its username's."""
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return canonical_username(str(parameters["username"]))


class User(Base):
    __tablename__ = "user"
    __table_args__ = (Index("ix_user_date_joined", "date_joined"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: As the person typed it (surrounding whitespace removed): what pages show.
    username: Mapped[str] = mapped_column(
        String(150).with_variant(String(150, collation="NOCASE"), "sqlite")
    )
    #: app.usernames.canonical_username(username): the one form sign-in looks up, the
    #: failed-login throttle counts and uniqueness is decided on. Byte comparison on both
    #: databases, so neither adds equivalences of its own.
    username_canonical: Mapped[str] = mapped_column(
        String(MAX_CANONICAL_LENGTH).with_variant(
            String(MAX_CANONICAL_LENGTH, collation="utf8mb4_bin"), "mysql", "mariadb"
        ),
        unique=True,
        default=_canonical_of_row,
    )
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    date_joined: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Uploads bought and not yet used (only meaningful when UPLOADS_PER_PAYMENT > 0).
    upload_credits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The language the person last chose or signed in with (`en`, `bn`), for e-mails sent
    #: outside a request (receipts); None: DEFAULT_LANGUAGE.
    language: Mapped[str | None] = mapped_column(String(8), default=None)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"

    def __str__(self) -> str:
        return self.username
