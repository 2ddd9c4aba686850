"""The dashboard in a real browser: pay through the simulator, upload, watch the count
arrive, download; failure and cancel paths; escaping; CSRF."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.e2e.conftest import Shots
from tests.plugins.simulator import SimulatorControl
from tests.support import DEFAULT_PASSWORD, async_wait_until


async def register(page: Page, shot: Shots | None = None) -> str:
    username = f"web{uuid.uuid4().hex[:10]}"
    await page.goto("/register")
    if shot:
        await shot("01-register")
    await page.fill("#username", username)
    await page.fill("#email", f"{username}@example.com")
    await page.fill("#password", DEFAULT_PASSWORD)
    await page.click("#register")
    await expect(page).to_have_url(re.compile(r"/dashboard/"))
    return username


async def pay(page: Page, button: str, shot: Shots | None = None) -> None:
    """Dashboard → Pay → the simulator's checkout → press `button` → back on the dashboard."""
    await page.click("#pay")
    await expect(page).to_have_url(re.compile(r"/paynow\.php\?track=AAM"))
    if shot:
        await shot("03-gateway-checkout")
    await page.click(f"#{button}")
    # The simulator answers with a form that posts itself back to us from the browser.
    await expect(page).to_have_url(re.compile(r"/dashboard/\?payment="), timeout=30_000)


async def test_register_pay_upload_count_download(
    page: Page, shot: Shots, tmp_path: Path, live: dict[str, Any]
) -> None:
    await page.goto("/dashboard/")
    await expect(page).to_have_url(re.compile(r"/login$"))
    username = await register(page, shot)
    await expect(page.locator("#signed-in-as")).to_contain_text(username)
    await expect(page.locator("#pay")).to_be_visible()
    await expect(page.locator("#upload-form")).to_have_count(0)
    await shot("02-before-paying")

    await pay(page, "pay-bkash", shot)
    await expect(page.locator("[data-message=success]")).to_contain_text("Payment received")
    await expect(page.locator("#upload-form")).to_be_visible()
    await expect(page.locator("#pay")).to_have_count(0)
    await expect(page.locator("#payments tbody tr")).to_have_count(1)
    await expect(page.locator("#payments")).to_contain_text("success")
    await shot("04-paid")

    text = "Counting words, in বাংলা too:\tone two\u00a0three\n"
    source = tmp_path / "essay.txt"
    source.write_text(text, encoding="utf-8")
    await page.set_input_files("#file", str(source))
    await page.click("#upload")
    await expect(page.locator("[data-message=success]")).to_contain_text("Uploaded")
    row = page.locator("#files tbody tr").first
    await expect(row.locator(".file-name")).to_have_text("essay.txt")
    # No reload from here on: a marker set now must survive until the count shows.
    await page.evaluate("window.__sameDocument = true")
    await expect(row.locator(".word-count")).to_have_text(str(len(text.split())), timeout=60_000)
    await expect(row.locator(".status")).to_have_text("completed")
    assert await page.evaluate("window.__sameDocument") is True
    await shot("05-counted")

    async with page.expect_download() as download_info:
        await row.locator(".download").click()
    download = await download_info.value
    assert download.suggested_filename == "essay.txt"
    assert Path(await download.path()).read_text(encoding="utf-8") == text
    await expect(page.locator("#activity")).to_contain_text("Uploaded essay.txt (55 bytes)")


async def test_html_in_a_file_name_is_shown_as_text(
    page: Page, shot: Shots, tmp_path: Path
) -> None:
    await register(page)
    await pay(page, "pay-visa")
    dialogs: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    name = "<img src=x onerror=alert(1)>.txt"
    await page.set_input_files(
        "#file", files=[{"name": name, "mimeType": "text/plain", "buffer": b"harmless words"}]
    )
    await page.click("#upload")
    row = page.locator("#files tbody tr").first
    await expect(row.locator(".file-name")).to_have_text(name)
    await expect(row.locator(".word-count")).to_have_text("2", timeout=60_000)
    await page.reload()
    await expect(page.locator("#files .file-name").first).to_have_text(name)
    assert await page.locator("#files img").count() == 0
    assert dialogs == []
    await shot("escaped-name")


async def test_failed_payment_shows_a_message_and_no_upload_form(page: Page, shot: Shots) -> None:
    await register(page)
    await pay(page, "fail")
    await expect(page.locator("[data-message=danger]")).to_contain_text("did not go through")
    await expect(page.locator("#upload-form")).to_have_count(0)
    await expect(page.locator("#payments")).to_contain_text("failed")
    await shot("payment-failed")


async def test_cancelled_payment_shows_a_message(page: Page, shot: Shots) -> None:
    await register(page)
    await pay(page, "cancel")
    await expect(page.locator("[data-message=warning]")).to_contain_text("cancelled")
    await expect(page.locator("#pay")).to_be_visible()
    await expect(page.locator("#payments")).to_contain_text("cancelled")
    await shot("payment-cancelled")


