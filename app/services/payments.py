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

Functions here flush and leave the commit to the caller; the two use cases that must make a
write visible before asking the gateway (`start`, `settle`) do it at that point through the
unit of work (app/uow.py). Each returns an `Outcome` whose `verdict` says what happened; the
caller commits, then answers it (402, 503, 502), so a transaction marked `failed` stays failed
when the caller answers 402.

Gateway questions are rationed (SPEC §5, §9): the server asks about one transaction at most
once every CHECK_INTERVAL, whatever the last answer was. `claim_check` takes the right to ask
with a conditional UPDATE of `checked_at` (committed by the caller before asking, so every API
and worker process sees it); the question's result is stored on the row (`check_outcome`,
`check_detail`). A caller that did not win the claim reuses that result, or, while the winner
is still asking, waits for it (`wait_for_answer`): concurrent callbacks share one question.
The reconcile job claims the same way and skips what someone else has just asked about.

What is stored is bounded: only the gateway's documented callback fields, each cut to
FIELD_BYTES, at most STORED_FIELDS_BYTES per stored callback or answer, and the last
MAX_VERIFICATIONS_KEPT verifications.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import zip_longest
from typing import Any, Final

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import uow
from app.config import Settings
from app.errors import (
    AppError,
    Conflict,
    GatewayError,
    GatewayUnavailable,
    NotFound,
    PaymentNotVerified,
    TooManyPendingPayments,
)
from app.models import Action, PaymentStatus, PaymentTransaction, User
from app.services import aamarpay, entitlement, receipts
from app.services.activity import record_activity
from app.services.pagination import newest_first

logger = logging.getLogger("app.payments")

#: Kept in `gateway_response["verifications"]`: the most recent answers only.
MAX_VERIFICATIONS_KEPT = 5
#: Each stored field value is cut to this many bytes (UTF-8).
FIELD_BYTES = 1024
#: A stored callback, or a stored gateway answer, holds at most this many bytes of values.
STORED_FIELDS_BYTES = 8 * 1024
#: The server asks the gateway about one transaction at most once per this interval.
CHECK_INTERVAL = timedelta(seconds=5)
#: Longest growing interval between two reconcile questions about an unpaid order.
MAX_RECHECK_INTERVAL = timedelta(hours=1)
#: A waiting callback re-reads the row after this long, doubling up to the maximum.
WAIT_POLL_FIRST_SECONDS = 0.05
WAIT_POLL_MAX_SECONDS = 0.5

#: What the gateway posts to the success / fail URLs (and sends as IPN), as documented; the
#: only callback fields ever stored. `tran_id` is the one we put in the cancel URL.
CALLBACK_FIELDS: Final = (
    "mer_txnid",
    "tran_id",
    "pay_status",
    "status_code",
    "status_title",
    "pg_txnid",
    "epw_txnid",
    "amount",
    "amount_bdt",
    "amount_original",
    "other_currency",
    "currency",
    "currency_merchant",
    "convertion_rate",
    "store_amount",
    "pg_service_charge_bdt",
    "pg_service_charge_usd",
    "gateway_fee",
    "pay_time",
    "date",
    "date_processed",
    "bank_txn",
    "card_type",
    "card_number",
    "card_holder",
    "pg_card_bank_name",
    "pg_card_bank_country",
    "pg_card_risklevel",
    "risk_level",
    "risk_title",
    "pg_error_code_details",
    "reason",
    "cus_name",
    "cus_email",
    "cus_phone",
    "desc",
    "success_url",
    "fail_url",
    "ip_address",
    "store_id",
    "merchant_id",
    "opt_a",
    "opt_b",
    "opt_c",
    "opt_d",
)
#: What the Search Transaction API answers, as documented (its address and shipping fields,
#: always null for us, left out).
ANSWER_FIELDS: Final = (
    "pg_txnid",
    "mer_txnid",
    "risk_title",
    "risk_level",
    "cus_name",
    "cus_email",
    "cus_phone",
    "desc",
    "merchant_id",
    "store_id",
    "amount",
    "amount_bdt",
    "amount_original",
    "pay_status",
    "status_code",
    "status_title",
    "cardnumber",
    "approval_code",
    "payment_processor",
    "bank_trxid",
    "payment_type",
    "error_code",
    "error_title",
    "bin_country",
    "bin_issuer",
    "bin_cardtype",
    "bin_cardcategory",
    "date",
    "date_processed",
    "amount_currency",
    "rec_amount",
    "store_amount",
    "processing_ratio",
    "processing_charge",
    "ip",
    "currency",
    "currency_merchant",
    "convertion_rate",
    "opt_a",
    "opt_b",
    "opt_c",
    "opt_d",
    "verify_status",
    "call_type",
    "checkout_status",
)
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


