"""Hostile uploaders against the real stack (SPEC §9 uploads, §6 memory): real API processes
on the test database and Redis, raw sockets for bodies that stall, a real Celery worker for
documents built to exhaust its memory. Each test checks that another person is unaffected and
that nothing is left behind."""

from __future__ import annotations

import io
import os
import socket
import threading
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
from docx import Document
from itsdangerous import URLSafeSerializer
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import FileUpload, UploadStatus
from app.services.upload_slots import KEY_PREFIX
from app.tasks.celery_app import celery_app
from app.tasks.wordcount import enqueue_count
from tests import s3server
from tests.plugins.simulator import SimulatorControl
from tests.support import (
    TEST_SECRET_KEY,
    Account,
    UserFactory,
    assert_error,
    async_wait_until,
    grant_payment,
)
from tests.workers import ApiServer, CeleryWorker

Sessions = async_sessionmaker[AsyncSession]

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
HEADER_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.header+xml"
HEADER_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/header"
BOUNDARY = "hostileboundary"
#: The stalling server's pool: two connections, no overflow.
POOL_SIZE, MAX_OVERFLOW = 2, 0
MIB = 1024 * 1024


# --- the servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stall_api(
    committed: None, migrated_database: str, run_dir: Path, simulator_url: str
) -> Iterator[ApiServer]:
    """An API process with a tiny pool and a long idle timeout (stalled bodies stay)."""
    server = ApiServer(
        run_dir,
        env={
            "AAMARPAY_BASE_URL": simulator_url,
            "DB_POOL_SIZE": str(POOL_SIZE),
            "DB_MAX_OVERFLOW": str(MAX_OVERFLOW),
            "UPLOAD_IDLE_TIMEOUT_SECONDS": "120",
            "MAX_CONCURRENT_UPLOADS_PER_USER": "3",
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def quick_api(committed: None, migrated_database: str, run_dir: Path) -> Iterator[ApiServer]:
    """Another API process (same database and Redis) that drops a body idle for 1 s."""
    server = ApiServer(
        run_dir,
        env={"UPLOAD_IDLE_TIMEOUT_SECONDS": "1", "MAX_CONCURRENT_UPLOADS_PER_USER": "3"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http(stall_api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stall_api.url, timeout=10) as client:
        yield client


async def paid_account(http: httpx.AsyncClient, db: Sessions) -> Account:
    account = await UserFactory(http).create()
    await grant_payment(db, account.id)
    return account


# --- raw, stalling request bodies -----------------------------------------------------------


def multipart_head(filename: str = "stall.txt") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()


def multipart_body(filename: str, data: bytes) -> bytes:
    return multipart_head(filename) + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class StalledUpload:
    """A POST whose body promises `content_length` bytes, sends `first` and then waits."""

    def __init__(
        self,
        server: ApiServer,
        headers: dict[str, str],
        first: bytes,
        *,
        path: str = "/api/upload/",
        content_length: int = 1_000_000,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
            f"Content-Length: {content_length}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the server's answer (waits for it, bounded by the
        socket timeout)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed without an answer: {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(status_line.split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def stall(server: ApiServer, account: Account, *, fill: int = 0) -> StalledUpload:
    """An upload that stalls after its headers and `fill` bytes of file data (a batch of
    256 KiB or more reaches the temporary file, which shows it is being received)."""
    return StalledUpload(server, account.headers, multipart_head() + b"a " * (fill // 2))


def incoming(settings: Settings) -> list[Path]:
    folder = settings.media_root / ".incoming"
    return sorted(folder.glob("*.part")) if folder.exists() else []


def stored_files(settings: Settings) -> list[PurePosixPath]:
    """Stored uploads (files or objects, without the prefix), whichever the backend; with S3,
    multipart uploads never finished count too."""
    prefix = settings.s3_prefix if settings.storage_backend == "s3" else ""
    unfinished = [k for k in s3server.incomplete_uploads(settings) if not k.endswith(".part")]
    return [
        PurePosixPath(k.removeprefix(prefix)) for k in s3server.stored_keys(settings) + unfinished
    ]


async def rows_of(db: Sessions, user_id: int) -> int:
    async with db() as session:
        query = select(func.count()).select_from(FileUpload).where(FileUpload.user_id == user_id)
        return int(await session.scalar(query) or 0)


async def slots_in_use(settings: Settings, *accounts: Account) -> int:
    url = settings.shared_redis_url
    assert url, "needs Redis"
    client = Redis.from_url(url)
    try:
        return sum([int(await client.zcard(f"{KEY_PREFIX}{a.id}")) for a in accounts])
    finally:
        await client.aclose()


async def wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    await async_wait_until(predicate, timeout=timeout, interval=0.05, what=what)


def close_all(stalled: list[StalledUpload]) -> None:
    for upload in stalled:
        upload.close()


# --- stalled bodies hold no database connection ---------------------------------------------


async def pay_through_the_gateway(
    http: httpx.AsyncClient, account: Account, simulator: SimulatorControl
) -> None:
    resp = await http.post("/api/initiate-payment/", headers=account.headers)
    assert resp.status_code == 201, resp.text
    callback = simulator.pay(resp.json()["transaction_id"], "success", "bkash")
    resp = await http.post("/api/payment/success/", data=callback["fields"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "success"


async def test_stalled_uploads_beyond_the_pool_leave_everyone_else_served(
    stall_api: ApiServer,
    http: httpx.AsyncClient,
    db: Sessions,
    settings: Settings,
    simulator: SimulatorControl,
) -> None:
    if settings.is_sqlite:
        pytest.skip("the pool sizes apply to MariaDB")
    # Two paid attackers, three stalled uploads each (their limit): six bodies in flight
    # against a pool of two connections.
    attackers = [await paid_account(http, db) for _ in range(2)]
    someone = await UserFactory(http).create()
    stalled = [stall(stall_api, a, fill=300_000) for a in attackers for _ in range(3)]
    try:
        # Past the upload-right check and receiving: as many as the pool has connections.
        async def receiving(n: int) -> Any:
            async def check() -> bool:
                return len(incoming(settings)) >= n

            return check

        await wait_for(await receiving(POOL_SIZE + MAX_OVERFLOW), "stalled uploads receiving")

        # Someone else signs in, lists, pays and uploads as if nothing were happening.
        token = await UserFactory(http).login(someone.username, someone.password)
        assert token
        resp = await http.get("/api/files/", headers=someone.headers)
        assert resp.status_code == 200, resp.text
        await pay_through_the_gateway(http, someone, simulator)
        resp = await http.post(
            "/api/upload/",
            files={"file": ("mine.txt", b"three little words")},
            headers=someone.headers,
        )
        assert resp.status_code == 202, resp.text
        resp = await http.get("/readyz")
        assert resp.status_code == 200, resp.text

        # All six were being received at once, none holding a connection.
        await wait_for(await receiving(6), "all six stalled uploads receiving")
        assert len(incoming(settings)) == 6
        if settings.shared_redis_url:
            assert await slots_in_use(settings, *attackers) == 6
        resp = await http.get("/readyz")
        assert resp.status_code == 200, resp.text
    finally:
        close_all(stalled)

    # The dropped bodies leave no temporary file, no row, no slot.
    async def cleaned_up() -> bool:
        return not incoming(settings)

    await wait_for(cleaned_up, "the stalled bodies' temporary files to go")
    for attacker in attackers:
        assert await rows_of(db, attacker.id) == 0
    if settings.shared_redis_url:

        async def released() -> bool:
            return await slots_in_use(settings, *attackers) == 0

        await wait_for(released, "the attackers' upload slots to be released")
    assert await rows_of(db, someone.id) == 1


# --- the idle timeout -----------------------------------------------------------------------


async def test_an_idle_body_is_dropped_with_408_and_leaves_nothing(
    quick_api: ApiServer, db: Sessions, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=quick_api.url, timeout=10) as client:
        attacker = await paid_account(client, db)
        someone = await paid_account(client, db)
        stalled = stall(quick_api, attacker, fill=300_000)
        try:
            # Another person's upload on the same process meanwhile.
            resp = await client.post(
                "/api/upload/", files={"file": ("ok.txt", b"a b c")}, headers=someone.headers
            )
            assert resp.status_code == 202, resp.text
            status, headers, body = stalled.response()
        finally:
            stalled.close()
    assert status == 408, body
    error = httpx.Response(408, headers=headers, content=body)
    assert_error(error, 408, "upload_timeout")
    assert incoming(settings) == []
    assert await rows_of(db, attacker.id) == 0
    assert [p.parent.name for p in stored_files(settings)] == [str(someone.id)]
    if settings.shared_redis_url:
        assert await slots_in_use(settings, attacker) == 0


async def test_the_dashboard_form_is_dropped_too(
    quick_api: ApiServer, db: Sessions, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=quick_api.url, timeout=10) as client:
        attacker = await paid_account(client, db)
    csrf = str(URLSafeSerializer(TEST_SECRET_KEY, salt="csrf").dumps("hostile-test"))
    stalled = StalledUpload(
        quick_api,
        {"Cookie": f"session={attacker.token}; csrftoken={csrf}", "X-CSRF-Token": csrf},
        multipart_head() + b"a " * 1000,
        path="/dashboard/upload",
    )
    try:
        status, headers, _ = stalled.response()
    finally:
        stalled.close()
    assert status == 303
    assert headers["location"] == "/dashboard/?upload_error=upload_timeout"
    assert incoming(settings) == []
    assert stored_files(settings) == []
    assert await rows_of(db, attacker.id) == 0


# --- uploads in flight per person -----------------------------------------------------------


async def test_one_upload_more_than_the_limit_is_429_in_any_process(
    stall_api: ApiServer,
    quick_api: ApiServer,
    http: httpx.AsyncClient,
    db: Sessions,
    settings: Settings,
) -> None:
    attacker = await paid_account(http, db)
    someone = await paid_account(http, db)
    stalled = [stall(stall_api, attacker, fill=300_000) for _ in range(3)]
    # With Redis the limit holds across API processes: the fourth goes to the other one.
    fourth = quick_api if settings.shared_redis_url else stall_api
    try:

        async def three_receiving() -> bool:
            return len(incoming(settings)) == 3

        await wait_for(three_receiving, "three stalled uploads receiving")
        async with httpx.AsyncClient(base_url=fourth.url, timeout=10) as other:
            resp = await other.post(
                "/api/upload/", files={"file": ("4th.txt", b"one more")}, headers=attacker.headers
            )
        assert_error(resp, 429, "too_many_requests")
        assert int(resp.headers["retry-after"]) >= 1
        # Someone else is not limited by it.
        resp = await http.post(
            "/api/upload/", files={"file": ("mine.txt", b"a b")}, headers=someone.headers
        )
        assert resp.status_code == 202, resp.text
    finally:
        close_all(stalled)

    # Once the stalled ones are gone, the attacker may upload again.
    async def accepted_again() -> bool:
        resp = await http.post(
            "/api/upload/", files={"file": ("later.txt", b"x y")}, headers=attacker.headers
        )
        assert resp.status_code in (202, 429), resp.text
        return resp.status_code == 202

    await wait_for(accepted_again, "the attacker's slots to be released")
    assert await rows_of(db, attacker.id) == 1
    assert incoming(settings) == []


# --- .docx built to exhaust a worker's memory -----------------------------------------------


def docx_bytes(text: str = "five words in this document") -> bytes:
    document = Document()
    document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def repack(
    data: bytes, *, add: dict[str, bytes] | None = None, edit: dict[str, Any] | None = None
) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        for item in src.infolist():
            content = src.read(item)
            if edit and item.filename in edit:
                content = edit[item.filename](content)
            dst.writestr(item.filename, content)
        for name, content in (add or {}).items():
            dst.writestr(name, content)
    return out.getvalue()


def header_bomb(parts: int = 95) -> bytes:
    """The issue's document: a small real .docx plus `parts` header parts of ~0.99 MiB of
    empty paragraphs each, all related to the main part (python-docx parses every one)."""
    paragraphs = b"<w:p/>" * ((MIB - 1024) // 6)
    header = f'<w:hdr xmlns:w="{W_NS}">'.encode() + paragraphs + b"</w:hdr>"
    rels = "".join(
        f'<Relationship Id="rIdBomb{i}" Type="{HEADER_REL}" Target="header{i}.xml"/>'
        for i in range(parts)
    ).encode()
    overrides = "".join(
        f'<Override PartName="/word/header{i}.xml" ContentType="{HEADER_TYPE}"/>'
        for i in range(parts)
    ).encode()
    return repack(
        docx_bytes(),
        add={f"word/header{i}.xml": header for i in range(parts)},
        edit={
            "word/_rels/document.xml.rels": lambda b: b.replace(
                b"</Relationships>", rels + b"</Relationships>"
            ),
            "[Content_Types].xml": lambda b: b.replace(b"</Types>", overrides + b"</Types>"),
        },
    )


def main_part_bomb() -> bytes:
    """A main part whose tree would take far more memory than its bytes: millions of empty
    elements with attributes, each member's ratio under the limit (random attribute values
    keep the compression honest)."""
    rng = os.urandom
    units = b"".join(
        b'<w:p w:a="' + rng(3).hex().encode() + b'" w:b="" w:c="" w:d=""/>' for _ in range(400_000)
    )
    return repack(
        docx_bytes(),
        edit={
            "word/document.xml": lambda b: b.replace(b"<w:body>", b"<w:body>" + units, 1),
        },
    )


def near_budget_docx() -> bytes:
    """As heavy as the upload check lets through: ~480,000 paragraphs with a random
    revision id each, as Word writes them (an estimated tree just under the budget)."""
    units = b"".join(
        b'<w:p w:rsidR="' + os.urandom(4).hex().encode() + b'"/>' for _ in range(480_000)
    )
    return repack(
        docx_bytes(),
        edit={
            "word/document.xml": lambda b: b.replace(b"<w:body>", b"<w:body>" + units, 1),
        },
    )


async def test_a_header_bomb_is_refused_at_upload(
    client: httpx.AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    data = header_bomb()
    assert len(data) < 400_000
    resp = await client.post(
        "/api/upload/", files={"file": ("bomb.docx", data)}, headers=paid.headers
    )
    assert_error(resp, 415, "unsupported_file_type")
    assert stored_files(settings) == []
    assert incoming(settings) == []
    assert await rows_of(db, paid.id) == 0


async def test_a_small_member_with_an_absurd_ratio_is_refused(
    client: httpx.AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    # Under 1 MiB unpacked, about 1000:1.
    data = repack(docx_bytes(), add={"word/media/image1.png": bytes(900_000)})
    resp = await client.post(
        "/api/upload/", files={"file": ("ratio.docx", data)}, headers=paid.headers
    )
    body = assert_error(resp, 415, "unsupported_file_type")
    assert "compression ratio" in body["detail"]
    assert stored_files(settings) == []
    assert await rows_of(db, paid.id) == 0


def child_pids(pid: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(entry))
    return children


def peak_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


class PeakWatcher:
    """Samples the worker's pool processes' VmHWM until stopped (a process that the pool
    replaces, e.g. for passing worker_max_memory_per_child, is caught before it goes)."""

    def __init__(self, worker: CeleryWorker) -> None:
        assert worker.proc is not None
        self.parent = worker.proc.pid
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for pid in child_pids(self.parent):
                try:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), peak_kib(pid))
                except (OSError, AssertionError):
                    continue

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def plant(db: Sessions, settings: Settings, user_id: int, data: bytes) -> int:
    """A stored .docx and its row, as if it had been accepted (say, before the upload check
    refused such files): only the worker stands between it and the memory."""
    relative = s3server.put_stored(settings, user_id, f"{os.urandom(8).hex()}.docx", data)
    async with db() as session:
        upload = FileUpload(
            user_id=user_id,
            file=relative,
            filename="planted.docx",
            status=UploadStatus.PROCESSING,
            size=len(data),
            sha256="0" * 64,
            content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            upload_time=datetime.now(UTC),
            queued_at=datetime.now(UTC),
            attempts=0,
        )
        session.add(upload)
        await session.commit()
        return upload.id


async def settled(db: Sessions, upload_id: int) -> FileUpload:
    async def done() -> bool:
        async with db() as session:
            row = await session.get(FileUpload, upload_id)
        return row is not None and row.status != UploadStatus.PROCESSING

    await wait_for(done, f"upload {upload_id} to settle", timeout=120)
    async with db() as session:
        row = await session.get(FileUpload, upload_id)
    assert row is not None
    return row


@pytest.mark.worker
async def test_the_worker_stays_under_512_mib_and_goes_on(
    client: httpx.AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    celery_worker: CeleryWorker,
) -> None:
    celery_app.control.purge()
    with PeakWatcher(celery_worker) as watcher:
        # The 95 header parts: never given to python-docx, so the body is counted.
        bomb = await plant(db, settings, paid.id, header_bomb())
        enqueue_count(bomb)
        counted = await settled(db, bomb)
        # A main part whose tree would not fit: refused before it is parsed.
        heavy = await plant(db, settings, paid.id, main_part_bomb())
        enqueue_count(heavy)
        refused = await settled(db, heavy)
        # The heaviest document the upload check accepts is counted within the bound.
        resp = await client.post(
            "/api/upload/", files={"file": ("heavy.docx", near_budget_docx())}, headers=paid.headers
        )
        assert resp.status_code == 202, resp.text
        heaviest = await settled(db, resp.json()["id"])
        # And the next person's job is done as usual.
        resp = await client.post(
            "/api/upload/",
            files={"file": ("next.docx", docx_bytes("and the next one counts"))},
            headers=paid.headers,
        )
        assert resp.status_code == 202, resp.text
        following = await settled(db, resp.json()["id"])
    assert watcher.peaks, "no worker process was seen"
    assert max(watcher.peaks.values()) < 512 * 1024, watcher.peaks
    assert counted.status == UploadStatus.COMPLETED, counted.error
    assert counted.word_count == 5
    assert refused.status == UploadStatus.FAILED
    assert refused.error is not None
    assert "too large" in refused.error
    assert heaviest.status == UploadStatus.COMPLETED, heaviest.error
    assert heaviest.word_count == 5
    assert following.status == UploadStatus.COMPLETED
    assert following.word_count == 5
