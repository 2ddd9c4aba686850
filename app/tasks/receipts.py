"""`receipts.send(payment_id)`: the e-mail receipt of one successful payment, sent once.

The protocol that makes it once is in app/services/receipts.py; this job owns its three short
transactions (claim, then after the SMTP conversation either mark sent or release the claim).
While the SMTP server is away the job is retried with backoff (up to about a day).
"""

from __future__ import annotations

import logging

from anyio import to_thread
from sqlalchemy.exc import InterfaceError, OperationalError

from app import uow
from app.services import jobs, mail, receipts
from app.tasks.celery_app import celery_app
from app.tasks.runtime import WorkerRuntime, run

logger = logging.getLogger("app.tasks.receipts")

TRANSIENT = (
    mail.MailTemporarilyUnavailable,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


async def send_receipt(rt: WorkerRuntime, payment_id: int) -> str:
    async with rt.sessionmaker() as session:
        receipt = await receipts.claim(session, payment_id)
        await uow.commit(session)
    if receipt is None:
        return "not_due"
    message = receipts.compose(receipt, rt.settings)
    try:
        via = await mail.deliver(message, rt.settings)
    except mail.MailTemporarilyUnavailable:
        async with rt.sessionmaker() as session:
            await receipts.release(session, payment_id)
            await uow.commit(session)
        raise
    except mail.MailRejected:
        # The claim stays: the same message would be refused again.
        logger.warning("receipt_rejected", extra={"payment_id": payment_id}, exc_info=True)
        return "rejected"
    async with rt.sessionmaker() as session:
        await receipts.mark_sent(session, receipt, via=via)
        await uow.commit(session)
    logger.info("receipt_sent", extra={"payment_id": payment_id, "via": via})
    return via


@celery_app.task(
    name="receipts.send",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=60,
    soft_time_limit=60,
    time_limit=90,
    ignore_result=True,
)
def send(payment_id: int) -> str:
    return run(lambda rt: send_receipt(rt, payment_id))


async def send_due_receipts(rt: WorkerRuntime) -> dict[str, int]:
    """Send the jobs of receipts whose enqueue was lost (broker away after the commit)."""
    async with rt.sessionmaker() as session:
        ids = await receipts.due_payment_ids(session, rt.settings)
    sent = 0
    for payment_id in ids:
        try:
            await to_thread.run_sync(jobs.publish, "receipts.send", payment_id)
        except Exception:  # noqa: BLE001 - broker away: the next run tries again
            logger.warning("receipt_requeue_failed", exc_info=True)
            break
        sent += 1
    return {"due": len(ids), "requeued": sent}


@celery_app.task(name="receipts.send_due", ignore_result=True, soft_time_limit=120, time_limit=150)
def send_due() -> dict[str, int]:
    return run(send_due_receipts)
