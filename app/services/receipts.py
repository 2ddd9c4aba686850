"""E-mail receipts for payments: one per successful payment, never two.

A payment that becomes `success` (browser return, IPN or reconcile: see
`payments._transition`) registers an after-commit effect that enqueues the `receipts.send` job.
The job (app/tasks/receipts.py) sends at most once, however often it runs:

1. `claim()`: a conditional UPDATE sets `receipt_claimed_at` only where it is still empty, and
   is committed before the SMTP server is contacted; only the job that made it sends.
2. The message goes out.
3. `mark_sent()` sets `receipt_sent_at` and writes the `receipt_sent` activity row.

If the server is away (step 2 fails temporarily), `release()` clears the claim and the job
retries with backoff. A worker killed between 2 and 3 leaves the claim in place: the receipt is
not sent again (it may have gone out), which is the side this errs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, select_autoescape
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.config import Settings
from app.errors import NotFound
from app.i18n import tr
from app.models import Action, PaymentStatus, PaymentTransaction, User
from app.services import jobs
from app.services.activity import record_activity


@dataclass(frozen=True)
class Receipt:
    payment_id: int
    user_id: int
    transaction_id: str
    email: str
    username: str
    amount: str
    currency: str
    pg_txnid: str
    paid_at: datetime
    #: The person's stored language (None: DEFAULT_LANGUAGE).
    language: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


async def claim(session: AsyncSession, payment_id: int) -> Receipt | None:
    """Take the right to send this payment's receipt; None when it is not due (not paid,
    no e-mail address, or already claimed by another run)."""
    row = (
        await session.execute(
            select(PaymentTransaction, User.email, User.username, User.language)
            .join(User, User.id == PaymentTransaction.user_id)
            .where(
                PaymentTransaction.id == payment_id,
                PaymentTransaction.status == PaymentStatus.SUCCESS,
                PaymentTransaction.receipt_claimed_at.is_(None),
            )
        )
    ).first()
    if row is None or not row.email:
        return None
    tx: PaymentTransaction = row[0]
    claimed = await session.execute(
        update(PaymentTransaction)
        .where(
            PaymentTransaction.id == payment_id,
            PaymentTransaction.receipt_claimed_at.is_(None),
        )
        .values(receipt_claimed_at=_now())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _receipt(tx, row.email, row.username, row.language)


def _receipt(
    tx: PaymentTransaction, email: str | None, username: str, language: str | None
) -> Receipt:
    return Receipt(
        payment_id=tx.id,
        user_id=tx.user_id,
        transaction_id=tx.transaction_id,
        email=email or "",
        username=username,
        amount=f"{tx.amount:.2f}",
        currency=tx.currency,
        pg_txnid=tx.pg_txnid or "",
        paid_at=tx.updated_at,
        language=language,
    )


async def of_owner(session: AsyncSession, *, user_id: int, transaction_id: str) -> Receipt:
    """The receipt of one of the person's own successful payments (the printable page);
    NotFound for anyone else's, an unknown one, or one not paid."""
    row = (
        await session.execute(
            select(PaymentTransaction, User.email, User.username, User.language)
            .join(User, User.id == PaymentTransaction.user_id)
            .where(
                PaymentTransaction.transaction_id == transaction_id,
                PaymentTransaction.user_id == user_id,
                PaymentTransaction.status == PaymentStatus.SUCCESS,
            )
        )
    ).first()
    if row is None:
        raise NotFound("No such receipt")
    return _receipt(row[0], row.email, row.username, row.language)


async def release(session: AsyncSession, payment_id: int) -> None:
    """Give the claim back after a failed attempt, so a retry may send."""
    await session.execute(
        update(PaymentTransaction)
        .where(
            PaymentTransaction.id == payment_id,
            PaymentTransaction.receipt_sent_at.is_(None),
        )
        .values(receipt_claimed_at=None)
        .execution_options(synchronize_session=False)
    )


async def mark_sent(session: AsyncSession, receipt: Receipt, *, via: str) -> None:
    await session.execute(
        update(PaymentTransaction)
        .where(PaymentTransaction.id == receipt.payment_id)
        .values(receipt_sent_at=_now())
        .execution_options(synchronize_session=False)
    )
    record_activity(
        session,
        user_id=receipt.user_id,
        action=Action.RECEIPT_SENT,
        transaction_id=receipt.transaction_id,
        via=via,
    )


