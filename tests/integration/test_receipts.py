"""E-mail receipts against a real SMTP server on loopback (aiosmtpd): one per payment, however
often or concurrently the job runs; retried while the server is away; templates overridable."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import ActivityLog, PaymentStatus, PaymentTransaction, User
from app.services import mail
from app.tasks.receipts import send_due_receipts, send_receipt
from app.tasks.runtime import WorkerRuntime
from tests.plugins.smtp import SmtpServer

Sessions = async_sessionmaker[AsyncSession]


def runtime(db: Sessions, settings: Settings, **changes: Any) -> WorkerRuntime:
    return WorkerRuntime(
        pid=0,
        loop=asyncio.get_running_loop(),
        settings=settings.model_copy(update=changes),
        engine=None,  # type: ignore[arg-type]
        sessionmaker=db,
        http=None,  # type: ignore[arg-type]
    )


async def paid_payment(
    db: Sessions, *, email_address: str | None = "rahim@example.com", name: str = "rahim"
) -> int:
    async with db() as session:
        user = User(username=name, email=email_address, hashed_password="x")
        session.add(user)
        await session.flush()
        tx = PaymentTransaction(
            user_id=user.id,
            transaction_id=f"tx{user.id:030d}",
            amount=Decimal("100.00"),
            currency="BDT",
            status=PaymentStatus.SUCCESS,
            gateway_response={},
            pg_txnid=f"AAM{user.id:012d}",
        )
        session.add(tx)
        await session.commit()
        return tx.id


async def receipt_rows(db: Sessions, payment_id: int) -> int:
    async with db() as session:
        tx = await session.get(PaymentTransaction, payment_id)
        assert tx is not None
        count = await session.scalar(
            select(func.count())
            .select_from(ActivityLog)
            .where(ActivityLog.user_id == tx.user_id, ActivityLog.action == "receipt_sent")
        )
    return int(count or 0)


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


async def test_the_receipt_says_what_was_paid_and_goes_out_once(
    db: Sessions, settings: Settings, smtp: SmtpServer
) -> None:
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=smtp.url)
    assert await send_receipt(rt, payment_id) == "smtp"
    # However often the job runs again (a redelivery, a duplicate enqueue): nothing more.
    assert await send_receipt(rt, payment_id) == "not_due"
    assert await send_receipt(rt, payment_id) == "not_due"

    assert len(smtp.mailbox.messages) == 1
    message = smtp.mailbox.messages[0]
    async with db() as session:
        tx = await session.get(PaymentTransaction, payment_id)
    assert tx is not None
    assert tx.receipt_sent_at is not None
    assert smtp.mailbox.recipients == [["rahim@example.com"]]
    assert tx.transaction_id in message["Subject"]
    plain, html = text_and_html(message)
    for body in (plain, html):
        assert "100.00 BDT" in body
        assert tx.pg_txnid is not None
        assert tx.pg_txnid in body
        assert tx.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC") in body
        assert "no limit" in body
    assert await receipt_rows(db, payment_id) == 1


@pytest.mark.committed
async def test_concurrent_jobs_send_one_receipt(
    db: Sessions, settings: Settings, smtp: SmtpServer
) -> None:
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=smtp.url)
    results = await asyncio.gather(*(send_receipt(rt, payment_id) for _ in range(6)))
    assert sorted(results) == ["not_due"] * 5 + ["smtp"]
    assert len(smtp.mailbox.messages) == 1
    assert await receipt_rows(db, payment_id) == 1


async def test_smtp_away_releases_the_claim_and_a_retry_sends_it(
    db: Sessions, settings: Settings, smtp: SmtpServer
) -> None:
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=smtp.url)
    smtp.stop()
    with pytest.raises(mail.MailTemporarilyUnavailable):
        await send_receipt(rt, payment_id)
    async with db() as session:
        tx = await session.get(PaymentTransaction, payment_id)
    assert tx is not None
    assert tx.receipt_claimed_at is None
    assert tx.receipt_sent_at is None
    assert await receipt_rows(db, payment_id) == 0

    smtp.start()
    assert await send_receipt(rt, payment_id) == "smtp"
    assert len(smtp.mailbox.messages) == 1
    assert await receipt_rows(db, payment_id) == 1


async def test_a_worker_killed_mid_send_never_sends_twice(
    db: Sessions, settings: Settings, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=smtp.url)
    real_deliver = mail.deliver

    async def delivered_then_killed(message: EmailMessage, settings: Settings) -> str:
        await real_deliver(message, settings)  # the server has the mail ...
        raise SystemExit("SIGKILL")  # ... and the worker dies before recording it

    monkeypatch.setattr(mail, "deliver", delivered_then_killed)
    with pytest.raises(SystemExit):
        await send_receipt(rt, payment_id)
    monkeypatch.setattr(mail, "deliver", real_deliver)
    # The job is delivered again (late ack): the claim stands, nothing more goes out.
    assert await send_receipt(rt, payment_id) == "not_due"
    assert len(smtp.mailbox.messages) == 1


async def test_no_address_no_receipt_and_unpaid_never(
    db: Sessions, settings: Settings, smtp: SmtpServer
) -> None:
    rt = runtime(db, settings, smtp_url=smtp.url)
    without_address = await paid_payment(db, email_address=None, name="noaddr")
    assert await send_receipt(rt, without_address) == "not_due"
    pending = await paid_payment(db, name="pending")
    async with db() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.id == pending)
            .values(status=PaymentStatus.PENDING)
        )
        await session.commit()
    assert await send_receipt(rt, pending) == "not_due"
    assert smtp.mailbox.messages == []


async def test_operator_templates_override_the_bundled_ones(
    db: Sessions, settings: Settings, smtp: SmtpServer, tmp_path: Path
) -> None:
    (tmp_path / "receipt_subject.txt").write_text("Payment {{ receipt.transaction_id }} - ACME")
    (tmp_path / "receipt.txt").write_text("ACME thanks you: {{ receipt.amount }}\n")
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=smtp.url, email_templates_dir=tmp_path)
    await send_receipt(rt, payment_id)
    message = smtp.mailbox.messages[0]
    assert message["Subject"].endswith(" - ACME")
    plain, html = text_and_html(message)
    assert plain.strip() == "ACME thanks you: 100.00"
    assert "This is your receipt" in html  # not overridden: the bundled one


async def test_without_smtp_development_writes_eml_files(
    db: Sessions, settings: Settings, tmp_path: Path
) -> None:
    payment_id = await paid_payment(db)
    rt = runtime(db, settings, smtp_url=None, environment="development", mail_dir=tmp_path)
    assert await send_receipt(rt, payment_id) == "file"
    [written] = list(tmp_path.glob("*.eml"))
    message = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert "100.00 BDT" in message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert await receipt_rows(db, payment_id) == 1


async def test_user_supplied_names_are_escaped_in_the_html(
    db: Sessions, settings: Settings, smtp: SmtpServer
) -> None:
    payment_id = await paid_payment(db, name="<script>x</script>")
    await send_receipt(runtime(db, settings, smtp_url=smtp.url), payment_id)
    _, html = text_and_html(smtp.mailbox.messages[0])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


async def test_a_lost_enqueue_is_found_by_the_periodic_job(
    db: Sessions, settings: Settings, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = await paid_payment(db, name="due")
    fresh = await paid_payment(db, name="fresh")
    async with db() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.id == due)
            .values(updated_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await session.commit()
    published: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        "app.services.jobs.publish", lambda name, *args: published.append((name, args))
    )
    counts = await send_due_receipts(runtime(db, settings, stuck_after_seconds=60))
    assert counts == {"due": 1, "requeued": 1}
    assert published == [("receipts.send", (due,))]
    assert fresh != due
