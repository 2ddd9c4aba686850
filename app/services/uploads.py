"""Uploads: receive and accept (validate, store, record), list and fetch with owner checks,
and the steps of the word-count job (run by app/tasks/wordcount.py, which owns its commits).

Receiving an upload (`receive`), in order: one of the person's upload slots is taken (429);
the upload right is checked on a pooled connection given back at once, so none is held while
the body arrives (402); the body is streamed with the size limit enforced on the way (413) and
an idle timeout (408), into memory up to one write batch, else into a temporary file; the type
is checked by extension and by content (415); the file is stored under a generated key
(app/services/blobstore.py: written or renamed into MEDIA_ROOT, or put into the bucket; 503
when the storage is away); then the caller's transaction (a session, or the API's app.fastdb
Work) spends the upload credit and adds the row and its `file_uploaded` activity.

Everything that must follow is registered on the unit of work (app/uow.py), not sequenced by
the caller: if the transaction does not commit, the stored file or object is deleted and the
slot given back; once it has, the person's file-list pages are dropped everywhere (the slot
given back in the same Redis round trip) and the word-count job is enqueued, carrying the
row's fields (JOB_ROW_HEADER; if the broker cannot take it, the row is marked so the periodic
job sends it at its next run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, cast

import anyio
from anyio import to_thread
from sqlalchemy import (
    Integer,
    Row,
    Select,
    Table,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import uow
from app.config import Settings
from app.db import bare_connection
from app.errors import AppError, NotFound, StorageUnavailable, UnsupportedFileType
from app.fastdb import Work
from app.models import Action, FileUpload, UploadStatus, User
from app.services import (
    blobstore,
    entitlement,
    filetypes,
    jobs,
    storage,
    upload_slots,
    wordcount,
)
from app.services.activity import core_execute, insert_activity
from app.services.filecache import FileChanges
from app.services.pagination import deferred_page

COUNT_JOB = "wordcount.count_words"

logger = logging.getLogger("app.uploads")

#: Extension -> the type we store (never the client's Content-Type).
KINDS = {
    ".txt": "text/plain",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
#: A job that a worker has started this many times without finishing is given up.
MAX_ATTEMPTS = 5
#: Zip-bomb guard for .docx: total declared uncompressed size (the memory a worker needs to
#: count one is bounded apart: filetypes.DOCX_PARSE_BUDGET_BYTES).
MAX_DOCX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
ERROR_MAX_CHARS = 1000


_INSERT_UPLOAD = insert(cast(Table, FileUpload.__table__))  # see accept_upload


def _now() -> datetime:
    return datetime.now(UTC)


def accepted_types_text() -> str:
    return ", ".join(KINDS)


#: A .txt up to this size is checked on the event loop (~15 us for 1 KiB, ~0.1 ms at the
#: limit): cheaper than the hop to a worker thread and back, which costs more than the check.
INLINE_TXT_CHECK_BYTES = 64 * 1024


async def _sniff(incoming: storage.IncomingFile, ext: str) -> str:
    """The content type to store, or 415 when the content does not match the extension.
    A small body is checked where it was received, in memory."""
    content = incoming.data if incoming.data is not None else incoming.temp_path
    try:
        if ext == ".docx":
            await to_thread.run_sync(
                lambda: filetypes.check_docx(
                    content, max_uncompressed_bytes=MAX_DOCX_UNCOMPRESSED_BYTES
                )
            )
            return KINDS[ext]
        if incoming.size <= INLINE_TXT_CHECK_BYTES:
            encoding = filetypes.check_txt(content)
        else:
            encoding = await to_thread.run_sync(filetypes.check_txt, content)
    except filetypes.UnsupportedContentError as exc:
        raise UnsupportedFileType(str(exc)) from exc
    return f"text/plain; charset={encoding}"


@dataclass(frozen=True)
class Intake:
    """What receiving uploads needs besides the request's own session (one per process)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    slots: upload_slots.SlotStore
    changes: FileChanges
    #: Where accepted uploads are stored (blobstore.build).
    storage: blobstore.Storage


@dataclass(frozen=True)
class Body:
    """A multipart request body, as the HTTP layer hands it over."""

    chunks: AsyncIterator[bytes]
    content_type: str
    content_length: int | None


