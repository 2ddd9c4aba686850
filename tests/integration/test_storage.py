"""Stored uploads behind one interface (SPEC §10).

The first part runs on whichever backend the run uses (local, or s3 with
TEST_STORAGE_BACKEND=s3): the periodic sweep, a missing object, readiness. The second part
always runs against a real S3 server of its own (SeaweedFS on loopback), with the API and a
real worker given different MEDIA_ROOT folders (nothing shared but the database, the broker and
the bucket): the whole flow, rejected and rolled-back uploads leaving no object, the server
going away (503, readiness, the worker retrying) and coming back.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import ServiceUnavailable
from app.main import create_app
from app.models import FileUpload, UploadStatus
from app.services import blobstore, jobs, uploads
from app.tasks.wordcount import process_upload
from tests import s3server
from tests.s3server import WeedServer
from tests.support import (
    Account,
    UserFactory,
    assert_error,
    async_wait_until,
    fresh_store,
    grant_payment,
)
from tests.workers import CeleryWorker

Sessions = async_sessionmaker[AsyncSession]
OWN_BUCKET = "wordcount-own"
OWN_PREFIX = "tenant-a/"


def docx_bytes(*paragraphs: str) -> bytes:
    doc = Document()
    for text in paragraphs:
        doc.add_paragraph(text)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


async def plant_row(db: Sessions, user_id: int, key: str, name: str = "planted.txt") -> int:
    async with db() as session:
        upload = FileUpload(
            user_id=user_id,
            file=key,
            filename=name,
            status=UploadStatus.PROCESSING,
            size=10,
            sha256="0" * 64,
            content_type="text/plain; charset=utf-8",
            upload_time=datetime.now(UTC),
            queued_at=datetime.now(UTC),
            attempts=0,
        )
        session.add(upload)
        await session.commit()
        return upload.id


async def get_row(db: Sessions, upload_id: int) -> FileUpload:
    async with db() as session:
        found = await session.get(FileUpload, upload_id)
    assert found is not None
    return found


async def row_count(db: Sessions) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(FileUpload)) or 0)


# --- either backend -------------------------------------------------------------------------


async def test_sweep_deletes_only_old_files_no_row_names(
    app: FastAPI, user: Account, db: Sessions, settings: Settings
) -> None:
    store: blobstore.Storage = app.state.storage
    named = s3server.put_stored(settings, user.id, "named.txt", b"kept words")
    await plant_row(db, user.id, named)
    orphan = s3server.put_stored(settings, user.id, "orphan.txt", b"crash before commit")
    # Just stored: younger than STUCK_AFTER_SECONDS, so perhaps still on its way to a row.
    fresh = await uploads.sweep_orphans(db, store, settings)
    assert fresh["deleted"] == 0
    assert s3server.stored_keys(settings) == sorted([named, orphan])
    # Once older than the cutoff (the cutoff moved past them instead of waiting).
    later = settings.model_copy(update={"stuck_after_seconds": -60})
    swept = await uploads.sweep_orphans(db, store, later)
    assert swept["deleted"] == 1
    assert s3server.stored_keys(settings) == [named]
    assert s3server.read_stored(settings, named) == b"kept words"


async def test_sweep_works_in_bounded_batches(
    app: FastAPI, user: Account, db: Sessions, settings: Settings, monkeypatch: Any
) -> None:
    monkeypatch.setattr(blobstore, "BATCH", 3)
    keys = [s3server.put_stored(settings, user.id, f"o{i}.txt", b"x") for i in range(7)]
    await plant_row(db, user.id, keys[4])
    later = settings.model_copy(update={"stuck_after_seconds": -60})
    swept = await uploads.sweep_orphans(db, app.state.storage, later)
    assert (swept["scanned"], swept["deleted"]) == (7, 6)
    assert s3server.stored_keys(settings) == [keys[4]]


async def test_a_missing_stored_file_fails_the_row(
    app: FastAPI, client: AsyncClient, user: Account, db: Sessions, settings: Settings
) -> None:
    key = s3server.put_stored(settings, user.id, "gone.txt", b"soon gone")
    upload_id = await plant_row(db, user.id, key)
    s3server.remove_stored(settings, key)
    result = await process_upload(db, upload_id, settings, app.state.storage)
    assert result.status == "failed"
    done = await get_row(db, upload_id)
    assert (done.status, done.error) == (UploadStatus.FAILED, "the stored file is missing")
    resp = await client.get(f"/api/files/{upload_id}/download/", headers=user.headers)
    assert_error(resp, 404, "not_found")


async def test_readiness_includes_the_storage(client: AsyncClient, settings: Settings) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"]["storage"] == "ok"
    # The probe left nothing behind.
    assert s3server.stored_keys(settings) == []


# --- a bucket of its own, API and worker on different MEDIA_ROOT folders ---------------------


@pytest.fixture(scope="module")
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    server = WeedServer(tmp_path_factory.mktemp("own-s3"))
    server.start()
    try:
        server.create_bucket(OWN_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(own_s3: WeedServer) -> dict[str, str]:
    return own_s3.env(bucket=OWN_BUCKET, prefix=OWN_PREFIX)


@pytest.fixture
async def s3_app(
    committed: None, settings: Settings, s3_env: dict[str, str], tmp_path: Path, own_s3: WeedServer
) -> AsyncIterator[FastAPI]:
    api_media = tmp_path / "api-media"
    changes = {key.lower(): value for key, value in s3_env.items()}
    s3_settings = settings.model_copy(update={**changes, "media_root": api_media})
    application = create_app(s3_settings)
    async with application.router.lifespan_context(application):
        yield application
    if own_s3.proc is not None:
        s3server.clear_stored(s3_settings)


@pytest.fixture
async def s3_client(s3_app: FastAPI) -> AsyncIterator[AsyncClient]:
    s3_app.state.throttle_store = fresh_store(s3_app.state.throttle_store)
    transport = ASGITransport(app=s3_app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def s3_paid(s3_client: AsyncClient, db: Sessions) -> Account:
    account = await UserFactory(s3_client).create()
    await grant_payment(db, account.id)
    return account


@pytest.fixture
def s3_worker(s3_env: dict[str, str], run_dir: Path, tmp_path: Path) -> Iterator[CeleryWorker]:
    """A real worker with a MEDIA_ROOT of its own: it shares no folder with the API."""
    worker_media = tmp_path / "worker-media"
    worker = CeleryWorker(run_dir, env={**s3_env, "MEDIA_ROOT": str(worker_media)})
    try:
        yield worker
    finally:
        worker.stop()


def s3_state(app: FastAPI) -> Settings:
    found: Settings = app.state.settings
    return found


async def upload(client: AsyncClient, account: Account, name: str, data: bytes) -> Any:
    return await client.post(
        "/api/upload/",
        files={"file": (name, data, "application/octet-stream")},
        headers=account.headers,
    )


async def wait_settled(db: Sessions, upload_id: int, timeout: float = 90) -> FileUpload:
    async def settled() -> bool:
        return (await get_row(db, upload_id)).status != UploadStatus.PROCESSING

    await async_wait_until(settled, timeout=timeout, what="the upload to settle")
    return await get_row(db, upload_id)


async def test_the_whole_flow_with_api_and_worker_sharing_no_folder(
    s3_app: FastAPI,
    s3_client: AsyncClient,
    s3_paid: Account,
    s3_worker: CeleryWorker,
    db: Sessions,
) -> None:
    settings = s3_state(s3_app)
    text = ("word " * 3_000_000).encode()  # 15 MB: a multipart upload
    settings_big = settings.model_copy(update={"max_upload_bytes": 20 * 1024 * 1024})
    s3_app.state.settings = settings_big
    big = await upload(s3_client, s3_paid, "Große Notiz.txt", text)
    s3_app.state.settings = settings
    small = await upload(s3_client, s3_paid, "report.docx", docx_bytes("one two", "three"))
    assert big.status_code == small.status_code == 202, (big.text, small.text)
    big_key, small_key = big.json()["file"], small.json()["file"]
    assert big_key.startswith(f"{OWN_PREFIX}{s3_paid.id}/")
    assert s3server.stored_keys(settings) == sorted([big_key, small_key])
    assert s3server.read_stored(settings, big_key) == text
    assert s3server.incomplete_uploads(settings) == []
    # Nothing of it is in the API's folder (only its empty temporary-file area).
    assert [p for p in settings.media_root.rglob("*") if p.is_file()] == []

    s3_worker.start()
    s3_worker.wait_ready()
    done_big = await wait_settled(db, big.json()["id"])
    done_small = await wait_settled(db, small.json()["id"])
    assert (done_big.status, done_big.word_count) == (UploadStatus.COMPLETED, 3_000_000)
    assert (done_small.status, done_small.word_count) == (UploadStatus.COMPLETED, 3)
    worker_media = Path(s3_worker.env["MEDIA_ROOT"])
    assert [p for p in worker_media.rglob("*") if p.is_file()] == []  # the .docx copy is gone

    resp = await s3_client.get(f"/api/files/{done_big.id}/download/", headers=s3_paid.headers)
    assert resp.status_code == 200
    assert resp.content == text
    assert resp.headers["content-disposition"] == (
        "attachment; filename*=utf-8''Gro%C3%9Fe%20Notiz.txt"
    )
    assert resp.headers["content-length"] == str(len(text))
    resp = await s3_client.get(f"/api/files/{done_small.id}/download/", headers=s3_paid.headers)
    assert resp.headers["content-disposition"] == 'attachment; filename="report.docx"'
    # Only the owner.
    other = await UserFactory(s3_client).create()
    resp = await s3_client.get(f"/api/files/{done_big.id}/download/", headers=other.headers)
    assert_error(resp, 404, "not_found")


async def test_rejected_uploads_leave_no_object(
    s3_app: FastAPI, s3_client: AsyncClient, s3_paid: Account, db: Sessions
) -> None:
    settings = s3_state(s3_app)
    s3_app.state.settings = settings.model_copy(update={"max_upload_bytes": 1024 * 1024})
    too_big = await upload(s3_client, s3_paid, "big.txt", b"a " * 600_000)
    assert_error(too_big, 413, "file_too_large")
    fake = await upload(s3_client, s3_paid, "fake.docx", b"not a zip at all")
    assert_error(fake, 415, "unsupported_file_type")
    empty = await upload(s3_client, s3_paid, "empty.txt", b"")
    assert_error(empty, 422, "validation_error")
    assert s3server.stored_keys(settings) == []
    assert s3server.incomplete_uploads(settings) == []
    assert await row_count(db) == 0
    # Another person uploads as usual.
    someone = await UserFactory(s3_client).create()
    await grant_payment(db, someone.id)
    ok = await upload(s3_client, someone, "fine.txt", b"fine words")
    assert ok.status_code == 202, ok.text
    assert s3server.stored_keys(settings) == [ok.json()["file"]]


async def test_a_rolled_back_upload_leaves_no_object(
    s3_app: FastAPI, s3_client: AsyncClient, s3_paid: Account, db: Sessions, monkeypatch: Any
) -> None:
    """Stored, then the transaction does not commit: the compensation deletes the object."""
    settings = s3_state(s3_app)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise ServiceUnavailable("refused after the object was stored")

    monkeypatch.setattr(jobs, "enqueue_after_commit", refused)
    resp = await upload(s3_client, s3_paid, "notes.txt", b"some words")
    assert_error(resp, 503, "service_unavailable")
    assert s3server.stored_keys(settings) == []
    assert await row_count(db) == 0


async def test_a_failed_multipart_upload_is_aborted(
    s3_app: FastAPI, tmp_path: Path, monkeypatch: Any
) -> None:
    settings = s3_state(s3_app)
    store: blobstore.S3Storage = s3_app.state.storage
    temp = tmp_path / "body.part"
    temp.write_bytes(os.urandom(blobstore.MULTIPART_THRESHOLD + 1))
    real_upload_part = store.client.upload_part
    calls = 0

    async def second_part_fails(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionResetError("the connection dropped mid-part")
        return await real_upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", second_part_fails)
    with pytest.raises(blobstore.StorageUnavailable):
        await store.put(temp, f"{OWN_PREFIX}1/multipart.txt")
    assert calls == 2
    assert s3server.stored_keys(settings) == []
    assert s3server.incomplete_uploads(settings) == []


async def test_storage_outage_503_then_retried_by_the_worker(
    s3_app: FastAPI,
    s3_client: AsyncClient,
    s3_paid: Account,
    s3_worker: CeleryWorker,
    own_s3: WeedServer,
    db: Sessions,
) -> None:
    settings = s3_state(s3_app)
    before = await upload(s3_client, s3_paid, "before.txt", b"stored before the outage")
    assert before.status_code == 202, before.text
    own_s3.stop()
    try:
        during = await upload(s3_client, s3_paid, "during.txt", b"arrives during the outage")
        assert_error(during, 503, "storage_unavailable")
        ready = await s3_client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"]["storage"].startswith("unavailable")
        assert ready.json()["detail"]["database"] == "ok"
        assert await row_count(db) == 1
        assert list((settings.media_root / ".incoming").glob("*")) == []
        # The worker meets the outage: the job is retried, not failed.
        s3_worker.start()
        s3_worker.wait_ready()

        async def retried() -> bool:
            return "Retry in" in s3_worker.log_path.read_text(errors="replace")

        await async_wait_until(retried, timeout=60, what="the worker to retry the job")
        row = await get_row(db, before.json()["id"])
        # A transient fault gives its attempt back; the retry (backoff with jitter, possibly
        # under a second) may already be under way, holding one.
        assert row.status == UploadStatus.PROCESSING
        assert row.attempts <= 1
    finally:
        own_s3.start()
    done = await wait_settled(db, before.json()["id"], timeout=150)
    assert (done.status, done.word_count) == (UploadStatus.COMPLETED, 4)
    assert (await s3_client.get("/readyz")).status_code == 200
    after = await upload(s3_client, s3_paid, "after.txt", b"back again")
    assert after.status_code == 202, after.text
    assert s3server.stored_keys(settings) == sorted([before.json()["file"], after.json()["file"]])
