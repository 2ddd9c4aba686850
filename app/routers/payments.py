"""aamarPay: initiate, the gateway's routes (browser returns and the IPN), own history.

The gateway routes (success, fail, cancel, IPN) take no authentication (the gateway sends the
customer's browser, real aamarPay as a cross-site form POST; the IPN comes from its servers)
and are the only state-changing routes exempt from CSRF checks. None of them is trusted: each
only names a transaction, and the gateway's Search Transaction API decides (payments.settle).
A browser (Accept: text/html) gets a 303 to the dashboard; other callers get JSON holding only
`transaction_id` and `status` (anyone may call these routes with an id: they answer no
personal data). Their bodies are read up to MAX_CALLBACK_BODY_BYTES (413 beyond, without
reading the rest).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import RedirectResponse
from starlette.types import Message

from app import uow
from app.deps import CurrentUser, GatewayDep, PaginationDep, SessionDep, SettingsDep
from app.errors import (
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
from app.models import PaymentStatus
from app.schemas.common import Page
from app.schemas.payments import CallbackAnswer, PaymentInitiated, TransactionRead
from app.services import payments

router = APIRouter(prefix="/api", tags=["payments"])

MAX_FIELDS = 100
#: Request bodies of the unauthenticated gateway routes (a real callback is about 2 KiB).
MAX_CALLBACK_BODY_BYTES = 64 * 1024


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
    outcome = await payments.start(session, gateway, user, settings)
    await uow.commit(session)
    if problem := outcome.problem():
        raise problem
    return PaymentInitiated.of(outcome.transaction, outcome.extra["payment_url"])


# --- the gateway's routes -------------------------------------------------------------------


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


def _json_fields(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("The body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object")
    scalars = (str, int, float, bool)
    return {str(k): str(v) for k, v in list(data.items())[:MAX_FIELDS] if isinstance(v, scalars)}


async def get_callback_fields(request: Request) -> dict[str, str]:
    """Query string and the body (the gateway's form POST, or the IPN's JSON), as strings."""
    body = await _limited_body(request)
    fields: dict[str, str] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if body and content_type.startswith("application/json"):
        fields.update(_json_fields(body))
    elif body and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FIELDS)
        fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    return fields


def tran_id_of(fields: dict[str, str]) -> str:
    """The transaction the caller names: `mer_txnid` (the gateway's name) or `tran_id`."""
    for name in ("mer_txnid", "tran_id"):
        value = fields.get(name, "").strip()
        if value:
            if len(value) > 64:
                raise InvalidInput(f"{name} is too long")
            return value
    raise InvalidInput("mer_txnid is required")


CallbackFields = Annotated[dict[str, str], Depends(get_callback_fields)]


async def _respond(
    request: Request,
    session: SessionDep,
    work: Callable[[], Awaitable[payments.Outcome]],
    *,
    browser: bool = True,
) -> Any:
    """Run the route's use case, commit, answer: a browser goes back to the dashboard (also
    for an unknown or missing transaction); anyone else gets the two keys, or the error."""
    to_browser = browser and "text/html" in request.headers.get("accept", "")
    try:
        outcome = await work()
    except (NotFound, InvalidInput):
        if to_browser:
            return RedirectResponse("/dashboard/?payment=unknown", status_code=303)
        raise
    await uow.commit(session)
    tx = outcome.transaction
    if to_browser:
        unavailable = outcome.verdict == payments.Verdict.UNAVAILABLE
        state = "pending" if unavailable else tx.status.value
        return RedirectResponse(f"/dashboard/?payment={state}", status_code=303)
    if problem := outcome.problem():
        raise problem
    return CallbackAnswer(transaction_id=tx.transaction_id, status=tx.status)


CALLBACK_ROUTE: dict[str, Any] = {
    "response_model": CallbackAnswer,
    "responses": {
        **responses(NotFound, PaymentNotVerified, RequestTooLarge, GatewayUnavailable),
        **responses(InvalidInput),
        303: {"description": "Browsers: back to the dashboard"},
    },
}
RETURN_ROUTE: dict[str, Any] = {
    "response_model": CallbackAnswer,
    "responses": {
        **responses(NotFound, RequestTooLarge, InvalidInput),
        303: {"description": "Browsers"},
    },
}


@router.get("/payment/success/", **CALLBACK_ROUTE)
@router.post("/payment/success/", **CALLBACK_ROUTE)
async def payment_success(
    request: Request,
    fields: CallbackFields,
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
) -> Any:
    """The gateway's success return (`mer_txnid` + the gateway's fields). The payment counts
    only once the gateway's Search Transaction API confirms it; repeats are harmless."""
    return await _respond(
        request,
        session,
        lambda: payments.settle(
            session,
            gateway,
            tran_id_of(fields),
            settings,
            source="success_callback",
            callback=fields,
        ),
    )


@router.post("/payment/ipn/", **CALLBACK_ROUTE)
async def payment_ipn(
    request: Request,
    fields: CallbackFields,
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
) -> Any:
    """aamarPay's Instant Payment Notification (server to server, form or JSON). Verified
    exactly like the success return: 200 with the transaction's status whatever the gateway
    concluded, 503 while the gateway cannot be asked (so the sender tries again)."""

    async def notified() -> payments.Outcome:
        tran_id = tran_id_of(fields)
        outcome = await payments.settle(
            session, gateway, tran_id, settings, source="ipn", callback=fields
        )
        if outcome.verdict == payments.Verdict.NOT_VERIFIED:
            outcome.verdict = payments.Verdict.OK  # the notification itself was handled
        return outcome

    return await _respond(request, session, notified, browser=False)


async def _returned(
    request: Request, fields: dict[str, str], session: SessionDep, to: PaymentStatus
) -> Any:
    return await _respond(
        request,
        session,
        lambda: payments.mark_returned(session, tran_id_of(fields), to, callback=fields),
    )


@router.get("/payment/fail/", **RETURN_ROUTE)
@router.post("/payment/fail/", **RETURN_ROUTE)
async def payment_fail(request: Request, fields: CallbackFields, session: SessionDep) -> Any:
    """The gateway's fail return: a `pending` transaction becomes `failed` (a `success`
    never changes)."""
    return await _returned(request, fields, session, PaymentStatus.FAILED)


@router.get("/payment/cancel/", **RETURN_ROUTE)
async def payment_cancel(request: Request, fields: CallbackFields, session: SessionDep) -> Any:
    """The gateway's cancel return (`?tran_id=`, which we put in the cancel URL)."""
    return await _returned(request, fields, session, PaymentStatus.CANCELLED)


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