async def _admit(
    session: AsyncSession | Work, intake: Intake, user_id: int, settings: Settings
) -> tuple[upload_slots.UploadSlot, entitlement.UploadRight]:
    """Before any of a body is read: one of the person's upload slots (429), held until the
    request's transaction ends either way (the caller registers its release after the
    commit, `_release_after_commit`, once the accepted files have registered theirs), and
    the upload right (402) checked on a connection of its own, so no pooled connection
    waits on the body."""
    slot = await upload_slots.take(
        intake.slots,
        user_id,
        limit=settings.max_concurrent_uploads_per_user,
        idle_timeout=settings.upload_idle_timeout_seconds,
    )
    uow.on_rollback(session, slot.release)
    # A bare pooled connection, given back before the body arrives (an ORM session around
    # one SELECT cost more than the SELECT).
    async with bare_connection(intake.sessionmaker) as check:
        right = await entitlement.check_upload_right(check, user_id, settings)
    return slot, right


class _Receiving(TypedDict):
    field: str
    max_bytes: int
    media_root: Path
    idle_timeout: float | None
    on_chunk: Callable[[], Awaitable[None]] | None
    before_file: storage.BeforeFile | None


def _receiving(
    settings: Settings, slot: upload_slots.UploadSlot, before_file: storage.BeforeFile | None
) -> _Receiving:
    """The limits every received body is read under (size, idle timeout, the slot's lease)."""
    return _Receiving(
        field="file",
        max_bytes=settings.max_upload_bytes,
        media_root=settings.media_root,
        idle_timeout=settings.upload_idle_timeout_seconds,
        on_chunk=slot.keep_alive,
        before_file=before_file,
    )


def _release_after_commit(session: AsyncSession | Work, slot: upload_slots.UploadSlot) -> None:
    """The slot goes back after the commit: with the file-list announcement of an accepted
    file (one Redis round trip, see `_announce`), else on its own (idempotent)."""
    uow.after_commit(session, slot.release)


async def receive(
    session: AsyncSession | Work,
    intake: Intake,
    body: Body,
    *,
    user_id: int,
    settings: Settings,
    before_file: storage.BeforeFile | None = None,
) -> FileUpload:
    """The whole upload, for the API and the dashboard's form alike (the form passes its CSRF
    check as `before_file`, see storage.receive_upload). The row is flushed; the caller
    commits, and the unit of work does the rest (see the module docstring)."""
    slot, right = await _admit(session, intake, user_id, settings)
    incoming = await storage.receive_upload(
        body.chunks,
        body.content_type,
        **_receiving(settings, slot, before_file),
        content_length=body.content_length,
    )
    upload = await accept_upload(
        session, intake, right=right, incoming=incoming, settings=settings, slot=slot
    )
    _release_after_commit(session, slot)
    return upload


@dataclass(frozen=True)
class Received:
    """One file of a multi-file upload: accepted (`upload`) or refused (`error`, a code)."""

    filename: str
    error: str | None = None
    upload: FileUpload | None = None


#: How much of a client's file name a result repeats.
RESULT_NAME_CHARS = 80


async def receive_many(
    session: AsyncSession | Work,
    intake: Intake,
    body: Body,
    *,
    user_id: int,
    settings: Settings,
    before_file: storage.BeforeFile | None = None,
) -> list[Received]:
    """`receive` for a body of one or more files (the dashboard's form without script): one
    upload slot and right check for the body, then each file accepted or refused on its own
    (a refused one leaves nothing behind). The accepted rows are flushed for the caller's
    commit, with the same effects as `receive`."""
    slot, right = await _admit(session, intake, user_id, settings)
    received = await storage.receive_uploads(
        body.chunks,
        body.content_type,
        **_receiving(settings, slot, before_file),
        content_length=body.content_length,
    )
    results: list[Received] = []
    try:
        for item in received:
            shown = storage.sanitize_filename(item.client_filename)[:RESULT_NAME_CHARS]
            if isinstance(item, storage.RefusedFile):
                results.append(Received(shown, item.error.code))
                continue
            try:
                # A refusal (415, 402) is raised before this file wrote anything.
                upload = await accept_upload(
                    session, intake, right=right, incoming=item, settings=settings, slot=slot
                )
            except AppError as exc:
                results.append(Received(shown, exc.code))
                continue
            results.append(Received(shown, upload=upload))
    finally:
        # Files not reached (an error part-way) leave nothing behind; accepted ones have
        # been moved into place, so this finds nothing of them.
        for item in received:
            if isinstance(item, storage.IncomingFile):
                item.discard()
    _release_after_commit(session, slot)
    return results