async def test_upload_errors_come_back_as_readable_messages(page: Page, shot: Shots) -> None:
    await register(page)
    await pay(page, "pay-bkash")
    await page.set_input_files(
        "#file",
        files=[{"name": "slides.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7"}],
    )
    await page.click("#upload")
    await expect(page.locator("[data-message=danger]")).to_contain_text(
        "Only .txt and .docx files are accepted"
    )
    await expect(page.locator("#no-files")).to_be_visible()
    await shot("upload-refused")


async def test_wrong_password_is_reported_on_the_page(page: Page, shot: Shots) -> None:
    username = await register(page)
    await page.click("#logout")
    await expect(page).to_have_url(re.compile(r"/login"))
    await page.fill("#username", username)
    await page.fill("#password", "not my password")
    await page.click("#sign-in")
    await expect(page.locator("#form-error")).to_contain_text("Incorrect username or password")
    await shot("login-error")
    await page.fill("#password", DEFAULT_PASSWORD)
    await page.click("#sign-in")
    await expect(page).to_have_url(re.compile(r"/dashboard/"))


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(
    page: Page, shot: Shots, live: dict[str, Any]
) -> None:
    """The nav's Sign out is a POST form; afterwards a copy of the old session cookie, put
    back into the browser, opens no page and the API refuses it too."""
    await register(page)
    old = [c for c in await page.context.cookies() if c["name"] == "session"]
    assert len(old) == 1
    await page.goto("/logout")  # a GET only shows the button
    await expect(page.locator("#confirm-logout")).to_be_visible()
    await page.goto("/dashboard/")
    await expect(page.locator("#signed-in-as")).to_be_visible()
    await page.click("#logout")
    await expect(page).to_have_url(re.compile(r"/login\?logged_out=true$"))
    await shot("signed-out")
    await page.context.add_cookies(old)  # type: ignore[arg-type]
    await page.goto("/dashboard/")
    await expect(page).to_have_url(re.compile(r"/login$"))
    response = await page.request.get(f"{live['url']}/api/auth/me/")
    assert response.status == 401


async def test_cross_site_post_without_the_csrf_token_is_refused(
    page: Page, simulator_url: str, live: dict[str, Any]
) -> None:
    await register(page)
    # Another origin (the simulator's) plants a form that posts to our Pay action; the
    # browser still holds the session cookie (same site, other port), but not the token.
    await page.goto(f"{simulator_url}/_sim/config")
    target = f"{live['url']}/dashboard/pay"
    async with page.expect_response(target) as response_info:
        await page.evaluate(
            """(target) => {
                const form = document.createElement('form');
                form.method = 'POST';
                form.action = target;
                document.body.appendChild(form);
                form.submit();
            }""",
            target,
        )
    response = await response_info.value
    assert response.status == 403
    assert (await response.json())["error"] == "csrf_failed"
    await page.goto("/dashboard/")
    await expect(page.locator("#payments tbody tr")).to_have_count(0)


async def test_session_cookie_is_httponly_and_lax(page: Page) -> None:
    await register(page)
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["session"]["httpOnly"] is True
    assert cookies["session"]["sameSite"] == "Lax"
    assert cookies["csrftoken"]["httpOnly"] is True
    assert await page.evaluate("document.cookie") == ""


async def test_a_person_who_closes_the_tab_is_confirmed_by_the_ipn_and_gets_a_receipt(
    page: Page, shot: Shots, live: dict[str, Any], simulator: SimulatorControl, run_dir: Path
) -> None:
    """As in `make demo`: pay, close the tab; the IPN confirms the payment, the dashboard
    shows it on the next visit, the receipt is on its page and in the mail folder."""
    simulator.config(ipn_url=f"{live['url']}/api/payment/ipn/")
    await register(page)
    await page.click("#pay")
    await expect(page).to_have_url(re.compile(r"/paynow\.php\?track=AAM"))
    await page.click("#pay-close")
    await expect(page.locator("h1")).to_contain_text("Paid, tab closed")

    async def confirmed() -> bool:
        await page.goto("/dashboard/")
        return await page.locator("#payments [data-status=success]").count() == 1

    await async_wait_until(confirmed, timeout=30, interval=0.5, what="the IPN to confirm")
    await expect(page.locator("#upload-form")).to_be_visible()
    await shot("ipn-confirmed")

    await page.click("#payments .receipt-link")
    await expect(page).to_have_url(re.compile(r"/dashboard/payments/[0-9a-f]{32}/receipt$"))
    transaction = (await page.locator("#receipt-transaction").inner_text()).strip()
    await expect(page.locator("#receipt-amount")).to_have_text("100.00 BDT")
    await expect(page.locator("#receipt-pg-txnid")).to_have_text(re.compile(r"^AAM"))
    await shot("receipt-page")

    async def mailed() -> bool:
        return any(
            transaction in path.read_text(errors="replace")
            for path in (run_dir / "mail").glob("*.eml")
        )

    await async_wait_until(mailed, timeout=60, interval=0.2, what="the receipt's .eml file")
