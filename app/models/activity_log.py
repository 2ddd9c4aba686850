from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigId, JSONType, UTCDateTime, utcnow

if TYPE_CHECKING:
    from app.models.user import User


class Action(enum.StrEnum):
    REGISTERED = "registered"
    LOGIN = "login"
    PAYMENT_INITIATED = "payment_initiated"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_CANCELLED = "payment_cancelled"
    FILE_UPLOADED = "file_uploaded"
    FILE_PROCESSED = "file_processed"
    FILE_PROCESSING_FAILED = "file_processing_failed"
    RECEIPT_SENT = "receipt_sent"


class ActivityLog(Base):
    __tablename__ = "activity_log"
    __table_args__ = (
        Index("ix_activity_log_user_time", "user_id", "timestamp"),
        # The admin: its sort and its action filter (SPEC §13).
        Index("ix_activity_log_timestamp", "timestamp"),
        Index("ix_activity_log_action_time", "action", "timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    # `metadata` is reserved on declarative classes: the attribute is `metadata_`, the column
    # (and the API field) stay `metadata`.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="raise")

    def __str__(self) -> str:
        return f"{self.action} #{self.id}"