async def accept_upload(
    session: AsyncSession | Work,
    intake: Intake,
    *,
    right: entitlement.UploadRight,
    incoming: storage.IncomingFile,
    settings: Settings,
    slot: upload_slots.UploadSlot | None = None,
) -> FileUpload:
    """Validate and store a received file and add its row (flushed, not committed).

    Raises UnsupportedFileType (415), PaymentRequired (402) or StorageUnavailable (503),
    having removed the temporary file and anything stored. Once it returns, the unit of work
    deletes the stored file or object if the transaction does not commit; after the commit it
    announces the change to the file-list caches (giving `slot` back in the same round trip)
    and enqueues the word count, the row's fields in the job's message (if the broker cannot
    take it, the row is marked for the periodic job to send it).
    """
    user_id = right.user_id
    store = intake.storage
    key: str | None = None
    try:
        ext = storage.extension_of(incoming.client_filename)
        if ext not in KINDS:
            what = ext or "files without an extension"
            raise UnsupportedFileType(
                f"Only {accepted_types_text()} files are accepted, not {what}"
            )
        content_type = await _sniff(incoming, ext)
        key = store.new_key(user_id, ext)
        try:
            if incoming.data is not None:
                await store.put_bytes(incoming.data, key)
            else:
                await store.put(incoming.temp_path, key)
        except blobstore.StorageUnavailable as exc:
            logger.warning("storage_unavailable", extra={"error": str(exc)})
            raise StorageUnavailable() from exc
        await entitlement.consume_upload(session, right, settings)
        now = _now()
        values: dict[str, Any] = {
            "user_id": user_id,
            "file": key,
            "filename": storage.sanitize_filename(incoming.client_filename, fallback_ext=ext),
            "status": UploadStatus.PROCESSING,
            "size": incoming.size,
            "sha256": incoming.sha256,
            "content_type": content_type,
            "upload_time": now,
            "queued_at": now,
            "attempts": 0,
        }
        # Core INSERTs, not session.add + flush: the ORM's unit of work cost more CPU than
        # the rest of the upload's database work. The returned object is not in the session.
        inserted = await core_execute(session, _INSERT_UPLOAD, values)
        upload = FileUpload(id=inserted.lastrowid, **values)
        await insert_activity(
            session,
            user_id=user_id,
            action=Action.FILE_UPLOADED,
            file_id=upload.id,
            filename=upload.filename,
            size=upload.size,
        )
    except BaseException:
        incoming.discard()
        if key is not None:
            await _forget(store, key)
        raise
    stored = key
    uow.on_rollback(session, lambda: _forget(store, stored))
    uow.after_commit(session, lambda: _announce(intake.changes, user_id, slot))
    jobs.enqueue_after_commit(
        session,
        COUNT_JOB,
        upload.id,
        headers={JOB_ROW_HEADER: job_row_header(upload)},
        on_failure=lambda: uow.transaction(
            intake.sessionmaker, lambda s: mark_not_queued(s, upload.id)
        ),
    )
    return upload


async def _announce(
    changes: FileChanges, user_id: int, slot: upload_slots.UploadSlot | None
) -> None:
    """The person's file-list pages dropped everywhere, and the upload slot given back in
    the same Redis round trip when the slots live on that Redis (else on its own)."""
    await changes.announce(user_id, along=slot.release_along if slot is not None else None)
    if slot is not None:
        await slot.release()  # nothing left to do if it went along


async def _forget(store: blobstore.Storage, key: str) -> None:
    """Delete what was stored for a row that will not commit; if the storage is away now,
    the periodic sweep deletes it once it is STUCK_AFTER_SECONDS old."""
    with anyio.CancelScope(shield=True):
        try:
            await store.delete(key)
        except blobstore.StorageUnavailable:
            logger.warning("orphan_left_for_the_sweep", extra={"key": key})


async def mark_not_queued(session: AsyncSession, upload_id: int) -> None:
    """The broker refused the job: let the reconcile job send it at its next run."""
    await session.execute(
        update(FileUpload)
        .where(FileUpload.id == upload_id, FileUpload.status == UploadStatus.PROCESSING)
        .values(queued_at=None)
        .execution_options(synchronize_session=False)
    )


# --- reading -------------------------------------------------------------------------------


