"""Word-count jobs: `wordcount.count_words(upload_id)` and the periodic re-queue of stuck ones.

The job is acknowledged only after it ran (acks_late + reject_on_worker_lost, set on the app),
so a worker killed mid-job does not lose it; running it twice is harmless (the upload's status
moves from `processing` once). Transient faults are retried with exponential backoff.
"""

from __future__ import annotations

import logging

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import fastdb, uow
from app.config import Settings
from app.services import blobstore, uploads
from app.services.filecache import FileChanges
from app.tasks.celery_app import celery_app
from app.tasks.runtime import WorkerRuntime, run

logger = logging.getLogger("app.tasks.wordcount")

#: Connection-level faults only: the database or storage briefly away, a deadlock or lock wait
#: (MariaDB reports both as OperationalError), a timeout. A bug (IntegrityError, ProgrammingError,
#: DataError ...) fails the job at once instead of being retried eight times.
TRANSIENT = (
    uploads.TransientError,
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


@celery_app.task(
    name="wordcount.count_words",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=300,
    time_limit=360,
    ignore_result=True,
)
def count_words(self: Task, upload_id: int) -> str:
    # The upload row's fields, when the message carries them (see uploads.JOB_ROW_HEADER).
    row_header = getattr(self.request, uploads.JOB_ROW_HEADER, None)

    async def job(rt: WorkerRuntime) -> str:
        result = await process_upload(
            rt.sessionmaker, upload_id, rt.settings, rt.storage, rt.changes, row_header
        )
        logger.info(
            "upload_processed",
            extra={
                "upload_id": upload_id,
                "status": result.status,
                "word_count": result.word_count,
            },
        )
        return result.status

    return run(job)


async def process_upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    upload_id: int,
    settings: Settings,
    store: blobstore.Storage,
    changes: FileChanges | None = None,
    row_header: object = None,
) -> uploads.JobResult:
    """The job's body, in two transactions on one connection without an ORM session
    (app.fastdb): the start is committed first (a job that kills its worker still counts as
    an attempt), then the count and the settled row. Idempotent: a settled upload is left
    alone. `row_header`: the message's uploads.JOB_ROW_HEADER, if any."""
    async with fastdb.unit_of_work(sessionmaker) as work:
        upload = await uploads.start_job(work, upload_id, row_header)
        await uow.commit(work)
        if upload is None:
            return uploads.JobResult("skipped")
        try:
            result = await uploads.count_and_settle(work, upload, settings, store, changes)
        except uploads.TransientError:
            await uow.rollback(work)
            await uploads.give_back_attempt(work, upload_id)
            await uow.commit(work)
            raise
        await uow.commit(work)
        return result


def enqueue_count(upload_id: int) -> None:
    """Publish one job (blocking)."""
    count_words.apply_async(args=[upload_id])


async def requeue_stuck_uploads(rt: WorkerRuntime) -> dict[str, int]:
    """Send again the jobs of uploads stuck in `processing` (lost message, failed enqueue)."""
    async with rt.sessionmaker() as session:
        ids = await uploads.stuck_upload_ids(session, rt.settings)
    sent: list[int] = []
    for upload_id in ids:
        try:
            enqueue_count(upload_id)
        except Exception:  # noqa: BLE001 - broker away: try again at the next run
            logger.warning("requeue_failed", extra={"upload_id": upload_id}, exc_info=True)
            break
        sent.append(upload_id)
    if sent:
        async with rt.sessionmaker() as session:
            await uploads.mark_queued(session, sent)
            await uow.commit(session)
        logger.info("uploads_requeued", extra={"count": len(sent)})
    return {"stuck": len(ids), "requeued": len(sent)}


@celery_app.task(
    name="wordcount.requeue_stuck", ignore_result=True, soft_time_limit=240, time_limit=300
)
def requeue_stuck() -> dict[str, int]:
    return run(requeue_stuck_uploads)


async def sweep_stored_orphans(rt: WorkerRuntime) -> dict[str, int]:
    """Stored files/objects no committed row names, older than STUCK_AFTER_SECONDS."""
    try:
        result = await uploads.sweep_orphans(rt.sessionmaker, rt.storage, rt.settings)
    except blobstore.StorageUnavailable:
        logger.warning("orphan_sweep_storage_unavailable", exc_info=True)
        return {"scanned": 0, "deleted": 0, "aborted": 0}
    if result["deleted"] or result["aborted"]:
        logger.info("stored_orphans_deleted", extra=result)
    return result


@celery_app.task(
    name="storage.sweep_orphans", ignore_result=True, soft_time_limit=240, time_limit=300
)
def sweep_orphans() -> dict[str, int]:
    return run(sweep_stored_orphans)
