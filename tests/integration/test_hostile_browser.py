"""Hostile users against the browser session and the admin export (SPEC §7): sign-out that
sticks, CSRF tokens kept out of URLs, cross-site requests refused whatever token they carry,
and spreadsheet formulas neutralised in CSV exports. Each test also checks that another
person (or an API client) is unaffected and that nothing is left behind."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import FileUpload, PaymentStatus, PaymentTransaction, UploadStatus, User
from tests.support import Account, UserFactory, assert_error, grant_payment

Sessions = async_sessionmaker[AsyncSession]

EVIL = "https://evil.example"
FOREIGN = [
    pytest.param({"Origin": EVIL}, id="foreign-origin"),
    pytest.param({"Origin": "null"}, id="opaque-origin"),
    pytest.param({"Origin": "http://testserver.evil.example"}, id="lookalike-origin"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-site"),
    pytest.param(
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"}, id="both-disagree"
    ),
]
SAME_SITE = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture
async def other_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A second browser (its own cookie jar) on the same app."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def sign_in(client: AsyncClient, account: Account) -> str:
    """Sign in through the login form; returns the CSRF token of the signed-in pages."""
    token = csrf_from((await client.get("/login")).text)
    resp = await client.post(
        "/login",
        data={"username": account.username, "password": account.password, "csrf_token": token},
    )
    assert (resp.status_code, resp.headers["location"]) == (303, "/dashboard/"), resp.text
    page = await client.get("/dashboard/")
    assert page.status_code == 200
    return csrf_from(page.text)


async def count(db: Sessions, model: type, user_id: int) -> int:
    async with db() as session:
        query = select(func.count()).select_from(model).where(model.user_id == user_id)  # type: ignore[attr-defined]
        return int(await session.scalar(query) or 0)


async def revoked_rows(db: Sessions) -> int:
    async with db() as session:
        return int(await session.scalar(text("SELECT count(*) FROM revoked_session")) or 0)


def stored_files(settings: Settings) -> list[str]:
    root = settings.media_root
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- sign-out ---------------------------------------------------------------------------------


async def test_post_logout_ends_the_session_for_the_pages_and_the_api(
    app: FastAPI,
    client: AsyncClient,
    other_client: AsyncClient,
    user: Account,
    user_factory: UserFactory,
) -> None:
    """After POST /logout the old cookie opens no page and is refused by the API, as a
    cookie and as a bearer token; the same person's API token, another of their browsers and
    another person are unaffected."""
    other = await user_factory.create()
    token = await sign_in(client, user)
    await sign_in(other_client, other)
    old_cookie = client.cookies["session"]
    second_browser = AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver")
    async with second_browser:
        await sign_in(second_browser, user)

        resp = await client.post("/logout", data={"csrf_token": token})
        assert (resp.status_code, resp.headers["location"]) == (303, "/login?logged_out=true")
        cleared = resp.headers["set-cookie"]
        assert cleared.startswith('session=""')
        assert "HttpOnly" in cleared

        # A copy of the old cookie, replayed.
        client.cookies.set("session", old_cookie)
        page = await client.get("/dashboard/")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        assert (await client.get("/logout")).headers["location"] == "/login"
        assert_error(await client.get("/api/auth/me/"), 401, "invalid_token")
        assert_error(await client.get("/api/files/"), 401, "invalid_token")
        assert_error(await client.get("/api/transactions/"), 401, "invalid_token")
        as_bearer = {"Authorization": f"Bearer {old_cookie}"}
        assert_error(await client.get("/api/auth/me/", headers=as_bearer), 401, "invalid_token")
        assert_error(await client.get("/api/files/", headers=as_bearer), 401, "invalid_token")
        upload = await client.post(
            "/api/upload/",
            headers={"X-CSRF-Token": token},
            files={"file": ("a.txt", b"one two", "text/plain")},
        )
        assert_error(upload, 401, "invalid_token")

        # The same person elsewhere, and someone else, carry on.
        assert (await second_browser.get("/dashboard/")).status_code == 200
        assert (await second_browser.get("/api/auth/me/")).status_code == 200
        assert (await other_client.get("/dashboard/")).status_code == 200
        assert (await other_client.get("/api/files/")).status_code == 200
        me = await other_client.get("/api/auth/me/", headers=user.headers)
        assert (me.status_code, me.json()["username"]) == (200, user.username)


async def test_sign_out_storage_stays_bounded(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    """One row per signed-out session, however often it is signed out again; rows whose
    tokens have expired are gone after the next sign-out."""
    async with db() as session:
        await session.execute(
            text("INSERT INTO revoked_session (sid, expires_at) VALUES (:sid, :at)"),
            {
                "sid": "0" * 32,
                "at": (datetime.now(UTC) - timedelta(minutes=1)).replace(tzinfo=None),
            },
        )
        await session.commit()
    token = await sign_in(client, user)
    old_cookie = client.cookies["session"]
    for _ in range(5):
        client.cookies.set("session", old_cookie)
        resp = await client.post("/logout", data={"csrf_token": token})
        assert resp.status_code == 303
    assert await revoked_rows(db) == 1


async def test_get_logout_does_not_sign_out(client: AsyncClient, user: Account) -> None:
    """A link (or an <img> on another site) to /logout signs nobody out: it shows a page
    with the sign-out button, which POSTs with the token."""
    await sign_in(client, user)
    resp = await client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 200
    assert "session=" not in resp.headers.get("set-cookie", "")
    assert re.search(r'<form method="post" action="/logout"', resp.text)
    assert (await client.get("/dashboard/")).status_code == 200
    assert (await client.get("/api/auth/me/")).status_code == 200


async def test_logout_without_the_token_is_refused(client: AsyncClient, user: Account) -> None:
    await sign_in(client, user)
    assert_error(await client.post("/logout", data={}), 403, "csrf_failed")
    assert_error(await client.post("/logout", data={"csrf_token": "forged"}), 403, "csrf_failed")
    assert (await client.get("/dashboard/")).status_code == 200


# --- cross-site requests ----------------------------------------------------------------------


@pytest.mark.parametrize("foreign", FOREIGN)
async def test_cross_site_posts_with_cookie_and_token_are_refused(
    client: AsyncClient,
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
    foreign: dict[str, str],
) -> None:
    """Every state-changing route that takes the session cookie refuses a request the
    browser marks as cross-site, even with a valid token: no upload, no payment, still
    signed in. The same requests from our own origin go through."""
    victim = await user_factory.create()
    await grant_payment(db, victim.id)
    token = await sign_in(client, victim)
    files = {"file": ("a.txt", b"one two three", "text/plain")}

    attempts = [
        client.post("/dashboard/upload", headers=foreign, data={"csrf_token": token}, files=files),
        client.post("/api/upload/", headers={**foreign, "X-CSRF-Token": token}, files=files),
        client.post("/dashboard/pay", headers=foreign, data={"csrf_token": token}),
        client.post("/api/initiate-payment/", headers={**foreign, "X-CSRF-Token": token}),
        client.post("/logout", headers=foreign, data={"csrf_token": token}),
        client.post(
            "/login",
            headers=foreign,
            data={"username": victim.username, "password": victim.password, "csrf_token": token},
        ),
    ]
    for attempt in attempts:
        assert_error(await attempt, 403, "csrf_failed")
    assert await count(db, FileUpload, victim.id) == 0
    assert await count(db, PaymentTransaction, victim.id) == 1  # the granted one
    assert stored_files(settings) == []
    assert (await client.get("/dashboard/")).status_code == 200

    same_site = await client.post(
        "/dashboard/upload", headers=SAME_SITE, data={"csrf_token": token}, files=files
    )
    assert (same_site.status_code, same_site.headers["location"]) == (
        303,
        "/dashboard/?notice=uploaded",
    )
    api = await client.post(
        "/api/upload/", headers={**SAME_SITE, "X-CSRF-Token": token}, files=files
    )
    assert api.status_code == 202, api.text
    assert await count(db, FileUpload, victim.id) == 2


async def test_bearer_clients_and_other_people_are_not_affected_by_the_origin_check(
    client: AsyncClient, other_client: AsyncClient, paid: Account, db: Sessions
) -> None:
    """No session cookie, no origin check: an API client's bearer request from any origin is
    served, and a person signed in elsewhere keeps uploading through the form."""
    resp = await other_client.post(
        "/api/upload/",
        headers={**paid.headers, "Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        files={"file": ("a.txt", b"one two", "text/plain")},
    )
    assert resp.status_code == 202, resp.text
    token = await sign_in(client, paid)
    form = await client.post(
        "/dashboard/upload",
        data={"csrf_token": token},
        files={"file": ("b.txt", b"three four", "text/plain")},
    )
    assert form.headers["location"] == "/dashboard/?notice=uploaded"
    assert await count(db, FileUpload, paid.id) == 2


async def test_gateway_routes_still_accept_cross_site_posts(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    """The gateway returns the browser with a cross-site form POST, cookie included."""
    await sign_in(client, user)
    async with db() as session:
        session.add(
            PaymentTransaction(
                user_id=user.id,
                transaction_id="TXNCROSSSITE000000000000001",
                amount=Decimal("100.00"),
                currency="BDT",
                status=PaymentStatus.PENDING,
                gateway_response={},
            )
        )
        await session.commit()
    cross = {"Origin": "https://sandbox.aamarpay.com", "Sec-Fetch-Site": "cross-site"}
    for path in ("/api/payment/fail/", "/api/payment/success/", "/api/payment/ipn/"):
        resp = await client.post(
            path, headers=cross, data={"mer_txnid": "TXNCROSSSITE000000000000001"}
        )
        assert resp.status_code != 403, (path, resp.text)
        assert "csrf_failed" not in resp.text
    cancel = await client.get(
        "/api/payment/cancel/", headers=cross, params={"tran_id": "TXNCROSSSITE000000000000001"}
    )
    assert cancel.status_code != 403


# --- tokens never in a URL -----------------------------------------------------------------------


async def test_upload_form_keeps_the_token_out_of_urls_and_still_works(
    client: AsyncClient, paid: Account, db: Sessions, settings: Settings
) -> None:
    token = await sign_in(client, paid)
    page = (await client.get("/dashboard/")).text
    urls = re.findall(r'(?:action|href|src|formaction)="([^"]*)"', page)
    assert urls
    assert all("csrf" not in u and token not in u for u in urls), urls
    form = re.search(r'<form[^>]*id="upload-form".*?</form>', page, re.S)
    assert form, "no upload form"
    assert 'action="/dashboard/upload"' in form.group(0)
    # The token field comes before the file input, so the browser sends it first.
    assert form.group(0).index('name="csrf_token"') < form.group(0).index('name="file"')

    files = {"file": ("a.txt", b"one two three", "text/plain")}
    ok = await client.post("/dashboard/upload", data={"csrf_token": token}, files=files)
    assert ok.headers["location"] == "/dashboard/?notice=uploaded"
    by_header = await client.post("/dashboard/upload", headers={"X-CSRF-Token": token}, files=files)
    assert by_header.headers["location"] == "/dashboard/?notice=uploaded"
    assert await count(db, FileUpload, paid.id) == 2

    # Refused and nothing stored: the old token-in-URL form, no token, a forged one, and a
    # token sent only after the file (it must be checked before the file is read).
    in_url = await client.post(f"/dashboard/upload?csrf_token={token}", files=files)
    missing = await client.post("/dashboard/upload", files=files)
    forged = await client.post("/dashboard/upload", data={"csrf_token": "x" + token}, files=files)
    late = await client.post(
        "/dashboard/upload",
        content=(
            b"--b\r\n"
            b'Content-Disposition: form-data; name="file"; filename="c.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nfive six\r\n"
            b"--b\r\n"
            b'Content-Disposition: form-data; name="csrf_token"\r\n\r\n'
            + token.encode()
            + b"\r\n--b--\r\n"
        ),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    for refused in (in_url, missing, forged, late):
        assert refused.headers["location"] == "/dashboard/?upload_error=csrf_failed"
    assert await count(db, FileUpload, paid.id) == 2
    assert len(stored_files(settings)) == 2


# --- admin CSV export -------------------------------------------------------------------------


FORMULAS = [
    '=HYPERLINK("http://x")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A2)",
    "\tTAB",
    "\rCR",
]


async def test_admin_csv_export_neutralises_formulas(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    staff = await user_factory.create(username="staff-export")
    async with db() as session:
        await session.execute(update(User).where(User.id == staff.id).values(is_staff=True))
        await session.commit()
    customer = await user_factory.create(username="@cmd-x")
    names = [*FORMULAS, "plain report.txt"]
    async with db() as session:
        for i, name in enumerate(names):
            session.add(
                FileUpload(
                    user_id=customer.id,
                    file=f"{customer.id}/{i:032x}.txt",
                    filename=name,
                    status=UploadStatus.COMPLETED,
                    word_count=1,
                    size=1,
                    sha256="0" * 64,
                    content_type="text/plain",
                    upload_time=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
                )
            )
        await session.commit()
    login = await client.post(
        "/admin/login", data={"username": staff.username, "password": staff.password}
    )
    assert login.status_code == 302

    resp = await client.get("/admin/file-upload/export/csv")
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.text, newline="")))
    assert sorted(r["filename"] for r in rows) == sorted(
        [*(f"'{n}" for n in FORMULAS), "plain report.txt"]
    )
    assert {r["user"] for r in rows} == {"'@cmd-x"}
    assert {r["word_count"] for r in rows} == {"1"}
    users = list(csv.DictReader(io.StringIO((await client.get("/admin/user/export/csv")).text)))
    assert sorted(r["username"] for r in users) == sorted(["'@cmd-x", "staff-export"])
