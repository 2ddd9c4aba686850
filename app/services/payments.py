"""Payments through aamarPay: initiate, verify, and a state machine that cannot be forged.

Trust model (see the gateway notes): the browser's return to the success/fail URL is unsigned,
so it only tells us *which* transaction to look at. A payment counts once the server-to-server
Search Transaction API says, for our `tran_id`: paid (`Successful` / `2`), to our store, for the
stored amount and currency, with a gateway id (`pg_txnid`) that no other transaction used, and
not flagged as risky.

The status only moves `pending -> success | failed | cancelled`, and `failed | cancelled ->
success` when the gateway confirms the payment after all (the fail and cancel returns are
unsigned too: they must not be able to block a paid order; if the gateway cannot be asked
then, the order goes back to `pending` for the reconcile job), always with a conditional UPDATE
(`... WHERE status IN (...)`), so any number of concurrent callbacks, and the reconcile job,
produce exactly one transition and one activity row. Nothing leaves `success`. No lock is
held while the gateway is asked.

Functions here flush but never commit: each returns an `Outcome` whose `error` the router
raises *after* committing, so a transaction marked `failed` stays failed when the caller
answers 402.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import AppError, Conflict, GatewayError, GatewayUnavailable, NotFound
from app.errors import PaymentNotVerified as PaymentNotVerifiedError
from app.models import Action, PaymentStatus, PaymentTransaction, User
from app.services import aamarpay, entitlement
from app.services.activity import record_activity
from app.services.pagination import newest_first

logger = logging.getLogger("app.payments")

#: Kept in `gateway_response["verifications"]`: the most recent answers only.
MAX_VERIFICATIONS_KEPT = 10
#: The gateway does not validate the phone, and we do not collect one.
CUSTOMER_PHONE_PLACEHOLDER = "01700000000"
DESCRIPTION = "Upload access: word-count service"


def new_transaction_id() -> str:
    """128 random bits as 32 hex characters: unguessable, within the gateway's 32-char limit."""
    return secrets.token_hex(16)


def gateway_for(http: httpx.AsyncClient, settings: Settings) -> aamarpay.AamarPayClient:
    return aamarpay.AamarPayClient(
        http,
        base_url=settings.aamarpay_base_url,
        store_id=settings.aamarpay_store_id,
        signature_key=settings.aamarpay_signature_key,
    )


@dataclass
class Outcome:
    transaction: PaymentTransaction
    #: Raised by the caller after it commits.
    error: AppError | None = None
    #: True when this call made the transition (and wrote the activity row).
    changed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp() -> str:
    return _now().isoformat()


# --- initiate ------------------------------------------------------------------------------


async def create_pending(
    session: AsyncSession, user: User, settings: Settings
) -> PaymentTransaction:
    """A new `pending` transaction (flushed) and its `payment_initiated` row.

    The caller commits *before* talking to the gateway, so a callback can never arrive for a
    transaction we have no record of. Raises Conflict(`already_paid`) when one payment unlocks
    uploading for good and this user already has it.
    """
    if settings.uploads_per_payment == 0 and await entitlement.has_paid(session, user.id):
        raise Conflict("You have already paid for upload access", code="already_paid")
    tx = PaymentTransaction(
        user_id=user.id,
        transaction_id=new_transaction_id(),
        amount=settings.payment_amount,
        currency=settings.payment_currency,
        status=PaymentStatus.PENDING,
        gateway_response={},
    )
    session.add(tx)
    await session.flush()
    record_activity(
        session,
        user_id=user.id,
        action=Action.PAYMENT_INITIATED,
        transaction_id=tx.transaction_id,
        amount=f"{tx.amount:.2f}",
        currency=tx.currency,
    )
    return tx


@dataclass(frozen=True)
class CallbackUrls:
    success_url: str
    fail_url: str
    cancel_url: str


def callback_urls(settings: Settings, transaction_id: str) -> CallbackUrls:
    base = settings.public_base_url
    return CallbackUrls(
        success_url=f"{base}/api/payment/success/",
        fail_url=f"{base}/api/payment/fail/",
        # The gateway sends nothing to the cancel URL: our id rides in its query string.
        cancel_url=f"{base}/api/payment/cancel/?tran_id={transaction_id}",
    )


