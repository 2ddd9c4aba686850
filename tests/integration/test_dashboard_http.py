"""The browser pages at the HTTP level: sessions, CSRF, headers, escaping."""

from __future__ import annotations

import re

from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import FileUpload, User
from tests.support import (
    DEFAULT_PASSWORD,
    Account,
    SettingsOverride,
    UserFactory,
    assert_error,
    grant_payment,
)

Sessions = async_sessionmaker[AsyncSession]


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def sign_in(client: AsyncClient, account: Account) -> None:
    token = csrf_from((await client.get("/login")).text)
    resp = await client.post(
        "/login",
        data={"username": account.username, "password": account.password, "csrf_token": token},
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/dashboard/"


async def test_dashboard_redirects_to_login_when_signed_out(client: AsyncClient) -> None:
    resp = await client.get("/dashboard/")
    assert (resp.status_code, resp.headers["location"]) == (303, "/login")
    assert (await client.get("/")).headers["location"] == "/dashboard/"


def upload_action(html: str) -> str:
    match = re.search(r'id="upload-form"\s+action="([^"]+)"', html)
    assert match, "no upload form on the page"
    return match.group(1).replace("&amp;", "&")


async def deactivate(db: Sessions, user_id: int) -> None:
    async with db() as session:
        await session.execute(update(User).where(User.id == user_id).values(is_active=False))
        await session.commit()


async def uploads_of(db: Sessions, user_id: int) -> int:
    async with db() as session:
        query = select(func.count()).select_from(FileUpload).where(FileUpload.user_id == user_id)
        return int(await session.scalar(query) or 0)


async def test_upload_form_posts_and_a_deactivated_session_goes_to_login(
    client: AsyncClient, user: Account, db: Sessions, settings: Settings
) -> None:
    """The form upload and the dashboard check the user in their own first query (no separate
    lookup): a session whose user was deactivated since sign-in lands on /login and stores
    nothing; before that, the same form post is accepted."""
    await grant_payment(db, user.id)
    await sign_in(client, user)
    page = await client.get("/dashboard/")
    action = upload_action(page.text)
    form = {"csrf_token": csrf_from(page.text)}
    files = {"file": ("a.txt", b"one two three", "text/plain")}
    accepted = await client.post(action, data=form, files=files)
    assert (accepted.status_code, accepted.headers["location"]) == (
        303,
        "/dashboard/?notice=uploaded",
    )
    assert await uploads_of(db, user.id) == 1

    await deactivate(db, user.id)
    refused = await client.post(action, data=form, files=files)
    assert (refused.status_code, refused.headers["location"]) == (303, "/login")
    assert await uploads_of(db, user.id) == 1
    stored = [p for p in settings.media_root.rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert (await client.get("/dashboard/")).headers["location"] == "/login"


def uploads_left(html: str) -> str | None:
    match = re.search(r'id="uploads-remaining">(\d+)<', html)
    return match.group(1) if match else None


async def test_dashboard_shows_what_the_payment_bought(
    client: AsyncClient, user: Account, db: Sessions, override_settings: SettingsOverride
) -> None:
    """The page's user and allowance come from one query: the form shows only when the
    person may upload, with the uploads left when payments buy a number of them."""
    await sign_in(client, user)
    override_settings(uploads_per_payment=0)
    page = (await client.get("/dashboard/")).text
    assert ('id="upload-form"' in page, uploads_left(page)) == (False, None)
    await grant_payment(db, user.id)
    page = (await client.get("/dashboard/")).text
    assert ('id="upload-form"' in page, uploads_left(page)) == (True, None)

    override_settings(uploads_per_payment=5)
    async with db() as session:
        await session.execute(update(User).where(User.id == user.id).values(upload_credits=2))
        await session.commit()
    page = (await client.get("/dashboard/")).text
    assert ('id="upload-form"' in page, uploads_left(page)) == (True, "2")
    async with db() as session:
        await session.execute(update(User).where(User.id == user.id).values(upload_credits=0))
        await session.commit()
    page = (await client.get("/dashboard/")).text
    assert 'id="upload-form"' not in page


async def test_upload_form_without_a_session_goes_to_login(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    await grant_payment(db, user.id)
    await sign_in(client, user)
    page = (await client.get("/dashboard/")).text
    action = upload_action(page)
    client.cookies.delete("session")
    resp = await client.post(
        action,
        data={"csrf_token": csrf_from(page)},
        files={"file": ("a.txt", b"one two", "text/plain")},
    )
    assert (resp.status_code, resp.headers["location"]) == (303, "/login")
    assert await uploads_of(db, user.id) == 0


async def test_sign_in_sets_an_httponly_lax_session_cookie(
    client: AsyncClient, user: Account
) -> None:
    token = csrf_from((await client.get("/login")).text)
    resp = await client.post(
        "/login", data={"username": user.username, "password": user.password, "csrf_token": token}
    )
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    page = await client.get("/dashboard/")
    assert page.status_code == 200
    assert user.username in page.text
    assert 'id="pay"' in page.text
    assert 'id="upload-form"' not in page.text


async def test_login_form_without_csrf_token_is_refused(client: AsyncClient, user: Account) -> None:
    await client.get("/login")
    resp = await client.post("/login", data={"username": user.username, "password": user.password})
    assert resp.status_code == 403
    assert "expired" in resp.text
    assert "set-cookie" not in resp.headers or "session=" not in resp.headers["set-cookie"]


async def test_wrong_password_renders_the_form_with_an_error(
    client: AsyncClient, user: Account
) -> None:
    token = csrf_from((await client.get("/login")).text)
    resp = await client.post(
        "/login", data={"username": user.username, "password": "nope", "csrf_token": token}
    )
    assert resp.status_code == 401
    assert "Incorrect username or password" in resp.text


async def test_register_page_creates_the_account_and_signs_in(client: AsyncClient) -> None:
    token = csrf_from((await client.get("/register")).text)
    resp = await client.post(
        "/register",
        data={"username": "webuser", "password": DEFAULT_PASSWORD, "csrf_token": token},
    )
    assert resp.status_code == 303
    assert "session=" in resp.headers["set-cookie"]
    page = await client.get(resp.headers["location"])
    assert "Welcome, webuser" in page.text


async def test_register_page_shows_validation_errors_escaped(client: AsyncClient) -> None:
    token = csrf_from((await client.get("/register")).text)
    resp = await client.post(
        "/register",
        data={"username": "<b>x</b>", "password": "short", "csrf_token": token},
    )
    assert resp.status_code == 422
    assert "<b>x</b>" not in resp.text
    assert "&lt;b&gt;x&lt;/b&gt;" in resp.text
    assert "password" in resp.text


async def test_pages_send_security_headers(client: AsyncClient) -> None:
    resp = await client.get("/login")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"
    assert "csrftoken=" in resp.headers["set-cookie"]


async def test_cookie_auth_on_the_api_needs_the_csrf_header_to_change_things(
    client: AsyncClient, user: Account
) -> None:
    await sign_in(client, user)
    # Reading with the cookie is fine (the dashboard's refresh does it).
    assert (await client.get("/api/files/")).status_code == 200
    refused = await client.post("/api/initiate-payment/")
    assert_error(refused, 403, "csrf_failed")
    token = client.cookies["csrftoken"]
    allowed = await client.post("/api/initiate-payment/", headers={"X-CSRF-Token": token})
    assert allowed.status_code != 403
    # Bearer tokens are not cookies: no CSRF header needed.
    with_bearer = await client.post("/api/upload/", headers=user.headers)
    assert with_bearer.status_code == 402


async def test_dashboard_pay_without_token_is_refused(
    client: AsyncClient, user: Account, user_factory: UserFactory
) -> None:
    await sign_in(client, user)
    resp = await client.post("/dashboard/pay", data={})
    assert_error(resp, 403, "csrf_failed")
    listed = await client.get("/api/transactions/", headers=user.headers)
    assert listed.json()["total"] == 0


async def test_logout_clears_the_session(client: AsyncClient, user: Account) -> None:
    await sign_in(client, user)
    token = csrf_from((await client.get("/dashboard/")).text)
    resp = await client.post("/logout", data={"csrf_token": token})
    assert resp.headers["location"] == "/login?logged_out=true"
    assert 'session=""' in resp.headers["set-cookie"]
    assert (await client.get("/dashboard/")).headers["location"] == "/login"


async def test_payment_message_is_chosen_by_code_not_by_text(
    client: AsyncClient, user: Account
) -> None:
    await sign_in(client, user)
    page = await client.get("/dashboard/", params={"payment": "<script>alert(1)</script>"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "alert(1)" not in page.text
