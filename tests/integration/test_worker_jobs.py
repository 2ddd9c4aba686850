"""Uploads counted by a real Celery worker process on the test broker (Redis in CI, the
embedded filesystem broker by default): counted right, never lost."""

from __future__ import annotations

import contextlib
import io
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from docx import Document
from httpx import AsyncClient
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import ActivityLog, FileUpload, UploadStatus
from app.services import blobstore, uploads
from app.tasks.celery_app import celery_app
from app.tasks.wordcount import process_upload
from tests import s3server
from tests.support import Account, UserFactory, async_wait_until, grant_payment
from tests.workers import ApiServer, CeleryWorker

Sessions = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.worker


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    """Jobs published by earlier tests (for rows that are gone) are dropped first."""
    celery_app.control.purge()


async def upload(client: AsyncClient, account: Account, name: str, data: bytes) -> dict[str, Any]:
    resp = await client.post("/api/upload/", files={"file": (name, data)}, headers=account.headers)
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def row(db: Sessions, upload_id: int) -> FileUpload:
    async with db() as session:
        found = await session.get(FileUpload, upload_id)
    assert found is not None
    return found


async def wait_settled(db: Sessions, *upload_ids: int, timeout: float = 90) -> list[FileUpload]:
    async def settled() -> bool:
        rows = [await row(db, i) for i in upload_ids]
        return all(r.status != UploadStatus.PROCESSING for r in rows)

    await async_wait_until(settled, timeout=timeout, interval=0.05, what="uploads to settle")
    return [await row(db, i) for i in upload_ids]


