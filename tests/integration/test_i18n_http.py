"""Languages at the HTTP level (SPEC §12) and the dashboard's form POST of several files
without JavaScript."""

from __future__ import annotations

import re
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import FileUpload, User
from app.services import storage
from tests.integration.test_dashboard_http import csrf_from, sign_in, uploads_of
from tests.support import Account, SettingsOverride, UserFactory, assert_error, grant_payment

Sessions = async_sessionmaker[AsyncSession]
BENGALI = re.compile(r"[\u0980-\u09FF]")


def jar_lang(client: AsyncClient) -> str | None:
    values = {c.value for c in client.cookies.jar if c.name == "lang"}
    assert len(values) <= 1, values
    return values.pop() if values else None


def html_lang(html: str) -> str:
    match = re.search(r'<html lang="([a-z]+)">', html)
    assert match, "no <html lang>"
    return match.group(1)


async def test_language_order_query_cookie_accept_language_default(
    client: AsyncClient, override_settings: SettingsOverride
) -> None:
    # Nothing said: DEFAULT_LANGUAGE (en).
    page = await client.get("/login")
    assert html_lang(page.text) == "en"
    assert ">Sign in<" in page.text
    # The browser prefers Bengali.
    page = await client.get("/login", headers={"Accept-Language": "bn-BD,bn;q=0.9,en;q=0.5"})
    assert html_lang(page.text) == "bn"
    assert "সাইন ইন" in page.text
    assert "lang=" not in page.headers.get("set-cookie", "")  # no choice made, none stored
    # The cookie beats Accept-Language.
    page = await client.get("/register", headers={"Accept-Language": "bn", "Cookie": "lang=en"})
    assert html_lang(page.text) == "en"
    # ?lang= beats the cookie, and stores itself in it.
    page = await client.get("/register?lang=bn", headers={"Accept-Language": "en"})
    assert html_lang(page.text) == "bn"
    assert re.search(r"\blang=bn; Max-Age=\d+; Path=/; SameSite=Lax", page.headers["set-cookie"])
    assert jar_lang(client) == "bn"
    page = await client.get("/login", headers={"Accept-Language": "en"})
    assert html_lang(page.text) == "bn"
    # An unknown value is ignored (and not stored).
    page = await client.get("/login?lang=fr")
    assert html_lang(page.text) == "bn"
    assert jar_lang(client) == "bn"
    # A browser that prefers neither gets DEFAULT_LANGUAGE.
    client.cookies.delete("lang")
    override_settings(default_language="bn")
    page = await client.get("/login", headers={"Accept-Language": "fr-FR,de;q=0.8"})
    assert html_lang(page.text) == "bn"
    override_settings(default_language="en")
    page = await client.get("/login", headers={"Accept-Language": "fr-FR,de;q=0.8"})
    assert html_lang(page.text) == "en"


async def test_lang_on_a_redirect_is_stored_too(client: AsyncClient) -> None:
    resp = await client.get("/dashboard/?lang=bn")
    assert (resp.status_code, resp.headers["location"]) == (303, "/login")
    assert jar_lang(client) == "bn"
    assert html_lang((await client.get("/login")).text) == "bn"


async def test_every_page_has_a_switch_that_keeps_the_query(
    client: AsyncClient, user: Account
) -> None:
    for path in ("/login", "/register"):
        page = (await client.get(path)).text
        assert f'href="{path}?lang=bn"' in page
        assert f'href="{path}?lang=en"' in page
    await sign_in(client, user)
    page = (await client.get("/dashboard/?payment=success")).text
    assert 'href="/dashboard/?payment=success&amp;lang=bn"' in page
    page = (await client.get("/logout")).text
    assert 'href="/logout?lang=bn"' in page


