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
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(lazy="raise")

    def __str__(self) -> str:
        return self.transaction_id