def docx_with_table() -> bytes:
    doc = Document()
    doc.add_paragraph("Three words here")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "alpha beta"
    table.cell(0, 1).text = "gamma"
    table.cell(1, 0).text = "delta"
    table.cell(1, 1).text = "epsilon zeta eta"
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def big_docx(words: int, seed: int = 7) -> bytes:
    """A real .docx whose body holds `words` random words (slow enough to kill mid-count)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    base = io.BytesIO()
    Document().save(base)
    paragraphs = []
    for start in range(0, words, 50):
        text = " ".join(rng.choices(vocab, k=min(50, words - start)))
        paragraphs.append(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>")
    with zipfile.ZipFile(base) as src:
        original = src.read("word/document.xml").decode()
        document = original.replace("<w:body>", "<w:body>" + "".join(paragraphs), 1)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = document.encode() if item.filename == "word/document.xml" else src.read(item)
                dst.writestr(item.filename, data)
    return out.getvalue()


async def test_uploads_are_counted_by_the_worker(
    client: AsyncClient, paid: Account, db: Sessions, celery_worker: CeleryWorker
) -> None:
    text = "Hello, world!\tসবাইকে  শুভেচ্ছা\r\nnon\u00a0breaking 全角\u3000space\n"
    txt = await upload(client, paid, "mixed.txt", text.encode("utf-8-sig"))
    docx = await upload(client, paid, "table.docx", docx_with_table())
    done_txt, done_docx = await wait_settled(db, txt["id"], docx["id"])
    assert (done_txt.status, done_txt.word_count) == (UploadStatus.COMPLETED, len(text.split()))
    assert (done_docx.status, done_docx.word_count) == (UploadStatus.COMPLETED, 3 + 7)
    assert done_txt.completed_at is not None
    api_view = (await client.get(f"/api/files/{txt['id']}/", headers=paid.headers)).json()
    assert (api_view["status"], api_view["word_count"]) == ("completed", len(text.split()))
    async with db() as session:
        logs = list(
            await session.scalars(select(ActivityLog).where(ActivityLog.action == "file_processed"))
        )
    assert sorted(log.metadata_["file_id"] for log in logs) == sorted([txt["id"], docx["id"]])
    assert all(log.metadata_["duration_ms"] >= 0 for log in logs)


async def test_request_id_travels_with_the_job(
    client: AsyncClient, paid: Account, db: Sessions, celery_worker: CeleryWorker
) -> None:
    resp = await client.post(
        "/api/upload/",
        files={"file": ("traced.txt", b"follow me")},
        headers={**paid.headers, "X-Request-ID": "trace-upload-42"},
    )
    await wait_settled(db, resp.json()["id"])

    # The row can be committed a moment before the worker's log lines reach its log file.
    async def traced() -> bool:
        return "[trace-upload-42]" in celery_worker.log()

    await async_wait_until(traced, timeout=10, what="the request id in the worker's log")


async def test_corrupt_docx_ends_failed_with_an_error(
    client: AsyncClient, paid: Account, db: Sessions, celery_worker: CeleryWorker
) -> None:
    # A real package whose main part is cut short: it passes the upload checks (zip,
    # declared parts, sane sizes) and fails only when the worker parses it.
    base = io.BytesIO()
    Document().save(base)
    buf = io.BytesIO()
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "word/document.xml":
                data = data.split(b"<w:body>")[0] + b"<w:body><w:p><w:r><w:t>not closed"
            dst.writestr(item.filename, data)
    created = await upload(client, paid, "broken.docx", buf.getvalue())
    (done,) = await wait_settled(db, created["id"])
    assert done.status == UploadStatus.FAILED
    assert done.error
    assert done.word_count is None
    async with db() as session:
        actions = list(
            await session.scalars(select(ActivityLog.action).where(ActivityLog.user_id == paid.id))
        )
    assert "file_processing_failed" in actions
    assert "file_processed" not in actions


async def test_uploads_made_while_the_worker_is_down_are_counted_when_it_returns(
    client: AsyncClient, paid: Account, db: Sessions, celery_worker: CeleryWorker
) -> None:
    celery_worker.stop()
    ids = [
        (await upload(client, paid, f"queued{i}.txt", ("word " * (i + 1)).encode()))["id"]
        for i in range(5)
    ]
    assert {(await row(db, i)).status for i in ids} == {UploadStatus.PROCESSING}
    celery_worker.start()
    done = await wait_settled(db, *ids)
    assert [(d.status, d.word_count) for d in done] == [
        (UploadStatus.COMPLETED, i + 1) for i in range(5)
    ]


@pytest.fixture
def worker_factory(run_dir: Path) -> Iterator[Any]:
    started: list[CeleryWorker] = []

    def make(**env: str) -> CeleryWorker:
        worker = CeleryWorker(run_dir, env=env, beat="RECONCILE_INTERVAL_SECONDS" in env)
        started.append(worker)
        worker.start()
        worker.wait_ready()
        return worker

    yield make
    for worker in started:
        worker.kill()


async def test_worker_killed_mid_job_does_not_lose_it(
    client: AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    override_settings: Any,
    worker_factory: Any,
) -> None:
    override_settings(max_upload_bytes=30 * 1024 * 1024)
    data = big_docx(2_500_000)
    first = worker_factory()
    created = await upload(client, paid, "big.docx", data)

    async def claimed() -> bool:
        return (await row(db, created["id"])).attempts >= 1

    await async_wait_until(claimed, timeout=60, interval=0.01, what="the worker to start the job")
    first.kill()
    mid = await row(db, created["id"])
    assert (mid.status, mid.attempts) == (UploadStatus.PROCESSING, 1), "killed too late"

    if settings.uses_embedded_broker:
        # The filesystem transport has no acknowledgements: the periodic job re-queues it.
        worker_factory(RECONCILE_INTERVAL_SECONDS="1", STUCK_AFTER_SECONDS="1")
    else:
        # Redis: the unacknowledged message is delivered again (late ack).
        worker_factory(CELERY_VISIBILITY_TIMEOUT_SECONDS="2")
    (done,) = await wait_settled(db, created["id"], timeout=120)
    assert done.status == UploadStatus.COMPLETED
    assert done.word_count == 2_500_000
    assert done.attempts == 2
    async with db() as session:
        processed = list(
            await session.scalars(select(ActivityLog).where(ActivityLog.action == "file_processed"))
        )
    assert len(processed) == 1


async def test_broker_down_at_upload_time_is_caught_up_by_the_reconcile_job(
    paid: Account, db: Sessions, run_dir: Path, worker_factory: Any
) -> None:
    api = ApiServer(run_dir, env={"CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "REDIS_URL": ""})
    api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            resp = await http.post(
                "/api/upload/",
                files={"file": ("late.txt", b"four words right here")},
                headers=paid.headers,
            )
    finally:
        api.stop()
    assert resp.status_code == 202, resp.text
    waiting = await row(db, resp.json()["id"])
    assert (waiting.status, waiting.queued_at) == (UploadStatus.PROCESSING, None)
    worker_factory(RECONCILE_INTERVAL_SECONDS="1", STUCK_AFTER_SECONDS="5")
    (done,) = await wait_settled(db, waiting.id)
    assert (done.status, done.word_count) == (UploadStatus.COMPLETED, 4)


# --- the job body, run in this process ------------------------------------------------------


async def unreachable_storage(settings: Settings, tmp_path: Path) -> blobstore.Storage:
    """The run's kind of storage, but away: an unmounted folder, or nobody at the endpoint."""
    if settings.storage_backend == "s3":
        dead = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
        return await blobstore.S3Storage(dead).start()
    return blobstore.LocalStorage(tmp_path / "unmounted")


