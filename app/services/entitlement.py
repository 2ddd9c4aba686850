"""Who may upload: the one place that knows what a payment buys.

UPLOADS_PER_PAYMENT = 0: one successful payment unlocks uploading for good.
UPLOADS_PER_PAYMENT = N: each successful payment adds N credits to `User.upload_credits`;
an upload spends one with a conditional UPDATE, so parallel uploads cannot spend the same one.

An upload is checked before its body is read (`check_upload_right`: one round trip that also
checks the user is still active) and spent when its row is written (`consume_upload`, given
that check's answer: a success payment is final, so in the first mode there is nothing left to
ask the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Exists, Select, bindparam, exists, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.config import Settings
from app.errors import InvalidToken, PaymentRequired
from app.fastdb import Work
from app.models import PaymentStatus, PaymentTransaction, User


@dataclass(frozen=True)
class Allowance:
    can_upload: bool
    #: None = unlimited.
    uploads_remaining: int | None


@dataclass(frozen=True)
class UploadRight:
    """What `check_upload_right` found; `consume_upload` takes it."""

    user_id: int
    #: A success payment was seen (UPLOADS_PER_PAYMENT = 0). No state leaves `success`, so
    #: this cannot turn false later in the request.
    paid: bool


def _paid_exists(user_id: Any) -> Exists:
    return exists().where(
        PaymentTransaction.user_id == user_id,
        PaymentTransaction.status == PaymentStatus.SUCCESS,
    )


async def has_paid(session: AsyncSession, user_id: int) -> bool:
    return bool(await session.scalar(select(_paid_exists(user_id))))


def _allowance(settings: Settings, *, paid: bool, credits: int | None) -> Allowance:
    if settings.uploads_per_payment == 0:
        return Allowance(can_upload=paid, uploads_remaining=None if paid else 0)
    remaining = int(credits or 0)
    return Allowance(can_upload=remaining > 0, uploads_remaining=remaining)


async def allowance(session: AsyncSession, user_id: int, settings: Settings) -> Allowance:
    if settings.uploads_per_payment == 0:
        return _allowance(settings, paid=await has_paid(session, user_id), credits=None)
    credits = await session.scalar(select(User.upload_credits).where(User.id == user_id))
    return _allowance(settings, paid=False, credits=credits)


async def active_user_and_allowance(
    session: AsyncSession, user_id: int, settings: Settings
) -> tuple[User, Allowance] | None:
    """The user and what they may upload, in one round trip; None if the user is gone or
    deactivated. For the dashboard and the check before an upload's body is read."""
    paid = _paid_exists(User.id) if settings.uploads_per_payment == 0 else literal(False)
    row = (
        await session.execute(select(User, paid.label("paid")).where(User.id == user_id))
    ).first()
    if row is None or not row.User.is_active:
        return None
    user: User = row.User
    return user, _allowance(settings, paid=bool(row.paid), credits=user.upload_credits)


async def check_upload_right(
    session: AsyncSession | AsyncConnection, user_id: int, settings: Settings
) -> UploadRight:
    """The check before an upload's body is read, in one round trip: InvalidToken when the
    user is gone or deactivated, PaymentRequired when they may not upload now."""
    by_payment = settings.uploads_per_payment == 0
    row = (await session.execute(_RIGHT[by_payment], {"user_id": user_id})).first()
    if row is None or not row.is_active:
        raise InvalidToken()
    if not _allowance(settings, paid=bool(row.paid), credits=row.upload_credits).can_upload:
        raise PaymentRequired()
    return UploadRight(user_id=user_id, paid=by_payment)


def _right_statement(by_payment: bool) -> Select[bool, int, bool]:
    """`active_user_and_allowance` for the upload check, in columns (no User object to load)
    and built once: building and keying the statement cost more CPU than running it."""
    paid = _paid_exists(bindparam("user_id")) if by_payment else literal(False)
    return select(User.is_active, User.upload_credits, paid.label("paid")).where(
        User.id == bindparam("user_id")
    )


_RIGHT = {flag: _right_statement(flag) for flag in (False, True)}


async def consume_upload(
    session: AsyncSession | Work, right: UploadRight, settings: Settings
) -> None:
    """Spend one upload inside the caller's transaction; raises PaymentRequired.

    The caller commits together with the upload row, so a rollback gives the credit back.
    """
    if settings.uploads_per_payment == 0:
        if not right.paid:
            raise PaymentRequired()
        return
    result = await session.execute(
        update(User)
        .where(User.id == right.user_id, User.upload_credits > 0)
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
