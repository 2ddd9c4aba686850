"""Swagger UI at /docs works offline, and its Authorize button (OAuth2 password flow) works."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.e2e.conftest import Shots
from tests.support import DEFAULT_PASSWORD, UserFactory


async def test_swagger_authorize_then_call_me(
    page: Page, shot: Shots, user_factory: UserFactory
) -> None:
    account = await user_factory.create()
    failed_requests: list[str] = []
    page.on("requestfailed", lambda request: failed_requests.append(request.url))
    await page.goto("/docs")
    await page.click("button.authorize")
    await page.fill("input#oauth_username", account.username)
    await page.fill("input#oauth_password", DEFAULT_PASSWORD)
    await page.click("button.modal-btn.auth.authorize")
    await expect(page.locator("button.modal-btn.auth", has_text="Logout")).to_be_visible()
    await page.click("button.btn-done")
    operation = page.locator("#operations-auth-me_api_auth_me__get")
    await operation.locator("button.opblock-summary-control").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()
    body = operation.locator(".live-responses-table .response-col_description pre")
    await expect(body.first).to_contain_text(f'"username": "{account.username}"')
    await shot("authorized")
    assert failed_requests == []
