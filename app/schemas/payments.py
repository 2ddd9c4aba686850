from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, PlainSerializer

from app.models import PaymentStatus, PaymentTransaction
from app.schemas.common import AwareDatetime, ORMModel

#: Money goes out as a string with two decimals: "100.00".
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str)]


class PaymentInitiated(ORMModel):
    transaction_id: str
    payment_url: str = Field(description="Send the customer's browser here to pay")
    amount: Money
    currency: str
    status: PaymentStatus

    @classmethod
    def of(cls, tx: PaymentTransaction, payment_url: str) -> PaymentInitiated:
        return cls(
            transaction_id=tx.transaction_id,
            payment_url=payment_url,
            amount=tx.amount,
            currency=tx.currency,
            status=tx.status,
        )


class CallbackAnswer(ORMModel):
    """What the unauthenticated gateway routes answer: nothing about the person."""

    transaction_id: str
    status: PaymentStatus


class TransactionRead(ORMModel):
    id: int
    user: int = Field(validation_alias="user_id")
    transaction_id: str
    amount: Money
    currency: str
    status: PaymentStatus
    pg_txnid: str | None
    gateway_response: dict[str, Any] = Field(
        description="What the gateway said at initiation and at each verification"
    )
    timestamp: AwareDatetime
    updated_at: AwareDatetime
