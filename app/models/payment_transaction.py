from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Enum, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigId, JSONType, UTCDateTime, utcnow

if TYPE_CHECKING:
    from app.models.user import User


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PaymentTransaction(Base):
    __tablename__ = "payment_transaction"
    __table_args__ = (
        Index("ix_payment_transaction_user_time", "user_id", "timestamp"),
        Index("ix_payment_transaction_user_status", "user_id", "status"),
        Index("ix_payment_transaction_status_time", "status", "timestamp"),
        Index("ix_payment_transaction_receipt_due", "receipt_claimed_at", "status", "updated_at"),
        # The reconcile job's two queues: never checked (next_check_at NULL, newest first)
        # and due again (next_check_at <= now, earliest first).
        Index(
            "ix_payment_transaction_status_next_check",
            "status",
            "next_check_at",
            "timestamp",
        ),
        # The admin: its sorts and its currency filter (SPEC §13).
        Index("ix_payment_transaction_timestamp", "timestamp"),
        Index("ix_payment_transaction_amount", "amount"),
        Index("ix_payment_transaction_currency", "currency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("user.id", ondelete="CASCADE"))
    #: Our `tran_id` at the gateway: unguessable, at most 32 characters.
    transaction_id: Mapped[str] = mapped_column(String(32), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus] = mapped_column(
        Enum(
            PaymentStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
            create_constraint=True,
            name="payment_status",
        ),
        default=PaymentStatus.PENDING,
    )
    #: What the gateway said: {"initiate": {...}, "verify": [...]}; never the signature key.
    gateway_response: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: The gateway's own id, unique: one gateway payment can unlock one transaction only.
    pg_txnid: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the server last started asking the gateway about it (claimed with a conditional
    #: UPDATE, so all API and worker processes ask at most once per CHECK_INTERVAL).
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: What that question gave: asking | unavailable | not_verified | success.
    check_outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    #: The reason given with `not_verified` (the 402's detail, reused within the interval).
    check_detail: Mapped[str | None] = mapped_column(String(255), default=None)
    #: When the reconcile job should ask again; NULL = never asked.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    #: The e-mail receipt: claimed by the one job allowed to send it, then marked sent.
    receipt_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    receipt_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    user: Mapped[User] = relationship(lazy="raise")

    def __str__(self) -> str:
        return self.transaction_id
