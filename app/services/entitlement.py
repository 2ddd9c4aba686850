"""Who may upload: the one place that knows what a payment buys.

UPLOADS_PER_PAYMENT = 0: one successful payment unlocks uploading for good.
UPLOADS_PER_PAYMENT = N: each successful payment adds N credits to `User.upload_credits`;
an upload spends one with a conditional UPDATE, so parallel uploads cannot spend the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import PaymentRequired
from app.models import PaymentStatus, PaymentTransaction, User


@dataclass(frozen=True)
class Allowance:
    can_upload: bool
    #: None = unlimited.
    uploads_remaining: int | None


async def has_paid(session: AsyncSession, user_id: int) -> bool:
    paid = await session.scalar(
        select(
            exists().where(
                PaymentTransaction.user_id == user_id,
                PaymentTransaction.status == PaymentStatus.SUCCESS,
            )
        )
    )
    return bool(paid)


async def allowance(session: AsyncSession, user_id: int, settings: Settings) -> Allowance:
    if settings.uploads_per_payment == 0:
        paid = await has_paid(session, user_id)
        return Allowance(can_upload=paid, uploads_remaining=None if paid else 0)
    credits = await session.scalar(select(User.upload_credits).where(User.id == user_id))
    remaining = int(credits or 0)
    return Allowance(can_upload=remaining > 0, uploads_remaining=remaining)


async def require_upload_right(session: AsyncSession, user_id: int, settings: Settings) -> None:
    """Cheap pre-check before reading an upload body; raises PaymentRequired."""
    if not (await allowance(session, user_id, settings)).can_upload:
        raise PaymentRequired()


async def consume_upload(session: AsyncSession, user_id: int, settings: Settings) -> None:
    """Spend one upload inside the caller's transaction; raises PaymentRequired.

    The caller commits together with the upload row, so a rollback gives the credit back.
    """
    if settings.uploads_per_payment == 0:
        if not await has_paid(session, user_id):
            raise PaymentRequired()
        return
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.upload_credits > 0)
        .values(upload_credits=User.upload_credits - 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise PaymentRequired("No uploads left; pay again for more")


async def grant_payment(session: AsyncSession, user_id: int, settings: Settings) -> None:
    """Credit one successful payment (inside the caller's transaction)."""
    if settings.uploads_per_payment > 0:
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(upload_credits=User.upload_credits + settings.uploads_per_payment)
            .execution_options(synchronize_session=False)
        )
