"""Background jobs, enqueued by name once the transaction that asked for them has committed.

A service calls `enqueue_after_commit(session, "receipts.send", payment_id)`; the unit of work
(app/uow.py) publishes the job after the commit, in a worker thread (publishing blocks), and
never if the transaction rolls back. Publishing by name keeps services free of task imports.
If the broker cannot take the job, the failure is logged and the periodic job that owns that
kind of work sends it later (`on_failure` may record that it was not sent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from app import uow
from app.tasks.celery_app import celery_app

logger = logging.getLogger("app.jobs")


def publish(name: str, *args: Any) -> None:
    """Publish one job now (blocking)."""
    celery_app.send_task(name, args=list(args))


def enqueue_after_commit(
    session: AsyncSession,
    name: str,
    *args: Any,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    async def effect() -> None:
        try:
            await to_thread.run_sync(lambda: publish(name, *args))
        except Exception:  # noqa: BLE001 - the periodic job sends it later
            logger.warning(
                "enqueue_failed", extra={"job": name, "job_args": list(args)}, exc_info=True
            )
            if on_failure is not None:
                await on_failure()

    uow.after_commit(session, effect)