def _files_page_statement(with_status: bool) -> Select[Any]:
    """The page of a user's files, each row also carrying the total and whether the user is
    active: one query (cheap for the server: the page's ids from one index range, those rows
    by primary key, and two scalar subqueries it evaluates once). A deep offset walks only
    the index `(user_id[, status], upload_time)`, never the rows it skips (a deferred join,
    see app/services/pagination.py). Built once: constructing and keying a statement of this
    size costs SQLAlchemy more CPU than running it."""
    where = [FileUpload.user_id == bindparam("user_id")]
    if with_status:
        where.append(FileUpload.status == bindparam("status"))
    total = select(func.count()).select_from(FileUpload).where(*where).scalar_subquery()
    active = select(User.is_active).where(User.id == bindparam("user_id")).scalar_subquery()
    return deferred_page(
        FileUpload,
        *FileUpload.__table__.c,
        total.label("total"),
        active.label("active"),
        conditions=where,
        time_column=FileUpload.upload_time,
        limit=bindparam("limit", type_=Integer),
        offset=bindparam("offset", type_=Integer),
    )


def _files_owner_statement(with_status: bool) -> Select[Any]:
    """For an empty page: is the user there and active, and how many files match."""
    where = [FileUpload.user_id == bindparam("user_id")]
    if with_status:
        where.append(FileUpload.status == bindparam("status"))
    total = select(func.count()).select_from(FileUpload).where(*where).scalar_subquery()
    return select(User.is_active, total.label("total")).where(User.id == bindparam("user_id"))


_FILES_PAGE = {flag: _files_page_statement(flag) for flag in (False, True)}
_FILES_OWNER = {flag: _files_owner_statement(flag) for flag in (False, True)}


async def list_files_of_active_user(
    session: AsyncSession,
    *,
    user_id: int,
    limit: int,
    offset: int,
    status: UploadStatus | None = None,
) -> tuple[list[Row[Any]], int] | None:
    """The page, the total and the check that the user exists and is active, in one round
    trip (two for an empty page), for the API's hottest read: it used to be a user lookup,
    the page and a COUNT. None when there is no such active user. The rows carry
    FileUpload's columns."""
    params: dict[str, Any] = {"user_id": user_id, "limit": limit, "offset": offset}
    if status is not None:
        params["status"] = status
    filtered = status is not None
    rows = (await session.execute(_FILES_PAGE[filtered], params)).all()
    if rows:
        return (list(rows), int(rows[0].total)) if rows[0].active else None
    owner = (await session.execute(_FILES_OWNER[filtered], params)).first()
    if owner is None or not owner.is_active:
        return None
    return [], int(owner.total)


async def get_own(session: AsyncSession, *, user_id: int, upload_id: int) -> FileUpload:
    """The caller's upload; someone else's is indistinguishable from a missing one (404)."""
    upload = await session.scalar(
        select(FileUpload).where(FileUpload.id == upload_id, FileUpload.user_id == user_id)
    )
    if upload is None:
        raise NotFound("No such file")
    return upload


# --- the word-count job --------------------------------------------------------------------


class TransientError(Exception):
    """Storage or database briefly away: retry the job later."""


@dataclass(frozen=True)
class JobResult:
    status: str
    word_count: int | None = None


@dataclass(frozen=True)
class StartedUpload:
    """What the job reads of its upload (columns, not an ORM object: building and tracking
    one cost more than the query)."""

    id: int
    user_id: int
    file: str
    filename: str
    #: Starts so far, this one included; None: not read, known to be within MAX_ATTEMPTS.
    attempts: int | None


#: The job message's header with the upload row's fields the job needs, which never change
#: once the row is written: with it the job's start is one UPDATE, no SELECT. A job without
#: it (re-queued by the periodic job, or published by older code) reads the row.
JOB_ROW_HEADER = "upload_row"


def job_row_header(upload: FileUpload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "user_id": upload.user_id,
        "file": upload.file,
        "filename": upload.filename,
    }


def _row_from_header(upload_id: int, header: object) -> StartedUpload | None:
    if not isinstance(header, dict) or header.get("id") != upload_id:
        return None
    user_id, file, filename = header.get("user_id"), header.get("file"), header.get("filename")
    if not (isinstance(user_id, int) and isinstance(file, str) and isinstance(filename, str)):
        return None
    return StartedUpload(upload_id, user_id, file, filename, attempts=None)


