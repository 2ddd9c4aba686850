"""aamarPay: initiate, the gateway's browser returns (success / fail / cancel), own history.

The three return routes take no authentication (the gateway sends the customer's browser,
real aamarPay as a cross-site form POST) and are the only routes exempt from CSRF checks.
A browser (Accept: text/html) gets a 303 to the dashboard; API clients get JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.deps import CurrentUser, GatewayDep, PaginationDep, SessionDep, SettingsDep
from app.errors import (
    AppError,
    Conflict,
    GatewayError,
    GatewayUnavailable,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PaymentNotVerified,
    responses,
)
from app.models import PaymentStatus, User
from app.schemas.common import Page
from app.schemas.payments import PaymentInitiated, TransactionRead
from app.services import payments
from app.services.aamarpay import AamarPayClient

router = APIRouter(prefix="/api", tags=["payments"])

MAX_FIELDS = 100


@router.post(
    "/initiate-payment/",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentInitiated,
    responses=responses(NotAuthenticated, Conflict, GatewayError),
)
async def initiate_payment(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> PaymentInitiated:
    """Start paying for upload access: answers the gateway's `payment_url` for the browser."""
    return await start_payment(session, gateway, user, settings)


async def start_payment(
    session: AsyncSession, gateway: AamarPayClient, user: User, settings: Settings
) -> PaymentInitiated:
    """The whole initiation, for the API and the dashboard alike. The pending row is
    committed before the gateway is called, and again with what the gateway said."""
    tx = await payments.create_pending(session, user, settings)
    await session.commit()
    outcome = await payments.submit_to_gateway(session, gateway, tx, user, settings)
    await session.commit()
    if outcome.error:
        raise outcome.error
    return PaymentInitiated(
        transaction_id=tx.transaction_id,
        payment_url=outcome.extra["payment_url"],
        amount=tx.amount,
        currency=tx.currency,
        status=tx.status,
    )


async def _callback_fields(request: Request) -> dict[str, str]:
    """Query string and (for the gateway's form POST) the urlencoded body, as plain strings."""
    fields: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form(max_files=0, max_fields=MAX_FIELDS)
            fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    return fields


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _answer(request: Request, outcome: payments.Outcome | None, error: AppError | None) -> Any:
    if _wants_html(request):
        if outcome is None:
            state = "unknown"
        elif isinstance(error, GatewayUnavailable):
            state = "pending"
        else:
            state = outcome.transaction.status.value
        return RedirectResponse(f"/dashboard/?payment={state}", status_code=303)
    if error is not None:
        raise error
    assert outcome is not None  # noqa: S101
    return TransactionRead.model_validate(outcome.transaction)


def _tran_id(fields: dict[str, str], *names: str) -> str:
    for name in names:
        value = fields.get(name, "").strip()
        if value:
            if len(value) > 64:
                raise InvalidInput(f"{name} is too long")
            return value
    raise InvalidInput(f"{names[0]} is required")


CALLBACK_RESPONSES = responses(NotFound, PaymentNotVerified, GatewayUnavailable, InvalidInput)


SUCCESS_ROUTE: dict[str, Any] = {
    "response_model": TransactionRead,
    "responses": {**CALLBACK_RESPONSES, 303: {"description": "Browsers: back to the dashboard"}},
}
RETURN_ROUTE: dict[str, Any] = {
    "response_model": TransactionRead,
    "responses": {**responses(NotFound, InvalidInput), 303: {"description": "Browsers"}},
}


@router.get("/payment/success/", **SUCCESS_ROUTE)
@router.post("/payment/success/", **SUCCESS_ROUTE)
async def payment_success(
    request: Request, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> Any:
    """The gateway's success return (`mer_txnid` + the gateway's fields). The payment counts
    only once the gateway's Search Transaction API confirms it; repeats are harmless."""
    fields = await _callback_fields(request)
    try:
        tran_id = _tran_id(fields, "mer_txnid", "tran_id")
        outcome = await payments.verify(
            session, gateway, settings, tran_id, source="success_callback", callback=fields
        )
    except (NotFound, InvalidInput) as exc:
        return _answer(request, None, exc)
    await session.commit()
    return _answer(request, outcome, outcome.error)


async def _returned(request: Request, session: SessionDep, to: PaymentStatus) -> Any:
    fields = await _callback_fields(request)
    try:
        tran_id = _tran_id(fields, "mer_txnid", "tran_id")
        outcome = await payments.mark_returned(session, tran_id, to, callback=fields)
    except (NotFound, InvalidInput) as exc:
        return _answer(request, None, exc)
    await session.commit()
    return _answer(request, outcome, None)


@router.get("/payment/fail/", **RETURN_ROUTE)
@router.post("/payment/fail/", **RETURN_ROUTE)
async def payment_fail(request: Request, session: SessionDep) -> Any:
    """The gateway's fail return: a `pending` transaction becomes `failed` (a `success`
    never changes)."""
    return await _returned(request, session, PaymentStatus.FAILED)


@router.get("/payment/cancel/", **RETURN_ROUTE)
async def payment_cancel(request: Request, session: SessionDep) -> Any:
    """The gateway's cancel return (`?tran_id=`, which we put in the cancel URL)."""
    return await _returned(request, session, PaymentStatus.CANCELLED)


@router.get(
    "/transactions/",
    response_model=Page[TransactionRead],
    responses=responses(NotAuthenticated),
)
async def list_transactions(
    user: CurrentUser, session: SessionDep, page: PaginationDep
) -> Page[TransactionRead]:
    """Your payments, newest first."""
    rows, total = await payments.list_transactions(
        session, user_id=user.id, limit=page.limit, offset=page.offset
    )
    return Page[TransactionRead].of(rows, total, limit=page.limit, offset=page.offset)