class Verdict(enum.StrEnum):
    """What a payment use case concluded, for the caller to answer (the router maps each to
    HTTP: 201/200, 402, 503, 502)."""

    #: Done as asked: the order was registered, or the transaction is paid / was closed.
    OK = "ok"
    #: The gateway does not confirm the payment (or confirms it for the wrong amount, store...).
    NOT_VERIFIED = "not_verified"
    #: The gateway could not be asked; the transaction stays `pending` for the reconcile job.
    UNAVAILABLE = "unavailable"
    #: The gateway refused to register the order (or gave no usable answer to it).
    REJECTED = "rejected"


@dataclass
class Outcome:
    transaction: PaymentTransaction
    verdict: Verdict = Verdict.OK
    #: Why, for NOT_VERIFIED, UNAVAILABLE and REJECTED: the message the person sees.
    detail: str = ""
    #: True when this call made the transition (and wrote the activity row).
    changed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def problem(self) -> AppError | None:
        """The error a caller answers with, once it has committed; None for OK."""
        if self.verdict == Verdict.NOT_VERIFIED:
            return PaymentNotVerified(self.detail or None)
        if self.verdict == Verdict.UNAVAILABLE:
            return GatewayUnavailable(self.detail or None)
        if self.verdict == Verdict.REJECTED:
            return GatewayError(self.detail or None)
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp() -> str:
    return _now().isoformat()


def cut(value: str, limit: int = FIELD_BYTES) -> str:
    """`value` cut to at most `limit` bytes of UTF-8, on a character boundary."""
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return value
    return encoded[:limit].decode("utf-8", "ignore")


def bounded_fields(
    data: Mapping[str, Any], names: Iterable[str], budget: int = STORED_FIELDS_BYTES
) -> dict[str, Any]:
    """The documented fields of `data` only, each value cut to FIELD_BYTES, `budget` bytes of
    values in all (the rest dropped and `_truncated` set). Never the signature key."""
    out: dict[str, Any] = {}
    used = 0
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if value is not None and not isinstance(value, bool | int | float):
            value = cut(str(value))
        size = len(str(value).encode("utf-8")) if value is not None else 0
        if used + size > budget:
            out["_truncated"] = True
            break
        used += size
        out[name] = value
    return aamarpay.redact(out)


def bounded_callback(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of a browser return or notification: see CALLBACK_FIELDS."""
    return bounded_fields(fields, CALLBACK_FIELDS)


def bounded_answer(raw: Any) -> Any:
    """What is kept of a gateway answer: documented fields of an object, a cut string."""
    if isinstance(raw, Mapping):
        known = ANSWER_FIELDS if "pay_status" in raw or "mer_txnid" in raw else list(raw)[:64]
        return bounded_fields(raw, known)
    if isinstance(raw, str):
        return cut(raw)
    if raw is None or isinstance(raw, bool | int | float):
        return raw
    return cut(str(raw))


# --- initiate ------------------------------------------------------------------------------


async def create_pending(
    session: AsyncSession, user: User, settings: Settings
) -> PaymentTransaction:
    """A new `pending` transaction (flushed) and its `payment_initiated` row.

    The caller commits *before* talking to the gateway, so a callback can never arrive for a
    transaction we have no record of. Raises Conflict(`already_paid`) when one payment unlocks
    uploading for good and this user already has it.
    """
    await _lock_user(session, user.id)
    if settings.uploads_per_payment == 0 and await entitlement.has_paid(session, user.id):
        raise Conflict("You have already paid for upload access", code="already_paid")
    pending = await session.scalar(
        select(func.count())
        .select_from(PaymentTransaction)
        .where(
            PaymentTransaction.user_id == user.id,
            PaymentTransaction.status == PaymentStatus.PENDING,
        )
    )
    cap = settings.max_pending_payments_per_user
    if (pending or 0) >= cap:
        raise TooManyPendingPayments(
            f"You already have {cap} unpaid payments; finish or cancel one of them first"
        )
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


async def _lock_user(session: AsyncSession, user_id: int) -> None:
    """Serialise one person's initiations until the caller commits, so parallel requests
    cannot all pass the pending-payments count: the user row locked on MariaDB (`SELECT ...
    FOR UPDATE`); on SQLite, which locks the whole database for a writer, a no-op write as the
    transaction's first statement takes that lock."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(is_active=User.is_active)
            .execution_options(synchronize_session=False)
        )
    else:
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())


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
                "message": cut(exc.message),
                "response": bounded_answer(exc.raw),
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
        return Outcome(tx, Verdict.REJECTED, message, changed=True)
    tx.gateway_response = {
        "initiate": {
            "at": _stamp(),
            "request": result.request,
            "response": bounded_answer(result.raw),
            "payment_url": cut(result.payment_url),
        }
    }
    await session.flush()
    return Outcome(tx, extra={"payment_url": result.payment_url})