async def due_payment_ids(
    session: AsyncSession, settings: Settings, *, limit: int = 200
) -> list[int]:
    """Paid, with an address, never claimed, and settled long enough ago that its job should
    have run: its enqueue was lost. Served by the (receipt_claimed_at, status, updated_at)
    index, which holds few rows with an empty claim besides pending payments."""
    cutoff = _now() - timedelta(seconds=settings.stuck_after_seconds)
    rows = await session.scalars(
        select(PaymentTransaction.id)
        .join(User, User.id == PaymentTransaction.user_id)
        .where(
            PaymentTransaction.receipt_claimed_at.is_(None),
            PaymentTransaction.status == PaymentStatus.SUCCESS,
            PaymentTransaction.updated_at < cutoff,
            User.email.is_not(None),
            User.email != "",
        )
        .order_by(PaymentTransaction.updated_at)
        .limit(limit)
    )
    return list(rows)


def enqueue_after_commit(session: AsyncSession, payment_id: int) -> None:
    """Called by whoever makes a payment `success`."""
    jobs.enqueue_after_commit(session, "receipts.send", payment_id)


def _templates(settings: Settings) -> Environment:
    loaders: list[FileSystemLoader | PackageLoader] = [PackageLoader("app", "templates/email")]
    if settings.email_templates_dir:
        loaders.insert(0, FileSystemLoader(settings.email_templates_dir))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        keep_trailing_newline=True,
    )
    i18n.install(env)
    return env


def unlocked_text(settings: Settings, lang: str = "en") -> str:
    if settings.uploads_per_payment == 0:
        return tr(lang, "Uploading .txt and .docx files, with no limit on their number")
    return i18n.ntr(
        lang,
        "%(count)s upload of a .txt or .docx file",
        "%(count)s uploads of .txt or .docx files",
        settings.uploads_per_payment,
        count=i18n.format_number(settings.uploads_per_payment, lang),
    )


def receipt_language(receipt: Receipt, settings: Settings) -> str:
    """The person's stored language, else DEFAULT_LANGUAGE."""
    if i18n.is_language(receipt.language):
        return str(receipt.language)
    return settings.default_language


def _amount(receipt: Receipt, lang: str) -> str:
    """English keeps the accountant's `100.00 BDT`; Bengali writes `৳১০০.০০`."""
    if lang == "en":
        return f"{receipt.amount} {receipt.currency}"
    return i18n.format_amount(receipt.amount, receipt.currency, lang)


def _paid_at(receipt: Receipt, lang: str) -> str:
    """To the second, in UTC: `2026-12-01 14:05:07 UTC`; in Bengali with CLDR `bn` month
    names and Bengali digits (১ ডিসেম্বর ২০২৬, ১৪:০৫:০৭ UTC)."""
    paid = receipt.paid_at.astimezone(UTC)
    if lang == "en":
        return paid.strftime("%Y-%m-%d %H:%M:%S UTC")
    return i18n.format_datetime(paid, lang, seconds=True)


def content(receipt: Receipt, settings: Settings, lang: str) -> dict[str, Any]:
    """What a receipt says, written for `lang`: the mail and the printable page alike."""
    return {
        "lang": lang,
        "receipt": receipt,
        "amount": _amount(receipt, lang),
        "paid_at": _paid_at(receipt, lang),
        "unlocked": unlocked_text(settings, lang),
        "dashboard_url": f"{settings.public_base_url}/dashboard/",
    }


def compose(receipt: Receipt, settings: Settings, language: str | None = None) -> EmailMessage:
    """The receipt as a plain-text + HTML message, in `language` (default: the person's
    stored language, else DEFAULT_LANGUAGE): amounts, digits and dates as CLDR writes them."""
    lang = receipt_language(receipt, settings)
    if language is not None and i18n.is_language(language):
        lang = language
    env = _templates(settings)
    context = content(receipt, settings, lang)
    subject = " ".join(env.get_template("receipt_subject.txt").render(context).split())
    sender_name, sender_address = parseaddr(settings.email_from)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((sender_name, sender_address))
    message["To"] = formataddr((receipt.username, receipt.email))
    domain = Address(addr_spec=sender_address).domain or "localhost"
    # The same id for the same payment: mail programs fold copies into one.
    message["Message-ID"] = f"<receipt.{receipt.transaction_id}@{domain}>"
    message.set_content(env.get_template("receipt.txt").render(context))
    message.add_alternative(env.get_template("receipt.html").render(context), subtype="html")
    # After the content: setting it removes the Content-* headers.
    message["Content-Language"] = lang
    return message
