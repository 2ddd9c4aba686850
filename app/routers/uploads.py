"""Uploads, the file list and downloads, and the activity log."""

from __future__ import annotations

import logging
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import session_scope
from app.deps import CurrentUser, PaginationDep, SessionDep, SettingsDep, TokenUserId
from app.errors import (
    FileTooLarge,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    PaymentRequired,
    TooManyRequests,
    UnsupportedFileType,
    UploadTimeout,
    responses,
)
from app.models import UploadStatus
from app.schemas.common import Page
from app.schemas.uploads import ActivityRead, FileUploadRead
from app.services import activity, entitlement, storage, upload_slots, uploads
from app.services.filecache import FilePageCache
from app.tasks.wordcount import enqueue_count

logger = logging.getLogger("app.uploads")

router = APIRouter(prefix="/api", tags=["files"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": ".txt or .docx",
                        }
                    },
                }
            }
        },
    }
}


async def receive_and_accept(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    user_id: int,
    *,
    before_file: storage.BeforeFile | None = None,
) -> FileUploadRead:
    """The whole upload: used by the API route and the dashboard's form alike (which passes
    its CSRF check as `before_file`, see storage.receive_upload).

    No database connection is held while the body arrives (a stalled body would hold it for
    as long as the client likes): the upload right is checked in a short session of its own,
    closed before the first byte is read, and `session` (lazy: it has not touched the pool
    yet) is used only once the file is stored. The person holds one of their upload slots
    from before the check until the row is committed.
    """
    slots: upload_slots.SlotStore = request.app.state.upload_slots
    async with upload_slots.upload_slot(
        slots,
        user_id,
        limit=settings.max_concurrent_uploads_per_user,
        idle_timeout=settings.upload_idle_timeout_seconds,
    ) as slot:
        sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
        async with sessionmaker() as check_session:
            right = await entitlement.check_upload_right(check_session, user_id, settings)
        length = request.headers.get("content-length")
        incoming = await storage.receive_upload(
            request.stream(),
            request.headers.get("content-type", ""),
            content_length=int(length) if length and length.isdigit() else None,
            field="file",
            max_bytes=settings.max_upload_bytes,
            media_root=settings.media_root,
            idle_timeout=settings.upload_idle_timeout_seconds,
            on_chunk=slot.keep_alive,
            before_file=before_file,
        )
        upload = await uploads.accept_upload(
            session, right=right, incoming=incoming, settings=settings
        )
        try:
            await session.commit()
        except BaseException:
            uploads.discard_stored(upload, settings)
            raise
    await request.app.state.file_changes.announce(user_id)
    # Only now, with the row committed, may a worker see the job.
    try:
        await to_thread.run_sync(enqueue_count, upload.id)
    except Exception:  # noqa: BLE001 - the reconcile job will send it
        logger.warning("enqueue_failed", extra={"upload_id": upload.id}, exc_info=True)
        await uploads.mark_not_queued(session, upload.id)
        await session.commit()
    return FileUploadRead.model_validate(upload)


@router.post(
    "/upload/",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FileUploadRead,
    openapi_extra=UPLOAD_BODY,
    responses=responses(
        NotAuthenticated,
        PaymentRequired,
        UploadTimeout,
        FileTooLarge,
        UnsupportedFileType,
        InvalidInput,
        TooManyRequests,
    ),
)
async def upload_file(
    request: Request, user_id: TokenUserId, session: SessionDep, settings: SettingsDep
) -> FileUploadRead:
    """Upload a `.txt` or `.docx` file (multipart field `file`). Answers 202 at once with
    `status: "processing"`; a worker then counts the words. A body that sends nothing for
    `UPLOAD_IDLE_TIMEOUT_SECONDS` is dropped (408); one upload more than
    `MAX_CONCURRENT_UPLOADS_PER_USER` of yours in flight is refused (429)."""
    # The upload right's query also checks that the user is still active.
    return await receive_and_accept(request, session, settings, user_id)


@router.get("/files/", response_model=Page[FileUploadRead], responses=responses(NotAuthenticated))
async def list_files(
    request: Request,
    user_id: TokenUserId,
    page: PaginationDep,
    status_filter: Annotated[UploadStatus | None, Query(alias="status")] = None,
) -> Response:
    """Your uploads, newest first; `?status=processing|completed|failed` filters."""
    cache: FilePageCache = request.app.state.file_pages

    async def load() -> bytes:
        async for session in session_scope(request.app.state.sessionmaker):
            found = await uploads.list_files_of_active_user(
                session, user_id=user_id, limit=page.limit, offset=page.offset, status=status_filter
            )
        if found is None:
            raise InvalidToken()
        rows, total = found
        listing = Page[FileUploadRead].of(rows, total, limit=page.limit, offset=page.offset)
        return listing.model_dump_json().encode()

    body = await cache.fetch((user_id, page.limit, page.offset, status_filter), load)
    return Response(body, media_type="application/json")


@router.get(
    "/files/{file_id}/",
    response_model=FileUploadRead,
    responses=responses(NotAuthenticated, NotFound),
)
async def get_file(file_id: int, user: CurrentUser, session: SessionDep) -> FileUploadRead:
    return FileUploadRead.model_validate(
        await uploads.get_own(session, user_id=user.id, upload_id=file_id)
    )


@router.get(
    "/files/{file_id}/download/",
    response_class=FileResponse,
    responses={
        **responses(NotAuthenticated, NotFound),
        200: {"description": "The stored bytes", "content": {"application/octet-stream": {}}},
    },
)
async def download_file(
    file_id: int, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The stored file, named as you uploaded it (your own files only)."""
    upload = await uploads.get_own(session, user_id=user.id, upload_id=file_id)
    path = storage.resolve(settings.media_root, upload.file)
    if not path.is_file():
        raise NotFound("The stored file is missing")
    return FileResponse(
        path,
        media_type=upload.content_type,
        filename=upload.filename,
        content_disposition_type="attachment",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )


@router.get("/activity/", response_model=Page[ActivityRead], responses=responses(NotAuthenticated))
async def list_activity(
    user: CurrentUser, session: SessionDep, page: PaginationDep
) -> Page[ActivityRead]:
    """Your activity log, newest first."""
    rows, total = await activity.list_activity(
        session, user_id=user.id, limit=page.limit, offset=page.offset
    )
    return Page[ActivityRead].of(rows, total, limit=page.limit, offset=page.offset)