# --- verification ---------------------------------------------------------------------------


async def start(
    session: AsyncSession, gateway: aamarpay.AamarPayClient, user: User, settings: Settings
) -> Outcome:
    """Start paying: the use case of `POST /api/initiate-payment/` and the dashboard's Pay
    button. The pending order is committed before the gateway hears of it (so a callback can
    never find it missing); what the gateway said is flushed for the caller's commit. 409 /
    429 are raised before anything is written; a refusing gateway is `Verdict.REJECTED`
    (the order is then `failed`)."""
    tx = await create_pending(session, user, settings)
    await uow.commit(session)  # checkpoint: the order exists before the gateway is asked
    return await submit_to_gateway(session, gateway, tx, user, settings)


#: Claims a callback tries before answering "unavailable" (each waits for the question
#: before it).
MAX_CLAIM_ROUNDS = 3


async def settle(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    transaction_id: str,
    settings: Settings,
    *,
    source: str,
    callback: Mapping[str, Any],
) -> Outcome:
    """Settle a transaction a caller named (the browser's success return, the IPN): ask the
    gateway at most once per CHECK_INTERVAL across all processes. Claim the question
    (committed before asking, so others see it), or reuse the last answer, or wait for the one
    being asked. The callback's fields are stored only with a question, so repeats rewrite
    nothing. 404 for an unknown transaction; the rest is in the Outcome's verdict."""
    for _ in range(MAX_CLAIM_ROUNDS):
        claim = await claim_check(session, transaction_id)
        await uow.commit(session)  # checkpoint: the claim is seen before the gateway is asked
        if claim.mine:
            return await ask_gateway(
                session, gateway, settings, claim, source=source, callback=callback
            )
        answer = await wait_for_answer(session, claim)
        if answer is not None:
            return answer
    detail = "The payment gateway is slow to answer; try again shortly"
    return Outcome(claim.transaction, Verdict.UNAVAILABLE, detail)


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
    if to == PaymentStatus.SUCCESS:
        # Whichever route made it paid (browser return, IPN, reconcile): one receipt.
        receipts.enqueue_after_commit(session, tx.id)
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


#: `check_outcome` values: a question is under way, or what the last one concluded.
ASKING: Final = "asking"
UNAVAILABLE: Final = "unavailable"
NOT_VERIFIED: Final = "not_verified"
CONFIRMED: Final = "success"


@dataclass(frozen=True)
class Claim:
    transaction: PaymentTransaction
    #: This caller won the right to ask the gateway now (and records the answer); otherwise
    #: it reuses the last answer or waits for the one being asked for (`wait_for_answer`).
    mine: bool


