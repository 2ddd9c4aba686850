"""Periodic payment reconciliation: settle `pending` transactions nobody came back for."""

from __future__ import annotations

import logging

from app import uow
from app.errors import NotFound
from app.services import payments
from app.tasks.celery_app import celery_app
from app.tasks.runtime import WorkerRuntime, run

logger = logging.getLogger("app.tasks.payments")


async def reconcile_payments(rt: WorkerRuntime) -> dict[str, int]:
    """Ask the gateway about a bounded batch of stuck `pending` transactions (see
    `payments.due_for_check` for the order: never asked first, then least recently asked).

    Each transaction is claimed like a callback claims it (one question per transaction per
    CHECK_INTERVAL across all processes; one asked about just now is skipped) and settled in
    its own database transaction, so one failure does not hold up the rest; the gateway being
    away just leaves them for a later run.
    """
    gateway = payments.gateway_for(rt.http, rt.settings)
    async with rt.sessionmaker() as session:
        ids = await payments.due_for_check(
            session, rt.settings, limit=rt.settings.reconcile_batch_size
        )
    counts: dict[str, int] = {"checked": 0}
    for transaction_id in ids:
        async with rt.sessionmaker() as session:
            try:
                claim = await payments.claim_check(session, transaction_id)
            except NotFound:  # deleted since it was listed
                continue
            await uow.commit(session)
            if not claim.mine:
                counts["skipped"] = counts.get("skipped", 0) + 1
                continue
            outcome = await payments.reconcile_claimed(session, gateway, rt.settings, claim)
            await uow.commit(session)
        counts["checked"] += 1
        key = outcome.transaction.status.value
        counts[key] = counts.get(key, 0) + 1
    if ids:
        logger.info("payments_reconciled", extra=counts)
    return counts


@celery_app.task(name="payments.reconcile", ignore_result=True, soft_time_limit=240, time_limit=300)
def reconcile() -> dict[str, int]:
    return run(reconcile_payments)