async def _stored_upload(
    db: Sessions, settings: Settings, user_id: int, data: bytes, name: str = "job-test.txt"
) -> int:
    relative = s3server.put_stored(settings, user_id, name, data)
    async with db() as session:
        upload_row = FileUpload(
            user_id=user_id,
            file=relative,
            filename="job-test.txt",
            size=len(data),
            sha256="0" * 64,
            content_type="text/plain; charset=utf-8",
        )
        session.add(upload_row)
        await session.commit()
        return upload_row.id


async def test_running_the_job_twice_is_harmless(
    user_factory: UserFactory, db: Sessions, settings: Settings, storage: blobstore.Storage
) -> None:
    account = await user_factory.create()
    await grant_payment(db, account.id)
    upload_id = await _stored_upload(db, settings, account.id, b"one two three")
    first = await process_upload(db, upload_id, settings, storage)
    second = await process_upload(db, upload_id, settings, storage)
    assert (first.status, first.word_count, second.status) == ("completed", 3, "skipped")
    async with db() as session:
        logs = list(
            await session.scalars(
                select(ActivityLog.action).where(ActivityLog.action == "file_processed")
            )
        )
    assert logs == ["file_processed"]
    assert (await row(db, upload_id)).attempts == 1


async def test_missing_storage_is_transient_and_not_an_attempt(
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
    tmp_path: Path,
    storage: blobstore.Storage,
) -> None:
    account = await user_factory.create()
    upload_id = await _stored_upload(db, settings, account.id, b"one two three")
    away = await unreachable_storage(settings, tmp_path)
    try:
        with pytest.raises(uploads.TransientError):
            await process_upload(db, upload_id, settings, away)
    finally:
        await away.aclose()
    again = await row(db, upload_id)
    assert (again.status, again.attempts) == (UploadStatus.PROCESSING, 0)


@pytest.mark.parametrize("carrying_its_row", [False, True])
async def test_a_job_that_keeps_dying_is_given_up(
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
    storage: blobstore.Storage,
    carrying_its_row: bool,
) -> None:
    account = await user_factory.create()
    upload_id = await _stored_upload(db, settings, account.id, b"one two three")
    # The row's fields in the message (uploads.JOB_ROW_HEADER) do not skip the limit.
    header = uploads.job_row_header(await row(db, upload_id)) if carrying_its_row else None
    async with db() as session:
        await session.execute(
            update(FileUpload)
            .where(FileUpload.id == upload_id)
            .values(attempts=uploads.MAX_ATTEMPTS)
        )
        await session.commit()
    result = await process_upload(db, upload_id, settings, storage, row_header=header)
    assert result.status == "failed"
    done = await row(db, upload_id)
    assert done.status == UploadStatus.FAILED
    assert "gave up" in (done.error or "")
    assert done.attempts == uploads.MAX_ATTEMPTS + 1
    # A settled upload is left alone, its row in the message or not.
    again = await process_upload(db, upload_id, settings, storage, row_header=header)
    assert again.status == "skipped"