async def claim_check(session: AsyncSession, transaction_id: str) -> Claim:
    """Take the right to ask the gateway about this transaction, if nobody has within
    CHECK_INTERVAL (a conditional UPDATE of `checked_at`: one winner across processes).

    The caller commits before asking, so every other process sees the claim. A `success`
    transaction is never asked about again. Raises NotFound for an unknown id.
    """
    tx = await get_by_transaction_id(session, transaction_id)
    if tx.status == PaymentStatus.SUCCESS:
        return Claim(tx, mine=False)
    now = _now()
    result = await session.execute(
        update(PaymentTransaction)
        .where(
            PaymentTransaction.id == tx.id,
            PaymentTransaction.status != PaymentStatus.SUCCESS,
            or_(
                PaymentTransaction.checked_at.is_(None),
                PaymentTransaction.checked_at <= now - CHECK_INTERVAL,
            ),
        )
        .values(checked_at=now, check_outcome=ASKING, check_detail=None)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 1:
        return Claim(tx, mine=True)
    return Claim(await _reload(session, tx.id), mine=False)


UNAVAILABLE_DETAIL: Final = (
    "The payment gateway could not confirm the payment right now; it will be checked again shortly"
)


def _not_verified(tx: PaymentTransaction, reason: str, *, changed: bool = False) -> Outcome:
    return Outcome(tx, Verdict.NOT_VERIFIED, f"Payment not confirmed: {reason}", changed=changed)


def _unavailable(tx: PaymentTransaction) -> Outcome:
    return Outcome(tx, Verdict.UNAVAILABLE, UNAVAILABLE_DETAIL)


def last_answer(tx: PaymentTransaction) -> Outcome | None:
    """The last question's result as an Outcome; None while it is still being asked."""
    if tx.status == PaymentStatus.SUCCESS or tx.check_outcome == CONFIRMED:
        return Outcome(tx)
    if tx.check_outcome == UNAVAILABLE:
        return _unavailable(tx)
    if tx.check_outcome == NOT_VERIFIED:
        return Outcome(tx, Verdict.NOT_VERIFIED, tx.check_detail or "Payment not confirmed")
    return None


async def wait_for_answer(session: AsyncSession, claim: Claim) -> Outcome | None:
    """Someone asked the gateway within CHECK_INTERVAL: their answer, waiting for it while
    the question is under way. None when that question went stale (its asker gone, or slower
    than the interval): the caller may claim again.

    The caller has committed; between reads the session's transaction is ended, so no
    connection is held while waiting and each read sees what other processes committed.
    """
    tx = claim.transaction
    tx_id = tx.id
    delay = WAIT_POLL_FIRST_SECONDS
    while True:
        answer = last_answer(tx)
        if answer is not None:
            return answer
        if tx.checked_at is None or tx.checked_at <= _now() - CHECK_INTERVAL:
            return None
        await session.close()  # ends the read: no connection held while waiting
        await asyncio.sleep(delay)
        delay = min(delay * 2, WAIT_POLL_MAX_SECONDS)
        tx = await _reload(session, tx_id)


async def ask_gateway(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    settings: Settings,
    claim: Claim,
    *,
    source: str,
    callback: Mapping[str, Any] | None = None,
) -> Outcome:
    """Settle a claimed transaction by asking the gateway; safe to run concurrently.

    Returns the (re-read) transaction with `error` set to: PaymentNotVerified (402) when the
    gateway does not confirm the payment, GatewayUnavailable (503, status unchanged) when it
    cannot be asked. A `failed` or `cancelled` one becomes `success` only if the gateway
    confirms it now. The result is stored on the row for the callers that reuse it.
    """
    if not claim.mine:
        raise ValueError("ask_gateway needs a claim this caller won")
    outcome = await _ask(session, gateway, settings, claim.transaction, source, callback)
    await _record_answer(session, outcome, settings)
    return outcome


async def _ask(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    settings: Settings,
    tx: PaymentTransaction,
    source: str,
    callback: Mapping[str, Any] | None,
) -> Outcome:
    transaction_id = tx.transaction_id
    try:
        status = await gateway.search_transaction(transaction_id)
    except aamarpay.GatewayError as exc:
        logger.warning(
            "payment_verify_unavailable",
            extra={"tran_id": transaction_id, "source": source, "reason": exc.message},
        )
        if tx.status != PaymentStatus.PENDING:
            tx = await _reopen(session, tx, source=source, reason=exc.message, callback=callback)
        return _unavailable(tx)
    decision = decide(tx, status, settings)
    entry: dict[str, Any] = {
        "at": _stamp(),
        "source": source,
        "decision": decision.result,
        "reason": cut(decision.reason),
        "response": bounded_answer(status.raw),
    }
    if callback:
        entry["callback"] = bounded_callback(callback)
    return await apply_decision(session, tx, decision, entry, settings)


def next_check_at(tx: PaymentTransaction, outcome: str, settings: Settings) -> datetime:
    """When the reconcile job should ask again: by its next run after a gateway failure;
    otherwise after an interval that grows with the order's age (a quarter of it, between
    half a reconcile interval and MAX_RECHECK_INTERVAL); never before the order is stuck."""
    now = _now()
    soon = timedelta(seconds=settings.reconcile_interval_seconds) / 2
    if outcome == UNAVAILABLE:
        interval = soon
    else:
        interval = min(max(soon, (now - tx.timestamp) / 4), MAX_RECHECK_INTERVAL)
    return max(now + interval, tx.timestamp + timedelta(seconds=settings.stuck_after_seconds))


async def _record_answer(session: AsyncSession, outcome: Outcome, settings: Settings) -> None:
    tx = outcome.transaction
    detail: str | None = None
    if outcome.verdict == Verdict.OK:
        kind = CONFIRMED
    elif outcome.verdict == Verdict.UNAVAILABLE:
        kind = UNAVAILABLE
    else:
        kind = NOT_VERIFIED
        detail = outcome.detail[:255]
    await session.execute(
        update(PaymentTransaction)
        .where(PaymentTransaction.id == tx.id)
        .values(
            check_outcome=kind,
            check_detail=detail,
            next_check_at=next_check_at(tx, kind, settings),
        )
        .execution_options(synchronize_session=False)
    )


async def _reopen(
    session: AsyncSession,
    tx: PaymentTransaction,
    *,
    source: str,
    reason: str,
    callback: Mapping[str, Any] | None,
) -> PaymentTransaction:
    """A success return for a `failed`/`cancelled` order while the gateway cannot be asked:
    back to `pending`, so the reconcile job asks again (a payment made after a false cancel is
    not lost to an outage). Pending grants nothing; the gateway's answer settles it as usual."""
    entry: dict[str, Any] = {
        "at": _stamp(),
        "source": source,
        "decision": "reopened",
        "reason": cut(f"was {tx.status.value}; gateway unavailable: {reason}"),
    }
    if callback:
        entry["callback"] = bounded_callback(callback)
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
        return _not_verified(tx, decision.reason)

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
        # Nothing else was written in this unit of work (the claim was committed before the
        # gateway was asked), so it starts again from the top.
        await uow.rollback(session)
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
    return _not_verified(tx, decision.reason, changed=changed)


# --- fail / cancel --------------------------------------------------------------------------


async def mark_returned(
    session: AsyncSession,
    transaction_id: str,
    to: PaymentStatus,
    *,
    callback: Mapping[str, Any] | None = None,
) -> Outcome:
    """The gateway sent the browser to the fail or cancel URL: a `pending` transaction becomes
    `failed` / `cancelled`; anything else (above all a `success`) is left alone."""
    tx = await get_by_transaction_id(session, transaction_id)
    if tx.status != PaymentStatus.PENDING:
        return Outcome(tx)
    entry: dict[str, Any] = {"at": _stamp(), "source": f"{to.value}_callback"}
    if callback:
        entry["callback"] = bounded_callback(callback)
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


async def due_for_check(session: AsyncSession, settings: Settings, *, limit: int) -> list[str]:
    """Pending transactions the reconcile job should ask about now, at most `limit`.

    Two queues, both served by one index (status, next_check_at, timestamp) and taken in
    turn: stuck ones never asked about (`next_check_at` NULL), newest first, so a payment that
    has just become stuck is not queued behind anybody's backlog; and those due again,
    least recently due first. Each question pushes `next_check_at` back by an interval that
    grows with the order's age (`next_check_at()`), so old unpaid orders, however many,
    take a bounded share of each run.
    """
    now = _now()
    cutoff = now - timedelta(seconds=settings.stuck_after_seconds)
    pending = PaymentTransaction.status == PaymentStatus.PENDING
    never = await session.scalars(
        select(PaymentTransaction.transaction_id)
        .where(
            pending,
            PaymentTransaction.next_check_at.is_(None),
            PaymentTransaction.timestamp < cutoff,
        )
        .order_by(PaymentTransaction.timestamp.desc())
        .limit(limit)
    )
    again = await session.scalars(
        select(PaymentTransaction.transaction_id)
        .where(pending, PaymentTransaction.next_check_at <= now)
        .order_by(PaymentTransaction.next_check_at)
        .limit(limit)
    )
    first, second = list(never), list(again)
    taken: list[str] = []
    for pair in zip_longest(first, second):
        taken.extend(tid for tid in pair if tid is not None)
    return taken[:limit]


async def reconcile_claimed(
    session: AsyncSession,
    gateway: aamarpay.AamarPayClient,
    settings: Settings,
    claim: Claim,
) -> Outcome:
    """Ask the gateway about one stuck `pending` transaction this caller has claimed. One
    still unpaid after PENDING_PAYMENT_EXPIRY_SECONDS is closed as `failed` (expired)."""
    outcome = await ask_gateway(session, gateway, settings, claim, source="reconcile")
    tx = outcome.transaction
    expiry = timedelta(seconds=settings.pending_payment_expiry_seconds)
    if (
        tx.status == PaymentStatus.PENDING
        and outcome.verdict == Verdict.NOT_VERIFIED
        and tx.timestamp < _now() - expiry
    ):
        entry = {"at": _stamp(), "source": "reconcile", "decision": "failed", "reason": "expired"}
        outcome = await apply_decision(
            session, tx, Decision("failed", "expired: never paid"), entry, settings
        )
        await _record_answer(session, outcome, settings)
    return outcome