async def submit_to_gateway(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    tx: PaymentTransaction,
    user: User,
    settings: Settings,
) -> Outcome:
    """Register the order at the gateway; on refusal or silence mark it `failed` (502)."""
    urls = callback_urls(settings, tx.transaction_id)
    try:
        result = await gateway.initiate(
            tran_id=tx.transaction_id,
            amount=tx.amount,
            currency=tx.currency,
            desc=DESCRIPTION,
            cus_name=user.username,
            cus_email=user.email or f"{user.username}@users.invalid",
            cus_phone=CUSTOMER_PHONE_PLACEHOLDER,
            opt_a=str(user.id),
            success_url=urls.success_url,
            fail_url=urls.fail_url,
            cancel_url=urls.cancel_url,
        )
    except aamarpay.GatewayError as exc:
        kind = "rejected" if isinstance(exc, aamarpay.GatewayRejected) else "unavailable"
        tx.gateway_response = {
            "initiate": {
                "at": _stamp(),
                "request": exc.request,
                "error": kind,
                "message": exc.message,
                "response": exc.raw,
            }
        }
        tx.status = PaymentStatus.FAILED
        record_activity(
            session,
            user_id=user.id,
            action=Action.PAYMENT_FAILED,
            transaction_id=tx.transaction_id,
            reason=f"gateway {kind}: {exc.message}",
        )
        await session.flush()
        logger.warning("payment_initiate_failed", extra={"tran_id": tx.transaction_id})
        message = (
            exc.message if kind == "rejected" else f"No answer from the gateway: {exc.message}"
        )
        return Outcome(tx, error=GatewayError(message), changed=True)
    tx.gateway_response = {
        "initiate": {
            "at": _stamp(),
            "request": result.request,
            "response": result.raw,
            "payment_url": result.payment_url,
        }
    }
    await session.flush()
    return Outcome(tx, extra={"payment_url": result.payment_url})


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    #: success | failed | cancelled | wait (the gateway has not settled it yet)
    result: str
    reason: str
    pg_txnid: str | None = None


def decide(
    tx: PaymentTransaction, status: aamarpay.TransactionStatus, settings: Settings
) -> Decision:
    """What the Search Transaction answer means for this stored transaction."""
    if not status.found:
        # We registered every transaction at the gateway before handing out its payment URL:
        # an id the gateway does not know was never payable.
        return Decision("failed", "the gateway has no such transaction")
    if status.is_successful:
        problems = []
        if status.mer_txnid is not None and status.mer_txnid != tx.transaction_id:
            problems.append(f"answer is about {status.mer_txnid!r}")
        if status.store_id != settings.aamarpay_store_id:
            problems.append(f"paid to store {status.store_id!r}")
        if status.amount is None or status.amount.quantize(Decimal("0.01")) != tx.amount:
            problems.append(f"amount {status.amount} instead of {tx.amount:.2f}")
        if (status.currency or "").upper() != tx.currency.upper():
            problems.append(f"currency {status.currency!r} instead of {tx.currency!r}")
        if not status.pg_txnid:
            problems.append("no gateway transaction id")
        if status.risk_level not in (None, "0"):
            problems.append(f"flagged by the gateway (risk level {status.risk_level})")
        if problems:
            return Decision("failed", "; ".join(problems))
        return Decision("success", "verified with the gateway", pg_txnid=status.pg_txnid)
    pay_status = (status.pay_status or "").casefold()
    if pay_status in ("cancelled", "canceled"):
        return Decision("cancelled", "cancelled at the gateway")
    if status.is_failed:
        return Decision("failed", f"gateway says {status.pay_status or status.status_code}")
    return Decision("wait", f"not paid yet (gateway says {status.pay_status or 'nothing'})")


def _append_verification(tx: PaymentTransaction, entry: dict[str, Any]) -> dict[str, Any]:
    response = dict(tx.gateway_response or {})
    history = list(response.get("verifications", []))
    history.append(entry)
    response["verifications"] = history[-MAX_VERIFICATIONS_KEPT:]
    return response


