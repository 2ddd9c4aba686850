from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class RevokedSession(Base):
    """A signed-out browser session: its token (`sid` claim) is refused until it expires.

    A row lives only as long as the token it revokes could (`expires_at`, the token's own
    expiry); expired rows are deleted whenever a session is signed out.
    """

    __tablename__ = "revoked_session"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def __repr__(self) -> str:
        return f"<RevokedSession {self.sid[:8]}… until {self.expires_at:%Y-%m-%d %H:%M}>"