async def start_job(
    session: AsyncSession | Work, upload_id: int, row_header: object = None
) -> StartedUpload | None:
    """Count this start of the job (flushed: the task commits it before counting, so a job
    that kills its worker still counts as an attempt); None when there is nothing to do.

    `row_header` is the job's JOB_ROW_HEADER, if it came with one: then a start within
    MAX_ATTEMPTS is a single UPDATE. Without it, or past the limit, or for a settled upload,
    the row is counted and read as before."""
    known = _row_from_header(upload_id, row_header)
    if known is not None:
        started = await core_execute(
            session, _START_KNOWN_JOB, {"upload_id": upload_id, "max_attempts": MAX_ATTEMPTS}
        )
        if getattr(started, "rowcount", 0) == 1:
            return known
    result = await core_execute(session, _START_JOB, {"upload_id": upload_id})
    if getattr(result, "rowcount", 0) != 1:
        return None
    row = (await core_execute(session, _JOB_ROW, {"upload_id": upload_id})).first()
    if row is None:
        return None
    return StartedUpload(row.id, row.user_id, row.file, row.filename, row.attempts)


# The job's statements, built once on the table (Core): building an ORM-enabled UPDATE per
# job and running it through the ORM's bulk-update path cost more CPU than the round trip.
_UPLOADS = cast(Table, FileUpload.__table__)
_START_JOB = (
    update(_UPLOADS)
    .where(_UPLOADS.c.id == bindparam("upload_id"), _UPLOADS.c.status == UploadStatus.PROCESSING)
    .values(attempts=_UPLOADS.c.attempts + 1)
)
_START_KNOWN_JOB = _START_JOB.where(_UPLOADS.c.attempts < bindparam("max_attempts"))
_FINISH_JOB = (
    update(_UPLOADS)
    .where(_UPLOADS.c.id == bindparam("upload_id"), _UPLOADS.c.status == UploadStatus.PROCESSING)
    .values(
        status=bindparam("new_status", type_=_UPLOADS.c.status.type),
        word_count=bindparam("new_word_count", type_=_UPLOADS.c.word_count.type),
        error=bindparam("new_error", type_=_UPLOADS.c.error.type),
        completed_at=bindparam("new_completed_at", type_=_UPLOADS.c.completed_at.type),
    )
)
_JOB_ROW = select(
    _UPLOADS.c.id,
    _UPLOADS.c.user_id,
    _UPLOADS.c.file,
    _UPLOADS.c.filename,
    _UPLOADS.c.attempts,
).where(_UPLOADS.c.id == bindparam("upload_id"))


async def give_back_attempt(session: AsyncSession | Work, upload_id: int) -> None:
    """A transient fault is not an attempt (best effort)."""
    await session.execute(
        update(FileUpload)
        .where(FileUpload.id == upload_id, FileUpload.attempts > 0)
        .values(attempts=FileUpload.attempts - 1)
        .execution_options(synchronize_session=False)
    )