async def test_the_dashboard_in_bengali_and_the_choice_stored_on_the_user(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    await sign_in(client, user)
    page = await client.get("/dashboard/?lang=bn&payment=cancelled")
    assert html_lang(page.text) == "bn"
    assert "৳১০০ পরিশোধ করুন" in page.text  # the Pay button: ৳ first, Bengali digits
    assert "আপনি পেমেন্ট বাতিল করেছেন" in page.text  # the ?payment= notice
    assert "font-src 'self'" in page.headers["content-security-policy"]
    async with db() as session:
        assert await session.scalar(select(User.language).where(User.id == user.id)) == "bn"
    await client.get("/dashboard/?lang=en")
    async with db() as session:
        assert await session.scalar(select(User.language).where(User.id == user.id)) == "en"


async def test_upload_error_notices_and_form_errors_are_translated(
    client: AsyncClient, user: Account
) -> None:
    await client.get("/login?lang=bn")
    token = csrf_from((await client.get("/login")).text)
    resp = await client.post(
        "/login", data={"username": user.username, "password": "nope", "csrf_token": token}
    )
    assert resp.status_code == 401
    assert "ব্যবহারকারীর নাম বা পাসওয়ার্ড সঠিক নয়।" in resp.text
    resp = await client.post(
        "/register", data={"username": "<b>x</b>", "password": "short", "csrf_token": token}
    )
    assert resp.status_code == 422
    assert "পাসওয়ার্ড: কমপক্ষে ৮টি অক্ষর।" in resp.text
    assert "ব্যবহারকারীর নামে শুধু অক্ষর, অঙ্ক এবং @ . + - _ থাকতে পারে" in resp.text
    await sign_in(client, user)
    page = await client.get("/dashboard/?upload_error=unsupported_file_type")
    assert "শুধু .txt ও .docx ফাইল গ্রহণ করা হয়" in page.text


async def test_the_json_api_stays_english(client: AsyncClient, user: Account) -> None:
    resp = await client.post(
        "/api/upload/?lang=bn",
        headers={**user.headers, "Accept-Language": "bn"},
        files={"file": ("a.txt", b"one", "text/plain")},
    )
    body = assert_error(resp, 402, "payment_required")
    assert not BENGALI.search(str(body["detail"]))
    assert "set-cookie" not in resp.headers


# --- several files in one form POST (no JavaScript) -----------------------------------------


def leftovers(settings: Settings) -> list[Any]:
    incoming = settings.media_root / storage.INCOMING
    return sorted(incoming.iterdir()) if incoming.exists() else []


def stored_files(settings: Settings) -> list[Any]:
    return sorted(
        p for p in settings.media_root.rglob("*") if p.is_file() and storage.INCOMING not in p.parts
    )


async def dashboard_form(client: AsyncClient, account: Account, db: Sessions) -> dict[str, str]:
    await grant_payment(db, account.id)
    await sign_in(client, account)
    return {"csrf_token": csrf_from((await client.get("/dashboard/")).text)}


async def test_form_post_of_a_good_and_a_bad_file(
    client: AsyncClient, user: Account, db: Sessions, settings: Settings
) -> None:
    form = await dashboard_form(client, user, db)
    resp = await client.post(
        "/dashboard/upload",
        data=form,
        files=[
            ("file", ("notes.txt", b"one two three", "text/plain")),
            ("file", ("slides.pdf", b"%PDF-1.7 not a text file", "application/pdf")),
        ],
    )
    assert (resp.status_code, resp.headers["location"]) == (303, "/dashboard/")
    async with db() as session:
        rows = (await session.scalars(select(FileUpload))).all()
    assert [r.filename for r in rows] == ["notes.txt"]
    assert [p.name for p in stored_files(settings)] == [rows[0].file.split("/")[-1]]
    assert leftovers(settings) == []
    # The page lists each file's result, once.
    page = (await client.get("/dashboard/")).text
    results = re.findall(r'data-state="(accepted|refused)"', page)
    assert results == ["accepted", "refused"]
    assert "notes.txt" in page
    assert "slides.pdf" in page
    assert "Only .txt and .docx files are accepted" in page
    assert 'data-state="' not in (await client.get("/dashboard/")).text


async def test_form_post_results_in_bengali_and_a_too_large_file(
    client: AsyncClient,
    user: Account,
    db: Sessions,
    settings: Settings,
    override_settings: SettingsOverride,
) -> None:
    form = await dashboard_form(client, user, db)
    override_settings(max_upload_bytes=1024)
    await client.get("/login?lang=bn")
    resp = await client.post(
        "/dashboard/upload",
        data=form,
        files=[
            ("file", ("big.txt", b"word " * 1000, "text/plain")),
            ("file", ("a.txt", b"one two", "text/plain")),
            ("file", ("b.txt", b"three", "text/plain")),
        ],
    )
    assert resp.status_code == 303
    assert await uploads_of(db, user.id) == 2
    assert len(stored_files(settings)) == 2
    assert leftovers(settings) == []
    page = (await client.get("/dashboard/")).text
    assert re.findall(r'data-state="(accepted|refused)"', page) == [
        "refused",
        "accepted",
        "accepted",
    ]
    assert "ফাইলটি আপলোডের সর্বোচ্চ সীমার চেয়ে বড়।" in page


async def test_one_file_keeps_the_old_redirects(
    client: AsyncClient, user: Account, db: Sessions, settings: Settings
) -> None:
    form = await dashboard_form(client, user, db)
    resp = await client.post(
        "/dashboard/upload", data=form, files=[("file", ("x.pdf", b"%PDF", "application/pdf"))]
    )
    assert resp.headers["location"] == "/dashboard/?upload_error=unsupported_file_type"
    assert await uploads_of(db, user.id) == 0
    assert leftovers(settings) == []


async def test_the_results_cookie_cannot_be_forged_or_reused_by_another(
    client: AsyncClient, user: Account, user_factory: UserFactory, db: Sessions
) -> None:
    form = await dashboard_form(client, user, db)
    await client.post(
        "/dashboard/upload",
        data=form,
        files=[
            ("file", ("mine-1.txt", b"one", "text/plain")),
            ("file", ("mine-2.txt", b"two", "text/plain")),
        ],
    )
    stolen = next(c.value for c in client.cookies.jar if c.name == "upload_results")
    other = await user_factory.create()
    client.cookies.clear()
    await sign_in(client, other)
    session = next(c.value for c in client.cookies.jar if c.name == "session")
    cookie = {"Cookie": f"session={session}; upload_results={stolen}"}
    page = await client.get("/dashboard/", headers=cookie)
    assert (page.status_code, html_lang(page.text)) == (200, "en")
    assert other.username in page.text
    assert "mine-1.txt" not in page.text
    forged = {"Cookie": f"session={session}; upload_results={stolen[:-2]}xx"}
    page = await client.get("/dashboard/", headers=forged)
    assert page.status_code == 200
    assert 'data-state="' not in page.text


async def test_more_files_than_the_limit_are_refused_whole_and_others_unaffected(
    client: AsyncClient,
    user: Account,
    user_factory: UserFactory,
    db: Sessions,
    settings: Settings,
) -> None:
    """The hostile user sends MAX_FILES_PER_REQUEST + 1 files in one form POST: nothing is
    stored (no row, no file, no temporary file); another person uploads normally."""
    form = await dashboard_form(client, user, db)
    many = [
        ("file", (f"f{i}.txt", b"some words here", "text/plain"))
        for i in range(storage.MAX_FILES_PER_REQUEST + 1)
    ]
    resp = await client.post("/dashboard/upload", data=form, files=many)
    assert resp.headers["location"] == "/dashboard/?upload_error=validation_error"
    assert await uploads_of(db, user.id) == 0
    assert stored_files(settings) == []
    assert leftovers(settings) == []
    # Exactly the limit is fine.
    resp = await client.post("/dashboard/upload", data=form, files=many[:-1])
    assert resp.headers["location"] == "/dashboard/"
    assert await uploads_of(db, user.id) == storage.MAX_FILES_PER_REQUEST

    other = await user_factory.create()
    await grant_payment(db, other.id)
    resp = await client.post(
        "/api/upload/", headers=other.headers, files={"file": ("o.txt", b"fine", "text/plain")}
    )
    assert resp.status_code == 202, resp.text
    assert await uploads_of(db, other.id) == 1
    assert leftovers(settings) == []
