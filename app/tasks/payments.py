"""Periodic payment reconciliation: settle `pending` transactions nobody came back for."""

from __future__ import annotations

import logging

from app.services import payments
from app.tasks.celery_app import celery_app
from app.tasks.runtime import WorkerRuntime, run

logger = logging.getLogger("app.tasks.payments")


async def reconcile_payments(rt: WorkerRuntime) -> dict[str, int]:
    """Ask the gateway about every `pending` transaction older than STUCK_AFTER_SECONDS.

    Each transaction is settled in its own database transaction, so one failure does not
    hold up the rest; the gateway being away just leaves them for the next run.
    """
    gateway = payments.gateway_for(rt.http, rt.settings)
    async with rt.sessionmaker() as session:
        ids = await payments.stale_pending_ids(session, rt.settings)
    counts: dict[str, int] = {"checked": 0}
    for transaction_id in ids:
        async with rt.sessionmaker() as session:
            outcome = await payments.reconcile_one(session, gateway, rt.settings, transaction_id)
            await session.commit()
        counts["checked"] += 1
        key = outcome.transaction.status.value
        counts[key] = counts.get(key, 0) + 1
    if ids:
        logger.info("payments_reconciled", extra=counts)
    return counts


@celery_app.task(name="payments.reconcile", ignore_result=True, soft_time_limit=240, time_limit=300)
def reconcile() -> dict[str, int]:
    return run(reconcile_payments)
