from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "user"
    __table_args__ = (Index("ix_user_date_joined", "date_joined"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Unique regardless of case (MariaDB's _ci collation; NOCASE on SQLite).
    username: Mapped[str] = mapped_column(
        String(150).with_variant(String(150, collation="NOCASE"), "sqlite"), unique=True
    )
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    date_joined: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Uploads bought and not yet used (only meaningful when UPLOADS_PER_PAYMENT > 0).
    upload_credits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"

    def __str__(self) -> str:
        return self.username