@contextlib.contextmanager
def statements(db: Sessions) -> Iterator[list[str]]:
    """The SQL the tests' engine sends meanwhile (process_upload runs on it)."""
    seen: list[str] = []
    engine = db.kw["bind"].sync_engine

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql.lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_job_carrying_its_row_starts_with_one_update_and_no_select(
    user_factory: UserFactory, db: Sessions, settings: Settings, storage: blobstore.Storage
) -> None:
    account = await user_factory.create()
    upload_id = await _stored_upload(db, settings, account.id, b"one two three")
    header = uploads.job_row_header(await row(db, upload_id))
    with statements(db) as sql:
        result = await process_upload(db, upload_id, settings, storage, row_header=header)
    assert (result.status, result.word_count) == ("completed", 3)
    assert "SELECT" not in sql
    assert sql.count("UPDATE") == 2  # the start and the settlement
    done = await row(db, upload_id)
    assert (done.status, done.word_count, done.attempts) == (UploadStatus.COMPLETED, 3, 1)
    async with db() as session:
        log = await session.scalar(
            select(ActivityLog).where(ActivityLog.action == "file_processed")
        )
    assert log is not None
    assert (log.user_id, log.metadata_["file_id"], log.metadata_["filename"]) == (
        account.id,
        upload_id,
        "job-test.txt",
    )


async def test_a_job_without_a_usable_row_header_reads_the_row(
    user_factory: UserFactory, db: Sessions, settings: Settings, storage: blobstore.Storage
) -> None:
    account = await user_factory.create()
    for n, header in enumerate(
        (
            None,  # re-queued by the periodic job
            "not a row",
            {"id": -1, "user_id": account.id, "file": "x", "filename": "y"},  # another upload's
            {"id": 0, "user_id": "1", "file": "x", "filename": "y"},  # wrong types
        )
    ):
        data = b"one two three four"
        upload_id = await _stored_upload(db, settings, account.id, data, f"job-{n}.txt")
        if isinstance(header, dict) and header["id"] == 0:
            header = {**header, "id": upload_id}
        with statements(db) as sql:
            result = await process_upload(db, upload_id, settings, storage, row_header=header)
        assert (result.status, result.word_count) == ("completed", 4), header
        assert "SELECT" in sql, header


async def test_the_api_publishes_what_send_task_would(app: Any, settings: Settings) -> None:
    """With a Redis broker the API publishes a job with one LPUSH from its event loop
    (app.services.jobs): the message is the one `send_task` writes, but for its ids. (The
    tests above then show a real worker runs such jobs, with the request id.)"""
    if not settings.broker_url.startswith("redis"):
        pytest.skip("the direct path is for a Redis broker")
    import json

    import redis

    from app.logging import set_request_id
    from app.services import jobs

    # The app's lifespan hands its broker client to the publisher, and takes it back.
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        assert jobs._broker is other.state.broker_redis is not None
    assert jobs._broker is None
    jobs.use_redis_broker(app.state.broker_redis)  # the suite's app publishes directly again
    queue = jobs.direct_queue()
    assert queue == "celery"

    def without_ids(value: Any) -> Any:
        ids = {"id", "root_id", "correlation_id", "delivery_tag", "reply_to", "origin"}
        if isinstance(value, dict):
            return {k: without_ids(v) for k, v in value.items() if k not in ids}
        return value

    probe = redis.Redis.from_url(settings.broker_url)
    # A task registered here (its time limits go in the message) and one that is not. The
    # registry is filled when the app is finalised (whichever test did that first).
    assert celery_app.tasks["wordcount.count_words"].time_limit == 360
    row_header = {uploads.JOB_ROW_HEADER: {"id": 1, "user_id": 2, "file": "2/a.txt"}}
    cases = (
        ("wordcount.count_words", [360, 300], None),
        ("wordcount.count_words", [360, 300], row_header),
        ("tests.elsewhere", None, None),
    )
    for name, limits, headers in cases:
        try:
            set_request_id("compare-42")
            celery_app.send_task(name, args=[123456789], headers=headers)
            by_celery = json.loads(probe.lpop(queue))  # type: ignore[arg-type]
            await jobs.publish_async(name, 123456789, headers=headers)
            direct = json.loads(probe.lpop(queue))  # type: ignore[arg-type]
        finally:
            set_request_id(None)
        assert without_ids(direct) == without_ids(by_celery)
        for key, value in (headers or {}).items():
            assert direct["headers"][key] == value
        assert direct["headers"]["timelimit"] == (limits or [None, None])
        assert direct["headers"]["request_id"] == "compare-42"
        assert direct["headers"]["id"] == direct["headers"]["root_id"]
        assert direct["headers"]["id"] == direct["properties"]["correlation_id"]
    probe.close()