async def _reload(session: AsyncSession, tx_id: int) -> PaymentTransaction:
    result = await session.execute(
        select(PaymentTransaction)
        .where(PaymentTransaction.id == tx_id)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


_SETTLED_BY_SUCCESS: Final = (
    PaymentStatus.PENDING,
    PaymentStatus.FAILED,
    PaymentStatus.CANCELLED,
)


async def _transition(
    session: AsyncSession,
    tx: PaymentTransaction,
    *,
    to: PaymentStatus,
    action: Action,
    reason: str,
    gateway_response: dict[str, Any],
    pg_txnid: str | None = None,
) -> bool:
    """Move `pending -> to` if nobody else has; True when this call did it.

    `success` may also replace `failed` or `cancelled`: the fail and cancel callbacks are
    unsigned browser requests, so they must not be able to block an order the gateway later
    confirms as paid (only a verified gateway answer leads here). Nothing leaves `success`.
    """
    sources = _SETTLED_BY_SUCCESS if to == PaymentStatus.SUCCESS else (PaymentStatus.PENDING,)
    values: dict[str, Any] = {
        "status": to,
        "gateway_response": gateway_response,
        "updated_at": _now(),
    }
    if pg_txnid is not None:
        values["pg_txnid"] = pg_txnid
    result = await session.execute(
        update(PaymentTransaction)
        .where(PaymentTransaction.id == tx.id, PaymentTransaction.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    record_activity(
        session,
        user_id=tx.user_id,
        action=action,
        transaction_id=tx.transaction_id,
        reason=reason,
        **({"pg_txnid": pg_txnid} if pg_txnid else {}),
    )
    return True


_ACTIONS = {
    PaymentStatus.SUCCESS: Action.PAYMENT_SUCCEEDED,
    PaymentStatus.FAILED: Action.PAYMENT_FAILED,
    PaymentStatus.CANCELLED: Action.PAYMENT_CANCELLED,
}


async def get_by_transaction_id(session: AsyncSession, transaction_id: str) -> PaymentTransaction:
    tx = await session.scalar(
        select(PaymentTransaction).where(PaymentTransaction.transaction_id == transaction_id)
    )
    if tx is None:
        raise NotFound("No such transaction", code="not_found")
    return tx


async def verify(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    settings: Settings,
    transaction_id: str,
    *,
    source: str,
    callback: dict[str, Any] | None = None,
) -> Outcome:
    """Settle a transaction by asking the gateway; safe to run any number of times at once.

    Returns the (re-read) transaction with `error` set to: PaymentNotVerified (402) when the
    gateway does not confirm the payment, GatewayUnavailable (503, status unchanged) when it
    cannot be asked. A transaction that is already `success` is returned unchanged; a
    `failed` or `cancelled` one becomes `success` only if the gateway confirms it now.
    """
    tx = await get_by_transaction_id(session, transaction_id)
    if tx.status == PaymentStatus.SUCCESS:
        return Outcome(tx)
    # A `failed` or `cancelled` one is asked about too: only a confirmed payment changes it.
    try:
        status = await gateway.search_transaction(transaction_id)
    except aamarpay.GatewayError as exc:
        logger.warning(
            "payment_verify_unavailable",
            extra={"tran_id": transaction_id, "source": source, "reason": exc.message},
        )
        if tx.status != PaymentStatus.PENDING:
            tx = await _reopen(session, tx, source=source, reason=exc.message, callback=callback)
        return Outcome(
            tx,
            error=GatewayUnavailable(
                "The payment gateway could not confirm the payment right now; "
                "it will be checked again shortly"
            ),
        )
    decision = decide(tx, status, settings)
    entry: dict[str, Any] = {
        "at": _stamp(),
        "source": source,
        "decision": decision.result,
        "reason": decision.reason,
        "response": status.raw,
    }
    if callback:
        entry["callback"] = aamarpay.redact(callback)
    return await apply_decision(session, tx, decision, entry, settings)


async def _reopen(
    session: AsyncSession,
    tx: PaymentTransaction,
    *,
    source: str,
    reason: str,
    callback: dict[str, Any] | None,
) -> PaymentTransaction:
    """A success return for a `failed`/`cancelled` order while the gateway cannot be asked:
    back to `pending`, so the reconcile job asks again (a payment made after a false cancel is
    not lost to an outage). Pending grants nothing; the gateway's answer settles it as usual."""
    entry: dict[str, Any] = {
        "at": _stamp(),
        "source": source,
        "decision": "reopened",
        "reason": f"was {tx.status.value}; gateway unavailable: {reason}",
    }
    if callback:
        entry["callback"] = aamarpay.redact(callback)
    await session.execute(
        update(PaymentTransaction)
        .where(PaymentTransaction.id == tx.id, PaymentTransaction.status == tx.status)
        .values(
            status=PaymentStatus.PENDING,
            gateway_response=_append_verification(tx, entry),
            updated_at=_now(),
        )
        .execution_options(synchronize_session=False)
    )
    return await _reload(session, tx.id)


async def apply_decision(
    session: AsyncSession,
    tx: PaymentTransaction,
    decision: Decision,
    entry: dict[str, Any],
    settings: Settings,
) -> Outcome:
    response = _append_verification(tx, entry)
    if decision.result == "wait":
        # Record what the gateway said, but only while nobody has settled the transaction.
        await session.execute(
            update(PaymentTransaction)
            .where(
                PaymentTransaction.id == tx.id,
                PaymentTransaction.status == PaymentStatus.PENDING,
            )
            .values(gateway_response=response, updated_at=_now())
            .execution_options(synchronize_session=False)
        )
        tx = await _reload(session, tx.id)
        if tx.status == PaymentStatus.SUCCESS:
            return Outcome(tx)
        return Outcome(
            tx, error=PaymentNotVerifiedError(f"Payment not confirmed: {decision.reason}")
        )

    if decision.result == "success":
        assert decision.pg_txnid is not None  # noqa: S101 - decide() guarantees it
        reused = await session.scalar(
            select(func.count())
            .select_from(PaymentTransaction)
            .where(
                PaymentTransaction.pg_txnid == decision.pg_txnid,
                PaymentTransaction.id != tx.id,
            )
        )
        if reused:
            decision = Decision(
                "failed", f"gateway transaction {decision.pg_txnid} already paid for another order"
            )
            entry = {**entry, "decision": "failed", "reason": decision.reason}
            response = _append_verification(tx, entry)

    to = PaymentStatus(decision.result)
    tx_id = tx.id
    reason = decision.reason
    if to == PaymentStatus.SUCCESS and tx.status != PaymentStatus.PENDING:
        reason += f" (it had been marked {tx.status.value})"
    try:
        changed = await _transition(
            session,
            tx,
            to=to,
            action=_ACTIONS[to],
            reason=reason,
            gateway_response=response,
            pg_txnid=decision.pg_txnid if to == PaymentStatus.SUCCESS else None,
        )
    except IntegrityError:
        # A concurrent transaction took the same pg_txnid between our check and the UPDATE.
        # Nothing else was written in this unit of work, so start it again from the top.
        await session.rollback()
        tx = await _reload(session, tx_id)
        decision = Decision("failed", f"gateway transaction {decision.pg_txnid} already used")
        to = PaymentStatus.FAILED
        response = _append_verification(
            tx, {**entry, "decision": "failed", "reason": decision.reason}
        )
        changed = await _transition(
            session,
            tx,
            to=to,
            action=Action.PAYMENT_FAILED,
            reason=decision.reason,
            gateway_response=response,
        )
    if changed and to == PaymentStatus.SUCCESS:
        await entitlement.grant_payment(session, tx.user_id, settings)
        logger.info("payment_succeeded", extra={"tran_id": tx.transaction_id})
    tx = await _reload(session, tx_id)
    if tx.status == PaymentStatus.SUCCESS:
        return Outcome(tx, changed=changed)
    return Outcome(
        tx,
        error=PaymentNotVerifiedError(f"Payment not confirmed: {decision.reason}"),
        changed=changed,
    )


# --- fail / cancel --------------------------------------------------------------------------


async def mark_returned(
    session: AsyncSession,
    transaction_id: str,
    to: PaymentStatus,
    *,
    callback: dict[str, Any] | None = None,
) -> Outcome:
    """The gateway sent the browser to the fail or cancel URL: a `pending` transaction becomes
    `failed` / `cancelled`; anything else (above all a `success`) is left alone."""
    tx = await get_by_transaction_id(session, transaction_id)
    if tx.status != PaymentStatus.PENDING:
        return Outcome(tx)
    entry: dict[str, Any] = {"at": _stamp(), "source": f"{to.value}_callback"}
    if callback:
        entry["callback"] = aamarpay.redact(callback)
    changed = await _transition(
        session,
        tx,
        to=to,
        action=_ACTIONS[to],
        reason="the gateway returned the customer to the "
        + ("fail" if to == PaymentStatus.FAILED else "cancel")
        + " page",
        gateway_response=_append_verification(tx, entry),
    )
    return Outcome(await _reload(session, tx.id), changed=changed)


# --- lists and reconcile --------------------------------------------------------------------


async def list_transactions(
    session: AsyncSession, *, user_id: int, limit: int, offset: int
) -> tuple[list[PaymentTransaction], int]:
    return await newest_first(
        session,
        PaymentTransaction,
        conditions=[PaymentTransaction.user_id == user_id],
        time_column=PaymentTransaction.timestamp,
        limit=limit,
        offset=offset,
    )


async def stale_pending_ids(
    session: AsyncSession, settings: Settings, *, limit: int = 200
) -> list[str]:
    cutoff = _now() - timedelta(seconds=settings.stuck_after_seconds)
    rows = await session.scalars(
        select(PaymentTransaction.transaction_id)
        .where(
            PaymentTransaction.status == PaymentStatus.PENDING,
            PaymentTransaction.timestamp < cutoff,
        )
        .order_by(PaymentTransaction.timestamp)
        .limit(limit)
    )
    return list(rows)


async def reconcile_one(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    settings: Settings,
    transaction_id: str,
) -> Outcome:
    """Ask the gateway about one stuck `pending` transaction. One still unpaid after
    PENDING_PAYMENT_EXPIRY_SECONDS is closed as `failed` (expired)."""
    outcome = await verify(session, gateway, settings, transaction_id, source="reconcile")
    tx = outcome.transaction
    expiry = timedelta(seconds=settings.pending_payment_expiry_seconds)
    if (
        tx.status == PaymentStatus.PENDING
        and isinstance(outcome.error, PaymentNotVerifiedError)
        and tx.timestamp < _now() - expiry
    ):
        entry = {"at": _stamp(), "source": "reconcile", "decision": "failed", "reason": "expired"}
        return await apply_decision(
            session, tx, Decision("failed", "expired: never paid"), entry, settings
        )
    return outcome
