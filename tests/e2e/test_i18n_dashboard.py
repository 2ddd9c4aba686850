"""The dashboard in Bengali in a real browser: pages chosen by Accept-Language, the switch
and its cookie, the served Bengali font, several files dropped at once with progress, a
refusal in Bengali, and the form without JavaScript posting two files at once."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import User
from tests.e2e.conftest import Shots
from tests.e2e.test_dashboard import pay
from tests.support import DEFAULT_PASSWORD, grant_payment

BENGALI_DIGIT = re.compile(r"[০-৯]")
ASCII_DIGIT = re.compile(r"[0-9]")
FONT_FAMILY = "Noto Sans Bengali App"


@pytest.fixture
async def bn_context(browser: Browser, live: dict[str, Any]) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        base_url=live["url"],
        viewport={"width": 1280, "height": 900},
        extra_http_headers={"Accept-Language": "bn-BD,bn;q=0.9,en;q=0.5"},
    )
    yield ctx
    await ctx.close()


@pytest.fixture
async def bn_page(bn_context: BrowserContext) -> Page:
    page = await bn_context.new_page()
    page.set_default_timeout(20_000)
    return page


@pytest.fixture
def bn_shot(bn_page: Page, request: pytest.FixtureRequest) -> Shots:
    return Shots(bn_page, request.node.name.removeprefix("test_"))


async def register(page: Page) -> str:
    username = f"bn{uuid.uuid4().hex[:10]}"
    await page.goto("/register")
    await page.fill("#username", username)
    await page.fill("#email", f"{username}@example.com")
    await page.fill("#password", DEFAULT_PASSWORD)
    await page.click("#register")
    await expect(page).to_have_url(re.compile(r"/dashboard/"))
    return username


async def test_bengali_pages_font_and_the_switch(bn_page: Page, bn_shot: Shots) -> None:
    page = bn_page
    fonts: list[str] = []
    page.on("request", lambda r: fonts.append(r.url) if r.url.endswith(".woff2") else None)

    await page.goto("/login")
    await expect(page.locator("html")).to_have_attribute("lang", "bn")
    await expect(page.locator("h1")).to_have_text("সাইন ইন")
    await page.goto("/register")
    await expect(page.locator("html")).to_have_attribute("lang", "bn")
    await expect(page.locator("h1")).to_have_text("নতুন অ্যাকাউন্ট তৈরি করুন")
    await expect(page.locator("form .form-text").last).to_contain_text("কমপক্ষে ৮টি অক্ষর")

    await register(page)
    await expect(page.locator("html")).to_have_attribute("lang", "bn")
    await expect(page.locator("#pay")).to_have_text("৳১০০ পরিশোধ করুন")
    await expect(page.locator("#pay-card")).to_contain_text("৳১০০.০০")
    activity_time = await page.locator("#activity td").nth(1).inner_text()
    assert BENGALI_DIGIT.search(activity_time)
    assert not ASCII_DIGIT.search(activity_time.removesuffix("UTC"))

    # The app's own Bengali face is what draws ৳ and the Bengali text.
    loaded = await page.evaluate(
        """async (family) => {
            await document.fonts.ready;
            const faces = Array.from(document.fonts).filter(
                (f) => f.family.replace(/"/g, "") === family && f.status === "loaded");
            return {
                loaded: faces.length,
                covers: document.fonts.check(`16px "${family}"`, "৳১০০"),
                button: getComputedStyle(document.getElementById("pay")).fontFamily,
            };
        }""",
        FONT_FAMILY,
    )
    assert loaded["loaded"] >= 1, loaded
    assert loaded["covers"] is True
    assert loaded["button"].replace('"', "").startswith(FONT_FAMILY)
    assert any("/static/fonts/noto-sans-bengali-bengali-" in url for url in fonts), fonts
    path = await bn_shot("dashboard-before-paying")
    assert path.exists()

    # The switch: English, and the choice sticks (cookie) whatever the browser prefers.
    await page.click('#language-switch [data-lang="en"]')
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#pay")).to_have_text("Pay ৳100")
    await page.goto("/dashboard/")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.goto("/login")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    assert cookies["lang"] == "en"
    await page.click('#language-switch [data-lang="bn"]')
    await expect(page.locator("html")).to_have_attribute("lang", "bn")


async def drop(page: Page, files: list[dict[str, str]]) -> None:
    await page.evaluate(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) dt.items.add(new File([f.text], f.name, {type: f.type}));
            const form = document.getElementById("upload-form");
            for (const type of ["dragenter", "dragover", "drop"]) {
                form.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                        cancelable: true}));
            }
        }""",
        files,
    )


async def test_three_dropped_files_upload_with_progress_and_their_counts_arrive(
    bn_page: Page, bn_shot: Shots
) -> None:
    page = bn_page
    await register(page)
    await pay(page, "pay-bkash")
    await expect(page.locator("[data-message=success]")).to_contain_text("পেমেন্ট পাওয়া গেছে")
    await expect(page.locator("#upload-form")).to_be_visible()
    await page.evaluate("window.__sameDocument = true")

    texts = {
        "প্রবন্ধ.txt": "বাংলা ভাষায় কয়েকটি শব্দ\n",
        "notes.txt": "one two three four five",
        "long.txt": "word " * 1200,
    }
    await drop(page, [{"name": n, "text": t, "type": "text/plain"} for n, t in texts.items()])
    items = page.locator("#upload-results .upload-result")
    await expect(items).to_have_count(3)
    await expect(page.locator('#upload-results [data-state="accepted"]')).to_have_count(3)
    for i in range(3):
        item = items.nth(i)
        await expect(item).to_have_attribute("data-progressed", "true")
        assert await item.locator("progress").evaluate("p => p.value") == 100
        await expect(item).to_contain_text("আপলোড হয়েছে")

    rows = page.locator("#files tbody tr")
    await expect(rows).to_have_count(3)
    expected = {"প্রবন্ধ.txt": "৪", "notes.txt": "৫", "long.txt": "১,২০০"}
    for name, count in expected.items():
        row = page.locator("#files tbody tr", has=page.locator(".file-name", has_text=name))
        await expect(row.locator(".word-count")).to_have_text(count, timeout=60_000)
        await expect(row.locator(".status")).to_have_text("সম্পন্ন")
    assert await page.evaluate("window.__sameDocument") is True
    await bn_shot("dashboard-counted")

    # A refused file: its reason, in Bengali, in place.
    await page.set_input_files(
        "#file",
        files=[{"name": "slides.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7"}],
    )
    await page.click("#upload")
    refused = page.locator('#upload-results [data-state="refused"]')
    await expect(refused).to_have_count(1)
    await expect(refused).to_contain_text("slides.pdf")
    await expect(refused).to_contain_text("শুধু .txt ও .docx ফাইল গ্রহণ করা হয়")
    await expect(rows).to_have_count(3)


async def test_without_javascript_the_form_posts_two_files_at_once(
    browser: Browser,
    live: dict[str, Any],
    db: async_sessionmaker[AsyncSession],
) -> None:
    ctx = await browser.new_context(
        base_url=live["url"], java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    try:
        page = await ctx.new_page()
        page.set_default_timeout(20_000)
        username = await register(page)
        async with db() as session:
            user_id = await session.scalar(select(User.id).where(User.username == username))
        assert user_id is not None
        await grant_payment(db, user_id)
        await page.goto("/dashboard/")
        await page.set_input_files(
            "#file",
            files=[
                {"name": "a.txt", "mimeType": "text/plain", "buffer": b"alpha beta"},
                {"name": "b.txt", "mimeType": "text/plain", "buffer": b"gamma delta epsilon"},
            ],
        )
        await page.click("#upload")
        await expect(page).to_have_url(re.compile(r"/dashboard/$"))
        accepted = page.locator('#upload-results [data-state="accepted"]')
        await expect(accepted).to_have_count(2)
        await expect(accepted.nth(0)).to_contain_text("a.txt")
        await expect(accepted.nth(1)).to_contain_text("b.txt")
        await expect(page.locator("#files tbody tr")).to_have_count(2)
        await Shots(page, "no-js")("two-files")
    finally:
        await ctx.close()