async def _finish(
    session: AsyncSession | Work,
    upload: StartedUpload,
    *,
    word_count: int | None,
    error: str | None,
    extra: dict[str, object],
) -> bool:
    """processing -> completed | failed, once; the activity row only for the winner."""
    done = error is None
    result = await core_execute(
        session,
        _FINISH_JOB,
        {
            "upload_id": upload.id,
            "new_status": UploadStatus.COMPLETED if done else UploadStatus.FAILED,
            "new_word_count": word_count,
            "new_error": None if error is None else error[:ERROR_MAX_CHARS],
            "new_completed_at": _now(),
        },
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    await insert_activity(
        session,
        user_id=upload.user_id,
        action=Action.FILE_PROCESSED if done else Action.FILE_PROCESSING_FAILED,
        file_id=upload.id,
        filename=upload.filename,
        **({"word_count": word_count} if done else {"error": error}),
        **extra,
    )
    return True


async def count_and_settle(
    session: AsyncSession | Work,
    upload: StartedUpload,
    settings: Settings,
    store: blobstore.Storage,
    changes: FileChanges | None = None,
) -> JobResult:
    """Count the words of a started upload and settle it (flushed). A corrupt or unreadable
    file ends `failed` (with `error`); storage that is not there at all raises TransientError
    so the job is retried; a job that keeps dying mid-way is given up after MAX_ATTEMPTS
    starts. The settled upload is announced on `changes` after the commit."""
    result = await _count(session, upload, store, settings)
    if changes is not None:
        uow.after_commit(session, lambda: changes.announce(upload.user_id))
    return result


async def _count_txt(store: blobstore.Storage, key: str) -> int:
    """Count a .txt as its bytes arrive (at most two passes, see TxtWordCounter)."""
    for second_pass in (False, True):
        counter = wordcount.TxtWordCounter(second_pass=second_pass)
        chunks = store.stream(key)
        try:
            complete = True
            async for chunk in chunks:
                if not counter.feed(chunk):
                    complete = False
                    break
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        result = counter.result() if complete else None
        if result is not None:
            return result
    raise AssertionError("the second pass always counts")  # pragma: no cover


async def _count_file(store: blobstore.Storage, key: str, settings: Settings) -> int:
    if key.endswith(".docx"):
        # python-docx needs a file it can seek in: a local one, of bounded size.
        async with store.local_copy(key, settings.max_upload_bytes) as path:
            return wordcount.count_words(path, "docx")
    return await _count_txt(store, key)


async def _count(
    session: AsyncSession | Work,
    upload: StartedUpload,
    store: blobstore.Storage,
    settings: Settings,
) -> JobResult:
    if upload.attempts is not None and upload.attempts > MAX_ATTEMPTS:
        await _finish(
            session,
            upload,
            word_count=None,
            error=f"gave up after {MAX_ATTEMPTS} attempts",
            extra={},
        )
        return JobResult("failed")
    started = time.perf_counter()
    try:
        count = await _count_file(store, upload.file, settings)
    except blobstore.StorageUnavailable as exc:
        raise TransientError(str(exc)) from exc
    except blobstore.ObjectMissing:
        error = "the stored file is missing"
        await _finish(session, upload, word_count=None, error=error, extra={})
        return JobResult("failed")
    except (wordcount.CorruptFileError, blobstore.ObjectTooLarge) as exc:
        await _finish(session, upload, word_count=None, error=str(exc), extra={})
        return JobResult("failed")
    except OSError as exc:
        raise TransientError(f"cannot read the stored file: {exc}") from exc
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    await _finish(session, upload, word_count=count, error=None, extra={"duration_ms": duration_ms})
    return JobResult("completed", count)


async def stuck_upload_ids(
    session: AsyncSession, settings: Settings, *, limit: int = 500
) -> list[int]:
    """Uploads still `processing` whose job was never sent, or sent long enough ago to have
    been lost (broker restarted without persistence, enqueue failed after the commit)."""
    cutoff = _now() - timedelta(seconds=settings.stuck_after_seconds)
    rows = await session.scalars(
        select(FileUpload.id)
        .where(
            FileUpload.status == UploadStatus.PROCESSING,
            or_(FileUpload.queued_at.is_(None), FileUpload.queued_at < cutoff),
        )
        .order_by(FileUpload.id)
        .limit(limit)
    )
    return list(rows)


async def mark_queued(session: AsyncSession, upload_ids: list[int]) -> None:
    if upload_ids:
        await session.execute(
            update(FileUpload)
            .where(FileUpload.id.in_(upload_ids), FileUpload.status == UploadStatus.PROCESSING)
            .values(queued_at=_now())
            .execution_options(synchronize_session=False)
        )


# --- the periodic sweep of stored files no row names --------------------------------------


async def sweep_orphans(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: blobstore.Storage,
    settings: Settings,
) -> dict[str, int]:
    """Delete stored files/objects that no committed row names once they are older than
    STUCK_AFTER_SECONDS (a process that died between storing and committing), and uploads
    begun that long ago and never finished; a batch (one listing page, one query, one bulk
    delete) at a time. Raises blobstore.StorageUnavailable when the storage is away."""
    cutoff = _now() - timedelta(seconds=settings.stuck_after_seconds)
    scanned = deleted = 0
    async for keys in store.list_older_than(cutoff):
        scanned += len(keys)
        async with sessionmaker() as session:
            named = set(
                await session.scalars(select(FileUpload.file).where(FileUpload.file.in_(keys)))
            )
        orphans = [key for key in keys if key not in named]
        if orphans:
            await store.delete_many(orphans)
            deleted += len(orphans)
    aborted = await store.abort_incomplete(cutoff)
    return {"scanned": scanned, "deleted": deleted, "aborted": aborted}
