"""aamarPay: initiate, the gateway's browser returns (success / fail / cancel), own history.

The three return routes take no authentication (the gateway sends the customer's browser,
real aamarPay as a cross-site form POST) and are the only routes exempt from CSRF checks.
A browser (Accept: text/html) gets a 303 to the dashboard; API clients get JSON holding
only `transaction_id` and `status` (anyone may call these routes with an id: they answer
no personal data). Their bodies are read up to MAX_CALLBACK_BODY_BYTES (413 beyond, without
reading the rest), and the gateway is asked about one transaction at most once per
`payments.CHECK_INTERVAL` (see `_verify`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message

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
    RequestTooLarge,
    TooManyPendingPayments,
    responses,
)
from app.models import PaymentStatus, User
from app.schemas.common import Page
from app.schemas.payments import CallbackAnswer, PaymentInitiated, TransactionRead
from app.services import payments
from app.services.aamarpay import AamarPayClient

router = APIRouter(prefix="/api", tags=["payments"])

MAX_FIELDS = 100
#: Request bodies of the unauthenticated gateway routes (a real callback is about 2 KiB).
MAX_CALLBACK_BODY_BYTES = 64 * 1024
#: Claims a callback tries before answering 503 (each waits for the question before it).
MAX_CLAIM_ROUNDS = 3


@router.post(
    "/initiate-payment/",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentInitiated,
    responses=responses(NotAuthenticated, Conflict, TooManyPendingPayments, GatewayError),
)
async def initiate_payment(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> PaymentInitiated:
    """Start paying for upload access: answers the gateway's `payment_url` for the browser.
    429 `too_many_pending_payments` when you already hold MAX_PENDING_PAYMENTS_PER_USER
    unpaid ones."""
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


async def _limited_body(request: Request) -> bytes:
    """The request body, refused with 413 once it is larger than MAX_CALLBACK_BODY_BYTES:
    at once when Content-Length says so, else as soon as the bytes received pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CALLBACK_BODY_BYTES:
        raise RequestTooLarge(f"At most {MAX_CALLBACK_BODY_BYTES} bytes are accepted here")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BODY_BYTES:
            raise RequestTooLarge(f"At most {MAX_CALLBACK_BODY_BYTES} bytes are accepted here")
    return bytes(body)


async def _callback_fields(request: Request) -> dict[str, str]:
    """Query string and (for the gateway's form POST) the urlencoded body, as plain strings."""
    body = await _limited_body(request)
    fields: dict[str, str] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if body and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FIELDS)
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
    return CallbackAnswer(
        transaction_id=outcome.transaction.transaction_id, status=outcome.transaction.status
    )


def _tran_id(fields: dict[str, str], *names: str) -> str:
    for name in names:
        value = fields.get(name, "").strip()
        if value:
            if len(value) > 64:
                raise InvalidInput(f"{name} is too long")
            return value
    raise InvalidInput(f"{names[0]} is required")


CALLBACK_RESPONSES = responses(
    NotFound, PaymentNotVerified, RequestTooLarge, GatewayUnavailable, InvalidInput
)


SUCCESS_ROUTE: dict[str, Any] = {
    "response_model": CallbackAnswer,
    "responses": {**CALLBACK_RESPONSES, 303: {"description": "Browsers: back to the dashboard"}},
}
RETURN_ROUTE: dict[str, Any] = {
    "response_model": CallbackAnswer,
    "responses": {
        **responses(NotFound, RequestTooLarge, InvalidInput),
        303: {"description": "Browsers"},
    },
}


async def _verify(
    session: AsyncSession,
    gateway: AamarPayClient,
    tran_id: str,
    settings: Settings,
    *,
    source: str,
    callback: dict[str, str],
) -> payments.Outcome:
    """Settle a transaction with at most one gateway question per CHECK_INTERVAL across all
    processes: claim the question (committed before asking, so others see it), or reuse the
    last answer, or wait for the one being asked. The callback's fields are stored only with
    a question, so repeats rewrite nothing."""
    for _ in range(MAX_CLAIM_ROUNDS):
        claim = await payments.claim_check(session, tran_id)
        await session.commit()
        if claim.mine:
            outcome = await payments.ask_gateway(
                session, gateway, settings, claim, source=source, callback=callback
            )
            await session.commit()
            return outcome
        answer = await payments.wait_for_answer(session, claim)
        if answer is not None:
            return answer
    slow = GatewayUnavailable("The payment gateway is slow to answer; try again shortly")
    return payments.Outcome(claim.transaction, error=slow)


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
        outcome = await _verify(
            session, gateway, tran_id, settings, source="success_callback", callback=fields
        )
    except (NotFound, InvalidInput) as exc:
        return _answer(request, None, exc)
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
