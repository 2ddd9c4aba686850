"""Uploads, the file list and downloads, and the activity log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse, Response, StreamingResponse

from app import uow
from app.db import session_scope
from app.deps import (
    CurrentUser,
    IntakeDep,
    PaginationDep,
    SessionDep,
    SettingsDep,
    TokenUserId,
    upload_body,
)
from app.errors import (
    FileTooLarge,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    PaymentRequired,
    StorageUnavailable,
    TooManyRequests,
    UnsupportedFileType,
    UploadTimeout,
    responses,
)
from app.fastdb import unit_of_work
from app.models import UploadStatus
from app.schemas.common import Page
from app.schemas.uploads import ActivityRead, FileUploadRead
from app.services import activity, blobstore, uploads
from app.services.filecache import FilePageCache

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
        StorageUnavailable,
    ),
)
async def upload_file(
    request: Request, user_id: TokenUserId, intake: IntakeDep, settings: SettingsDep
) -> Response:
    """Upload a `.txt` or `.docx` file (multipart field `file`). Answers 202 at once with
    `status: "processing"`; a worker then counts the words."""
    # One pooled connection, taken once the body is in, without an ORM session (app.fastdb).
    async with unit_of_work(intake.sessionmaker) as work:
        upload = await uploads.receive(
            work, intake, upload_body(request), user_id=user_id, settings=settings
        )
        await uow.commit(work)
    # Serialised here: returning the model had FastAPI validate it a second time against
    # `response_model` (which stays, for the documentation) before serialising it.
    return Response(
        FileUploadRead.model_validate(upload).model_dump_json(),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )


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
        **responses(NotAuthenticated, NotFound, StorageUnavailable),
        200: {"description": "The stored bytes", "content": {"application/octet-stream": {}}},
    },
)
async def download_file(
    file_id: int, user: CurrentUser, session: SessionDep, request: Request
) -> Response:
    """The stored file, named as you uploaded it (your own files only). With object storage
    the bytes are streamed through the API (no presigned URL leaves it)."""
    upload = await uploads.get_own(session, user_id=user.id, upload_id=file_id)
    store: blobstore.Storage = request.app.state.storage
    try:
        found = await store.open_download(upload.file)
    except blobstore.ObjectMissing:
        raise NotFound("The stored file is missing") from None
    except blobstore.StorageUnavailable as exc:
        logger.warning("storage_unavailable", extra={"error": str(exc)})
        raise StorageUnavailable() from exc
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    if found.path is not None:
        return FileResponse(
            found.path,
            media_type=upload.content_type,
            filename=upload.filename,
            content_disposition_type="attachment",
            headers=headers,
        )
    return StreamingResponse(
        found.chunks or _nothing(),
        media_type=upload.content_type,
        headers={
            **headers,
            "Content-Disposition": _attachment(upload.filename),
            "Content-Length": str(found.size),
        },
    )


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover


def _attachment(filename: str) -> str:
    """The Content-Disposition FileResponse writes for the same name (RFC 6266, with the
    RFC 5987 form for a name that is not plain ASCII)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


@router.get("/activity/", response_model=Page[ActivityRead], responses=responses(NotAuthenticated))
async def list_activity(
    user: CurrentUser, session: SessionDep, page: PaginationDep
) -> Page[ActivityRead]:
    """Your activity log, newest first."""
    rows, total = await activity.list_activity(
        session, user_id=user.id, limit=page.limit, offset=page.offset
    )
    return Page[ActivityRead].of(rows, total, limit=page.limit, offset=page.offset)
