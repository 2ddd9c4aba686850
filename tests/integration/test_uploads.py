"""POST /api/upload/, the file list, details, downloads and the activity list (SPEC §5)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from docx import Document
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import ActivityLog, FileUpload, User
from tests import s3server
from tests.support import Account, SettingsOverride, UserFactory, assert_error, grant_payment

Sessions = async_sessionmaker[AsyncSession]


def docx_bytes(*paragraphs: str) -> bytes:
    doc = Document()
    for text in paragraphs:
        doc.add_paragraph(text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


async def upload(
    client: AsyncClient, account: Account, name: str, data: bytes, **kwargs: Any
) -> Any:
    return await client.post(
        "/api/upload/",
        files={"file": (name, data, "application/octet-stream")},
        headers=account.headers,
        **kwargs,
    )


def media_files(settings: Settings) -> list[str]:
    """Stored uploads (files or objects) and bodies being received, whichever the backend."""
    return s3server.stored_keys(settings) + s3server.incomplete_uploads(settings)


async def row_count(db: Sessions) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(FileUpload)) or 0)


async def assert_nothing_left(db: Sessions, settings: Settings) -> None:
    assert media_files(settings) == []
    assert await row_count(db) == 0


# --- accepted uploads -----------------------------------------------------------------------


async def test_txt_upload_is_accepted_stored_and_logged(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    data = "Hello wide world\nসবাইকে শুভেচ্ছা\n".encode()
    resp = await upload(client, paid, "notes.txt", data)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "processing"
    assert body["word_count"] is None
    assert body["filename"] == "notes.txt"
    assert body["user"] == paid.id
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "text/plain; charset=utf-8"
    prefix = re.escape(settings.s3_prefix) if settings.storage_backend == "s3" else ""
    assert re.fullmatch(rf"{prefix}{paid.id}/[0-9a-f]{{32}}\.txt", body["file"])
    assert s3server.read_stored(settings, body["file"]) == data
    assert media_files(settings) == [body["file"]]
    async with db() as session:
        log = await session.scalar(select(ActivityLog).where(ActivityLog.action == "file_uploaded"))
    assert log is not None
    assert log.metadata_ == {"file_id": body["id"], "filename": "notes.txt", "size": len(data)}


@pytest.mark.parametrize("size", [1000, 300_000])
async def test_small_and_large_bodies_are_stored_whole_and_their_job_carries_the_row(
    client: AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """A body of at most one write batch is checked in memory and written once in its final
    place, a larger one goes through a temporary file: both end stored whole, with nothing
    left in the incoming folder. The job is published after the commit with the row's fields
    in its message (uploads.JOB_ROW_HEADER), so the worker need not read the row."""
    from app.services import jobs, storage, uploads

    published: list[tuple[str, tuple[Any, ...], dict[str, Any] | None, int]] = []

    async def publish(name: str, *args: Any, headers: dict[str, Any] | None = None) -> None:
        published.append((name, args, headers, await row_count(db)))

    monkeypatch.setattr(jobs, "publish_async", publish)
    assert (size <= storage.WRITE_BATCH) == (size == 1000)
    data = (b"word " * (size // 5 + 1))[:size]
    resp = await upload(client, paid, "notes.txt", data)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert s3server.read_stored(settings, body["file"]) == data
    assert media_files(settings) == [body["file"]]
    incoming = settings.media_root / storage.INCOMING
    assert not incoming.exists() or list(incoming.iterdir()) == []
    row = {"id": body["id"], "user_id": paid.id, "file": body["file"], "filename": "notes.txt"}
    # Published once the row was committed (another session sees it).
    assert published == [(uploads.COUNT_JOB, (body["id"],), {uploads.JOB_ROW_HEADER: row}, 1)]


async def test_docx_upload_is_accepted(
    client: AsyncClient, paid: Account, settings: Settings
) -> None:
    resp = await upload(client, paid, "Report.DOCX", docx_bytes("one two", "three"))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["content_type"] == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert body["file"].endswith(".docx")
    assert body["filename"] == "Report.DOCX"


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("utf-16", "UTF-16 with a BOM"), ("cp1252", "caf\u00e9 \u201cquoted\u201d")],
)
async def test_non_utf8_text_is_accepted(
    client: AsyncClient, paid: Account, encoding: str, text: str
) -> None:
    resp = await upload(client, paid, "legacy.txt", text.encode(encoding))
    assert resp.status_code == 202, resp.text


# --- refusals leave nothing behind ------------------------------------------------------------


async def test_upload_requires_a_token(
    client: AsyncClient, db: Sessions, settings: Settings
) -> None:
    resp = await client.post("/api/upload/", files={"file": ("a.txt", b"hello")})
    assert_error(resp, 401, "not_authenticated")
    await assert_nothing_left(db, settings)


async def test_upload_requires_payment(
    client: AsyncClient, user: Account, db: Sessions, settings: Settings
) -> None:
    resp = await upload(client, user, "a.txt", b"hello")
    assert_error(resp, 402, "payment_required")
    await assert_nothing_left(db, settings)


@pytest.mark.parametrize("per_payment", [0, 5])
async def test_a_deactivated_paid_user_cannot_upload(
    client: AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    override_settings: SettingsOverride,
    per_payment: int,
) -> None:
    """The upload's right check is also its user check: a paid user deactivated since their
    token was issued gets 401, whichever mode the payment ran in, and nothing is stored."""
    override_settings(uploads_per_payment=per_payment)
    async with db() as session:
        user = await session.get(User, paid.id)
        assert user is not None
        user.upload_credits = 3
        user.is_active = False
        await session.commit()
    assert_error(await upload(client, paid, "a.txt", b"hello"), 401, "invalid_token")
    await assert_nothing_left(db, settings)


async def test_too_large_is_413_and_leaves_nothing(
    client: AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    override_settings: SettingsOverride,
) -> None:
    override_settings(max_upload_bytes=1000)
    resp = await upload(client, paid, "big.txt", b"word " * 201)  # 1005 bytes
    assert_error(resp, 413, "file_too_large")
    at_limit = await upload(client, paid, "fits.txt", b"word " * 200)  # exactly 1000
    assert at_limit.status_code == 202
    assert [p.endswith(".txt") for p in media_files(settings)] == [True]
    assert await row_count(db) == 1


async def test_413_comes_before_the_body_has_been_read(
    client: AsyncClient,
    paid: Account,
    db: Sessions,
    settings: Settings,
    override_settings: SettingsOverride,
) -> None:
    """The limit is enforced while streaming: the rest of a huge body is never read."""
    override_settings(max_upload_bytes=64 * 1024)
    boundary = "testboundary"
    chunk = b"x" * 16 * 1024
    sent = 0
    total_chunks = 4096  # 64 MiB on offer

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="huge.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        for _ in range(total_chunks):
            sent += len(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await client.post(
        "/api/upload/",
        content=body(),
        headers={**paid.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(resp, 413, "file_too_large")
    assert sent < 64 * 1024 + 2 * len(chunk)
    await assert_nothing_left(db, settings)


async def test_declared_length_over_the_limit_is_refused_up_front(
    client: AsyncClient, paid: Account, override_settings: SettingsOverride
) -> None:
    override_settings(max_upload_bytes=1000)
    resp = await client.post(
        "/api/upload/",
        files={"file": ("big.txt", b"a " * 50_000)},
        headers=paid.headers,
    )
    body = assert_error(resp, 413, "file_too_large")
    assert "1000" in body["detail"]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("report.pdf", b"%PDF-1.4 a pdf"),
        ("noextension", b"plain words"),
        ("script.txt.exe", b"MZ\x90\x00"),
        ("fake.docx", b"just some text, not a Word file"),
        ("nodoc.docx", zip_bytes({"[Content_Types].xml": b"<x/>", "other.xml": b"<x/>"})),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("nul.txt", b"text with a \x00 NUL byte"),
        (
            "bomb.docx",
            zip_bytes(
                {
                    "[Content_Types].xml": b"<Types/>",
                    "word/document.xml": b"<w:document>" + b" " * (20 * 1024 * 1024),
                }
            ),
        ),
    ],
)
async def test_unsupported_types_are_415_and_leave_nothing(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings, name: str, data: bytes
) -> None:
    resp = await upload(client, paid, name, data)
    assert_error(resp, 415, "unsupported_file_type")
    await assert_nothing_left(db, settings)


async def test_missing_file_field_is_422(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    resp = await client.post(
        "/api/upload/",
        data={"other": "value"},
        files={"attachment": ("a.txt", b"hi")},
        headers=paid.headers,
    )
    body = assert_error(resp, 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "file"]
    await assert_nothing_left(db, settings)


async def test_empty_file_is_422(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    body = assert_error(await upload(client, paid, "empty.txt", b""), 422, "validation_error")
    assert "empty" in body["detail"][0]["msg"]
    await assert_nothing_left(db, settings)


async def test_non_multipart_body_is_422(client: AsyncClient, paid: Account) -> None:
    resp = await client.post("/api/upload/", json={"file": "hello"}, headers=paid.headers)
    assert_error(resp, 422, "validation_error")


async def test_malformed_multipart_is_422_and_leaves_nothing(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    resp = await client.post(
        "/api/upload/",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"\r\nhello\r\n--WRONG",
        headers={**paid.headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status_code == 422, resp.text
    await assert_nothing_left(db, settings)


@pytest.mark.parametrize(
    ("client_name", "shown"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\win.txt", "win.txt"),
        ("/abs/path/notes.txt", "notes.txt"),
        ("<img src=x onerror=alert(1)>.txt", "<img src=x onerror=alert(1)>.txt"),
        ("bidi\u202egnp.txt", "bidignp.txt"),
        ("  spaced   out  .txt", "spaced out .txt"),
    ],
)
async def test_client_names_never_reach_the_disk(
    client: AsyncClient, paid: Account, settings: Settings, client_name: str, shown: str
) -> None:
    resp = await upload(client, paid, client_name, b"some words")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["filename"] == shown
    (stored,) = media_files(settings)
    prefix = settings.s3_prefix if settings.storage_backend == "s3" else ""
    assert stored.startswith(f"{prefix}{paid.id}/")
    assert re.fullmatch(r"[0-9a-f]{32}\.txt", stored.rpartition("/")[2])


@pytest.mark.committed
async def test_one_credit_cannot_pay_for_two_parallel_uploads(
    client: AsyncClient,
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
    override_settings: SettingsOverride,
) -> None:
    override_settings(uploads_per_payment=1)
    account = await user_factory.create()
    await grant_payment(db, account.id, credits=1)
    results = await asyncio.gather(
        *(upload(client, account, f"f{i}.txt", b"one two three") for i in range(2))
    )
    assert sorted(r.status_code for r in results) == [202, 402]
    assert await row_count(db) == 1
    assert len(media_files(settings)) == 1
    me = (await client.get("/api/auth/me/", headers=account.headers)).json()
    assert (me["can_upload"], me["uploads_remaining"]) == (False, 0)


async def test_rejected_upload_does_not_spend_a_credit(
    client: AsyncClient,
    user_factory: UserFactory,
    db: Sessions,
    override_settings: SettingsOverride,
) -> None:
    override_settings(uploads_per_payment=1)
    account = await user_factory.create()
    await grant_payment(db, account.id, credits=1)
    assert (await upload(client, account, "x.pdf", b"%PDF")).status_code == 415
    assert (await upload(client, account, "ok.txt", b"fine")).status_code == 202


# --- reading --------------------------------------------------------------------------------


async def test_files_list_is_own_newest_first_filtered_and_paginated(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    alice = await user_factory.create()
    bob = await user_factory.create()
    await grant_payment(db, alice.id)
    await grant_payment(db, bob.id)
    ids = [(await upload(client, alice, f"a{i}.txt", b"words here")).json()["id"] for i in range(3)]
    await upload(client, bob, "b.txt", b"bob's words")
    async with db() as session:
        first = await session.get(FileUpload, ids[0])
        assert first is not None
        first.status = "completed"  # type: ignore[assignment]
        first.word_count = 2
        await session.commit()

    page = (await client.get("/api/files/", headers=alice.headers)).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 20, 0)
    assert [f["id"] for f in page["items"]] == ids[::-1]
    assert (
        await client.get("/api/files/", params={"limit": 1, "offset": 1}, headers=alice.headers)
    ).json()["items"][0]["id"] == ids[1]
    done = (
        await client.get("/api/files/", params={"status": "completed"}, headers=alice.headers)
    ).json()
    assert (done["total"], [f["id"] for f in done["items"]]) == (1, [ids[0]])
    assert_error(
        await client.get("/api/files/", params={"status": "bogus"}, headers=alice.headers),
        422,
        "validation_error",
    )


async def test_files_list_empty_pages_and_a_deactivated_user(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    """The list checks the user in the same query as the page: an active user with nothing
    (or nothing this far) gets an empty page with the right total; a deactivated one, 401."""
    carol = await user_factory.create()
    empty = (await client.get("/api/files/", headers=carol.headers)).json()
    assert (empty["items"], empty["total"]) == ([], 0)
    await grant_payment(db, carol.id)
    await upload(client, carol, "c.txt", b"one two")
    past = (await client.get("/api/files/", params={"offset": 5}, headers=carol.headers)).json()
    assert (past["items"], past["total"], past["offset"]) == ([], 1, 5)
    async with db() as session:
        user = await session.get(User, carol.id)
        assert user is not None
        user.is_active = False
        await session.commit()
    assert_error(await client.get("/api/files/", headers=carol.headers), 401, "invalid_token")
    assert_error(
        await client.get("/api/files/", headers={"Authorization": "Bearer nonsense"}),
        401,
        "invalid_token",
    )


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
async def test_files_pagination_bounds(
    client: AsyncClient, paid: Account, params: dict[str, int]
) -> None:
    assert_error(
        await client.get("/api/files/", params=params, headers=paid.headers),
        422,
        "validation_error",
    )


async def test_limit_100_is_allowed(client: AsyncClient, paid: Account) -> None:
    resp = await client.get("/api/files/", params={"limit": 100}, headers=paid.headers)
    assert resp.json()["limit"] == 100


async def test_detail_and_download_of_own_file(client: AsyncClient, paid: Account) -> None:
    data = "বাংলা text\r\n".encode()
    created = (await upload(client, paid, "বাংলা নোট.txt", data)).json()
    detail = await client.get(f"/api/files/{created['id']}/", headers=paid.headers)
    assert detail.json() == created
    download = await client.get(f"/api/files/{created['id']}/download/", headers=paid.headers)
    assert download.status_code == 200
    assert download.content == data
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=utf-8''%E0%A6%AC" in disposition
    assert download.headers["x-content-type-options"] == "nosniff"


async def test_other_users_file_is_404_on_detail_and_download(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    owner = await user_factory.create()
    other = await user_factory.create()
    await grant_payment(db, owner.id)
    file_id = (await upload(client, owner, "private.txt", b"secret words")).json()["id"]
    assert_error(
        await client.get(f"/api/files/{file_id}/", headers=other.headers), 404, "not_found"
    )
    assert_error(
        await client.get(f"/api/files/{file_id}/download/", headers=other.headers),
        404,
        "not_found",
    )
    assert_error(await client.get("/api/files/999999/", headers=owner.headers), 404, "not_found")


async def test_media_folder_is_not_served(client: AsyncClient, paid: Account) -> None:
    stored = (await upload(client, paid, "a.txt", b"hello there")).json()["file"]
    for path in (f"/media/{stored}", f"/static/../var/media/{stored}", f"/{stored}"):
        assert (await client.get(path)).status_code == 404


async def test_activity_list_is_own_and_newest_first(
    client: AsyncClient, paid: Account, user_factory: UserFactory
) -> None:
    other = await user_factory.create()
    file_id = (await upload(client, paid, "a.txt", b"hello there")).json()["id"]
    page = (await client.get("/api/activity/", headers=paid.headers)).json()
    assert [a["action"] for a in page["items"]] == ["file_uploaded", "login", "registered"]
    assert page["items"][0]["metadata"]["file_id"] == file_id
    assert all(a["user"] == paid.id for a in page["items"])
    stamps = [a["timestamp"] for a in page["items"]]
    assert stamps == sorted(stamps, reverse=True)
    from datetime import datetime

    assert datetime.fromisoformat(stamps[0]).utcoffset() == timedelta(0)
    assert (await client.get("/api/activity/", headers=other.headers)).json()["total"] == 2


async def test_openapi_shows_the_multipart_upload(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/api/upload/"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert {"202", "401", "402", "413", "415", "422"} <= set(
        spec["paths"]["/api/upload/"]["post"]["responses"]
    )
